"""The planted-feature benchmark: train an SAE on planted data, score its decoder against the
true dictionary. Shared by experiments/toy_planted.py and experiments/toy_planted_sweep.py."""
from __future__ import annotations

import torch

from sae.toy.planted import PlantedFeatures, make_planted
from sae.toy.recovery import max_cosines, recovery_report
from sae.toy.sae_fit import decoder_directions, fit_sae, pooled_sampler


def build_dataset(cfg, data) -> tuple[PlantedFeatures, torch.Tensor]:
    """cfg: PlantedConfig, data: PlantedData. Returns the ground truth and a pool of activations."""
    planted = make_planted(cfg.n_features, cfg.d, cfg.mean_active, frequency=data.frequency,
                           power_law_exponent=data.power_law_exponent, group_size=data.group_size,
                           correlation=data.correlation, seed=cfg.data_seed)
    pool, _ = planted.sample(cfg.pool_size, torch.Generator().manual_seed(cfg.data_seed + 1))
    return planted, pool


def run_one(architecture: str, planted: PlantedFeatures, pool: torch.Tensor, d_sae: int, hyperparams: dict,
            steps: int, batch_size: int, lr: float, dead_window: int, seed: int, progress: bool = True) -> dict:
    fit = fit_sae(architecture, pooled_sampler(pool), planted.d, d_sae, steps=steps, batch_size=batch_size,
                  lr=lr, hyperparams=hyperparams, dead_window=dead_window, seed=seed, progress=progress)
    learned = decoder_directions(fit.sae)
    per_true, _ = max_cosines(planted.directions, learned)
    return {"architecture": architecture, "hyperparams": fit.hyperparams,
            **recovery_report(planted.directions, learned),
            "l0": fit.l0, "fvu": fit.fvu, "dead_fraction": fit.dead_fraction, "seconds": round(fit.seconds, 1),
            "per_true_max_cos": per_true}
