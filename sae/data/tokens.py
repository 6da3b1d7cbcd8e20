"""Tokenise documents and pack them into fixed-length rows: [BOS] + context_size-1 tokens.

Documents are joined with the end-of-text token into one stream, so no padding is wasted.
Packing is deterministic, which lets an interrupted capture resume at a row index.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from sae.data.corpora import CorpusError, iter_documents


def pack_rows(documents: Iterable[str], tokenizer, context_size: int, n_rows: int, prepend_bos: bool = True) -> Tensor:
    body = context_size - 1 if prepend_bos else context_size
    needed = n_rows * body
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for doc in documents:
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        stream.extend(separator)
        if len(stream) >= needed:
            break
    if len(stream) < needed:
        raise CorpusError(f"the corpus has {len(stream)} tokens but {needed} were asked for; "
                          "lower data.train_tokens/eval_tokens or use a larger corpus")
    rows = torch.tensor(stream[:needed], dtype=torch.long).view(n_rows, body)
    if prepend_bos:
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else separator[0]
        rows = torch.cat([torch.full((n_rows, 1), bos, dtype=torch.long), rows], dim=1)
    return rows


def corpus_rows(source: str, tokenizer, context_size: int, n_rows: int, prepend_bos: bool = True) -> Tensor:
    return pack_rows(iter_documents(source), tokenizer, context_size, n_rows, prepend_bos)


def special_token_ids(tokenizer) -> list[int]:
    return sorted(set(tokenizer.all_special_ids))


def keep_mask(rows: Tensor, special_ids: list[int], exclude_special: bool) -> Tensor:
    """True where a position's activation is used: not position 0, not a special token (when excluding).

    Position 0 is the attention sink whether or not it holds BOS."""
    keep = torch.ones_like(rows, dtype=torch.bool)
    if exclude_special:
        keep[:, 0] = False
        if special_ids:
            keep &= ~torch.isin(rows, torch.tensor(special_ids, device=rows.device))
    return keep
