"""Writes the three notebooks from the cell sources below (edit here, then run this file), so the
.ipynb files stay small, output-free and reviewable. Run: .venv/bin/python notebooks/build_notebooks.py"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SETUP = """import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if (pathlib.Path.cwd() / "nbsetup.py").exists() else pathlib.Path.cwd() / "notebooks"))
from nbsetup import FAST, OUT, ROOT, analysed_sae_dir, run_config
print("fast mode:", FAST, "| outputs:", OUT)"""

NB01 = [
    new_markdown_cell("# 01 — Train an SAE on SmolLM2 and look inside\n\n"
                      "Capture `blocks.6.hook_resid_post`, train a TopK SAE with the main pipeline, then stream text "
                      "through model + SAE once to collect each feature's top contexts, density and activation "
                      "histogram; add logit effects; write the static dashboard and the feature dictionary.\n\n"
                      "`SAE_FAST=1` shrinks everything (what the test suite runs)."),
    new_code_cell(SETUP),
    new_code_cell("""from sae.pipeline import run
from sae.models.zoo import load_model
cfg = run_config()
model = load_model(cfg.model.name, device="cpu")
summary = run(cfg, model=model)   # resumable: a second run reuses the store and the final checkpoint
ev = summary["eval"]
print(f"d_sae={summary['d_sae']}  EV={ev['explained_variance']:.3f}  L0={ev['l0']:.1f}  dead={ev['dead_fraction']:.3f}")"""),
    new_code_cell("""from sae.io.saelens import load_sae
from sae.data.tokens import corpus_rows, special_token_ids
from sae.analysis.units import sae_features
from sae.analysis.feature_inspection import InspectionSettings, inspect_units

sae = load_sae(cfg.run_dir / "sae")
rows = corpus_rows("shakespeare", model.tokenizer, 128, 8 if FAST else 64)
report = inspect_units(model, rows, [sae_features(sae, cfg.model.hook)], special_token_ids(model.tokenizer),
                       InspectionSettings(top_k=10))["sae_features"]
density = report.density()
print(f"{report.n_tokens} tokens; {(density > 0).sum().item()} of {sae.d_sae} features fired; "
      f"median density of those {density[density > 0].median().item():.4f}")"""),
    new_code_cell("""from sae.analysis.logit_effects import model_logit_effects, raw_decoder_directions
from sae.analysis.feature_records import feature_record, token_strings

logits = model_logit_effects(model, raw_decoder_directions(sae), k=6)
# The most frequently firing features, their top tokens and what they push the logits towards.
for f in report.fire_count.argsort(descending=True)[:5].tolist():
    rec = feature_record(report, f, logits)
    text = token_strings(model.tokenizer, [i for i, _ in rec["top_tokens"]] + [i for i, _ in rec["logits"]["promoted"]])
    print(f"feature {f:5d}  density {rec['density']:.3f}  top tokens {[text[i] for i, _ in rec['top_tokens']]}"
          f"  promotes {[text[i] for i, _ in rec['logits']['promoted']]}")"""),
    new_code_cell("""# One feature's top contexts, the activating token in [brackets] with its activation.
f = int(report.fire_count.argsort(descending=True)[0])
for slot in range(3):
    ids, acts, center = report.context(f, slot)
    words = model.tokenizer.batch_decode([[i] for i in ids])
    print(f"{report.top_values[f, slot]:7.2f}  " + "".join(
        f"[{w}]({a:.1f})" if i == center else w for i, (w, a) in enumerate(zip(words, acts))).replace("\\n", "⏎"))"""),
    new_code_cell("""from sae.viz.dashboard import write_dashboard
from sae.io.dictionary import write_feature_dictionary, write_neuronpedia
alive = (report.fire_count > 0).nonzero().squeeze(1).tolist()
page = write_dashboard(cfg.run_dir / "dashboard.html", report, model.tokenizer, logits,
                       {"model": cfg.model.name, "hook": cfg.model.hook, "d_sae": sae.d_sae})
jsonl = write_feature_dictionary(cfg.run_dir / "feature_dictionary.jsonl", report, model.tokenizer, logits,
                                 cfg.run_dir / "sae", units=alive)
np_dir = write_neuronpedia(cfg.run_dir / "neuronpedia", report, model.tokenizer, logits, cfg.model.name,
                           cfg.model.hook, W_dec=sae.W_dec, units=alive)
print("open in a browser:", page.resolve().as_uri())
print(sum(1 for _ in open(jsonl)), "dictionary lines;", len(list((np_dir / "features").iterdir())), "Neuronpedia feature files")"""),
]

NB02 = [
    new_markdown_cell("# 02 — Toy models of superposition (short)\n\n"
                      "Five features, two hidden dimensions (Elhage et al. 2022): dense features are stored as an "
                      "orthogonal pair, sparse ones get packed into a pentagon. The interference tools used on SAEs "
                      "read the toy model's `W` too (features are its columns, so pass `W.T`)."),
    new_code_cell(SETUP),
    new_code_cell("""import torch
import matplotlib.pyplot as plt
from sae.toy.model import ToyModels
from sae.toy.train import train_toy_models
from sae.toy import geometry
from sae.toy.plots import draw_features_2d

n, m, densities = 5, 2, [1.0, 0.05]
importance = 0.9 ** torch.arange(n, dtype=torch.float32)
models = ToyModels(len(densities), n, m, "relu", seeds=[0, 1])
result = train_toy_models(models, torch.tensor(densities)[:, None].expand(-1, n).contiguous(),
                          importance.expand(len(densities), -1).contiguous(), steps=1000 if FAST else 10_000)
print("final loss per model:", result.final_loss.tolist())"""),
    new_code_cell("""fig, axes = plt.subplots(1, len(densities), figsize=(3 * len(densities), 3))
for ax, k, d in zip(axes, range(len(densities)), densities):
    draw_features_2d(ax, models.W[k].detach(), importance, f"density {d}")
plt.show()"""),
    new_code_cell("""from sae.analysis.interference import interference_report
for k, d in enumerate(densities):
    W = models.W[k].detach()
    represented = geometry.feature_norms(W) > 0.5
    rep = interference_report(W[:, represented].T)   # only the features the model kept
    print(f"density {d}: {int(represented.sum())} features kept, coherence {rep['coherence']:.3f}, "
          f"Welch bound for that many in {m}-D {rep['welch_bound']:.3f}, "
          f"dimensionality {[round(x, 2) for x in geometry.dimensionality(W).tolist()]}")"""),
]

NB03 = [
    new_markdown_cell("# 03 — Polysemanticity and interference\n\n"
                      "Score SAE features, the MLP neurons of the same layer and the residual-stream basis with the "
                      "same automated metrics over their top activations (token-type entropy, token types covering "
                      "80% of the mass, largest token-class share), then look at the decoder's geometry: max |cos| "
                      "per feature against the Welch bound and random directions, encoder/decoder alignment, and "
                      "co-activation of nearest-neighbour pairs."),
    new_code_cell(SETUP),
    new_code_cell("""import json
from sae.io.saelens import load_sae
from sae.models.zoo import load_model, hook_layer
from sae.data.tokens import corpus_rows, special_token_ids
from sae.analysis.units import sae_features, mlp_neurons, residual_basis
from sae.analysis.feature_inspection import InspectionSettings, inspect_units
from sae.analysis.token_classes import vocab_classes
from sae.analysis.polysemanticity import polysemanticity

sae_dir = analysed_sae_dir()
meta = json.loads((sae_dir / "cfg.json").read_text())["metadata"]
sae, model = load_sae(sae_dir), load_model(meta["model_name"], device="cpu")
hook = meta["hook_name"]
rows = corpus_rows("shakespeare", model.tokenizer, 128, 8 if FAST else 64)
units = [sae_features(sae, hook), mlp_neurons(model, hook_layer(hook)), residual_basis(model, hook)]
reports = inspect_units(model, rows, units, special_token_ids(model.tokenizer),
                        InspectionSettings(top_k=10 if FAST else 20, n_samples=4, window_before=0, window_after=0))
classes = vocab_classes(model.tokenizer, int(model.cfg.d_vocab))
scores = {name: polysemanticity(r, classes) for name, r in reports.items()}
for name, s in scores.items():
    sm = s.summary()
    print(f"{name:15s} scored {sm['n_scored']:5d}/{sm['n_units']:5d}  median entropy {sm['token_entropy_bits']['median']:.2f} bits"
          f"  types for 80% {sm['tokens_for_80pct']['median']:.0f}  class share {sm['class_specificity']['median']:.2f}")"""),
    new_code_cell("""from IPython.display import Image, display
from sae.analysis.figures import polysemanticity_figure
display(Image(filename=str(polysemanticity_figure(scores, OUT / "polysemanticity.png"))))"""),
    new_code_cell("""import torch
from sae.analysis.interference import (interference_report, unit_rows, max_abs_cos, random_directions,
                                       encoder_decoder_alignment, nearest_and_random_pairs, CoActivation)
from sae.analysis.hook_stream import stream_hooks
report = interference_report(sae.W_dec)
print(f"N={report['n_directions']} d={report['dim']}  Welch bound {report['welch_bound']:.4f}")
print("decoder max|cos|:", {k: round(v, 3) for k, v in report["max_abs_cos"].items()})
print("random  max|cos|:", {k: round(v, 3) for k, v in report["random_max_abs_cos"].items()})"""),
    new_code_cell("""unit, kept = unit_rows(sae.W_dec)
pairs, pair_cos, nearest = nearest_and_random_pairs(unit, 2000)
counter = CoActivation(kept[pairs], sae.d_sae)
with torch.no_grad():
    for batch in stream_hooks(model, rows, [hook], special_token_ids(model.tokenizer)):
        counter.update(sae.encode(batch.acts[hook][batch.keep]) > 0)
from sae.analysis.figures import interference_figure
png = interference_figure(max_abs_cos(unit)[0], max_abs_cos(random_directions(*unit.shape))[0], report["welch_bound"],
                          encoder_decoder_alignment(sae.W_enc, sae.W_dec), pair_cos, counter.conditional(), nearest,
                          OUT / "interference.png")
display(Image(filename=str(png)))"""),
]


def write(name: str, cells: list) -> Path:
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                             "language_info": {"name": "python"}})
    path = HERE / name
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    for name, cells in (("01_train_and_inspect.ipynb", NB01), ("02_toy_superposition.ipynb", NB02),
                        ("03_polysemanticity_and_interference.ipynb", NB03)):
        print("wrote", write(name, cells))
