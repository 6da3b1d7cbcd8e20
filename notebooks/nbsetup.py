"""Shared first cell of the notebooks: repo root on sys.path, offline model hub, fast mode.

SAE_FAST=1 (what tests/test_notebooks.py sets) shrinks every notebook to a tiny config: the
same data settings as the test suite's tiny run, so its cached activation store is reused.
SAE_NOTEBOOK_OUT sets where the notebooks' runs go (default: results/inspect/notebooks).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
FAST = os.environ.get("SAE_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("SAE_NOTEBOOK_OUT", ROOT / "results" / "inspect" / "notebooks"))

# Same data section as tests/conftest.py's tiny run (so the activation store is shared).
TINY = ["data.train_tokens=12000", "data.eval_tokens=512", "data.shard_tokens=4096", "train.batch_size=256",
        "train.epochs=1", "train.checkpoint_every=10", "sae.expansion_factor=4", "sae.hyperparams.k=16",
        "eval.batch_size=4", "eval.downstream_tokens=0"]
SMALL = ["data.train_tokens=60000", "data.eval_tokens=1024", "train.batch_size=512", "train.epochs=2",
         "sae.expansion_factor=4", "sae.hyperparams.k=32"]


def run_config(name: str = "notebook"):
    """The notebooks' training run: tiny under SAE_FAST, small otherwise."""
    from sae.config import load_config
    overrides = [f"output_dir={OUT}", f"name={name}{'_fast' if FAST else ''}"] + (TINY if FAST else SMALL)
    return load_config("configs/default.yaml", overrides)


def analysed_sae_dir() -> Path:
    """The main job's SAE when it exists (and not in fast mode), else the notebooks' own run
    (trained here if notebook 01 has not done it yet; the pipeline resumes, so this is cheap)."""
    default = ROOT / "results" / "default" / "sae"
    if not FAST and (default / "cfg.json").is_file():
        return default
    cfg = run_config()
    if not (cfg.run_dir / "sae" / "cfg.json").is_file():
        from sae.pipeline import run
        run(cfg)
    return cfg.run_dir / "sae"
