"""The one place each metric is defined; training, evaluation and benchmarks all call it.

Definitions (DESIGN.md §Metrics; peers disagree, so we state ours):
- FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the eval set, mean taken per dimension;
  explained variance EV = 1 - FVU. Predicting the mean gives EV = 0, the identity gives EV = 1.
- MSE = mean over tokens and dimensions of (x - x_hat)^2.
- L0 = mean number of nonzero latents per token.
- dead = never fired over the n_tokens seen (n_tokens reported); dense = fires on > 10% of tokens.
- CE loss recovered = (CE_zero_ablation - CE_sae) / (CE_zero_ablation - CE_clean).
- KL score = (KL_zero_ablation - KL_sae) / KL_zero_ablation, with KL(clean || patched) per token.
- SAEBench core extras: cosine(x, x_hat), l2_ratio = ||x_hat|| / ||x||,
  relative reconstruction bias = E||x_hat||^2 / E<x, x_hat>, and mean max |cos| between decoder rows.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

DENSE_THRESHOLD = 0.1


class ReconstructionStats:
    """Streams batches of (x, x_hat, feats) and reports the metrics above over all of them.

    Sums are kept in float64 so FVU over millions of tokens does not lose precision."""

    def __init__(self, d_sae: int | None = None):
        self.n_tokens = 0
        self.sq_err = 0.0
        self.sum_x: Tensor | None = None
        self.sum_x_sq = 0.0
        self.sum_l0 = 0.0
        self.sum_cos = 0.0
        self.sum_l2_ratio = 0.0
        self.sum_xhat_sq = 0.0
        self.sum_dot = 0.0
        self.d_in = 0
        self.fire_counts = torch.zeros(d_sae, dtype=torch.float64) if d_sae else None

    @torch.no_grad()
    def update(self, x: Tensor, x_hat: Tensor, feats: Tensor | None = None) -> None:
        x, x_hat = x.detach().double().reshape(-1, x.shape[-1]), x_hat.detach().double().reshape(-1, x.shape[-1])
        if x.shape != x_hat.shape:
            raise ValueError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} must have the same shape")
        self.d_in = x.shape[1]
        self.n_tokens += x.shape[0]
        self.sq_err += (x - x_hat).pow(2).sum().item()
        self.sum_x = x.sum(0) if self.sum_x is None else self.sum_x + x.sum(0)
        self.sum_x_sq += x.pow(2).sum().item()
        x_norm, xhat_norm = x.norm(dim=1), x_hat.norm(dim=1)
        dot = (x * x_hat).sum(1)
        self.sum_cos += (dot / (x_norm * xhat_norm).clamp_min(1e-12)).sum().item()
        self.sum_l2_ratio += (xhat_norm / x_norm.clamp_min(1e-12)).sum().item()
        self.sum_xhat_sq += xhat_norm.pow(2).sum().item()
        self.sum_dot += dot.sum().item()
        if feats is not None:
            fired = feats.detach().reshape(-1, feats.shape[-1]) > 0
            self.sum_l0 += fired.sum().item()
            counts = fired.sum(0).double().cpu()
            self.fire_counts = counts if self.fire_counts is None else self.fire_counts + counts

    def total_variance(self) -> float:
        # sum ||x - mean||^2 = sum ||x||^2 - N ||mean||^2
        mean = self.sum_x / self.n_tokens
        return self.sum_x_sq - self.n_tokens * mean.pow(2).sum().item()

    def firing_frequency(self) -> Tensor:
        return self.fire_counts / max(self.n_tokens, 1)

    def summary(self) -> dict[str, float]:
        if self.n_tokens == 0:
            raise ValueError("no tokens were evaluated; the eval set is empty")
        fvu = self.sq_err / max(self.total_variance(), 1e-30)
        out = {
            "n_tokens": self.n_tokens,
            "mse": self.sq_err / (self.n_tokens * self.d_in),
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
            "cosine_similarity": self.sum_cos / self.n_tokens,
            "l2_ratio": self.sum_l2_ratio / self.n_tokens,
            "relative_reconstruction_bias": self.sum_xhat_sq / self.sum_dot if self.sum_dot else math.nan,
        }
        if self.fire_counts is not None:
            freq = self.firing_frequency()
            out |= {
                "l0": self.sum_l0 / self.n_tokens,
                "dead_fraction": (freq == 0).double().mean().item(),
                "dense_fraction": (freq > DENSE_THRESHOLD).double().mean().item(),
                "frac_fire_gt_1pct": (freq > 0.01).double().mean().item(),
                "frac_fire_gt_10pct": (freq > 0.1).double().mean().item(),
            }
        return out


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    stats = ReconstructionStats()
    stats.update(x, x_hat)
    return stats.summary()["explained_variance"]


def ce_loss_recovered(ce_clean: float, ce_sae: float, ce_zero_ablation: float) -> float:
    gap = ce_zero_ablation - ce_clean
    return (ce_zero_ablation - ce_sae) / gap if abs(gap) > 1e-12 else math.nan


def kl_score(kl_sae: float, kl_zero_ablation: float) -> float:
    return (kl_zero_ablation - kl_sae) / kl_zero_ablation if kl_zero_ablation > 1e-12 else math.nan


def token_cross_entropy(logits: Tensor, tokens: Tensor) -> Tensor:
    """Next-token CE per predicted position: logits[:, :-1] predict tokens[:, 1:]."""
    logp = logits[:, :-1].float().log_softmax(-1)
    return -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def token_kl(clean_logits: Tensor, patched_logits: Tensor) -> Tensor:
    """KL(clean || patched) per position, in nats."""
    p_log = clean_logits.float().log_softmax(-1)
    q_log = patched_logits.float().log_softmax(-1)
    return (p_log.exp() * (p_log - q_log)).sum(-1)


def decoder_mean_max_cos(W_dec: Tensor, chunk: int = 4096) -> float:
    """Mean over decoder rows of the largest |cos| to any other row (chunked: d_sae^2 can be big)."""
    W = torch.nn.functional.normalize(W_dec.detach().float(), dim=1)
    best = []
    for start in range(0, W.shape[0], chunk):
        cos = (W[start:start + chunk] @ W.T).abs()
        rows = torch.arange(start, min(start + chunk, W.shape[0]))
        cos[rows - start, rows] = 0.0
        best.append(cos.max(1).values)
    return torch.cat(best).mean().item()


def sparsity_log10(firing_frequency: Tensor, eps: float = 1e-10) -> Tensor:
    """SAELens's `sparsity` tensor: log10 firing frequency."""
    return (firing_frequency.float() + eps).log10()
