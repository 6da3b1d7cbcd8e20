"""Gated SAE (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated Sparse
Autoencoders", arXiv:2404.16014).

Separates *which* latents fire from *how strongly*, so the L1 penalty no longer shrinks
magnitudes:
    pi_gate = (x - b_dec) @ W_enc + b_gate              f_gate = H(pi_gate)
    pi_mag  = (x - b_dec) @ (W_enc * exp(r_mag)) + b_mag  f_mag = relu(pi_mag)
    f = f_gate * f_mag ,   x_hat = f @ W_dec + b_dec
The two paths share W_enc up to a per-latent scale exp(r_mag) (the paper's weight tying).
    loss = FVU(x_hat, x) + lambda(t) * mean_tokens sum_i relu(pi_gate_i)
           + FVU(relu(pi_gate) @ W_dec.detach() + b_dec.detach(), x)
The Heaviside passes no gradient, so the gate path learns only from the L1 term and the
auxiliary reconstruction through the *frozen* decoder (which keeps the gate's pre-activations
meaningful without letting that loss move the dictionary). Decoder rows stay unit norm, as in
the paper, so the L1 needs no norm weighting. Parameter names are SAELens's "gated" ones.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from sae.nn.base import SAEOutput, SparseAutoencoder, StepContext, normalized_mse


class GatedSAE(SparseAutoencoder):
    architecture = "gated"
    saelens_architecture = "gated"

    def __init__(self, d_in: int, d_sae: int, l1_coefficient: float = 2e-3, l1_warmup: float = 0.05,
                 init_gate_bias: float = 0.0, seed: int = 0, dtype: torch.dtype = torch.float32):
        super().__init__(d_in, d_sae, seed=seed, dtype=dtype)
        self.l1_coefficient = l1_coefficient
        self.l1_warmup = l1_warmup
        del self.b_enc  # the gated encoder has two biases instead of one
        # Gate pre-activations start O(1) with half of them positive (L0 ~ d_sae/2); Adam moves a bias
        # ~lr per step, so a short run cannot lower L0 far on its own. A negative initial gate bias
        # starts sparse instead (-1 in the scaled space gives L0 in the tens on SmolLM2).
        self.init_gate_bias = init_gate_bias
        self.b_gate = nn.Parameter(torch.full((d_sae,), init_gate_bias, dtype=dtype))
        self.r_mag = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.b_mag = nn.Parameter(torch.zeros(d_sae, dtype=dtype))

    def hyperparams(self) -> dict:
        return {"l1_coefficient": self.l1_coefficient, "l1_warmup": self.l1_warmup, "init_gate_bias": self.init_gate_bias}

    def centered(self, xs: Tensor) -> Tensor:
        return xs - self.b_dec if self.apply_b_dec_to_input else xs

    def gate_and_magnitude(self, xs: Tensor) -> tuple[Tensor, Tensor]:
        xc = self.centered(xs)
        pi_gate = xc @ self.W_enc + self.b_gate
        # (xc @ W_enc) * exp(r_mag) == xc @ (W_enc * exp(r_mag)); reuse the product instead of a second GEMM.
        pi_mag = (pi_gate - self.b_gate) * self.r_mag.exp() + self.b_mag
        return pi_gate, pi_mag

    def pre_acts(self, xs: Tensor) -> Tensor:
        """The gate's pre-activation: which latents fire is decided here."""
        return self.centered(xs) @ self.W_enc + self.b_gate

    def encode(self, x: Tensor) -> Tensor:
        pi_gate, pi_mag = self.gate_and_magnitude(x.to(self.W_enc.dtype) * self.act_scale)
        return (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()

    def activate(self, pre: Tensor) -> Tensor:
        raise TypeError("a gated SAE decides firing and magnitude on two paths: call encode(x), not activate(pre)")

    def training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        xs = x * self.act_scale
        pi_gate, pi_mag = self.gate_and_magnitude(xs)
        feats = (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()
        x_hat = self.decode_scaled(feats)
        mse = normalized_mse(x_hat, xs)
        gate_acts = pi_gate.relu()
        l1 = gate_acts.sum(-1).mean()
        aux = normalized_mse(gate_acts @ self.W_dec.detach() + self.b_dec.detach(), xs)
        ramp = min(1.0, ctx.progress / self.l1_warmup) if self.l1_warmup > 0 else 1.0
        loss = mse + self.l1_coefficient * ramp * l1 + aux
        return SAEOutput(loss=loss, x_hat=x_hat, feats=feats,
                         terms={"mse": mse.item(), "l1": l1.item(), "aux": aux.item()})
