"""Synthetic activations with known ground truth: sparse sums of N unit directions in d < N dims.

    x = sum_i c_i g_i,   c_i ~ Uniform[0, 1] when feature i fires, else 0
Feature i fires with probability p_i: uniform (all equal) or power-law (p_i ∝ (i+1)^-alpha,
like word frequencies), scaled so the expected number of active features is `mean_active`.
In the correlated variant features come in groups that tend to fire together: a Gaussian
copula with a shared factor per group (correlation rho inside a group, 0 across groups)
decides who fires, which keeps every p_i exactly while making co-occurrence likely.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PlantedFeatures:
    directions: Tensor          # [N, d] unit rows: the ground-truth dictionary
    probs: Tensor               # [N] firing probability of each feature
    group_size: int = 1         # features per correlated group (1 = independent)
    correlation: float = 0.0    # rho of the shared Gaussian factor inside a group

    @property
    def n_features(self) -> int:
        return self.directions.shape[0]

    @property
    def d(self) -> int:
        return self.directions.shape[1]

    def sample_firing(self, batch_size: int, gen: torch.Generator) -> Tensor:
        """[batch, N] bool: which features fire."""
        if self.correlation == 0.0 or self.group_size <= 1:
            return torch.rand(batch_size, self.n_features, generator=gen) < self.probs
        n_groups = -(-self.n_features // self.group_size)
        shared = torch.randn(batch_size, n_groups, generator=gen).repeat_interleave(self.group_size, 1)
        own = torch.randn(batch_size, self.n_features, generator=gen)
        z = self.correlation ** 0.5 * shared[:, : self.n_features] + (1 - self.correlation) ** 0.5 * own
        # z is standard normal per feature, so this threshold keeps P(fire) = p_i exactly.
        threshold = torch.distributions.Normal(0.0, 1.0).icdf(1 - self.probs.clamp(1e-6, 1 - 1e-6))
        return z > threshold

    def sample(self, batch_size: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Returns (activations x [batch, d], true coefficients c [batch, N])."""
        fires = self.sample_firing(batch_size, gen)
        coeffs = torch.rand(batch_size, self.n_features, generator=gen) * fires
        return coeffs @ self.directions, coeffs


def firing_probabilities(n_features: int, mean_active: float, frequency: str = "uniform",
                         power_law_exponent: float = 1.0) -> Tensor:
    if frequency == "uniform":
        weights = torch.ones(n_features)
    elif frequency == "power_law":
        weights = torch.arange(1, n_features + 1, dtype=torch.float32).pow(-power_law_exponent)
    else:
        raise ValueError(f"frequency {frequency!r}: choose 'uniform' or 'power_law'")
    probs = weights * mean_active / weights.sum()
    if probs.max() > 1:
        raise ValueError(f"mean_active={mean_active} needs a feature to fire with p={probs.max():.2f} > 1; "
                         "lower mean_active or the power-law exponent")
    return probs


# SAEs initialise their decoder as torch.randn(d_sae, d_in) from their integer seed. If the ground
# truth came from the same call with the same seed, an SAE with d_sae = N would *start* on the
# answer (we hit this: MMCS 0.998 after 20 steps). So ground-truth seeds live in another range.
GROUND_TRUTH_SEED_OFFSET = 1_000_003


def random_unit_directions(n: int, d: int, seed: int) -> Tensor:
    """Gaussian directions, normalised: nearly orthogonal in high d, coherence ~ sqrt(2 log n / d)."""
    g = torch.randn(n, d, generator=torch.Generator().manual_seed(GROUND_TRUTH_SEED_OFFSET + seed))
    return g / g.norm(dim=1, keepdim=True)


def make_planted(n_features: int = 512, d: int = 64, mean_active: float = 5.0, frequency: str = "uniform",
                 power_law_exponent: float = 1.0, group_size: int = 1, correlation: float = 0.0,
                 seed: int = 0) -> PlantedFeatures:
    return PlantedFeatures(directions=random_unit_directions(n_features, d, seed),
                           probs=firing_probabilities(n_features, mean_active, frequency, power_law_exponent),
                           group_size=group_size, correlation=correlation)
