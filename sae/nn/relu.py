"""ReLU SAE with an L1 penalty weighted by decoder norms (Anthropic, "Update on how we train
SAEs", April 2024).

Loss = E[ ||x - x_hat||^2 + lambda * sum_i f_i ||W_dec_i|| ] on inputs scaled to E||x|| = sqrt(d_in).
The decoder is not constrained to unit norm (the norm-weighted L1 makes the constraint
unnecessary); decoder rows start at norm 0.1, the encoder at the decoder's transpose, and
lambda warms up linearly over the first `l1_warmup` fraction of training.
"""
from __future__ import annotations

import torch
from torch import Tensor

from sae.nn.base import SAEOutput, SparseAutoencoder, StepContext


class ReluSAE(SparseAutoencoder):
    architecture = "relu"
    saelens_architecture = "standard"
    apply_b_dec_to_input = False
    unit_norm_decoder = False

    def __init__(self, d_in: int, d_sae: int, l1_coefficient: float = 5.0, l1_warmup: float = 0.05,
                 seed: int = 0, dtype: torch.dtype = torch.float32):
        super().__init__(d_in, d_sae, seed=seed, dtype=dtype)
        self.l1_coefficient = l1_coefficient
        self.l1_warmup = l1_warmup

    def initial_decoder_norm(self) -> float:
        return 0.1

    def hyperparams(self) -> dict:
        return {"l1_coefficient": self.l1_coefficient, "l1_warmup": self.l1_warmup}

    def activate(self, pre: Tensor) -> Tensor:
        return pre.relu()

    def training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        xs = x * self.act_scale
        feats = self.activate(self.pre_acts(xs))
        x_hat = self.decode_scaled(feats)
        mse = (x_hat - xs).pow(2).sum(-1).mean()
        l1 = (feats * self.W_dec.norm(dim=1)).sum(-1).mean()
        ramp = min(1.0, ctx.progress / self.l1_warmup) if self.l1_warmup > 0 else 1.0
        loss = mse + self.l1_coefficient * ramp * l1
        return SAEOutput(loss=loss, x_hat=x_hat, feats=feats, terms={"mse": mse.item(), "l1": l1.item()})
