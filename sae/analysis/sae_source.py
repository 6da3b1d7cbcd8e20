"""Find the SAE to analyse (or train a small one), and the model and token rows that go with it."""
from __future__ import annotations

import json
from typing import NamedTuple
from pathlib import Path

from torch import Tensor

from sae.analysis.config import InspectConfig
from sae.data.tokens import corpus_rows


def resolve_sae_dir(cfg: InspectConfig) -> Path:
    """cfg.sae_dir when it holds an export; otherwise train cfg.fallback_config through the main
    pipeline (resumable, store cached) and return its export."""
    path = Path(cfg.sae_dir)
    if (path / "cfg.json").is_file():
        return path
    from sae.config import load_config
    from sae.pipeline import run
    run_cfg = load_config(cfg.fallback_config, cfg.fallback_overrides)
    exported = run_cfg.run_dir / "sae"
    if not (exported / "cfg.json").is_file():
        print(f"{path} has no SAE yet: training the small fallback run {cfg.fallback_config} -> {exported}")
        run(run_cfg)
    return exported


def sae_metadata(sae_dir: Path) -> dict:
    return json.loads((Path(sae_dir) / "cfg.json").read_text())["metadata"]


def inspection_rows(cfg: InspectConfig, tokenizer, metadata: dict) -> Tensor:
    corpus = cfg.corpus or metadata.get("dataset_path") or "shakespeare"
    context = cfg.context_size or int(metadata.get("context_size", 128))
    rows = corpus_rows(corpus, tokenizer, context, cfg.skip_rows + cfg.n_rows, bool(metadata.get("prepend_bos", True)))
    return rows[cfg.skip_rows:]


class InspectionInputs(NamedTuple):
    sae_dir: Path
    meta: dict          # the export's cfg.json metadata (model, hook, context, ...)
    sae: object         # SparseAutoencoder
    model: object       # TransformerBridge
    rows: Tensor        # token rows to stream through the model


def load_inspection_inputs(cfg: InspectConfig) -> InspectionInputs:
    """What every inspection script starts from: the SAE, its model and the text to read."""
    from sae.io.saelens import load_sae
    from sae.models.zoo import load_model
    sae_dir = resolve_sae_dir(cfg)
    meta = sae_metadata(sae_dir)
    model = load_model(meta["model_name"], device="cpu")
    return InspectionInputs(sae_dir, meta, load_sae(sae_dir), model, inspection_rows(cfg, model.tokenizer, meta))
