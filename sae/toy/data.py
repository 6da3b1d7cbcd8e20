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
    shape = (n_models, batch_size, n_features)
    values = torch.rand(shape, generator=generator)
    if signed:
        values = 2 * values - 1
    active = torch.rand(shape, generator=generator) < density[:, None, :]
    return values * active

