"""A running top-k per unit over a stream of token batches, vectorised over units.

The state is a [n_units, k] tensor of scores plus any number of payload tensors [n_units, k, ...]
(token index, activation windows, ...). Each batch is reduced to its own top-k per unit first, then
merged with the state by one `topk` over 2k candidates: memory is O(n_units * k) whatever the stream
length, and no Python loop runs over tokens or units (d_sae in the tens of thousands is fine).

The same machinery gives a uniform reservoir sample: score each firing (token, unit) with a random
key and keep the top-k keys (a "bottom-k sketch"), which is a uniform sample without replacement.
"""
from __future__ import annotations

import torch
from torch import Tensor


class RunningTopK:
    def __init__(self, n_units: int, k: int, payload_shapes: dict[str, tuple[tuple[int, ...], torch.dtype]]):
        self.k = k
        self.scores = torch.full((n_units, k), -float("inf"))
        self.payloads = {name: torch.zeros((n_units, k, *shape), dtype=dtype)
                         for name, (shape, dtype) in payload_shapes.items()}

    def update(self, scores: Tensor, payloads: dict[str, Tensor]) -> None:
        """scores: [n_units, c] candidates of this batch (-inf = not a candidate); payloads: [n_units, c, ...]."""
        merged = torch.cat([self.scores, scores.float()], dim=1)
        self.scores, keep = merged.topk(self.k, dim=1)
        for name, old in self.payloads.items():
            both = torch.cat([old, payloads[name].to(old.dtype)], dim=1)
            index = keep.view(*keep.shape, *([1] * (both.dim() - 2))).expand(-1, -1, *both.shape[2:])
            self.payloads[name] = both.gather(1, index)

    def update_rows(self, ids: Tensor, scores: Tensor, payloads: dict[str, Tensor]) -> None:
        """update() for the units `ids` only (the others had no candidate that could enter)."""
        part = RunningTopK.__new__(RunningTopK)
        part.k, part.scores = self.k, self.scores[ids]
        part.payloads = {name: p[ids] for name, p in self.payloads.items()}
        part.update(scores, payloads)
        self.scores[ids] = part.scores
        for name in self.payloads:
            self.payloads[name][ids] = part.payloads[name]

    def valid(self) -> Tensor:
        """[n_units, k] True where a slot holds a real candidate (not the -inf filler)."""
        return torch.isfinite(self.scores)


def batch_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-unit top-k of a [n_tokens, n_units] batch -> (values, token indices), both [n_units, k']
    with k' = min(k, n_tokens)."""
    values, index = scores.T.contiguous().topk(min(k, scores.shape[0]), dim=1)
    return values, index
