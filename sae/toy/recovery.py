"""Did the SAE find the planted features? Compare learned directions with the true ones.

MMCS(G, D) = mean over true features g of max_d cos(g, d) (Sharkey et al. 2022). The reverse
direction (mean over learned d of max_g cos) says how many latents are spurious or duplicated.
"""
from __future__ import annotations

import torch
from torch import Tensor


def max_cosines(true_dirs: Tensor, learned_dirs: Tensor) -> tuple[Tensor, Tensor]:
    """true_dirs [N, d], learned_dirs [K, d] (rows are directions, any norm).
    Returns (best cos for each true feature [N], best cos for each learned direction [K])."""
    G = true_dirs / true_dirs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    D = learned_dirs / learned_dirs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = G @ D.T
    return cos.amax(1), cos.amax(0)


def recovery_report(true_dirs: Tensor, learned_dirs: Tensor, threshold: float = 0.9) -> dict[str, float]:
    per_true, per_learned = max_cosines(true_dirs.float(), learned_dirs.float())
    return {
        "mmcs": per_true.mean().item(),
        "mmcs_reverse": per_learned.mean().item(),
        f"frac_recovered_cos>{threshold}": (per_true > threshold).float().mean().item(),
        f"frac_latents_matched_cos>{threshold}": (per_learned > threshold).float().mean().item(),
    }
