"""Batching for the activation store: a bounded shuffle buffer and an in-order batcher.

Both take an iterator of (acts, token_ids) chunks (one per shard) and yield batches. The
store decides the shard order and the seed; this module only mixes and cuts.

`skip` lets a resumed training reach the same data position: the first `skip` batches are
yielded as None, and the random generator advances exactly as if they had been
materialised (gathering rows consumes no randomness), so batch `skip` is bit-identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import Tensor

Chunk = tuple[Tensor, Tensor]            # acts [n, d_in], token_ids [n]
Batch = tuple[Tensor, Tensor] | None     # None for a skipped batch


@dataclass
class BufferStats:
    """Instrumentation, updated while iterating (tests read it to check the RAM bound)."""
    capacity: int = 0                # rows the shuffle buffer may hold
    max_buffer_rows: int = 0         # most rows ever held at once
    shards_read: int = 0
    batches: int = 0                 # batches produced, skipped ones included


class ShuffleBuffer:
    """Fixed-size pool of rows. Rows enter into free slots; when the pool is full, a random
    subset (about half) leaves as batches and its slots become free again.

    Memory is the preallocated pool plus one batch: nothing grows with the store size.
    Emitting half the pool (not one row at a time) keeps the work per row O(1) amortised
    while still mixing each row with ~capacity others, as SAELens's mixing buffer does.
    """

    def __init__(self, capacity: int, d_in: int, dtype: torch.dtype, batch_size: int,
                 gen: torch.Generator, stats: BufferStats):
        self.acts = torch.empty(capacity, d_in, dtype=dtype)
        self.ids = torch.empty(capacity, dtype=torch.int32)
        self.free = torch.arange(capacity)           # slot indices not holding a row
        self.batch_size = batch_size
        self.gen = gen
        self.stats = stats
        stats.capacity = capacity
        # whole batches, about half the pool, never more than the pool
        self.n_out = min(capacity, max(batch_size, (capacity // 2) // batch_size * batch_size))

    @property
    def n_rows(self) -> int:
        return self.acts.shape[0] - self.free.numel()

    def put(self, acts: Tensor, ids: Tensor, skip: int) -> Iterator[Batch]:
        """Insert a chunk; yield batches each time the pool fills.

        Rows go in chunk order into free slots: slot positions carry no meaning (every
        emission is a uniform random subset of the pool), so permuting the chunk first would
        only add a copy. Memory bandwidth is the reader's bottleneck on CPU.
        """
        pos, n = 0, acts.shape[0]
        while pos < n:
            take = min(self.free.numel(), n - pos)
            slots = self.free[:take]
            self.acts.index_copy_(0, slots, acts[pos:pos + take])
            self.ids.index_copy_(0, slots, ids[pos:pos + take])
            self.free = self.free[take:]
            pos += take
            self.stats.max_buffer_rows = max(self.stats.max_buffer_rows, self.n_rows)
            if self.free.numel() == 0:
                out = torch.randperm(self.acts.shape[0], generator=self.gen)[:self.n_out]
                yield from self._emit(out, skip, drop_last=False)
                self.free = out

    def drain(self, skip: int, drop_last: bool) -> Iterator[Batch]:
        """Yield every remaining row, shuffled; the pool is empty afterwards."""
        held = torch.ones(self.acts.shape[0], dtype=torch.bool)
        held[self.free] = False
        rows = held.nonzero().squeeze(1)
        rows = rows[torch.randperm(rows.numel(), generator=self.gen)]
        yield from self._emit(rows, skip, drop_last)
        self.free = torch.arange(self.acts.shape[0])

    def _emit(self, slots: Tensor, skip: int, drop_last: bool) -> Iterator[Batch]:
        for start in range(0, slots.numel(), self.batch_size):
            idx = slots[start:start + self.batch_size]
            if drop_last and idx.numel() < self.batch_size:
                return
            self.stats.batches += 1
            if self.stats.batches <= skip:
                yield None
            else:
                # advanced indexing copies, so the caller may keep the batch after we refill
                yield self.acts[idx], self.ids[idx]


def shuffled_batches(chunks: Iterable[Chunk], batch_size: int, capacity: int, d_in: int,
                     dtype: torch.dtype, gen: torch.Generator, stats: BufferStats,
                     skip: int = 0, drop_last: bool = False) -> Iterator[Batch]:
    """One epoch of shuffled batches through a pool of at most `capacity` rows."""
    pool = ShuffleBuffer(capacity, d_in, dtype, batch_size, gen, stats)
    for acts, ids in chunks:
        stats.shards_read += 1
        yield from pool.put(acts, ids, skip)
    yield from pool.drain(skip, drop_last)


def sequential_batches(chunks: Iterable[Chunk], batch_size: int, stats: BufferStats,
                       drop_last: bool = False) -> Iterator[Batch]:
    """Batches in store order; a batch may span a shard boundary."""
    carry_acts: list[Tensor] = []
    carry_ids: list[Tensor] = []
    carried = 0
    for acts, ids in chunks:
        stats.shards_read += 1
        pos = 0
        if carried:  # complete the batch left over from the previous shard
            need = min(batch_size - carried, acts.shape[0])
            carry_acts.append(acts[:need])
            carry_ids.append(ids[:need])
            carried += need
            pos = need
            if carried < batch_size:
                continue
            stats.batches += 1
            yield torch.cat(carry_acts), torch.cat(carry_ids)
            carry_acts, carry_ids, carried = [], [], 0
        while acts.shape[0] - pos >= batch_size:
            stats.batches += 1
            yield acts[pos:pos + batch_size].clone(), ids[pos:pos + batch_size].clone()
            pos += batch_size
        if pos < acts.shape[0]:
            # clone so the carried rows do not keep the whole previous shard alive
            carry_acts, carry_ids = [acts[pos:].clone()], [ids[pos:].clone()]
            carried = acts.shape[0] - pos
        stats.max_buffer_rows = max(stats.max_buffer_rows, carried)
    if carried and not drop_last:
        stats.batches += 1
        yield torch.cat(carry_acts), torch.cat(carry_ids)
