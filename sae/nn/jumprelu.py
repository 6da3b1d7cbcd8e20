"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity with
JumpReLU Sparse Autoencoders", arXiv:2407.14435).

    f = pre * H(pre - theta)            theta = exp(log_threshold) > 0, one per latent
    loss = FVU(x_hat, x) + lambda(t) * L0 + lambda_pre * preact_penalty

L0 and the jump are not differentiable; both get straight-through estimators with a rectangle
kernel of width `bandwidth` around the threshold (the paper's pseudo-derivatives).

Guarding against "L0 never falls" (SAELens #494, #718): in the paper's estimator the L0 term
reaches only the threshold, and a log-parameterised threshold moves by ~lr *relative* per Adam
step, so with a tiny initial threshold (0.001) and bandwidth the penalty does nothing for
thousands of steps. Our choices:
  * the threshold starts at `init_threshold` = 0.1 in the scaled space (E||x|| = sqrt(d_in), unit
    decoder rows, encoder = decoder^T, so pre-activations are O(1)), where a bandwidth of 0.05
    sees a few percent of tokens per latent: the estimator has signal from step 0;
  * the L0 estimator also passes its gradient to the pre-activations (as Anthropic's Jan-2025
    JumpReLU recipe does through its tanh penalty), so the encoder weights and biases — plain
    linear parameters — can lower L0 too;
  * Anthropic's pre-activation penalty  lambda_pre * mean_tokens sum_i relu(theta_i - pre_i)
    gives latents below threshold a small push back up, so a rising L0 penalty does not kill
    them (default small; set 0 to disable);
  * lambda warms up linearly over the first `sparsity_warmup` fraction of training.
The log-threshold stays fp32 even in a low-precision model: it is compared at the 1e-3 level.
The decoder keeps unit-norm rows (as in the paper), so the penalties need no norm weighting.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sae.nn.base import SAEOutput, SparseAutoencoder, StepContext, normalized_mse


def rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """pre * H(pre - theta). d/dpre: H (the identity where it fires); d/dtheta: -theta/eps * K."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * (pre > threshold)
        kernel = rectangle((pre - threshold) / eps) / eps
        grad_threshold = -(threshold * kernel * grad).sum(0)
        return grad_pre, grad_threshold.to(threshold.dtype), None


class StepFunction(torch.autograd.Function):
    """H(pre - theta), the L0 indicator. Pseudo-derivative K((pre - theta)/eps)/eps with respect to
    pre, and its negation with respect to theta (H depends on them only through their difference)."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        pseudo = rectangle((pre - threshold) / eps) / eps * grad
        return pseudo, (-pseudo.sum(0)).to(threshold.dtype), None


class JumpReLUSAE(SparseAutoencoder):
    architecture = "jumprelu"
    saelens_architecture = "jumprelu"

    def __init__(self, d_in: int, d_sae: int, sparsity_coefficient: float = 2e-3, sparsity_warmup: float = 0.05,
                 bandwidth: float = 0.05, init_threshold: float = 0.1, preact_coefficient: float = 1e-6,
                 seed: int = 0, dtype: torch.dtype = torch.float32):
        if bandwidth <= 0 or init_threshold <= 0:
            raise ValueError(f"JumpReLU bandwidth={bandwidth} and init_threshold={init_threshold} must be positive")
        super().__init__(d_in, d_sae, seed=seed, dtype=dtype)
        self.sparsity_coefficient = sparsity_coefficient
        self.sparsity_warmup = sparsity_warmup
        self.bandwidth = bandwidth
        self.init_threshold = init_threshold
        self.preact_coefficient = preact_coefficient
        self.log_threshold = nn.Parameter(torch.full((d_sae,), math.log(init_threshold), dtype=torch.float32))

    def hyperparams(self) -> dict:
        return {"sparsity_coefficient": self.sparsity_coefficient, "sparsity_warmup": self.sparsity_warmup,
                "bandwidth": self.bandwidth, "init_threshold": self.init_threshold,
                "preact_coefficient": self.preact_coefficient}

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def activate(self, pre: Tensor) -> Tensor:
        # theta > 0, so this equals SAELens's relu(pre) * (pre > theta).
        return pre * (pre > self.threshold.to(pre.dtype))

    def training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        xs = x * self.act_scale
        pre = self.pre_acts(xs)
        threshold = self.threshold.to(pre.dtype)
        feats = JumpReLUFunction.apply(pre, threshold, self.bandwidth)
        x_hat = self.decode_scaled(feats)
        mse = normalized_mse(x_hat, xs)
        l0 = StepFunction.apply(pre, threshold, self.bandwidth).sum(-1).mean()
        ramp = min(1.0, ctx.progress / self.sparsity_warmup) if self.sparsity_warmup > 0 else 1.0
        loss = mse + self.sparsity_coefficient * ramp * l0
        terms = {"mse": mse.item(), "l0": l0.item()}
        if self.preact_coefficient > 0:
            preact = (threshold - pre).relu().sum(-1).mean()
            loss = loss + self.preact_coefficient * preact
            terms["preact"] = preact.item()
        return SAEOutput(loss=loss, x_hat=x_hat, feats=feats, terms=terms)

    # -- export: SAELens stores the threshold itself ---------------------------------------------------
    def saelens_tensors(self) -> dict[str, Tensor]:
        tensors = {n: p.detach() for n, p in self.named_parameters() if n != "log_threshold"}
        tensors["threshold"] = self.threshold.detach().to(self.W_enc.dtype)
        return tensors

    @torch.no_grad()
    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(self, name).copy_(tensors[name])
        # A threshold <= 0 behaves as 0 under SAELens's relu(pre) * (pre > theta); log(0) = -inf
        # reproduces that exactly (exp(-inf) = 0).
        self.log_threshold.copy_(tensors["threshold"].float().clamp_min(0).log())
