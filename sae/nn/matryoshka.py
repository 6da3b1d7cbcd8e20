"""Matryoshka BatchTopK SAE (Bussmann et al. 2025, "Learning Multi-Level Features with
Matryoshka Sparse Autoencoders", arXiv:2503.17547; also Nabeshima 2024).

The dictionary is split into nested prefixes [0, m_1) ⊂ [0, m_2) ⊂ ... ⊂ [0, d_sae). Every prefix
must reconstruct the input on its own from the latents the BatchTopK code gave it:
    loss = mean_j  FVU( f[:, :m_j] @ W_dec[:m_j] + b_dec , x )
so the first latents learn general, coarse features and later ones refine them, instead of
later latents "absorbing" parts of early ones. Sparsity, the inference threshold and AuxK are
exactly those of BatchTopK; the export is therefore the same JumpReLU form.
"""
from __future__ import annotations

import torch
from torch import Tensor

from sae.nn.base import normalized_mse
from sae.nn.batchtopk import BatchTopKSAE
from sae.nn.sparse_ops import SparseDecode, SparsePattern


def default_group_sizes(d_sae: int, n_groups: int = 5) -> list[int]:
    """Prefixes doubling in size, d_sae/16, /8, /4, /2, 1 of the dictionary (as the paper's)."""
    ends = sorted({max(1, d_sae >> shift) for shift in range(n_groups - 1, -1, -1)})
    return [end - start for start, end in zip([0, *ends[:-1]], ends)]


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    architecture = "matryoshka_batchtopk"
    saelens_architecture = "jumprelu"

    def __init__(self, d_in: int, d_sae: int, k: int = 32, group_sizes: list[int] | None = None,
                 aux_k: int | None = None, aux_coefficient: float = 1 / 32, threshold_momentum: float = 0.99,
                 seed: int = 0, dtype: torch.dtype = torch.float32):
        group_sizes = list(group_sizes) if group_sizes is not None else default_group_sizes(d_sae)
        if sum(group_sizes) != d_sae or min(group_sizes) <= 0:
            raise ValueError(f"Matryoshka group_sizes {group_sizes} must be positive and sum to d_sae={d_sae}")
        super().__init__(d_in, d_sae, k=k, aux_k=aux_k, aux_coefficient=aux_coefficient,
                         threshold_momentum=threshold_momentum, seed=seed, dtype=dtype)
        self.group_sizes = group_sizes

    def hyperparams(self) -> dict:
        return {**super().hyperparams(), "group_sizes": self.group_sizes}

    def dense_reconstruction_loss(self, feats: Tensor, xs: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        # Grow the reconstruction one group at a time: each prefix costs one [batch, group] GEMM.
        x_hat = self.b_dec.expand_as(xs)
        losses = []
        for start, end in self.group_bounds():
            x_hat = x_hat + feats[:, start:end] @ self.W_dec[start:end]
            losses.append(normalized_mse(x_hat, xs))
        return self.prefix_loss(losses, x_hat)

    def sparse_reconstruction_loss(self, values: Tensor, pattern: SparsePattern,
                                   xs: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        # The same growth, each group decoding only its own selected entries.
        x_hat = self.b_dec.expand_as(xs)
        losses = []
        for start, end in self.group_bounds():
            in_group = (pattern.col >= start) & (pattern.col < end)
            x_hat = x_hat + SparseDecode.apply(values[in_group], self.W_dec, pattern.subset(in_group))
            losses.append(normalized_mse(x_hat, xs))
        return self.prefix_loss(losses, x_hat)

    def group_bounds(self) -> list[tuple[int, int]]:
        ends = torch.tensor(self.group_sizes).cumsum(0).tolist()
        return list(zip([0, *ends[:-1]], ends))

    @staticmethod
    def prefix_loss(losses: list[Tensor], x_hat: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        loss = torch.stack(losses).mean()
        terms = {"mse": losses[-1].item(), "matryoshka_loss": loss.item(), "mse_prefix0": losses[0].item()}
        return loss, x_hat, terms
