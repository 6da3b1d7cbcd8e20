"""Sparse training kernels for k-sparse codes (TopK): everything after the encoder GEMM touches only
the k selected latents per token (DESIGN.md §Performance principles).

With f having k nonzeros per token, the dense path spends five more B x d_in x d_sae GEMMs than it
needs (decoder forward, its two gradients, the encoder's weight and input gradients). Here each
is a sparse product with B*k nonzeros, a factor d_sae/k less work:
    decoder forward   x_hat = sum_j v_j W_dec[i_j]              embedding_bag
    grad of v         <g_b, W_dec[i_bj]>                         sampled_addmm (SDDMM)
    grad of W_dec     S^T @ g                                    CSR (latent-major) @ dense
    grad of W_enc     (S_grad^T @ (x - b_dec))^T                 same
    grad of b_enc     index_add;  grad of b_dec via the encoder: -W_enc @ grad_b_enc
No [batch, d_sae] gradient is ever formed. Measured in experiments/bench_train.py.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

# CSR is "beta" in torch; the few operations used here are covered by tests/test_architectures.py.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


class SparsePattern:
    """The (token, latent) pairs of a [batch, k] index matrix, as CSR in both orientations.
    Built once per step; every sparse product of the step reuses it."""

    def __init__(self, idx: Tensor, d_sae: int):
        batch, k = idx.shape
        self.idx, self.d_sae = idx, d_sae
        self.col = idx.reshape(-1)
        self.crow = torch.arange(0, batch * k + 1, k, device=idx.device)
        # Latent-major order for S^T products: entries grouped by latent, tokens ascending within.
        self.order = self.col.argsort(stable=True)
        self.crow_t = torch.zeros(d_sae + 1, dtype=torch.long, device=idx.device)
        self.crow_t[1:] = torch.bincount(self.col, minlength=d_sae).cumsum(0)
        self.tokens_t = torch.div(self.order, k, rounding_mode="floor")

    def token_major(self, values: Tensor) -> Tensor:
        """S [batch, d_sae] with S[b, idx[b, j]] = values[b, j]."""
        return torch.sparse_csr_tensor(self.crow, self.col, values.reshape(-1),
                                       (self.idx.shape[0], self.d_sae), check_invariants=False)

    def latent_major(self, values: Tensor) -> Tensor:
        """S^T [d_sae, batch] for the same entries."""
        return torch.sparse_csr_tensor(self.crow_t, self.tokens_t, values.reshape(-1)[self.order],
                                       (self.d_sae, self.idx.shape[0]), check_invariants=False)


class SelectedPreacts(torch.autograd.Function):
    """pre[b, idx[b, j]] of pre = (xs - b_dec) @ W_enc + b_enc, already computed densely without
    autograd; the backward pass touches only the selected entries."""

    @staticmethod
    def forward(ctx, xs: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, selected: Tensor,
                xc: Tensor, pattern: SparsePattern) -> Tensor:
        ctx.save_for_backward(xc, W_enc)
        ctx.pattern = pattern
        return selected

    @staticmethod
    def backward(ctx, grad: Tensor):
        xc, W_enc = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        grad = grad.contiguous()
        grad_b_enc = torch.zeros(p.d_sae, dtype=grad.dtype, device=grad.device).index_add_(0, p.col, grad.reshape(-1))
        grad_W_enc = (p.latent_major(grad) @ xc).t().contiguous()
        # sum_b grad_pre[b] = grad_b_enc, so the b_dec gradient through the encoder is one GEMV.
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.needs_input_grad[1] else None
        grad_xs = None
        if ctx.needs_input_grad[0]:
            grad_xs = F.embedding_bag(p.idx, W_enc.t().contiguous(), per_sample_weights=grad, mode="sum")
        return grad_xs, grad_b_dec, grad_W_enc, grad_b_enc, None, None, None


class SparseDecode(torch.autograd.Function):
    """sum_j values[b, j] * W_dec[idx[b, j]]  (no bias)."""

    @staticmethod
    def forward(ctx, values: Tensor, W_dec: Tensor, pattern: SparsePattern) -> Tensor:
        ctx.save_for_backward(values, W_dec)
        ctx.pattern = pattern
        return F.embedding_bag(pattern.idx, W_dec, per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx, grad: Tensor):
        values, W_dec = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        grad = grad.contiguous()
        grad_values = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            # <grad_b, W_dec[idx_bj]> only at the selected pairs (SDDMM), never grad @ W_dec^T in full.
            sampled = torch.sparse.sampled_addmm(p.token_major(torch.zeros_like(values)), grad, W_dec.t(), beta=0.0)
            grad_values = sampled.values().view_as(values)
        if ctx.needs_input_grad[1]:
            grad_W_dec = p.latent_major(values) @ grad
        return grad_values, grad_W_dec, None


def sparse_topk_forward(sae, xs: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, SparsePattern, Tensor]:
    """Encode with one dense GEMM, select top-k, return (pre [no grad], values [grad], x_hat [grad],
    pattern, xc). Latent indices are sorted per token so the CSR rows are canonical."""
    xc = xs - sae.b_dec.detach() if sae.apply_b_dec_to_input else xs
    with torch.no_grad():
        pre = torch.addmm(sae.b_enc, xc, sae.W_enc)  # bias fused: one pass over [batch, d_sae]
        selected, idx = pre.topk(k, dim=-1, sorted=False)
        idx, perm = idx.sort(dim=-1)
        selected = selected.gather(-1, perm)
    pattern = SparsePattern(idx, sae.d_sae)
    b_dec_in = sae.b_dec if sae.apply_b_dec_to_input else torch.zeros_like(sae.b_dec)
    values = SelectedPreacts.apply(xs, b_dec_in, sae.W_enc, sae.b_enc, selected, xc, pattern).relu()
    x_hat = SparseDecode.apply(values, sae.W_dec, pattern) + sae.b_dec
    return pre, values, x_hat, pattern, xc


def densify_into(buffer: Tensor, values: Tensor, pattern: SparsePattern) -> Tensor:
    """The [batch, d_sae] code the trainer logs, written over `buffer` (the spent pre-activations):
    reusing that memory saves a second 4096 x 4608 allocation and its page faults every step.
    Detached: nothing backpropagates through it."""
    return buffer.zero_().scatter_(1, pattern.idx, values.detach())
