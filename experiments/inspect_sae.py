"""Inspect an SAE: top contexts, densities, logit effects -> static HTML dashboard, feature
dictionary (JSON Lines) and a Neuronpedia-style export, all under results/inspect/.

Run: .venv/bin/python experiments/inspect_sae.py [configs/inspect.yaml] [key=value ...]
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sae.analysis.config import config_from_argv, run_cli
from sae.analysis.feature_inspection import InspectionSettings, inspect_units
from sae.analysis.feature_records import feature_records
from sae.analysis.logit_effects import model_logit_effects, raw_decoder_directions
from sae.analysis.sae_source import load_inspection_inputs
from sae.analysis.units import sae_features
from sae.data.tokens import special_token_ids
from sae.io.dictionary import write_feature_dictionary, write_neuronpedia
from sae.viz.dashboard import find_chromium, screenshot, write_dashboard


def showcase_feature(records: list[dict], top_k: int) -> int | None:
    """The feature to open in the screenshot: among those with a full top-k, the one whose top
    activations sit most on a single token type (ties: fires more often). Dense features are
    usually the least telling to look at."""
    full = [r for r in records if r["fire_count"] >= top_k and r["top_tokens"]]
    if not full:
        return records[0]["id"] if records else None
    return max(full, key=lambda r: (round(r["top_tokens"][0][1], 2), r["fire_count"]))["id"]


def main(argv: list[str]) -> dict:
    cfg = config_from_argv(argv)
    out = Path(cfg.out_dir)
    start = time.time()
    sae_dir, meta, sae, model, rows = load_inspection_inputs(cfg)
    settings = InspectionSettings(top_k=cfg.top_k, n_samples=cfg.n_samples, seed=cfg.seed)
    report = inspect_units(model, rows, [sae_features(sae, meta["hook_name"])], special_token_ids(model.tokenizer),
                           settings, meta.get("exclude_special_tokens", True), cfg.batch_size)["sae_features"]
    logits = model_logit_effects(model, raw_decoder_directions(sae), k=10)
    page_meta = {"title": f"SAE dashboard: {sae_dir}", "model": meta["model_name"], "hook": meta["hook_name"],
                 "d_sae": sae.d_sae}
    alive = (report.fire_count > 0).nonzero().squeeze(1).tolist()
    records = feature_records(report, logits, alive, n_contexts=cfg.n_contexts)   # built once, written three ways
    dashboard = write_dashboard(out / "dashboard.html", report, model.tokenizer, logits, page_meta,
                                max_features=cfg.dashboard_max_features, records=records)
    dictionary = write_feature_dictionary(out / "feature_dictionary.jsonl", report, model.tokenizer, logits,
                                          sae_dir, records=records)
    neuronpedia = write_neuronpedia(out / "neuronpedia", report, model.tokenizer, logits, meta["model_name"],
                                    meta["hook_name"], W_dec=sae.W_dec, records=records)
    shot, shown = None, showcase_feature(records, cfg.top_k)
    if find_chromium() and shown is not None:  # a picture of the page, opened on a token-specific feature
        shot = str(screenshot(dashboard, out / "dashboard.png", feature=shown))
    density = report.density()
    summary = {"sae_dir": str(sae_dir), "n_tokens": report.n_tokens, "d_sae": sae.d_sae,
               "alive_in_sample": len(alive), "median_density_alive": float(density[density > 0].median()) if alive else 0.0,
               "dashboard": str(dashboard), "feature_dictionary": str(dictionary), "neuronpedia": str(neuronpedia), "screenshot": shot, "screenshot_feature": shown,
               "seconds": round(time.time() - start, 1)}
    (out / "inspect_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
