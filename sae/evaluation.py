"""Evaluate a trained SAE on held-out token rows.

Reconstruction metrics come from the activations at the hook; downstream metrics splice the
SAE's reconstruction into the forward pass at that hook and compare next-token loss with the
clean model and with zero-ablation. Excluded positions (BOS/special tokens) keep their clean
activation in every variant, matching what the SAE was trained on.
"""
from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sae.data.tokens import keep_mask
from sae.metrics import ReconstructionStats, ce_loss_recovered, decoder_mean_max_cos, kl_score, token_cross_entropy, token_kl
from sae.models.zoo import hook_layer
from sae.nn.base import SparseAutoencoder


def _replace_kept(values: Tensor, keep: Tensor):
    def hook_fn(act, hook):
        patched = act.clone()
        patched[keep] = values.to(act.dtype)
        return patched
    return hook_fn


@torch.no_grad()
def evaluate(model, sae: SparseAutoencoder, rows: Tensor, hook: str, special_ids: list[int],
             exclude_special: bool = True, batch_size: int = 8, downstream_rows: int | None = None) -> tuple[dict, Tensor]:
    """Reconstruction metrics over all `rows`; CE/KL over the first `downstream_rows` (None: all, 0: none),
    since those need three full forward passes while reconstruction needs only the layers up to the hook."""
    device = sae.W_enc.device
    stats = ReconstructionStats(sae.d_sae)
    sums = {"ce_clean": 0.0, "ce_sae": 0.0, "ce_zero_ablation": 0.0, "kl_sae": 0.0, "kl_zero_ablation": 0.0}
    n_predictions = 0
    downstream_rows = len(rows) if downstream_rows is None else min(downstream_rows, len(rows))
    batches = [(b, True) for b in rows[:downstream_rows].split(batch_size)]
    batches += [(b, False) for b in rows[downstream_rows:].split(batch_size * 4)]  # no logits: bigger batches fit
    batches = [(b, d) for b, d in batches if len(b)]  # split() of an empty slice yields one empty tensor
    for batch, downstream in tqdm(batches, desc="evaluate", unit="batch", dynamic_ncols=True):
        batch = batch.to(device)
        keep = keep_mask(batch, special_ids, exclude_special)
        if not downstream:
            _, cache = model.run_with_cache(batch, names_filter=hook, stop_at_layer=hook_layer(hook) + 1)
            x = cache[hook][keep].float()
            feats = sae.encode(x)
            stats.update(x, sae.decode(feats), feats)
            continue
        captured = {}

        def grab(act, hook):
            captured["act"] = act.detach().clone()
            return act

        clean_logits = model.run_with_hooks(batch, fwd_hooks=[(hook, grab)])
        x = captured["act"][keep].float()
        feats = sae.encode(x)
        x_hat = sae.decode(feats)
        stats.update(x, x_hat, feats)
        sae_logits = model.run_with_hooks(batch, fwd_hooks=[(hook, _replace_kept(x_hat, keep))])
        zero_logits = model.run_with_hooks(batch, fwd_hooks=[(hook, _replace_kept(torch.zeros_like(x_hat), keep))])
        sums["ce_clean"] += token_cross_entropy(clean_logits, batch).sum().item()
        sums["ce_sae"] += token_cross_entropy(sae_logits, batch).sum().item()
        sums["ce_zero_ablation"] += token_cross_entropy(zero_logits, batch).sum().item()
        sums["kl_sae"] += token_kl(clean_logits[:, :-1], sae_logits[:, :-1]).sum().item()
        sums["kl_zero_ablation"] += token_kl(clean_logits[:, :-1], zero_logits[:, :-1]).sum().item()
        n_predictions += batch.shape[0] * (batch.shape[1] - 1)
    result = stats.summary()
    result["decoder_mean_max_cos"] = decoder_mean_max_cos(sae.W_dec)
    if n_predictions:
        result |= {k: v / n_predictions for k, v in sums.items()}
        result["ce_loss_recovered"] = ce_loss_recovered(result["ce_clean"], result["ce_sae"], result["ce_zero_ablation"])
        result["kl_score"] = kl_score(result["kl_sae"], result["kl_zero_ablation"])
        result["n_downstream_predictions"] = n_predictions
    return result, stats.firing_frequency()
