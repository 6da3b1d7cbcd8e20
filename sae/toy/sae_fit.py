"""A small SAE training loop over the sae.nn contract, for synthetic data that fits in RAM or
is sampled on the fly. The production trainer lives in sae/training; this one is the minimum
needed to check architectures against planted ground truth.

Per step (the contract in sae/nn/base.py):
    out = sae.training_step(x, StepContext(progress, dead_mask)); sae.apply_gradients(out.loss, opt)
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sae.nn import ARCHITECTURES, build_sae
from sae.nn.base import SparseAutoencoder, StepContext


@dataclass
class SAEFit:
    sae: SparseAutoencoder
    hyperparams: dict
    l0: float = 0.0              # mean nonzero latents per input, on a held-out batch
    fvu: float = 0.0             # fraction of variance unexplained (DESIGN.md definition)
    dead_fraction: float = 0.0   # latents that never fired on the held-out batch
    seconds: float = 0.0
    log: list[dict] = field(default_factory=list)


def architecture_kwargs(architecture: str, hyperparams: dict) -> dict:
    """Keep only the hyperparameters this architecture's constructor accepts, so one config can
    list k, l1_coefficient, ... for every architecture (including ones added after this was written)."""
    accepted = inspect.signature(ARCHITECTURES[architecture].__init__).parameters
    return {k: v for k, v in hyperparams.items() if k in accepted}


class DeadLatentTracker:
    """Counts, per latent, the steps since it last fired; a latent idle for `window` steps is dead."""

    def __init__(self, d_sae: int, window: int):
        self.window = window
        self.steps_since_fired = torch.zeros(d_sae, dtype=torch.long)

    def update(self, feats: Tensor) -> None:
        self.steps_since_fired += 1
        self.steps_since_fired[(feats != 0).any(0)] = 0

    def mask(self) -> Tensor | None:
        dead = self.steps_since_fired >= self.window
        return dead if dead.any() else None


def lr_at(progress: float, decay_start: float = 0.8) -> float:
    """Constant, then linear decay to 0 over the last 20%: the decay lets directions settle."""
    return 1.0 if progress < decay_start else max(0.0, (1 - progress) / (1 - decay_start))


def fit_sae(architecture: str, sample: Callable[[int, torch.Generator], Tensor], d_in: int, d_sae: int,
            steps: int = 3000, batch_size: int = 1024, lr: float = 1e-3, hyperparams: dict | None = None,
            dead_window: int = 200, seed: int = 0, progress: bool = True) -> SAEFit:
    """sample(batch_size, generator) -> [batch, d_in] activations."""
    start = time.time()
    kwargs = architecture_kwargs(architecture, dict(hyperparams or {}))
    kwargs.pop("seed", None)
    seeded = "seed" in inspect.signature(ARCHITECTURES[architecture].__init__).parameters
    sae = build_sae(architecture, d_in, d_sae, **kwargs, **({"seed": seed} if seeded else {}))
    gen = torch.Generator().manual_seed(seed + 1)
    sae.init_from_data(sample(8192, gen))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    tracker = DeadLatentTracker(d_sae, dead_window)
    fit = SAEFit(sae=sae, hyperparams=kwargs)
    bar = tqdm(range(steps), desc=f"{architecture} SAE", disable=not progress, mininterval=1.0)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr * lr_at(step / steps)
        out = sae.training_step(sample(batch_size, gen), StepContext(progress=step / steps, dead_mask=tracker.mask()))
        sae.apply_gradients(out.loss, opt)
        tracker.update(out.feats.detach())
        if step % max(steps // 20, 1) == 0:
            fit.log.append({"step": step, **out.terms})
            bar.set_postfix({k: f"{v:.3g}" for k, v in out.terms.items()}, refresh=False)
    if hasattr(sae, "finalize_training"):  # e.g. BatchTopK fixes its inference threshold here
        sae.finalize_training()
    fit.l0, fit.fvu, fit.dead_fraction = evaluate_sae(sae, sample(8192, gen))
    fit.seconds = time.time() - start
    return fit


@torch.no_grad()
def evaluate_sae(sae: SparseAutoencoder, x: Tensor) -> tuple[float, float, float]:
    feats = sae.encode(x)
    x_hat = sae.decode(feats)
    fvu = ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    return (feats != 0).float().sum(1).mean().item(), fvu, 1 - (feats != 0).any(0).float().mean().item()


def pooled_sampler(pool: Tensor) -> Callable[[int, torch.Generator], Tensor]:
    """Batches drawn with replacement from a fixed pool: generating the pool once costs what ~250
    fresh batches would, and sampling rows afterwards is nearly free."""
    return lambda batch_size, gen: pool[torch.randint(len(pool), (batch_size,), generator=gen)]


def decoder_directions(sae: SparseAutoencoder) -> Tensor:
    """Rows of W_dec: what each latent writes back, in the input space (direction only)."""
    return sae.W_dec.detach().float()
