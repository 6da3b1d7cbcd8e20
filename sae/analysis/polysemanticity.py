"""Automated polysemanticity metrics over each unit's top activations, the same for SAE features,
MLP neurons and residual-stream basis directions.

For unit u, take its top-k activating positions (k equal for every unit set) and weight each
position's token by the activation there (positive part). Then:

- token_entropy (bits): entropy of that activation-weighted distribution over token ids.
  0 = one token type only; log2(k) = k different tokens with equal weight. Lower = more specific.
- tokens_for_80pct: how many distinct token types cover 80% of the activation mass.
- class_specificity: the largest share of the mass that falls in one coarse token class
  (sae.analysis.token_classes); 1 = every top activation is, e.g., punctuation.

These measure token-level specificity only: a feature that tracks a context-level concept across
many tokens scores as polysemantic here. They are a cheap proxy, applied identically to all units.
The same metrics can be taken over a uniform sample of each unit's firing activations
(source="samples") instead of its top-k. Units with fewer than k firing positions are left out (a feature that fired 3 times is trivially
"specific"); the count left out is reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sae.analysis.feature_inspection import InspectionReport
from sae.analysis.token_classes import CLASSES


@dataclass
class PolysemanticityScores:
    token_entropy: Tensor        # [n_scored] bits
    tokens_for_80pct: Tensor     # [n_scored]
    class_specificity: Tensor    # [n_scored] in [1/len(CLASSES), 1]
    unit_ids: Tensor             # [n_scored] which units were scored
    n_units: int
    top_k: int

    def summary(self) -> dict:
        def stats(t: Tensor) -> dict:
            t = t.double()
            return {"median": t.median().item(), "mean": t.mean().item(),
                    "q25": t.quantile(0.25).item(), "q75": t.quantile(0.75).item()} if t.numel() else {}
        return {"n_units": self.n_units, "n_scored": int(self.unit_ids.numel()), "top_k": self.top_k,
                "max_entropy_bits": math.log2(self.top_k),
                "token_entropy_bits": stats(self.token_entropy),
                "tokens_for_80pct": stats(self.tokens_for_80pct.double()),
                "class_specificity": stats(self.class_specificity)}


def weighted_token_distribution(token_ids: Tensor, weights: Tensor, n_types: int) -> Tensor:
    """[U, k] type ids in [0, n_types) and weights -> [U, n_types] normalised mass per type."""
    mass = torch.zeros(token_ids.shape[0], n_types, dtype=torch.float64)
    mass.scatter_add_(1, token_ids, weights.double())
    return mass / mass.sum(1, keepdim=True).clamp_min(1e-30)


def entropy_bits(p: Tensor) -> Tensor:
    return -(p * torch.where(p > 0, p.log2(), 0.0)).sum(1)


def count_for_mass(p: Tensor, fraction: float = 0.8) -> Tensor:
    """Fewest distinct types whose mass reaches `fraction` (of a [U, n] distribution)."""
    cumulative = p.sort(1, descending=True).values.cumsum(1)
    return (cumulative < fraction - 1e-9).sum(1) + 1


def score_units(token_ids: Tensor, values: Tensor, token_class: Tensor, chunk: int = 512) -> tuple[Tensor, Tensor, Tensor]:
    """token_ids, values: [U, k] (all valid, values > 0) -> (entropy, tokens_for_80pct, class_specificity)."""
    out = []
    vocab = int(token_class.numel())
    for lo in range(0, token_ids.shape[0], chunk):
        ids, w = token_ids[lo:lo + chunk], values[lo:lo + chunk].clamp_min(0)
        # Distinct token types among k ids: relabel each row's ids to 0..k-1 so the mass vector is [U, k], not [U, vocab].
        local = (ids[:, :, None] == ids[:, None, :]).float().argmax(2)
        p_token = weighted_token_distribution(local, w, ids.shape[1])
        p_class = weighted_token_distribution(token_class[ids], w, len(CLASSES))
        out.append((entropy_bits(p_token), count_for_mass(p_token), p_class.max(1).values))
    if not out:
        empty = torch.zeros(0)
        return empty, empty.long(), empty
    return tuple(torch.cat(parts) for parts in zip(*out))


def polysemanticity(report: InspectionReport, token_class: Tensor, source: str = "top") -> PolysemanticityScores:
    """Score every unit of an inspection report that has a full sample.

    source="top": the unit's top-k activations (the usual max-activating-examples view).
    source="samples": its uniform random sample of firing activations, i.e. across its whole
    activation range (max-activating examples can look clean while the bulk of firings do not)."""
    if source == "top":
        ids_all, values, valid = report.top_token_ids(), report.top_values, report.top_valid()
    elif source == "samples":
        valid = report.sample_index >= 0
        ids_all = torch.where(valid, report.tokens.reshape(-1)[report.sample_index.clamp_min(0)], -1)
        values = report.sample_values
    else:
        raise ValueError(f"source {source!r}: 'top' or 'samples'")
    full = valid.all(1) & (values.nan_to_num(0) > 0).all(1)
    unit_ids = full.nonzero().squeeze(1)
    entropy, n80, specificity = score_units(ids_all[unit_ids], values[unit_ids], token_class)
    return PolysemanticityScores(entropy.float(), n80, specificity.float(), unit_ids, report.n_units, values.shape[1])


def probability_less(a: Tensor, b: Tensor) -> float:
    """P(A < B) + P(A = B)/2 for A, B drawn from the two samples (the Mann-Whitney common-language
    effect size): 0.5 = no difference. Exact, via sorting (no |a| x |b| matrix)."""
    a, b = a.double().flatten(), b.double().sort().values
    if a.numel() == 0 or b.numel() == 0:
        return float("nan")
    greater = b.numel() - torch.searchsorted(b, a, right=True)   # b values > each a
    equal = torch.searchsorted(b, a, right=True) - torch.searchsorted(b, a, right=False)
    return ((greater + 0.5 * equal).sum() / (a.numel() * b.numel())).item()
