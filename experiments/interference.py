"""How much do an SAE's decoder directions interfere? Max |cos| per feature against the Welch
bound and against random directions with the same N and d, encoder/decoder alignment, and
co-activation vs interference for nearest-neighbour and random feature pairs (one short pass over
text). Writes results/inspect/interference.json and interference.png.

Run: .venv/bin/python experiments/interference.py [configs/inspect.yaml] [key=value ...]
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from sae.analysis.config import config_from_argv, run_cli
from sae.analysis.figures import interference_figure
from sae.analysis.hook_stream import stream_hooks
from sae.analysis.interference import (CoActivation, distribution, encoder_decoder_alignment, interference_report,
                                       max_abs_cos, nearest_and_random_pairs, random_directions, unit_rows)
from sae.analysis.sae_source import load_inspection_inputs
from sae.data.tokens import special_token_ids


@torch.no_grad()
def coactivation(model, sae, rows, hook, pairs, exclude_special, batch_size) -> CoActivation:
    counter = CoActivation(pairs, sae.d_sae)
    for batch in stream_hooks(model, rows, [hook], special_token_ids(model.tokenizer), exclude_special, batch_size,
                              desc="co-activation"):
        x = batch.acts[hook][batch.keep]
        counter.update(sae.encode(x) > 0)
    return counter


def main(argv: list[str]) -> dict:
    cfg = config_from_argv(argv)
    out = Path(cfg.out_dir)
    start = time.time()
    sae_dir, meta, sae, model, rows = load_inspection_inputs(cfg)
    report = interference_report(sae.W_dec, cfg.seed)
    unit, kept = unit_rows(sae.W_dec)
    ours, _ = max_abs_cos(unit)
    rand, _ = max_abs_cos(random_directions(*unit.shape, cfg.seed))
    alignment = encoder_decoder_alignment(sae.W_enc, sae.W_dec)
    report["encoder_decoder_alignment"] = distribution(alignment)

    pairs, pair_cos, nearest = nearest_and_random_pairs(unit, cfg.coactivation_random_pairs, cfg.seed)
    pairs = kept[pairs]  # back to SAE feature ids
    counter = coactivation(model, sae, rows, meta["hook_name"], pairs, meta.get("exclude_special_tokens", True),
                           cfg.batch_size)
    coact = counter.conditional()
    fired = ~coact.isnan()
    report["coactivation"] = {
        "n_tokens": counter.n_tokens,
        "nearest_pairs": distribution(coact[nearest & fired]),
        "random_pairs": distribution(coact[~nearest & fired]),
        "spearman_cos_vs_coactivation_nearest": spearman(pair_cos[nearest & fired], coact[nearest & fired]),
    }
    report |= {"sae_dir": str(sae_dir), "seconds": round(time.time() - start, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "interference.json").write_text(json.dumps(report, indent=2))
    interference_figure(ours, rand, report["welch_bound"], alignment, pair_cos, coact, nearest,
                        out / "interference.png", f"{sae_dir}: N={report['n_directions']}, d={report['dim']}")
    print(json.dumps({k: report[k] for k in ("welch_bound", "max_abs_cos", "random_max_abs_cos", "coactivation")}, indent=2))
    return report


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() < 3:
        return float("nan")
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return torch.corrcoef(torch.stack([ra, rb]))[0, 1].item()


if __name__ == "__main__":
    run_cli(main)
