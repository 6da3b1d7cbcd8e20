"""Shared, session-scoped fixtures: the real offline model is loaded once for the whole suite."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the suite must never reach a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def smol():
    from sae.models.zoo import load_model
    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def tiny_config_overrides(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return [f"output_dir={out}", "name=tiny", "data.train_tokens=12000", "data.eval_tokens=512",
            "data.shard_tokens=4096", "train.batch_size=256", "train.epochs=1", "train.checkpoint_every=10",
            "sae.expansion_factor=4", "sae.hyperparams.k=16", "eval.batch_size=4"]


@pytest.fixture(scope="session")
def tiny_run(smol, tiny_config_overrides, tmp_path_factory):
    """One end-to-end run of the main job on a tiny budget (real model, real corpus)."""
    from sae.config import load_config
    from sae.pipeline import run
    cfg = load_config("configs/default.yaml", tiny_config_overrides)
    return cfg, run(cfg)
