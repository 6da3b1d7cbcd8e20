"""The toy model's input: n independent sparse features.

Each feature is 0 with probability S (the sparsity), else drawn from Uniform[0, 1]
(Uniform[-1, 1] when `signed`, for the absolute-value task). We sample one batch for every
model at once, each model with its own density 1 - S, so a sweep is one tensor program.
"""
from __future__ import annotations

import torch
from torch import Tensor


def sparse_features(density: Tensor, batch_size: int, generator: torch.Generator | None = None,
                    signed: bool = False) -> Tensor:
    """density: [n_models, n_features] probability that each feature is nonzero.
    Returns x: [n_models, batch_size, n_features]."""
    n_models, n_features = density.shape
    p = density[:, None, :]
    u = torch.rand(n_models, batch_size, n_features, generator=generator)
    # One uniform draw does both jobs: u < p fires the feature, and given that, u / p is
    # Uniform[0, 1]. Half the random numbers of drawing mask and value separately.
    values = torch.where(u < p, u / p, 0.0)
    if signed:
        values = torch.where(u < p, 2 * values - 1, 0.0)
    return values
