"""The main job: model -> activations -> SAE -> metrics -> export, as one resumable run.

Each stage leaves its output on disk (activation store in the cache, checkpoints and results in
the run directory), so rerunning after an interruption picks up where it stopped.
"""
from __future__ import annotations

import inspect
import json
import math
import time
from pathlib import Path

import torch

from sae.activations.capture import capture_activations
from sae.activations.store import ActivationStore
from sae.config import ConfigError, RunConfig, fingerprint, save_config
from sae.data.tokens import corpus_rows, special_token_ids
from sae.evaluation import evaluate
from sae.metrics import sparsity_log10
from sae.models.zoo import check_hook, load_model
from sae.nn import ARCHITECTURES, build_sae
from sae.nn.base import SparseAutoencoder
from sae.paths import cache_dir
from sae.training.trainer import Trainer, TrainResult


def row_counts(cfg: RunConfig) -> tuple[int, int]:
    kept_per_row = cfg.data.context_size - (1 if cfg.data.exclude_special_tokens else 0)
    return math.ceil(cfg.data.train_tokens / kept_per_row), math.ceil(cfg.data.eval_tokens / cfg.data.context_size)


def make_sae(cfg: RunConfig, d_in: int) -> SparseAutoencoder:
    arch = cfg.sae.architecture
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown sae.architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    accepted = set(inspect.signature(ARCHITECTURES[arch].__init__).parameters) - {"self", "d_in", "d_sae", "seed", "dtype"}
    unknown = set(cfg.sae.hyperparams) - accepted
    if unknown:
        raise ConfigError(f"unknown sae.hyperparams {sorted(unknown)} for architecture {arch!r}; valid: {sorted(accepted)}")
    d_sae = cfg.sae.d_sae or cfg.sae.expansion_factor * d_in
    try:
        return build_sae(arch, d_in, d_sae, seed=cfg.train.seed, **cfg.sae.hyperparams)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"sae config: {err}") from None


def store_meta(cfg: RunConfig, n_train_rows: int) -> dict:
    """What determines the captured activations (and nothing else: eval settings don't)."""
    return {"model_name": cfg.model.name, "hook_name": cfg.model.hook, "corpus": cfg.data.corpus,
            "context_size": cfg.data.context_size, "prepend_bos": cfg.data.prepend_bos,
            "exclude_special_tokens": cfg.data.exclude_special_tokens, "n_rows": n_train_rows}


def sae_metadata(cfg: RunConfig, store: ActivationStore) -> dict:
    return {
        "model_name": cfg.model.name,
        "hook_name": cfg.model.hook,
        "hook_layer": int(cfg.model.hook.split(".")[1]) if cfg.model.hook.startswith("blocks.") else 0,
        "context_size": cfg.data.context_size,
        "prepend_bos": cfg.data.prepend_bos,
        "exclude_special_tokens": cfg.data.exclude_special_tokens,
        "dataset_path": cfg.data.corpus,
        "training_tokens": store.n_tokens * cfg.train.epochs,
    }


def train_sae(cfg: RunConfig, store: ActivationStore, run_dir: Path, device="cpu") -> tuple[SparseAutoencoder, TrainResult]:
    """Build the configured SAE and train it on the store (resuming from run_dir's checkpoint)."""
    torch.manual_seed(cfg.train.seed)
    sae = make_sae(cfg, store.d_in).to(device)
    sae.init_from_data(store.load_all(max_tokens=16_384).to(device))
    dump = cfg.model_dump(mode="json")
    trainer = Trainer(sae, cfg.train, run_dir, fingerprint({"store": store.meta, "sae": dump["sae"], "train": dump["train"]}))
    total_steps = (store.n_tokens // cfg.train.batch_size) * cfg.train.epochs  # full batches only
    if total_steps == 0:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {store.n_tokens} captured tokens; "
                          "lower it or raise data.train_tokens")

    def batches(start_step: int):
        return store.iter_batches(cfg.train.batch_size, shuffle=True, buffer_tokens=cfg.train.shuffle_buffer_tokens,
                                  seed=cfg.train.seed, epochs=cfg.train.epochs, start_batch=start_step,
                                  drop_last=True)

    return sae, trainer.fit(batches, total_steps)


def run(cfg: RunConfig, model=None) -> dict:
    """The main job. Pass `model` to reuse an already loaded model (sweeps)."""
    torch.manual_seed(cfg.train.seed)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    timings: dict[str, float] = {}
    t = time.time()
    model = model or load_model(cfg.model.name, device=cfg.model.device)
    check_hook(model, cfg.model.hook)
    tokenizer = model.tokenizer
    special = special_token_ids(tokenizer)
    timings["load_model_s"] = time.time() - t

    t = time.time()
    n_train, n_eval = row_counts(cfg)
    rows = corpus_rows(cfg.data.corpus, tokenizer, cfg.data.context_size, n_train + n_eval, cfg.data.prepend_bos)
    train_rows, eval_rows = rows[:n_train], rows[n_train:]
    timings["tokenize_s"] = time.time() - t

    t = time.time()
    meta = store_meta(cfg, n_train)
    store_dir = cache_dir() / "stores" / f"{cfg.model.name.replace('/', '_')}-{fingerprint(meta)}"
    store = capture_activations(model, train_rows, cfg.model.hook, store_dir, meta, special,
                                cfg.data.exclude_special_tokens, cfg.data.capture_batch_size, cfg.data.shard_tokens)
    timings["capture_s"] = time.time() - t

    t = time.time()
    sae, result = train_sae(cfg, store, run_dir, device=next(model.parameters()).device)
    timings["train_s"] = time.time() - t
    timings["train_tokens_per_s"] = result.tokens / max(timings["train_s"], 1e-9)

    t = time.time()
    metrics, firing = evaluate(model, sae, eval_rows, cfg.model.hook, special, cfg.data.exclude_special_tokens,
                               cfg.eval.batch_size, math.ceil(cfg.eval.downstream_tokens / cfg.data.context_size))
    timings["eval_s"] = time.time() - t

    from sae.io.saelens import save_sae  # imported late: export is the last stage
    save_sae(sae, run_dir / "sae", sae_metadata(cfg, store), sparsity=sparsity_log10(firing))
    summary = {"run": cfg.name, "architecture": cfg.sae.architecture, "d_in": sae.d_in, "d_sae": sae.d_sae,
               "hyperparams": sae.hyperparams(), "hook": cfg.model.hook, "model": cfg.model.name,
               "train_tokens": result.tokens, "train_steps": result.steps, "eval": metrics, "timings": timings,
               "offline": _offline_flags()}
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    from sae.viz.plots import plot_run  # matplotlib only when plotting
    plot_run(run_dir, firing, n_tokens=metrics["n_tokens"])
    return summary


def _offline_flags() -> dict:
    import os
    return {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
