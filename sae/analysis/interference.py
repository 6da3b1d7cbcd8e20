"""Interference between feature directions: how far a dictionary is from orthogonal, and how that
compares with what N directions in d dimensions could possibly achieve.

Every function takes `directions` as [N, d], one feature per row: an SAE's W_dec as is, a toy
model's W [m, n] as W.T (its columns are the features). Rows with (near) zero norm, e.g. features a
toy model dropped, are left out of the statistics.

- max |cos| per feature (chunked, so N in the tens of thousands never builds N x N at once),
- Welch bound: any N unit vectors in R^d have coherence max_{i!=j}|cos| >= sqrt((N-d)/(d(N-1))),
- random baseline: the same statistics for N Gaussian random directions in R^d,
- encoder/decoder alignment: cos(W_enc[:, i], W_dec[i]) per feature,
- co-activation of feature pairs (how often both fire, given that the rarer one fires), to set
  interference against whether the two features ever need to be told apart.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from sae.toy.geometry import welch_bound  # one definition, shared with the toy models


def unit_rows(directions: Tensor, min_norm: float = 1e-6) -> tuple[Tensor, Tensor]:
    """(normalised rows kept, their indices): rows with norm < min_norm are dropped."""
    d = directions.detach().float()
    norms = d.norm(dim=1)
    kept = (norms >= min_norm).nonzero().squeeze(1)
    return d[kept] / norms[kept, None], kept


@torch.no_grad()
def max_abs_cos(directions: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Per row: largest |cos| to any other row, and which row that is. Rows must be unit norm."""
    W = directions.float()
    best, arg = [], []
    for lo in range(0, W.shape[0], chunk):
        cos = (W[lo:lo + chunk] @ W.T).abs()
        rows = torch.arange(lo, min(lo + chunk, W.shape[0]))
        cos[rows - lo, rows] = -1.0
        values, index = cos.max(1)
        best.append(values)
        arg.append(index)
    return torch.cat(best), torch.cat(arg)


# SAEs here initialise W_dec from torch.randn with seed 0; the baseline must not be that same draw.
RANDOM_SEED_OFFSET = 1_000_003


def random_directions(n: int, d: int, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(RANDOM_SEED_OFFSET + seed)
    W = torch.randn(n, d, generator=gen)
    return W / W.norm(dim=1, keepdim=True)


def distribution(values: Tensor) -> dict:
    v = values.double()
    if v.numel() == 0:
        return {"n": 0}
    return {"n": int(v.numel()), "mean": v.mean().item(), "median": v.median().item(),
            "q10": v.quantile(0.1).item(), "q90": v.quantile(0.9).item(),
            "min": v.min().item(), "max": v.max().item()}


def total_interference(unit: Tensor, chunk: int = 1024) -> float:
    """sum_{i != j} cos_ij^2; the frame bound says it is >= N^2/d - N for N unit vectors in R^d."""
    total = 0.0
    for lo in range(0, unit.shape[0], chunk):
        total += (unit[lo:lo + chunk] @ unit.T).pow(2).sum().item()
    return total - unit.shape[0]


def interference_report(directions: Tensor, random_seed: int = 0, min_norm: float = 1e-6) -> dict:
    """Coherence statistics of `directions` [N, d] next to the Welch bound and a random baseline."""
    unit, kept = unit_rows(directions, min_norm)
    n, d = unit.shape
    ours, _ = max_abs_cos(unit)
    rand, _ = max_abs_cos(random_directions(n, d, random_seed))
    welch = welch_bound(n, d)
    return {
        "n_directions": n, "dim": d, "n_dropped_zero_norm": int(directions.shape[0] - n),
        "welch_bound": welch,
        "max_abs_cos": distribution(ours),
        "random_max_abs_cos": distribution(rand),
        "coherence": ours.max().item() if n > 1 else 0.0,
        "fraction_above_random_median": (ours > rand.median()).double().mean().item() if n > 1 else 0.0,
        "fraction_below_welch": (ours < welch).double().mean().item() if n > 1 else 0.0,
        "total_interference": total_interference(unit),
        "frame_bound": max(n * n / d - n, 0.0),
    }


def encoder_decoder_alignment(W_enc: Tensor, W_dec: Tensor) -> Tensor:
    """cos(W_enc[:, i], W_dec[i]) per feature ([d, F] and [F, d])."""
    enc = torch.nn.functional.normalize(W_enc.detach().float().T, dim=1)
    dec = torch.nn.functional.normalize(W_dec.detach().float(), dim=1)
    return (enc * dec).sum(1)


class CoActivation:
    """Counts, for chosen feature pairs, how often both fire on the same token (streamed)."""

    def __init__(self, pairs: Tensor, n_units: int):
        self.pairs = pairs.long()                       # [P, 2]
        self.both = torch.zeros(len(pairs), dtype=torch.long)
        self.fires = torch.zeros(n_units, dtype=torch.long)
        self.n_tokens = 0

    def update(self, fired: Tensor) -> None:
        """fired: [n_tokens, n_units] bool, excluded positions already removed."""
        self.n_tokens += fired.shape[0]
        self.fires += fired.sum(0)
        self.both += (fired[:, self.pairs[:, 0]] & fired[:, self.pairs[:, 1]]).sum(0)

    def conditional(self) -> Tensor:
        """P(both fire | the rarer of the two fires); NaN where neither fired."""
        rarer = torch.minimum(self.fires[self.pairs[:, 0]], self.fires[self.pairs[:, 1]]).double()
        return torch.where(rarer > 0, self.both.double() / rarer.clamp_min(1), math.nan)


def nearest_and_random_pairs(unit: Tensor, n_random: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs to study: each feature with its max-|cos| neighbour, plus random pairs as a baseline.
    Returns (pairs [P, 2], |cos| [P], is_nearest [P] bool)."""
    best, arg = max_abs_cos(unit)
    n = unit.shape[0]
    nearest = torch.stack([torch.arange(n), arg], 1)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(0, n, (n_random,), generator=gen)
    b = (a + torch.randint(1, n, (n_random,), generator=gen)) % n  # never a == b
    random_pairs = torch.stack([a, b], 1)
    random_cos = (unit[a] * unit[b]).sum(1).abs()
    pairs = torch.cat([nearest, random_pairs])
    return pairs, torch.cat([best, random_cos]), torch.cat([torch.ones(n, dtype=torch.bool),
                                                             torch.zeros(n_random, dtype=torch.bool)])
