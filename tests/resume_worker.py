"""Subprocess for the kill -9 resume test: trains a small SAE on a synthetic store.

usage: python tests/resume_worker.py STORE_DIR RUN_DIR ARCHITECTURE [override ...]
Builds the store on first use, trains (resuming from RUN_DIR's checkpoint if one is there) and
writes RUN_DIR/final.safetensors.
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from sae.activations.store import ActivationStore, ActivationWriter
from sae.config import load_config
from sae.pipeline import train_sae

D_IN, N_FEATURES, N_TOKENS = 32, 128, 24_576


def synthetic_store(root: Path) -> ActivationStore:
    """Sparse combinations of random unit directions: SAE-shaped data that trains in seconds."""
    if not (root / "manifest.json").exists():
        gen = torch.Generator().manual_seed(0)
        directions = torch.nn.functional.normalize(torch.randn(N_FEATURES, D_IN, generator=gen), dim=1)
        coeffs = torch.rand(N_TOKENS, N_FEATURES, generator=gen) * (torch.rand(N_TOKENS, N_FEATURES, generator=gen) < 0.04)
        acts = coeffs @ directions
        writer = ActivationWriter(root, {"model_name": "synthetic", "hook_name": "none"}, d_in=D_IN, shard_tokens=4096)
        for first in range(0, N_TOKENS, 1024):
            writer.add(acts[first:first + 1024], torch.zeros(1024, dtype=torch.long), rows_finished=1)
        writer.close()
    return ActivationStore(root)


if __name__ == "__main__":
    store_dir, run_dir, arch, *extra = sys.argv[1:]
    torch.set_num_threads(1)
    overrides = [f"sae.architecture={arch}", "sae.d_sae=256", "train.batch_size=128", "train.epochs=2",
                 "train.checkpoint_every=7", "train.log_every=1", "train.lr_warmup_steps=5",
                 "train.dead_window_tokens=2000", "train.shuffle_buffer_tokens=8192", *extra]
    if arch == "topk":
        overrides.append("sae.hyperparams={k: 8}")
    cfg = load_config(None, overrides)
    sae, _ = train_sae(cfg, synthetic_store(Path(store_dir)), Path(run_dir))
    save_file({k: v.contiguous() for k, v in sae.state_dict().items()}, str(Path(run_dir) / "final.safetensors"))
