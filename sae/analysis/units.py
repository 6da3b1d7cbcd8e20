"""What a "unit" is, for inspection and polysemanticity: a named map from a hook's activations
[n_tokens, d] to unit activations [n_tokens, n_units].

- SAE features: the SAE's encoder on the hook it was trained on.
- MLP neurons: the gated MLP's hidden units, i.e. the input of the down projection,
  act_fn(gate(x)) * up(x). On TransformerBridge that is `blocks.L.mlp.hook_post`
  (equal to `blocks.L.mlp.out.hook_in`); for non-gated MLPs it is the activation output too.
- Residual basis: the standard basis of the residual stream at the SAE's hook (a unit per dimension).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor



@dataclass
class UnitSet:
    name: str
    hook: str
    n_units: int
    encode: Callable[[Tensor], Tensor]   # [n_tokens, d_hook] -> [n_tokens, n_units]


def sae_features(sae, hook: str, name: str = "sae_features") -> UnitSet:
    @torch.no_grad()
    def encode(x: Tensor) -> Tensor:
        return sae.encode(x.to(sae.W_enc.device)).float().cpu()
    return UnitSet(name, hook, sae.d_sae, encode)


def mlp_neuron_hook(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"


def mlp_neurons(model, layer: int, name: str = "mlp_neurons") -> UnitSet:
    return UnitSet(name, mlp_neuron_hook(layer), int(model.cfg.d_mlp), lambda x: x)


def residual_basis(model, hook: str, name: str = "residual_basis") -> UnitSet:
    return UnitSet(name, hook, int(model.cfg.d_model), lambda x: x)
