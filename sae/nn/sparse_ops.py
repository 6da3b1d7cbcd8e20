"""Sparse training kernels for codes with few nonzeros per token (TopK, BatchTopK, Matryoshka):
everything after the encoder GEMM touches only the selected (token, latent) pairs, forward and
backward (DESIGN.md §Performance principles).

With f holding nnz << batch*d_sae nonzeros, the dense path spends five more batch x d_in x d_sae
GEMMs than it needs (decoder forward, its two gradients, the encoder's weight and input
gradients). Here each is a sparse product over the nnz entries, a factor d_sae/k less work:
    decoder forward   x_hat_b = sum_j v_bj W_dec[i_bj]           embedding_bag
    grad of v         <g_b, W_dec[i_bj]>                         sampled_addmm (SDDMM)
    grad of W_dec     S^T @ g                                    CSR (latent-major) @ dense
    grad of W_enc     (S_grad^T @ (x - b_dec))^T                 same
    grad of b_enc     index_add;  grad of b_dec via the encoder: -W_enc @ grad_b_enc
No [batch, d_sae] gradient is ever formed. Values are flat [nnz] tensors in the pattern's order
(tokens ascending, latents ascending within a token). Measured in experiments/bench_train.py.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

# CSR is "beta" in torch; the few operations used here are covered by tests/test_architectures.py.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@contextlib.contextmanager
def one_thread():
    """For index bookkeeping over ~1e5 entries (sorts, bincounts): ~5 ms on one thread, but 20-400 ms
    on two when the cores are shared, as threads wait for each other (measured here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SparsePattern:
    """A set of (token, latent) pairs as CSR in both orientations. Built once per selection; every
    sparse product of the step reuses it."""

    def __init__(self, crow: Tensor, col: Tensor, d_sae: int):
        with one_thread():
            self._build(crow, col, d_sae)

    def _build(self, crow: Tensor, col: Tensor, d_sae: int) -> None:
        self.crow, self.col, self.d_sae = crow, col, d_sae
        self.n_tokens = crow.numel() - 1
        self.rows = torch.repeat_interleave(torch.arange(self.n_tokens, device=col.device), crow.diff(),
                                            output_size=col.numel())
        # Latent-major order for S^T products: entries grouped by latent, tokens ascending within.
        self.order = col.argsort(stable=True)
        self.crow_t = torch.zeros(d_sae + 1, dtype=torch.long, device=col.device)
        self.crow_t[1:] = torch.bincount(col, minlength=d_sae).cumsum(0)
        self.tokens_t = self.rows[self.order]

    @classmethod
    def per_token(cls, idx: Tensor, d_sae: int) -> "SparsePattern":
        """k latents per token, idx [batch, k] sorted along dim 1."""
        batch, k = idx.shape
        return cls(torch.arange(0, batch * k + 1, k, device=idx.device), idx.reshape(-1), d_sae)

    @classmethod
    def from_flat(cls, flat: Tensor, n_tokens: int, d_sae: int) -> "SparsePattern":
        """Sorted flat indices token * d_sae + latent into a [n_tokens, d_sae] matrix."""
        with one_thread():
            rows = torch.div(flat, d_sae, rounding_mode="floor")
            crow = torch.zeros(n_tokens + 1, dtype=torch.long, device=flat.device)
            crow[1:] = torch.bincount(rows, minlength=n_tokens).cumsum(0)
            col = flat - rows * d_sae
        return cls(crow, col, d_sae)

    def subset(self, mask: Tensor) -> "SparsePattern":
        """The entries where mask [nnz] is true, in the same order."""
        return SparsePattern.from_flat((self.rows * self.d_sae + self.col)[mask], self.n_tokens, self.d_sae)

    def token_major(self, values: Tensor) -> Tensor:
        """S [n_tokens, d_sae] holding values at the pattern's entries."""
        return torch.sparse_csr_tensor(self.crow, self.col, values, (self.n_tokens, self.d_sae), check_invariants=False)

    def latent_major(self, values: Tensor) -> Tensor:
        """S^T [d_sae, n_tokens] for the same entries."""
        return torch.sparse_csr_tensor(self.crow_t, self.tokens_t, values[self.order], (self.d_sae, self.n_tokens),
                                       check_invariants=False)

    def gather_rows(self, table: Tensor, values: Tensor) -> Tensor:
        """out[b] = sum over the token's entries of values * table[latent]: [n_tokens, table.shape[1]]."""
        return F.embedding_bag(self.col, table, self.crow[:-1], mode="sum", per_sample_weights=values)

    def densify_into(self, buffer: Tensor, values: Tensor) -> Tensor:
        """The dense [n_tokens, d_sae] code, written over `buffer` (spent pre-activations): reusing that
        memory saves a second large allocation and its page faults every step. Detached."""
        flat = buffer.zero_().view(-1)
        flat[self.rows * self.d_sae + self.col] = values.detach()
        return buffer


class SelectedPreacts(torch.autograd.Function):
    """The pattern's entries of pre = (xs - b_dec) @ W_enc + b_enc, already computed densely without
    autograd; the backward pass touches only those entries."""

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
        with one_thread():
            grad_b_enc = torch.zeros(p.d_sae, dtype=grad.dtype, device=grad.device).index_add_(0, p.col, grad)
        grad_W_enc = (p.latent_major(grad) @ xc).t().contiguous()
        # sum_b grad_pre[b] = grad_b_enc, so the b_dec gradient through the encoder is one GEMV.
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.needs_input_grad[1] else None
        grad_xs = p.gather_rows(W_enc.t().contiguous(), grad) if ctx.needs_input_grad[0] else None
        return grad_xs, grad_b_dec, grad_W_enc, grad_b_enc, None, None, None


class SparseDecode(torch.autograd.Function):
    """x_hat_b = sum over the token's entries of values * W_dec[latent]  (no bias)."""

    @staticmethod
    def forward(ctx, values: Tensor, W_dec: Tensor, pattern: SparsePattern) -> Tensor:
        ctx.save_for_backward(values, W_dec)
        ctx.pattern = pattern
        return pattern.gather_rows(W_dec, values)

    @staticmethod
    def backward(ctx, grad: Tensor):
        values, W_dec = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        grad = grad.contiguous()
        grad_values = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            # <grad_b, W_dec[latent]> only at the pattern's entries (SDDMM), never grad @ W_dec^T in full.
            sampled = torch.sparse.sampled_addmm(p.token_major(torch.zeros_like(values)), grad, W_dec.t(), beta=0.0)
            grad_values = sampled.values()
        if ctx.needs_input_grad[1]:
            grad_W_dec = p.latent_major(values) @ grad
        return grad_values, grad_W_dec, None


def dense_encode(sae, xs: Tensor) -> tuple[Tensor, Tensor]:
    """(pre-activations without autograd, xc = the encoder's input). One GEMM, bias fused."""
    xc = xs - sae.b_dec.detach() if sae.apply_b_dec_to_input else xs
    with torch.no_grad():
        return torch.addmm(sae.b_enc, xc, sae.W_enc), xc


def selected_values(sae, xs: Tensor, xc: Tensor, selected: Tensor, pattern: SparsePattern) -> Tensor:
    """relu of the selected pre-activations, differentiable with respect to the encoder."""
    b_dec_in = sae.b_dec if sae.apply_b_dec_to_input else torch.zeros_like(sae.b_dec)
    return SelectedPreacts.apply(xs, b_dec_in, sae.W_enc, sae.b_enc, selected, xc, pattern).relu()


def select_per_token(pre: Tensor, k: int, columns: Tensor | None = None) -> tuple[Tensor, SparsePattern]:
    """Top-k of each row (optionally among `columns` only): (selected pre-activations, pattern)."""
    with torch.no_grad():
        source = pre if columns is None else pre[:, columns]
        selected, idx = source.topk(k, dim=-1, sorted=False)
        with one_thread():
            if columns is not None:
                idx = columns[idx]
            idx, perm = idx.sort(dim=-1)  # canonical CSR: latents ascending within a token
            selected = selected.gather(-1, perm).reshape(-1)
        return selected, SparsePattern.per_token(idx, pre.shape[1])


def select_per_batch(pre: Tensor, k: int) -> tuple[Tensor, SparsePattern]:
    """Top-(k * batch) of the whole matrix (BatchTopK): (selected pre-activations, pattern)."""
    with torch.no_grad():
        selected, flat = top_entries(pre, k * pre.shape[0])
        return selected, SparsePattern.from_flat(flat, pre.shape[0], pre.shape[1])


SAMPLE = 65_536


def top_entries(pre: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The n largest entries of `pre` (any shape) as (values, flat indices in ascending order). Exact.

    torch's topk over ~19M entries takes ~0.7 s on this CPU and sorting 131k flat indices ~0.4 s, so:
    a threshold from a random sample keeps ~1.5 n candidates in one vectorised pass (nonzero()
    returns them already in index order), and the exact top-n is taken among those. Should the
    sample be unlucky (fewer than n candidates), the full search runs instead."""
    flat = pre.reshape(-1)
    if n >= flat.numel():
        return flat.clone(), torch.arange(flat.numel(), device=flat.device)
    if flat.numel() > 4 * SAMPLE:
        g = torch.Generator(device=flat.device).manual_seed(0)
        sample = flat[torch.randint(flat.numel(), (SAMPLE,), generator=g, device=flat.device)]
        keep_in_sample = min(SAMPLE, int(1.5 * n * SAMPLE / flat.numel()) + 64)
        tau = sample.topk(keep_in_sample, sorted=False).values.min()
        candidates = (flat >= tau).nonzero().squeeze(1)
        if candidates.numel() >= n:
            with one_thread():
                values = flat[candidates]
                keep = torch.zeros(candidates.numel(), dtype=torch.bool, device=flat.device)
                keep[values.topk(n, sorted=False).indices] = True
                return values[keep], candidates[keep]
    values, idx = flat.topk(n, sorted=False)
    with one_thread():
        idx, perm = idx.sort()
        return values[perm], idx
