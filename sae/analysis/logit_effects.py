"""Direct logit effects of decoder directions: which tokens a feature pushes up or down.

effect[i] = (W_dec[i] * g) @ W_U                         (RMSNorm, e.g. SmolLM2, Llama, Gemma)
effect[i] = ((W_dec[i] - mean(W_dec[i])) * g) @ W_U      (LayerNorm: its centring is linear)

where g is the final norm's elementwise weight. The approximation, stated: the norm also divides
by the RMS (or std) of the whole residual stream at that token, a positive scalar that depends on
the context; leaving it out rescales every token's effect equally, so the ranking of promoted /
suppressed tokens is exact for the direct path. Everything the later layers do to the direction
(the indirect path) is ignored, as in the usual "logit lens" dashboards. Gemma's (1 + w) weight
convention is whatever the bridge's norm module holds as its effective weight.

Computed in chunks of features: d_sae x vocab (e.g. 36k x 49k floats) never exists at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm


@dataclass
class LogitEffects:
    top_ids: Tensor        # [F, k] most promoted token ids
    top_values: Tensor     # [F, k]
    bottom_ids: Tensor     # [F, k] most suppressed token ids
    bottom_values: Tensor  # [F, k]


def final_norm(model) -> tuple[Tensor | None, bool]:
    """(elementwise weight or None, centres?) of the model's final norm."""
    norm_type = str(getattr(model.cfg, "normalization_type", "RMS") or "RMS").upper()
    centres = norm_type.startswith("LN")
    module = getattr(model, "ln_final", None)
    for candidate in (module, getattr(module, "_original_component", None)):
        for attr in ("w", "weight"):
            weight = getattr(candidate, attr, None) if candidate is not None else None
            if isinstance(weight, Tensor):
                return weight.detach().float(), centres
    return None, centres


def unembedding(model) -> Tensor:
    return model.W_U.detach().float()


@torch.no_grad()
def logit_effects(directions: Tensor, W_U: Tensor, norm_weight: Tensor | None = None, centre: bool = False,
                  k: int = 10, chunk: int = 1024, progress: bool = True) -> LogitEffects:
    """directions: [F, d_model] (decoder rows in the model's raw activation space)."""
    d = directions.float()
    if centre:
        d = d - d.mean(1, keepdim=True)
    if norm_weight is not None:
        d = d * norm_weight.to(d.device)
    W_U = W_U.to(d.device)
    parts = []
    for lo in tqdm(range(0, d.shape[0], chunk), desc="logit effects", disable=not progress, dynamic_ncols=True):
        effects = d[lo:lo + chunk] @ W_U
        top = effects.topk(k, dim=1)
        bottom = effects.topk(k, dim=1, largest=False)
        parts.append((top.indices, top.values, bottom.indices, bottom.values))
    return LogitEffects(*(torch.cat(p).cpu() for p in zip(*parts)))


def model_logit_effects(model, directions: Tensor, k: int = 10, **kw) -> LogitEffects:
    weight, centres = final_norm(model)
    return logit_effects(directions, unembedding(model), weight, centres, k=k, **kw)


def raw_decoder_directions(sae) -> Tensor:
    """Decoder rows in raw activation units: the SAE trains on x * act_scale, so a unit of feature
    activation adds W_dec[i] / act_scale to the raw residual (what the model's W_U sees)."""
    return (sae.W_dec.detach().float() / sae.act_scale.float()).cpu()
