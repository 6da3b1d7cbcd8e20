"""The contract every sparse autoencoder in this package keeps.

Parameters follow SAELens naming so export is a rename-free copy:
    W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]
Inference (what SAELens computes after export):
    f = activation((x - b_dec) @ W_enc + b_enc)      # b_dec subtracted only if apply_b_dec_to_input
    x_hat = f @ W_dec + b_dec
Internally an SAE may train on scaled inputs x * act_scale (so that E||x|| = sqrt(d_in) and
hyperparameters transfer across models). `act_scale` is a buffer; `encode`/`decode` take and
return raw activations, and export folds the scale into the weights.

Trainer protocol:
    sae.init_from_data(sample)
    per step: out = sae.training_step(x, StepContext(progress, dead_mask))
              sae.apply_gradients(out.loss, opt)   # backward, decoder-grad projection, step, renorm
    at the end: sae.finalize_training()
Export protocol (sae/io/saelens.py): `saelens_tensors()` / `load_saelens_tensors()` convert
between the module's state and SAELens's tensor names, in the scaled (training) space;
`saelens_config()` adds the architecture's own cfg.json fields.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass
class StepContext:
    """What the trainer tells the SAE about the current step."""
    progress: float = 0.0            # fraction of training done, in [0, 1]; drives warmups
    dead_mask: Tensor | None = None  # [d_sae] bool, latents that have not fired for the dead window


@dataclass
class SAEOutput:
    loss: Tensor
    x_hat: Tensor                    # reconstruction, in the scaled space the SAE trains in
    feats: Tensor                    # latent activations [batch, d_sae]
    terms: dict[str, float] = field(default_factory=dict)  # loss pieces, for logging


def normalized_mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Squared error over the batch's total variance (the batch's FVU): scale-free training loss."""
    return (x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)


class SparseAutoencoder(nn.Module, ABC):
    architecture: ClassVar[str]      # our name, e.g. "topk"
    saelens_architecture: ClassVar[str]  # how SAELens calls the exported form
    # A class default; an instance may override it (an SAE loaded from a foreign export keeps
    # whatever its cfg.json says).
    apply_b_dec_to_input: bool = True
    unit_norm_decoder: ClassVar[bool] = True

    def __init__(self, d_in: int, d_sae: int, seed: int = 0, dtype: torch.dtype = torch.float32):
        super().__init__()
        if d_in <= 0 or d_sae <= 0:
            raise ValueError(f"SAE shape d_in={d_in}, d_sae={d_sae} is impossible: both must be positive")
        self.d_in, self.d_sae = d_in, d_sae
        gen = torch.Generator().manual_seed(seed)
        # Decoder rows are random unit directions; the encoder starts as its transpose (Gao et al. 2024,
        # Anthropic 2024): this alone removes most dead latents at initialisation.
        W_dec = torch.randn(d_sae, d_in, generator=gen, dtype=torch.float32)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        W_dec *= self.initial_decoder_norm()
        self.W_dec = nn.Parameter(W_dec.to(dtype))
        self.W_enc = nn.Parameter(W_dec.T.clone().contiguous().to(dtype))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=dtype))
        self.register_buffer("act_scale", torch.ones((), dtype=torch.float32))

    # -- hyperparameters ----------------------------------------------------------------------
    def initial_decoder_norm(self) -> float:
        return 1.0

    def hyperparams(self) -> dict:
        """Architecture-specific settings saved next to the weights (cfg.json)."""
        return {}

    # -- inference contract ----------------------------------------------------------------------
    def pre_acts(self, xs: Tensor) -> Tensor:
        if self.apply_b_dec_to_input:
            xs = xs - self.b_dec
        return xs @ self.W_enc + self.b_enc

    @abstractmethod
    def activate(self, pre: Tensor) -> Tensor:
        """Pre-activations -> latent activations (each architecture defines its own)."""

    def decode_scaled(self, feats: Tensor) -> Tensor:
        return feats @ self.W_dec + self.b_dec

    def encode(self, x: Tensor) -> Tensor:
        return self.activate(self.pre_acts(x.to(self.W_enc.dtype) * self.act_scale))

    def decode(self, feats: Tensor) -> Tensor:
        return self.decode_scaled(feats) / self.act_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # -- training contract ----------------------------------------------------------------------
    @abstractmethod
    def training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        """One step's loss and outputs (each architecture defines its own)."""

    @torch.no_grad()
    def finalize_training(self) -> None:
        """Called once after the last step; architectures whose inference differs from training
        (e.g. a threshold estimated during training) settle it here. No-op by default."""

    @torch.no_grad()
    def init_from_data(self, sample: Tensor) -> None:
        """Set act_scale so E||x * s|| = sqrt(d_in), then b_dec to the geometric median."""
        sample = sample.float()
        self.act_scale.fill_((self.d_in ** 0.5) / sample.norm(dim=1).mean().clamp_min(1e-12))
        self.b_dec.copy_(geometric_median(sample * self.act_scale).to(self.b_dec.dtype))

    def apply_gradients(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """One optimisation step in the order every architecture needs: backward, project out the
        decoder-norm gradient, step, renormalise the decoder."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.before_optimizer_step()
        optimizer.step()
        self.after_optimizer_step()

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """Remove the gradient component parallel to each unit-norm decoder row (it would only
        change the norm, which after_optimizer_step undoes anyway)."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            W, g = self.W_dec, self.W_dec.grad
            # Row dot products without [d_sae, d_in] temporaries, then one fused in-place update.
            parallel = torch.linalg.vecdot(g, W) / torch.linalg.vecdot(W, W).clamp_min(1e-12)
            g.addcmul_(W, parallel.unsqueeze(1), value=-1)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    # -- export contract ----------------------------------------------------------------------
    def saelens_tensors(self) -> dict[str, Tensor]:
        """The tensors SAELens expects for `saelens_architecture`, in the scaled space (export folds
        act_scale afterwards). Default: every parameter, under its own (SAELens) name."""
        return {name: p.detach() for name, p in self.named_parameters()}

    @torch.no_grad()
    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of saelens_tensors: copy SAELens-named tensors (scaled space) into the module."""
        for name, p in self.named_parameters():
            p.copy_(tensors[name].to(p.dtype))

    def saelens_config(self) -> dict:
        """Architecture-specific cfg.json fields SAELens reads (e.g. k for topk)."""
        return {}

    def check_exportable(self) -> None:
        """Raise ValueError (saying what to do) if the SAE cannot be exported yet."""


@torch.no_grad()
def geometric_median(points: Tensor, iters: int = 100, eps: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the summed Euclidean distance. Robust to the
    outlier tokens a mean would chase."""
    median = points.mean(0)
    for _ in range(iters):
        weights = 1.0 / (points - median).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - median).norm() < eps * (1 + median.norm()):
            return new
        median = new
    return median
