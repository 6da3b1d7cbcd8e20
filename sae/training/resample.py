"""Anthropic-style resampling of dead latents ("Towards Monosemanticity", 2023).

Each dead latent is re-pointed at an input the SAE reconstructs badly (sampled with probability
proportional to its squared loss): the decoder row becomes that input's unit direction, the
encoder column the same direction scaled to 0.2 x the mean alive encoder norm, the encoder bias
zero, and the Adam moments of exactly those weights are reset so stale momentum can't undo it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from sae.nn.base import SparseAutoencoder


@torch.no_grad()
def resample_dead_latents(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, x: Tensor,
                          dead_mask: Tensor, generator: torch.Generator) -> int:
    dead = dead_mask.nonzero().squeeze(1).to(x.device)
    if len(dead) == 0:
        return 0
    xs = x * sae.act_scale
    loss = (sae(x) - x).pow(2).sum(1)  # the public encode/decode: works for every architecture
    weights = loss.pow(2).cpu().double()
    if weights.sum() <= 0:
        return 0
    picks = torch.multinomial(weights, len(dead), replacement=len(dead) > len(weights), generator=generator)
    directions = torch.nn.functional.normalize(xs[picks.to(x.device)] - sae.b_dec, dim=1)
    alive = ~dead_mask.to(x.device)
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0, device=x.device)
    # Unit-norm decoders take the direction as is; free-norm ones (ReLU+L1) get the mean alive norm.
    dec_norm = 1.0 if sae.unit_norm_decoder else sae.W_dec[alive].norm(dim=1).mean().clamp_min(1e-6)
    sae.W_dec[dead] = (directions * dec_norm).to(sae.W_dec.dtype)
    sae.W_enc[:, dead] = (directions.T * 0.2 * enc_norm).to(sae.W_enc.dtype)
    if hasattr(sae, "b_enc"):  # Gated SAEs have gate/magnitude biases instead
        sae.b_enc[dead] = 0.0
    _reset_adam_rows(optimizer, sae, dead)
    return len(dead)


def _reset_adam_rows(optimizer: torch.optim.Optimizer, sae: SparseAutoencoder, dead: Tensor) -> None:
    for param in (sae.W_dec, sae.W_enc, getattr(sae, "b_enc", None)):
        if param is None:
            continue
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                if param is sae.W_enc:
                    state[key][:, dead] = 0.0
                else:
                    state[key][dead] = 0.0
