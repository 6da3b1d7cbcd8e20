"""Stream token rows through the model once, capturing several hooks per forward pass.

Only the layers up to the deepest requested hook run (`stop_at_layer`), and the BOS / special
positions are flagged by `keep_mask` so every analysis skips the attention sink the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sae.data.tokens import keep_mask
from sae.models.zoo import check_hook, hook_layer


@dataclass
class HookBatch:
    first_row: int                 # index of this batch's first row in the full token-row tensor
    tokens: Tensor                 # [B, T] token ids
    keep: Tensor                   # [B, T] True where a position counts (not BOS / special)
    acts: dict[str, Tensor]        # hook name -> [B, T, d] float32 activations


@torch.no_grad()
def stream_hooks(model, rows: Tensor, hooks: list[str], special_ids: list[int], exclude_special: bool = True,
                 batch_size: int = 8, desc: str = "forward") -> Iterator[HookBatch]:
    for hook in hooks:
        check_hook(model, hook)
    stop = max(hook_layer(h) for h in hooks) + 1
    device = next(model.parameters()).device
    wanted = set(hooks)
    for first in tqdm(range(0, rows.shape[0], batch_size), desc=desc, unit="batch", dynamic_ncols=True):
        batch = rows[first:first + batch_size].to(device)
        _, cache = model.run_with_cache(batch, names_filter=lambda name: name in wanted, stop_at_layer=stop)
        yield HookBatch(first, batch.cpu(), keep_mask(batch, special_ids, exclude_special).cpu(),
                        {h: cache[h].detach().float().cpu() for h in hooks})
