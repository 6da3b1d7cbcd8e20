"""Train a batch of toy models: AdamW(lr 1e-3), batch 1024, fresh sparse data every step
(the notebook's settings, which reproduce the paper's geometry; see DESIGN.md)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sae.toy.data import sparse_features
from sae.toy.model import importance_weighted_mse


@dataclass
class ToyTrainResult:
    final_loss: Tensor     # [n_models], on a fresh evaluation batch
    loss_curve: Tensor     # [n_logged, n_models]


def train_toy_models(model: nn.Module, density: Tensor, importance: Tensor, steps: int = 10_000,
                     batch_size: int = 1024, lr: float = 1e-3, seed: int = 0, task: str = "reconstruct",
                     eval_batch: int = 8192, progress: bool = True, desc: str = "toy models") -> ToyTrainResult:
    """density, importance: [n_models, n_features]. task 'reconstruct' targets x itself;
    'absolute' feeds signed features in [-1, 1] and targets |x|."""
    if task not in ("reconstruct", "absolute"):
        raise ValueError(f"toy task {task!r}: choose 'reconstruct' or 'absolute'")
    signed = task == "absolute"
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    curve = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        x = sparse_features(density, batch_size, gen, signed=signed)
        per_model = importance_weighted_mse(model(x), x.abs() if signed else x, importance)
        per_model.sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % max(steps // 100, 1) == 0:
            curve.append(per_model.detach())
            bar.set_postfix(mean_loss=f"{per_model.mean().item():.4g}", refresh=False)
    with torch.no_grad():
        x = sparse_features(density, eval_batch, gen, signed=signed)
        final = importance_weighted_mse(model(x), x.abs() if signed else x, importance)
    return ToyTrainResult(final_loss=final, loss_curve=torch.stack(curve))


@dataclass
class Sweep:
    """Every (setting, seed) pair as one model of a single batched ToyModels."""
    model: nn.Module
    result: ToyTrainResult
    setting_of: list[int]   # model index -> setting index
    seed_of: list[int]      # model index -> seed

    def models_of(self, setting: int) -> list[int]:
        return [k for k, s in enumerate(self.setting_of) if s == setting]

    def best_of(self, setting: int) -> int:
        """Lowest-loss seed: small toy models often land in worse local minima (DESIGN.md)."""
        return min(self.models_of(setting), key=lambda k: self.result.final_loss[k].item())


def train_sweep(settings: list[tuple[Tensor, Tensor]], seeds: list[int], make_model, steps: int,
                batch_size: int = 1024, lr: float = 1e-3, seed: int = 0, task: str = "reconstruct",
                eval_batch: int = 8192, progress: bool = True, desc: str = "toy sweep") -> Sweep:
    """settings: (density [n], importance [n]) pairs. make_model(n_models, seeds) -> module.
    Model seeds are offset by setting so no two settings share an initialisation by accident."""
    setting_of = [s for s in range(len(settings)) for _ in seeds]
    seed_of = [seed_ for _ in settings for seed_ in seeds]
    density = torch.stack([settings[s][0] for s in setting_of])
    importance = torch.stack([settings[s][1] for s in setting_of])
    model = make_model(len(setting_of), [1000 * s + sd for s, sd in zip(setting_of, seed_of)])
    result = train_toy_models(model, density, importance, steps=steps, batch_size=batch_size, lr=lr,
                              seed=seed, task=task, eval_batch=eval_batch, progress=progress, desc=desc)
    return Sweep(model=model, result=result, setting_of=setting_of, seed_of=seed_of)
