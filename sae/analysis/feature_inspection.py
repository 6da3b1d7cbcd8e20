"""One streaming pass over token rows that collects, for every unit (SAE feature, neuron, ...):

- the top-k activating positions, each with a window of the unit's activations around it
  (enough to draw a highlighted context without a second pass),
- a uniform random sample of its firing activations ("quantile samples": sort them to show
  typical, not just extreme, examples),
- firing count, activation sum, and an exact histogram of firing activations on fixed
  log-spaced bins (exact because the bins do not depend on data seen later),

with memory O(n_units * (k + samples + bins)), independent of the number of tokens.

A unit "fires" where its activation is > 0 (SAE features are >= 0; for neurons and residual
directions we look at the positive side, the same rule for every kind of unit). BOS / special
positions are excluded everywhere (sae.data.tokens.keep_mask): they never count as firing and
show as NaN inside context windows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sae.analysis.hook_stream import stream_hooks
from sae.analysis.running_topk import RunningTopK, batch_topk
from sae.analysis.units import UnitSet

NEG_INF = -float("inf")


@dataclass
class InspectionSettings:
    top_k: int = 16                 # top-activating contexts kept per unit
    n_samples: int = 32             # uniform sample of firing activations kept per unit
    window_before: int = 12         # context tokens shown before the activating token
    window_after: int = 4
    hist_low: float = 1e-3          # log-spaced histogram edges [hist_low, hist_high]
    hist_high: float = 1e3
    hist_bins: int = 48
    unit_chunk: int = 8192          # units processed at once (bounds the window-gather memory)
    seed: int = 0

    @property
    def window(self) -> int:
        return self.window_before + 1 + self.window_after

    def hist_edges(self) -> Tensor:
        return torch.logspace(torch.log10(torch.tensor(self.hist_low)), torch.log10(torch.tensor(self.hist_high)),
                              self.hist_bins + 1)


@dataclass
class InspectionReport:
    name: str
    context_size: int
    settings: InspectionSettings
    n_tokens: int
    tokens: Tensor                  # [n_rows, T] the token rows that were streamed
    top_values: Tensor              # [F, k] activation (-inf where fewer than k firings)
    top_index: Tensor               # [F, k] global position row * T + pos (-1 where empty)
    top_windows: Tensor             # [F, k, window] activations around each top position (NaN: excluded/outside)
    sample_values: Tensor           # [F, s] random firing activations (-inf-keyed slots are empty: NaN)
    sample_index: Tensor            # [F, s]
    fire_count: Tensor              # [F] positions with activation > 0
    act_sum: Tensor                 # [F] sum of positive activations
    hist_counts: Tensor             # [F, bins] firing activations per log-spaced bin
    extra: dict = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return self.top_values.shape[0]

    def density(self) -> Tensor:
        return self.fire_count.double() / max(self.n_tokens, 1)

    def mean_activation(self) -> Tensor:
        """Mean over all kept tokens (zeros included)."""
        return self.act_sum.double() / max(self.n_tokens, 1)

    def mean_firing_activation(self) -> Tensor:
        return self.act_sum.double() / self.fire_count.double().clamp_min(1)

    def max_activation(self) -> Tensor:
        return self.top_values[:, 0].clamp_min(0)

    def top_valid(self) -> Tensor:
        return self.top_index >= 0

    def top_token_ids(self) -> Tensor:
        """[F, k] token id at each top position, -1 for empty slots."""
        flat = self.tokens.reshape(-1)
        ids = flat[self.top_index.clamp_min(0)]
        return torch.where(self.top_valid(), ids, torch.full_like(ids, -1))

    def context(self, unit: int, slot: int) -> tuple[list[int], list[float], int]:
        """(token ids, activations, index of the activating token) of one top context; the window is
        clipped at the row's edges and never shows position 0 (the BOS attention sink)."""
        g = int(self.top_index[unit, slot])
        if g < 0:
            raise IndexError(f"unit {unit} has no top context in slot {slot}")
        T, before = self.context_size, self.settings.window_before
        row, pos = divmod(g, T)
        start, stop = max(pos - before, 1), min(pos + self.settings.window_after + 1, T)
        acts = self.top_windows[unit, slot, start - (pos - before): stop - (pos - before)]
        return self.tokens[row, start:stop].tolist(), acts.tolist(), pos - start

    def samples_sorted(self, unit: int) -> list[tuple[float, int]]:
        """(activation, global position) of the unit's random firing sample, ascending by activation."""
        ok = self.sample_index[unit] >= 0
        pairs = zip(self.sample_values[unit][ok].tolist(), self.sample_index[unit][ok].tolist())
        return sorted(pairs)

    # -- persistence: safetensors + JSON, never pickle --------------------------------------
    TENSORS = ("tokens", "top_values", "top_index", "top_windows", "sample_values", "sample_index",
               "fire_count", "act_sum", "hist_counts")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({n: getattr(self, n).contiguous() for n in self.TENSORS}, str(path / "inspection.safetensors"))
        meta = {"name": self.name, "context_size": self.context_size, "n_tokens": self.n_tokens,
                "settings": self.settings.__dict__, "extra": self.extra}
        (path / "inspection.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "InspectionReport":
        path = Path(path)
        meta = json.loads((path / "inspection.json").read_text())
        tensors = load_file(str(path / "inspection.safetensors"))
        return cls(meta["name"], meta["context_size"], InspectionSettings(**meta["settings"]), meta["n_tokens"],
                   extra=meta.get("extra", {}), **tensors)


class UnitCollector:
    """Accumulates one unit set's statistics batch by batch (see the module docstring)."""

    def __init__(self, n_units: int, settings: InspectionSettings):
        s = settings
        self.settings, self.n_units, self.n_tokens = s, n_units, 0
        self.top = RunningTopK(n_units, s.top_k, {"index": ((), torch.long), "window": ((s.window,), torch.float32)})
        self.samples = RunningTopK(n_units, s.n_samples, {"value": ((), torch.float32), "index": ((), torch.long)})
        self.fire_count = torch.zeros(n_units, dtype=torch.long)
        self.act_sum = torch.zeros(n_units, dtype=torch.float64)
        self.edges = s.hist_edges()
        self.hist_counts = torch.zeros(n_units * s.hist_bins, dtype=torch.long)
        self.generator = torch.Generator().manual_seed(s.seed)

    def update(self, acts: Tensor, keep: Tensor, first_row: int) -> None:
        """acts: [B, T, F] unit activations (zero at excluded positions); keep: [B, T]."""
        B, T, F = acts.shape
        flat = acts.reshape(B * T, F)
        fired = (flat > 0) & keep.reshape(-1, 1)
        self.n_tokens += int(keep.sum())
        self.fire_count += fired.sum(0)
        self.act_sum += torch.where(fired, flat, 0.0).sum(0, dtype=torch.float64)
        self._update_histogram(flat, fired)
        offset = first_row * T
        for lo in range(0, F, self.settings.unit_chunk):
            hi = min(lo + self.settings.unit_chunk, F)
            self._update_top(acts[:, :, lo:hi], keep, fired[:, lo:hi], offset, slice(lo, hi))
            self._update_samples(flat[:, lo:hi], fired[:, lo:hi], offset, slice(lo, hi))

    def _update_histogram(self, flat: Tensor, fired: Tensor) -> None:
        tok, unit = fired.nonzero(as_tuple=True)
        bins = (torch.bucketize(flat[tok, unit], self.edges) - 1).clamp(0, self.settings.hist_bins - 1)
        self.hist_counts.index_add_(0, unit * self.settings.hist_bins + bins, torch.ones_like(bins))

    def _update_top(self, acts: Tensor, keep: Tensor, fired: Tensor, offset: int, units: slice) -> None:
        B, T, F = acts.shape
        flat = acts.reshape(B * T, F)
        values, idx = batch_topk(torch.where(fired, flat, NEG_INF), self.settings.top_k)   # [F, k']
        sel, ids = self._entering(self.top, units, values)
        if sel is None:
            return
        values, idx = values[sel], idx[sel]
        windows = self._windows(acts, keep, idx, sel)
        empty = ~torch.isfinite(values)
        global_idx = torch.where(empty, torch.full_like(idx, -1), idx + offset)
        self.top.update_rows(ids, values, {"index": global_idx, "window": windows})

    @staticmethod
    def _entering(state: RunningTopK, units: slice, scores: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Units of this chunk with a candidate that beats their current k-th best. Once the state has
        warmed up that is a small minority, so windows and merges are only built for them."""
        entering = (scores > state.scores[units, -1:]).any(1)
        if not entering.any():
            return None, None
        sel = entering.nonzero().squeeze(1)
        return sel, sel + units.start

    def _windows(self, acts: Tensor, keep: Tensor, idx: Tensor, columns: Tensor) -> Tensor:
        """[U, k', window] activations of the selected unit columns around their top positions,
        gathered with one flat index (a single int64 tensor: cheaper than three broadcast ones)."""
        B, T, F = acts.shape
        s = self.settings
        row, pos = idx // T, idx % T
        positions = pos[..., None] + torch.arange(-s.window_before, s.window_after + 1)
        inside = (positions >= 0) & (positions < T)
        positions = positions.clamp(0, T - 1)
        token = row[..., None] * T + positions
        values = acts.reshape(-1)[token * F + columns.view(-1, 1, 1)]
        ok = inside & keep.reshape(-1)[token]
        return torch.where(ok, values, torch.nan)

    def _update_samples(self, flat: Tensor, fired: Tensor, offset: int, units: slice) -> None:
        keys = torch.rand(flat.shape, generator=self.generator)
        keys, idx = batch_topk(torch.where(fired, keys, NEG_INF), self.settings.n_samples)
        sel, ids = self._entering(self.samples, units, keys)
        if sel is None:
            return
        keys, idx = keys[sel], idx[sel]
        empty = ~torch.isfinite(keys)
        values = flat.T[sel].gather(1, idx)
        self.samples.update_rows(ids, keys, {"value": torch.where(empty, torch.nan, values),
                                             "index": torch.where(empty, torch.full_like(idx, -1), idx + offset)})

    def report(self, name: str, tokens: Tensor) -> InspectionReport:
        s = self.settings
        sample_empty = ~self.samples.valid()
        return InspectionReport(
            name=name, context_size=tokens.shape[1], settings=s, n_tokens=self.n_tokens, tokens=tokens.clone(),
            top_values=self.top.scores.clone(),
            top_index=torch.where(self.top.valid(), self.top.payloads["index"], -1),  # never-filled slots: -1
            top_windows=torch.where(self.top.valid()[..., None], self.top.payloads["window"], torch.nan),
            sample_values=torch.where(sample_empty, torch.nan, self.samples.payloads["value"]),
            sample_index=torch.where(sample_empty, -1, self.samples.payloads["index"]),
            fire_count=self.fire_count.clone(), act_sum=self.act_sum.clone(),
            hist_counts=self.hist_counts.view(self.n_units, s.hist_bins).clone())


@torch.no_grad()
def inspect_units(model, rows: Tensor, unit_sets: list[UnitSet], special_ids: list[int],
                  settings: InspectionSettings | None = None, exclude_special: bool = True,
                  batch_size: int = 8) -> dict[str, InspectionReport]:
    """Stream `rows` through the model once and collect every unit set's statistics."""
    settings = settings or InspectionSettings()
    collectors = {u.name: UnitCollector(u.n_units, settings) for u in unit_sets}
    hooks = sorted({u.hook for u in unit_sets})
    for batch in stream_hooks(model, rows, hooks, special_ids, exclude_special, batch_size, desc="inspect"):
        for unit_set in unit_sets:
            collectors[unit_set.name].update(unit_activations(unit_set, batch.acts[unit_set.hook], batch.keep),
                                             batch.keep, batch.first_row)
    return {name: c.report(name, rows.cpu()) for name, c in collectors.items()}


def unit_activations(unit_set: UnitSet, hook_acts: Tensor, keep: Tensor) -> Tensor:
    """[B, T, n_units], encoding only kept positions (BOS's huge norm never reaches the SAE) and
    leaving zeros elsewhere."""
    B, T, _ = hook_acts.shape
    out = torch.zeros(B * T, unit_set.n_units)
    kept = keep.reshape(-1)
    out[kept] = unit_set.encode(hook_acts.reshape(B * T, -1)[kept]).float()
    return out.view(B, T, unit_set.n_units)
