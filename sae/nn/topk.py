"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

Keeps the k largest pre-activations per token (then ReLU), so L0 <= k by construction and no
sparsity penalty needs tuning. Dead latents get a gradient through the AuxK loss: the top
`aux_k` *dead* latents reconstruct the main model's residual error.
"""
from __future__ import annotations

import torch
from torch import Tensor

from sae.nn.base import SAEOutput, SparseAutoencoder, StepContext, normalized_mse


def topk_activation(pre: Tensor, k: int) -> Tensor:
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, indices, values.relu())


class TopKSAE(SparseAutoencoder):
    architecture = "topk"
    saelens_architecture = "topk"

    def __init__(self, d_in: int, d_sae: int, k: int = 32, aux_k: int | None = None,
                 aux_coefficient: float = 1 / 32, seed: int = 0, dtype: torch.dtype = torch.float32):
        if not 0 < k <= d_sae:
            raise ValueError(f"TopK k={k} is impossible for d_sae={d_sae}: choose 0 < k <= d_sae")
        super().__init__(d_in, d_sae, seed=seed, dtype=dtype)
        self.k = k
        self.aux_k = aux_k if aux_k is not None else max(d_in // 2, 1)
        self.aux_coefficient = aux_coefficient

    def hyperparams(self) -> dict:
        return {"k": self.k, "aux_k": self.aux_k, "aux_coefficient": self.aux_coefficient}

    def activate(self, pre: Tensor) -> Tensor:
        return topk_activation(pre, self.k)

    def saelens_config(self) -> dict:
        # Our decoder rows are unit norm, so SAELens need not rescale activations by them.
        return {"k": self.k, "rescale_acts_by_decoder_norm": False}

    def training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        xs = x * self.act_scale
        pre = self.pre_acts(xs)
        feats = self.activate(pre)
        x_hat = self.decode_scaled(feats)
        mse = normalized_mse(x_hat, xs)
        loss, terms = mse, {"mse": mse.item()}
        if ctx.dead_mask is not None and self.aux_coefficient > 0:
            n_dead = int(ctx.dead_mask.sum())
            if n_dead > 0:
                aux = self.auxk_loss(pre, xs - x_hat, ctx.dead_mask, min(self.aux_k, n_dead))
                # Down-weight when few latents are dead so AuxK cannot dominate (as sparsify does).
                weight = self.aux_coefficient * min(n_dead / self.aux_k, 1.0)
                loss = loss + weight * aux
                terms["auxk"] = aux.item()
        return SAEOutput(loss=loss, x_hat=x_hat, feats=feats, terms=terms)

    def auxk_loss(self, pre: Tensor, residual: Tensor, dead_mask: Tensor, k_aux: int) -> Tensor:
        dead_pre = pre.masked_fill(~dead_mask, float("-inf"))
        aux_feats = topk_activation(dead_pre, k_aux).nan_to_num(0.0)
        return normalized_mse(aux_feats @ self.W_dec, residual.detach())
