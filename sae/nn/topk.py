"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", arXiv:2406.04093).

Keeps the k largest pre-activations per token (then ReLU), so L0 <= k by construction and no
sparsity penalty needs tuning. Dead latents get a gradient through the AuxK loss: the top
`aux_k` *dead* latents reconstruct the main model's residual error.

Training runs on sparse kernels (sae/nn/sparse_ops.py): after the encoder GEMM only the k
selected latents per token are touched, forward and backward (BatchTopK and Matryoshka reuse
this step through the select / reconstruction-loss hooks below). `sparse_kernels = False`
selects the plain dense path, kept as the reference the sparse one is tested against.
"""
from __future__ import annotations

import torch
from torch import Tensor

from sae.nn.base import SAEOutput, SparseAutoencoder, StepContext, normalized_mse
from sae.nn.sparse_ops import SparseDecode, SparsePattern, dense_encode, select_per_token, selected_values


def topk_activation(pre: Tensor, k: int) -> Tensor:
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, indices, values.relu())


class TopKSAE(SparseAutoencoder):
    architecture = "topk"
    saelens_architecture = "topk"
    sparse_kernels: bool = True  # an implementation switch, not a hyperparameter: both give the same numbers

    def __init__(self, d_in: int, d_sae: int, k: int = 32, aux_k: int | None = None,
                 aux_coefficient: float = 1 / 32, seed: int = 0, dtype: torch.dtype = torch.float32):
        if not 0 < k <= d_sae:
            raise ValueError(f"TopK k={k} is impossible for d_sae={d_sae}: choose 0 < k <= d_sae")
        super().__init__(d_in, d_sae, seed=seed, dtype=dtype)
        self.k = k
        self.aux_k = aux_k if aux_k is not None else max(d_in // 2, 1)
        self.aux_coefficient = aux_coefficient

    def hyperparams(self) -> dict:
        return {"k": self.k, "aux_k": self.aux_k, "aux_coefficient": self.aux_coefficient}

    def activate(self, pre: Tensor) -> Tensor:
        return topk_activation(pre, self.k)

    def saelens_config(self) -> dict:
        # Our decoder rows are unit norm, so SAELens need not rescale activations by them.
        return {"k": self.k, "rescale_acts_by_decoder_norm": False}

    # -- training ----------------------------------------------------------------------------------
    def training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        # torch's SDDMM has no half-precision kernel on CPU; those dtypes take the dense path.
        if self.sparse_kernels and self.W_enc.dtype in (torch.float32, torch.float64):
            return self.sparse_training_step(x, ctx)
        return self.dense_training_step(x, ctx)

    def dense_training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        xs = x * self.act_scale
        pre = self.pre_acts(xs)
        feats = self.dense_select(pre)
        loss, x_hat, terms = self.dense_reconstruction_loss(feats, xs)
        self.after_sparse_code(feats)
        n_dead, weight = self.auxk_weight(ctx)
        if weight > 0:
            aux = self.auxk_loss(pre, xs - x_hat, ctx.dead_mask, min(self.aux_k, n_dead))
            loss = loss + weight * aux
            terms["auxk"] = aux.item()
        return SAEOutput(loss=loss, x_hat=x_hat, feats=feats, terms=terms)

    def auxk_weight(self, ctx: StepContext) -> tuple[int, float]:
        """(number of dead latents, AuxK loss weight). Down-weighted when few latents are dead so
        AuxK cannot dominate (as sparsify does)."""
        if ctx.dead_mask is None or self.aux_coefficient <= 0:
            return 0, 0.0
        n_dead = int(ctx.dead_mask.sum())
        return n_dead, self.aux_coefficient * min(n_dead / self.aux_k, 1.0)

    def auxk_loss(self, pre: Tensor, residual: Tensor, dead_mask: Tensor, k_aux: int) -> Tensor:
        dead_pre = pre.masked_fill(~dead_mask, float("-inf"))
        aux_feats = topk_activation(dead_pre, k_aux).nan_to_num(0.0)
        return normalized_mse(aux_feats @ self.W_dec, residual.detach())

    def sparse_training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        xs = x * self.act_scale
        pre, xc = dense_encode(self, xs)
        selected, pattern = self.sparse_select(pre)
        values = selected_values(self, xs, xc, selected, pattern)
        loss, x_hat, terms = self.sparse_reconstruction_loss(values, pattern, xs)
        self.after_sparse_code(values)
        n_dead, weight = self.auxk_weight(ctx)
        if weight > 0:
            # Top-k among the dead columns only: a [batch, n_dead] slice instead of a masked full copy.
            aux_selected, aux_pattern = select_per_token(pre, min(self.aux_k, n_dead), ctx.dead_mask.nonzero().squeeze(1))
            aux_values = selected_values(self, xs, xc, aux_selected, aux_pattern)
            aux = normalized_mse(SparseDecode.apply(aux_values, self.W_dec, aux_pattern), (xs - x_hat).detach())
            loss = loss + weight * aux
            terms["auxk"] = aux.item()
        # pre is spent (AuxK above was its last reader): its memory becomes the dense code.
        return SAEOutput(loss=loss, x_hat=x_hat, feats=pattern.densify_into(pre, values), terms=terms)

    # -- hooks the batch-level subclasses (BatchTopK, Matryoshka) override ------------------------------------
    def dense_select(self, pre: Tensor) -> Tensor:
        return self.activate(pre)

    def dense_reconstruction_loss(self, feats: Tensor, xs: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        x_hat = self.decode_scaled(feats)
        mse = normalized_mse(x_hat, xs)
        return mse, x_hat, {"mse": mse.item()}

    def sparse_select(self, pre: Tensor) -> tuple[Tensor, SparsePattern]:
        return select_per_token(pre, self.k)

    def sparse_reconstruction_loss(self, values: Tensor, pattern: SparsePattern,
                                   xs: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        x_hat = SparseDecode.apply(values, self.W_dec, pattern) + self.b_dec
        mse = normalized_mse(x_hat, xs)
        return mse, x_hat, {"mse": mse.item()}

    def after_sparse_code(self, values: Tensor) -> None:
        """Called with the step's activations, dense or the selected ones (BatchTopK updates its
        inference threshold here)."""
