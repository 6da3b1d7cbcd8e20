"""Toy models of superposition, many trained at once.

ReLU output model (Elhage et al. 2022, "Toy Models of Superposition"):
    h = W x,   x_hat = ReLU(W^T h + b)          W: [m, n] (m hidden dims, n features)
The "linear" variant drops the ReLU; it can only learn PCA, so it never superposes.

All models in a sweep share one W tensor of shape [n_models, m, n] and every product is a
batched matmul over the model axis (einsum "kmn,kbn->kbm"), so 30 models train in about
the time of one Python-level model.
Feature i's direction in the hidden space is column W[:, :, i].

`HiddenReluModels` is the "computation in superposition" variant: h = ReLU(W1 x),
y = ReLU(W2 h + b), here trained to output |x| (which needs a nonlinearity in the middle).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def xavier_normal_per_model(n_models: int, rows: int, cols: int, seeds: list[int]) -> Tensor:
    """One generator per model, so a model's initialisation does not depend on which other
    models share its sweep (reruns of a single setting reproduce the sweep's result)."""
    std = (2.0 / (rows + cols)) ** 0.5
    return torch.stack([torch.randn(rows, cols, generator=torch.Generator().manual_seed(s)) * std
                        for s in seeds]) if seeds else torch.empty(0, rows, cols)


class ToyModels(nn.Module):
    def __init__(self, n_models: int, n_features: int, n_hidden: int, activation: str | list[str] = "relu",
                 seeds: list[int] | None = None):
        """activation: one for all models, or one per model (linear and ReLU in one program)."""
        super().__init__()
        activations = [activation] * n_models if isinstance(activation, str) else list(activation)
        if len(activations) != n_models or not set(activations) <= {"relu", "linear"}:
            raise ValueError(f"toy model activation {activation!r}: 'relu' or 'linear', or one per model")
        seeds = list(range(n_models)) if seeds is None else list(seeds)
        if len(seeds) != n_models:
            raise ValueError(f"{len(seeds)} seeds for {n_models} models: give one seed per model")
        self.register_buffer("is_relu", torch.tensor([a == "relu" for a in activations])[:, None, None])
        self.W = nn.Parameter(xavier_normal_per_model(n_models, n_hidden, n_features, seeds))
        self.b = nn.Parameter(torch.zeros(n_models, n_features))

    def hidden(self, x: Tensor) -> Tensor:
        """x: [n_models, batch, n] -> h: [n_models, batch, m]."""
        return torch.bmm(x, self.W.transpose(1, 2))  # einsum "kmn,kbn->kbm", as a batched matmul (faster)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.baddbmm(self.b[:, None, :], self.hidden(x), self.W)  # b + h W, per model
        if self.is_relu.all():
            return out.relu()
        return torch.where(self.is_relu, out.relu(), out)


class HiddenReluModels(nn.Module):
    """h = ReLU(W1 x), y = ReLU(W2 h + b): neurons form a privileged basis, so we can ask how
    many features each neuron responds to (polysemanticity)."""

    def __init__(self, n_models: int, n_features: int, n_neurons: int, seeds: list[int] | None = None):
        super().__init__()
        seeds = list(range(n_models)) if seeds is None else list(seeds)
        self.W1 = nn.Parameter(xavier_normal_per_model(n_models, n_neurons, n_features, seeds))
        self.W2 = nn.Parameter(xavier_normal_per_model(n_models, n_features, n_neurons,
                                                       [s + 10_000 for s in seeds]))
        self.b = nn.Parameter(torch.zeros(n_models, n_features))

    def hidden(self, x: Tensor) -> Tensor:
        return torch.bmm(x, self.W1.transpose(1, 2)).relu()

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.b[:, None, :], self.hidden(x), self.W2.transpose(1, 2)).relu()


def importance_weighted_mse(pred: Tensor, target: Tensor, importance: Tensor) -> Tensor:
    """Per-model loss [n_models]: sum_i I_i * mean_batch (x_i - x_hat_i)^2. Summing this over
    models gives each model exactly its own gradient (the models share no parameters)."""
    return (importance[:, None, :] * (pred - target).pow(2)).mean(1).sum(-1)
