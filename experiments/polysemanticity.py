"""Are SAE features more specific than the model's own units? One pass over the same text scores
SAE features, the MLP neurons of the SAE's layer and the residual-stream basis directions at the
SAE's hook with the same automated metrics (sae/analysis/polysemanticity.py); writes
results/inspect/polysemanticity.json (medians and quartiles) and polysemanticity.png.

Run: .venv/bin/python experiments/polysemanticity.py [configs/inspect.yaml] [key=value ...]
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sae.analysis.config import config_from_argv, run_cli
from sae.analysis.feature_inspection import InspectionSettings, inspect_units
from sae.analysis.figures import polysemanticity_figure
from sae.analysis.polysemanticity import polysemanticity, probability_less
from sae.analysis.sae_source import load_inspection_inputs
from sae.analysis.token_classes import vocab_classes
from sae.analysis.units import mlp_neurons, residual_basis, sae_features
from sae.data.tokens import special_token_ids
from sae.models.zoo import hook_layer


def compare(scores: dict) -> dict:
    """Which metric says SAE features are more specific than neurons, with both medians."""
    f, n = scores["sae_features"].summary(), scores["mlp_neurons"].summary()
    if not (f["n_scored"] and n["n_scored"]):
        return {}
    out = {}
    for metric, lower_is_specific in (("token_entropy_bits", True), ("tokens_for_80pct", True), ("class_specificity", False)):
        fm, nm = f[metric].get("median"), n[metric].get("median")
        field = metric.removesuffix("_bits")
        a, b = getattr(scores["sae_features"], field), getattr(scores["mlp_neurons"], field)
        # P(a random feature is more specific than a random neuron); 0.5 = no difference
        p_more = probability_less(a, b) if lower_is_specific else probability_less(b, a)
        out[metric] = {"sae_features_median": fm, "mlp_neurons_median": nm,
                       "features_more_specific": (fm < nm) if lower_is_specific else (fm > nm),
                       "p_feature_more_specific_than_neuron": p_more}
    return out


def main(argv: list[str]) -> dict:
    cfg = config_from_argv(argv)
    out = Path(cfg.out_dir)
    start = time.time()
    sae_dir, meta, sae, model, rows = load_inspection_inputs(cfg)
    hook = meta["hook_name"]
    unit_sets = [sae_features(sae, hook), mlp_neurons(model, hook_layer(hook)), residual_basis(model, hook)]
    settings = InspectionSettings(top_k=cfg.top_k, n_samples=cfg.n_samples, window_before=0, window_after=0, seed=cfg.seed)
    reports = inspect_units(model, rows, unit_sets, special_token_ids(model.tokenizer), settings,
                            meta.get("exclude_special_tokens", True), cfg.batch_size)
    classes = vocab_classes(model.tokenizer, int(model.cfg.d_vocab))
    scores = {name: polysemanticity(r, classes, "top") for name, r in reports.items()}
    sampled = {name: polysemanticity(r, classes, "samples") for name, r in reports.items()}
    result = {
        "sae_dir": str(sae_dir), "model": meta["model_name"], "sae_hook": hook,
        "neuron_hook": unit_sets[1].hook, "n_tokens": reports["sae_features"].n_tokens, "top_k": cfg.top_k,
        "primary_metric": "token_entropy_bits (lower = more specific)",
        "comparison": compare(scores),
        "units": {name: s.summary() for name, s in scores.items()},
        "over_random_firing_samples": {"n_samples": cfg.n_samples, "comparison": compare(sampled),
                                       "units": {name: s.summary() for name, s in sampled.items()}},
        "density_median": {name: float(r.density().median()) for name, r in reports.items()},
        "seconds": round(time.time() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "polysemanticity.json").write_text(json.dumps(result, indent=2))
    polysemanticity_figure(scores, out / "polysemanticity.png",
                           f"{meta['model_name']} layer {hook_layer(hook)}: top-{cfg.top_k} activations over "
                           f"{result['n_tokens']} tokens ({sae_dir})")
    polysemanticity_figure(sampled, out / "polysemanticity_samples.png",
                           f"same, over {cfg.n_samples} random firing activations per unit instead of the top-{cfg.top_k}")
    print(json.dumps({"comparison": result["comparison"], "samples": result["over_random_firing_samples"]["comparison"],
                      "seconds": result["seconds"]}, indent=2))
    return result


if __name__ == "__main__":
    run_cli(main)
