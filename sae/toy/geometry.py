"""How a toy model stores its features: the measurements of Elhage et al. (2022).

All functions take W with feature directions as columns, shape [..., m, n] (any leading batch
axes, e.g. the model axis of a sweep), and return per-feature numbers of shape [..., n].
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def gram(W: Tensor) -> Tensor:
    """W^T W [..., n, n]: diagonal = squared norms, off-diagonal = interference between features."""
    return W.transpose(-1, -2) @ W


def feature_norms(W: Tensor) -> Tensor:
    """||W_i||: ~1 means feature i is represented, ~0 means it was dropped."""
    return W.norm(dim=-2)


def unit_columns(W: Tensor, eps: float = 1e-8) -> Tensor:
    return W / feature_norms(W).clamp_min(eps).unsqueeze(-2)


def superposition(W: Tensor) -> Tensor:
    """sum_{j != i} (W_hat_i . W_j)^2: how much other features project onto feature i's direction."""
    proj = (unit_columns(W).transpose(-1, -2) @ W).pow(2)  # [..., i, j]
    return proj.sum(-1) - proj.diagonal(dim1=-2, dim2=-1)


def dimensionality(W: Tensor, eps: float = 1e-8) -> Tensor:
    """D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2: the fraction of a dimension feature i gets.
    1 for a dedicated dimension, 1/2 for an antipodal pair, 2/5 for a pentagon; 0 if dropped."""
    norms_sq = feature_norms(W).pow(2)
    denom = (unit_columns(W).transpose(-1, -2) @ W).pow(2).sum(-1)
    return torch.where(norms_sq > eps, norms_sq / denom.clamp_min(eps), torch.zeros_like(norms_sq))


def dimensions_per_feature(W: Tensor) -> Tensor:
    """D* = m / ||W||_F^2: the model-level average, the paper's line through the D_i scatter."""
    m = W.shape[-2]
    return m / W.pow(2).sum((-2, -1)).clamp_min(1e-12)


def cosine_matrix(W: Tensor) -> Tensor:
    U = unit_columns(W)
    return U.transpose(-1, -2) @ U


def angles_degrees(W: Tensor) -> Tensor:
    """Angle between every pair of feature directions [..., n, n]."""
    return torch.rad2deg(torch.arccos(cosine_matrix(W).clamp(-1, 1)))


def polar_angles_2d(W: Tensor) -> Tensor:
    """For m = 2: each feature's direction as an angle in [0, 360) degrees, shape [..., n]."""
    if W.shape[-2] != 2:
        raise ValueError(f"polar angles need a 2-D hidden space, got m={W.shape[-2]}")
    return torch.rad2deg(torch.atan2(W[..., 1, :], W[..., 0, :])) % 360


def adjacent_angle_gaps(W: Tensor, min_norm: float = 0.5) -> Tensor:
    """For one 2-D model W [2, n]: sorted gaps (degrees) between consecutive represented features
    around the circle; they sum to 360. A regular pentagon gives five gaps of 72."""
    kept = feature_norms(W) > min_norm
    angles = torch.sort(polar_angles_2d(W)[kept]).values
    if angles.numel() < 2:
        return torch.tensor([360.0] * int(angles.numel()))
    return torch.diff(torch.cat([angles, angles[:1] + 360]))


def is_regular_polygon(W: Tensor, k: int, min_norm: float = 0.5, tolerance_deg: float = 6.0) -> bool:
    """Does the 2-D model W [2, n] store exactly k features as a regular k-gon?"""
    gaps = adjacent_angle_gaps(W, min_norm)
    return gaps.numel() == k and bool(((gaps - 360 / k).abs() <= tolerance_deg).all())


# -- interference bounds (DESIGN.md, "Interference and ground truth") ---------------------------------
def coherence(W: Tensor) -> Tensor:
    """max_{i != j} |cos(W_i, W_j)|: the L-infinity of W^T W's off-diagonal, on unit directions."""
    cos = cosine_matrix(W).abs()
    n = cos.shape[-1]
    return (cos - torch.eye(n)).amax((-2, -1))


def total_interference(W: Tensor) -> Tensor:
    """sum_{i != j} (W_i . W_j)^2: the squared L2 of W^T W's off-diagonal."""
    G = gram(W).pow(2)
    return G.sum((-2, -1)) - G.diagonal(dim1=-2, dim2=-1).sum(-1)


def welch_bound(n_vectors: int, dim: int) -> float:
    """Lower bound on the coherence of any n unit vectors in R^dim."""
    if n_vectors <= dim:
        return 0.0
    return math.sqrt((n_vectors - dim) / (dim * (n_vectors - 1)))
