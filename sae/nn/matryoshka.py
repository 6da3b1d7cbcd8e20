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

from sae.nn.batchtopk import BatchTopKSAE
from sae.nn.sparse_ops import SparseDecode, SparsePattern, one_thread


def default_group_sizes(d_sae: int, n_groups: int = 5) -> list[int]:
    """Prefixes doubling in size: d_sae/16, /8, /4, /2 and the whole dictionary. A geometric default;
    pass group_sizes to choose others."""
    ends = sorted({max(1, d_sae >> shift) for shift in range(n_groups - 1, -1, -1)})
    return [end - start for start, end in zip([0, *ends[:-1]], ends)]


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    architecture = "matryoshka_batchtopk"
    saelens_architecture = "jumprelu"

    def __init__(self, d_in: int, d_sae: int, k: int = 32, group_sizes: list[int] | None = None,
                 aux_k: int | None = None, aux_coefficient: float = 1 / 32, threshold_momentum: float = 0.99,
                 calibration_fraction: float = 0.2,
                 seed: int = 0, dtype: torch.dtype = torch.float32):
        group_sizes = list(group_sizes) if group_sizes is not None else default_group_sizes(d_sae)
        if sum(group_sizes) != d_sae or min(group_sizes) <= 0:
            raise ValueError(f"Matryoshka group_sizes {group_sizes} must be positive and sum to d_sae={d_sae}")
        super().__init__(d_in, d_sae, k=k, aux_k=aux_k, aux_coefficient=aux_coefficient,
                         threshold_momentum=threshold_momentum, calibration_fraction=calibration_fraction,
                         seed=seed, dtype=dtype)
        self.group_sizes = group_sizes

    def hyperparams(self) -> dict:
        return {**super().hyperparams(), "group_sizes": self.group_sizes}

    def dense_reconstruction_loss(self, feats: Tensor, xs: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        # Grow the reconstruction one group at a time: each prefix costs one [batch, group] GEMM.
        partials = (feats[:, start:end] @ self.W_dec[start:end] for start, end in self.group_bounds())
        return self.prefix_losses(partials, xs)

    def sparse_reconstruction_loss(self, values: Tensor, pattern: SparsePattern,
                                   xs: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        # The same growth, each group decoding only its own selected entries. A stable sort by group
        # makes every group a contiguous run that keeps the (token, latent) order.
        with one_thread():
            ends = torch.tensor([end for _, end in self.group_bounds()], device=values.device)
            group = torch.bucketize(pattern.col, ends, right=True)
            order = group.argsort(stable=True)
            counts = torch.bincount(group, minlength=len(self.group_sizes)).tolist()
            flat = (pattern.rows * self.d_sae + pattern.col)[order]
        values = values[order]
        partials = []
        for chunk_values, chunk_flat in zip(values.split(counts), flat.split(counts)):
            sub = SparsePattern.from_flat(chunk_flat, pattern.n_tokens, self.d_sae)
            partials.append(SparseDecode.apply(chunk_values, self.W_dec, sub))
        return self.prefix_losses(partials, xs)

    def prefix_losses(self, partials, xs: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        """Mean over prefixes of each prefix's FVU; partials are the groups' decodes, in order."""
        total_variance = (xs - xs.mean(0)).pow(2).sum().clamp_min(1e-12)  # once, not once per prefix
        x_hat = self.b_dec.expand_as(xs)
        losses = []
        for partial in partials:
            x_hat = x_hat + partial
            losses.append((x_hat - xs).pow(2).sum() / total_variance)
        loss = torch.stack(losses).mean()
        terms = {"mse": losses[-1].item(), "matryoshka_loss": loss.item(), "mse_prefix0": losses[0].item()}
        return loss, x_hat, terms

    def group_bounds(self) -> list[tuple[int, int]]:
        ends = torch.tensor(self.group_sizes).cumsum(0).tolist()
        return list(zip([0, *ends[:-1]], ends))
