"""Benchmark activation capture: tokens/s into the on-disk store, by batch size, and the saving
from `stop_at_layer` against a full forward pass.

    .venv/bin/python experiments/bench_capture.py [--rows 64] [--hook blocks.6.hook_resid_post]

Writes results/bench/capture.json. Numbers depend on what else the machine is doing; run it alone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from sae.activations.capture import capture_activations  # noqa: E402
from sae.data.tokens import corpus_rows, special_token_ids  # noqa: E402
from sae.models.zoo import hook_layer, load_model  # noqa: E402


def time_capture(model, rows, hook, batch_size, special) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench_capture_"))
    try:
        start = time.perf_counter()
        capture_activations(model, rows, hook, root / "store", {"bench": True}, special, batch_size=batch_size)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)


@torch.no_grad()
def time_forward(model, rows, batch_size, stop_at_layer=None, hook=None) -> float:
    start = time.perf_counter()
    for batch in rows.split(batch_size):
        if stop_at_layer is None:
            model(batch)
        else:
            model.run_with_cache(batch, names_filter=hook, stop_at_layer=stop_at_layer)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--hook", default="blocks.6.hook_resid_post")
    args = parser.parse_args()
    model = load_model("smollm2-135m")
    special = special_token_ids(model.tokenizer)
    rows = corpus_rows("shakespeare", model.tokenizer, args.context, args.rows)
    tokens = rows.numel()
    time_forward(model, rows[:8], 8, hook_layer(args.hook) + 1, args.hook)  # warm-up
    result = {"model": "smollm2-135m", "hook": args.hook, "tokens": tokens, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "capture_tokens_per_s": {}}
    for batch_size in (8, 16, 32):
        result["capture_tokens_per_s"][batch_size] = tokens / time_capture(model, rows, args.hook, batch_size, special)
    stop = time_forward(model, rows, 16, hook_layer(args.hook) + 1, args.hook)
    full = time_forward(model, rows, 16)
    result |= {"forward_to_hook_tokens_per_s": tokens / stop, "full_forward_tokens_per_s": tokens / full,
               "stop_at_layer_speedup": full / stop}
    out = Path("results/bench/capture.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
