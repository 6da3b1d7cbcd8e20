"""Train an SAE on a stream of activation batches.

The loop (one step): training_step -> backward -> before_optimizer_step (decoder-gradient
projection) -> Adam -> after_optimizer_step (decoder renorm). Around it: LR warmup and linear
decay, dead-latent tracking in tokens (feeds AuxK), JSONL metrics, periodic checkpoints and exact
resume (weights, Adam state, RNG state, data position and dead counters all saved).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from sae.config import TrainConfig
from sae.metrics import ReconstructionStats
from sae.nn.base import SparseAutoencoder, StepContext
from sae.training.resample import resample_dead_latents
from sae.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. NaN loss); the last good checkpoint is kept."""


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.lr_warmup_steps:
        return cfg.lr * (step + 1) / cfg.lr_warmup_steps
    decay_start = int(total * (1 - cfg.lr_decay_fraction))
    if step >= decay_start and total > decay_start:
        return cfg.lr * max(0.0, (total - step) / (total - decay_start))
    return cfg.lr


@dataclass
class TrainResult:
    steps: int
    tokens: int
    seconds: float


class Trainer:
    def __init__(self, sae: SparseAutoencoder, cfg: TrainConfig, run_dir: Path, fingerprint: str):
        self.sae, self.cfg, self.fingerprint = sae, cfg, fingerprint
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.run_dir / "checkpoints" / "latest"
        self.log_path = self.run_dir / "train_log.jsonl"
        # fused Adam: one kernel for all parameters (~4x faster than the per-tensor loop on CPU)
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=True)
        self.step = 0
        self.tokens_since_fired = torch.zeros(sae.d_sae, dtype=torch.long)

    # -- checkpoints ----------------------------------------------------------------------
    def save(self) -> None:
        save_checkpoint(self.checkpoint_path, self.sae, self.optimizer,
                        {"tokens_since_fired": self.tokens_since_fired, "rng": torch.get_rng_state()},
                        {"step": self.step, "fingerprint": self.fingerprint})

    def try_resume(self) -> bool:
        found = find_checkpoint(self.checkpoint_path)
        if found is None:
            return False
        tensors, state = load_checkpoint(found, self.sae, self.optimizer, self.fingerprint)
        self.tokens_since_fired = tensors["tokens_since_fired"]
        torch.set_rng_state(tensors["rng"])
        self.step = int(state["step"])
        return True

    # -- the loop ----------------------------------------------------------------------
    def fit(self, batches: Callable[[int], Iterator[torch.Tensor]], total_steps: int) -> TrainResult:
        """`batches(start_step)` yields training batches from that step's data position on."""
        if self.try_resume():
            self._truncate_log(self.step)  # drop lines logged after the checkpoint we resume from
        else:
            self.log_path.unlink(missing_ok=True)
        start, t0 = self.step, time.time()
        device = self.sae.W_enc.device
        window = ReconstructionStats(self.sae.d_sae)
        bar = tqdm(total=total_steps, initial=start, desc="train SAE", unit="step", dynamic_ncols=True)
        with self.log_path.open("a") as log:
            for x in batches(start):
                if self.step >= total_steps:
                    break
                x = x.to(device, non_blocking=True)
                record = self._train_step(x, total_steps, window)
                self.step += 1
                bar.update(1)
                if self.cfg.resample_dead_every and self.step % self.cfg.resample_dead_every == 0 and self.step < total_steps:
                    record["resampled"] = self._resample(x)
                if self.step % self.cfg.log_every == 0 or self.step == total_steps:
                    record |= {k: v for k, v in window.summary().items() if k in ("explained_variance", "l0")}
                    record["dead_fraction"] = self.dead_mask().float().mean().item()
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    bar.set_postfix(ev=f"{record['explained_variance']:.3f}", l0=f"{record['l0']:.1f}",
                                    dead=f"{record['dead_fraction']:.3f}")
                    window = ReconstructionStats(self.sae.d_sae)
                if self.step % self.cfg.checkpoint_every == 0 or self.step == total_steps:
                    self.save()
        bar.close()
        if hasattr(self.sae, "finalize_training"):
            self.sae.finalize_training()
        tokens = self.step * self.cfg.batch_size
        return TrainResult(self.step, tokens, time.time() - t0)

    def _resample(self, x: torch.Tensor) -> int:
        # Seeded by step, so a resumed run resamples exactly as an uninterrupted one would.
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
        dead = self.dead_mask()
        count = resample_dead_latents(self.sae, self.optimizer, x, dead, generator)
        self.tokens_since_fired[dead] = 0
        return count

    def _truncate_log(self, step: int) -> None:
        if self.log_path.exists():
            lines = [l for l in self.log_path.read_text().splitlines() if l.strip()]
            kept = [l for l in lines if json.loads(l)["step"] < step]
            self.log_path.write_text("".join(l + "\n" for l in kept))

    def dead_mask(self) -> torch.Tensor:
        return self.tokens_since_fired >= self.cfg.dead_window_tokens

    def _train_step(self, x: torch.Tensor, total_steps: int, window: ReconstructionStats) -> dict:
        lr = lr_at(self.step, total_steps, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        ctx = StepContext(progress=self.step / max(total_steps, 1), dead_mask=self.dead_mask().to(x.device))
        out = self.sae.training_step(x, ctx)
        if not torch.isfinite(out.loss):
            bad_input = not torch.isfinite(x).all()
            raise TrainingError(f"step {self.step}: {'activations contain NaN/inf' if bad_input else 'loss is NaN/inf'}; "
                                f"the last good checkpoint in {self.checkpoint_path} is kept "
                                f"({'re-capture the activations' if bad_input else 'lower train.lr'})")
        self.sae.apply_gradients(out.loss, self.optimizer)
        with torch.no_grad():
            fired = (out.feats > 0).any(0).cpu()
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[fired] = 0
            window.update(x * self.sae.act_scale, out.x_hat, out.feats)
        return {"step": self.step, "tokens": (self.step + 1) * x.shape[0], "lr": lr, "loss": out.loss.item(),
                **out.terms}
