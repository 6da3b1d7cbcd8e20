"""Run a model over token rows and stream one hook's activations into the on-disk store.

Only the layers up to the hook are computed (`stop_at_layer`), never the logits. Positions
excluded from training (BOS / special tokens) are dropped before they reach the disk. The store
knows how many rows it holds, so an interrupted capture resumes at the next row.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sae.activations.store import ActivationStore, ActivationWriter
from sae.data.tokens import keep_mask
from sae.models.zoo import hook_layer


@torch.no_grad()
def capture_activations(model, rows: Tensor, hook: str, root: Path, meta: dict, special_ids: list[int],
                        exclude_special: bool = True, batch_size: int = 16, shard_tokens: int = 65536) -> ActivationStore:
    root = Path(root)
    device = next(model.parameters()).device
    # As a context manager the writer keeps every whole row already buffered if capture is interrupted.
    with ActivationWriter(root, meta, d_in=hook_width(model, hook, rows, device), shard_tokens=shard_tokens) as writer:
        _capture_rows(model, rows, hook, writer, special_ids, exclude_special, batch_size, device)
    return ActivationStore(root)


def _capture_rows(model, rows, hook, writer, special_ids, exclude_special, batch_size, device) -> None:
    start = writer.rows_done
    if start < len(rows):
        bar = tqdm(total=len(rows), initial=start, desc=f"capture {hook}", unit="row", dynamic_ncols=True)
        for first in range(start, len(rows), batch_size):
            batch = rows[first:first + batch_size].to(device)
            _, cache = model.run_with_cache(batch, names_filter=hook, stop_at_layer=hook_layer(hook) + 1)
            keep = keep_mask(batch, special_ids, exclude_special)
            writer.add(cache[hook][keep].float().cpu(), batch[keep].cpu(), rows_finished=len(batch))
            bar.update(len(batch))
        bar.close()


@torch.no_grad()
def hook_width(model, hook: str, rows: Tensor, device) -> int:
    """The hook's activation width (d_model for the residual stream, d_mlp for MLP neurons)."""
    _, cache = model.run_with_cache(rows[:1, :4].to(device), names_filter=hook, stop_at_layer=hook_layer(hook) + 1)
    return int(cache[hook].shape[-1])
