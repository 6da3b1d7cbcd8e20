"""Per-feature summaries as plain JSON-able dicts: what the dashboard shows and what the
feature-dictionary exports write, built once from an InspectionReport (+ logit effects).

Token ids stay ids here; `token_strings` decodes the ids that are actually used, once, so a
dashboard over tens of thousands of features does not decode the same token thousands of times.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from sae.analysis.feature_inspection import InspectionReport
from sae.analysis.logit_effects import LogitEffects


def _finite(x: float, digits: int = 4) -> float | None:
    return round(x, digits) if math.isfinite(x) else None  # JSON has no NaN


class UnitTables:
    """Per-unit tensors derived once from a report (per-feature lookups must not recompute them)."""

    def __init__(self, report: InspectionReport):
        self.density = report.density()
        self.mean_activation = report.mean_activation()
        self.mean_firing_activation = report.mean_firing_activation()
        self.max_activation = report.max_activation()
        self.top_token_ids = report.top_token_ids()


def top_token_mass(report: InspectionReport, unit: int, n: int = 5, tables: UnitTables | None = None) -> list[tuple[int, float]]:
    """Token ids at the unit's top positions, by share of the top-activation mass."""
    valid = (report.top_index[unit] >= 0) & (report.top_values[unit] > 0)
    ids = (tables.top_token_ids if tables else report.top_token_ids())[unit][valid]
    values = report.top_values[unit][valid]
    if ids.numel() == 0:
        return []
    uniq, inverse = ids.unique(return_inverse=True)
    mass = torch.zeros(len(uniq)).index_add_(0, inverse, values)
    order = mass.argsort(descending=True)[:n]
    total = mass.sum().item()
    return [(int(uniq[i]), round(mass[i].item() / total, 4)) for i in order]


def contexts(report: InspectionReport, unit: int, n: int) -> list[dict]:
    out = []
    for slot in range(min(n, report.settings.top_k)):
        if report.top_index[unit, slot] < 0 or not report.top_values[unit, slot] > 0:
            break
        ids, acts, center = report.context(unit, slot)
        out.append({"tokens": ids, "acts": [_finite(a, 3) for a in acts], "center": center,
                    "value": round(report.top_values[unit, slot].item(), 4),
                    "position": int(report.top_index[unit, slot])})
    return out


def quantile_samples(report: InspectionReport, unit: int, n: int, radius: int = 4) -> list[dict]:
    """n examples spread evenly over the unit's random firing sample, lowest to highest activation,
    each with a few tokens of context (only the sampled token's activation is known)."""
    samples = report.samples_sorted(unit)
    if not samples:
        return []
    picks = sorted({round(q * (len(samples) - 1) / max(n - 1, 1)) for q in range(n)})
    T = report.context_size
    out = []
    for i in picks:
        value, position = samples[i]
        row, pos = divmod(position, T)
        start = max(pos - radius, 1)  # position 0 (BOS) is never shown
        out.append({"tokens": report.tokens[row, start:pos + 2].tolist(), "center": pos - start,
                    "value": round(value, 4), "position": position})
    return out


def logit_lists(logits: LogitEffects | None, unit: int, n: int) -> dict:
    if logits is None:
        return {"promoted": [], "suppressed": []}
    return {"promoted": [[int(i), round(v, 4)] for i, v in zip(logits.top_ids[unit, :n].tolist(), logits.top_values[unit, :n].tolist())],
            "suppressed": [[int(i), round(v, 4)] for i, v in zip(logits.bottom_ids[unit, :n].tolist(), logits.bottom_values[unit, :n].tolist())]}


def feature_record(report: InspectionReport, unit: int, logits: LogitEffects | None = None,
                   n_contexts: int = 5, n_samples: int = 5, n_logits: int = 8, tables: UnitTables | None = None) -> dict:
    t = tables or UnitTables(report)
    return {
        "id": unit,
        "density": float(t.density[unit]),
        "fire_count": int(report.fire_count[unit]),
        "mean_activation": round(float(t.mean_activation[unit]), 6),
        "mean_firing_activation": round(float(t.mean_firing_activation[unit]), 4),
        "max_activation": round(float(t.max_activation[unit]), 4),
        "top_tokens": [[i, share] for i, share in top_token_mass(report, unit, tables=t)],
        "logits": logit_lists(logits, unit, n_logits),
        "contexts": contexts(report, unit, n_contexts),
        "samples": quantile_samples(report, unit, n_samples),
        "hist": report.hist_counts[unit].tolist(),
    }


def feature_records(report: InspectionReport, logits: LogitEffects | None = None, units=None, **kw) -> list[dict]:
    units = range(report.n_units) if units is None else units
    tables = UnitTables(report)
    return [feature_record(report, int(u), logits, tables=tables, **kw)
            for u in tqdm(units, desc="feature records", unit="feature", dynamic_ncols=True, mininterval=2)]


def used_token_ids(records: list[dict]) -> set[int]:
    ids: set[int] = set()
    for r in records:
        ids.update(i for i, _ in r["top_tokens"])
        ids.update(i for i, _ in r["logits"]["promoted"] + r["logits"]["suppressed"])
        for c in r["contexts"] + r["samples"]:
            ids.update(c["tokens"])
    return ids


def token_strings(tokenizer, ids) -> dict[int, str]:
    ids = sorted(set(int(i) for i in ids))
    return dict(zip(ids, tokenizer.batch_decode([[i] for i in ids])))
