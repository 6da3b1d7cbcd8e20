"""BatchTopK SAE (Bussmann, Leask & Nanda 2024, "BatchTopK Sparse Autoencoders", arXiv:2412.06410).

TopK relaxed to the batch: keep the k * batch_size largest (ReLU'd) pre-activations of the whole
batch, so L0 is k on average while easy tokens use fewer latents and hard ones more. The batch
dependence is removed at inference with a single global threshold theta, estimated during
training from the smallest activation each batch kept: an exponential moving average early on
(usable at any step), then a plain mean over the final `calibration_fraction` of training. The
plain mean matters: the kept minimum falls during training, and an EMA lagging behind it left
the threshold ~30% too high on SmolLM2 (inference L0 18 instead of k = 32).
    training:  f = BatchTopK(relu(pre))          inference:  f = pre * (pre > theta)
so an exported BatchTopK SAE is exactly a JumpReLU SAE with a constant threshold. Dead latents
are revived with the AuxK loss of TopK (Gao et al. 2024), which the paper also uses.
Training shares TopK's step and its sparse kernels; the batch-wide top-k is sparse_ops.top_entries
(exact, but avoids torch's slow topk over all batch x d_sae entries).
"""
from __future__ import annotations

import torch
from torch import Tensor

from sae.nn.base import SAEOutput, StepContext
from sae.nn.sparse_ops import SparsePattern, select_per_batch, top_entries
from sae.nn.topk import TopKSAE


def batch_topk_activation(pre: Tensor, k: int) -> Tensor:
    """Keep the k * batch largest entries of the whole [batch, d_sae] matrix (then ReLU)."""
    values, flat = top_entries(pre, k * pre.shape[0])
    return torch.zeros_like(pre).view(-1).index_put_((flat,), values.relu()).view_as(pre)


class BatchTopKSAE(TopKSAE):
    architecture = "batchtopk"
    saelens_architecture = "jumprelu"

    def __init__(self, d_in: int, d_sae: int, k: int = 32, aux_k: int | None = None,
                 aux_coefficient: float = 1 / 32, threshold_momentum: float = 0.99,
                 calibration_fraction: float = 0.2, seed: int = 0, dtype: torch.dtype = torch.float32):
        if not 0 <= calibration_fraction <= 1:
            raise ValueError(f"calibration_fraction={calibration_fraction} must be in [0, 1]")
        super().__init__(d_in, d_sae, k=k, aux_k=aux_k, aux_coefficient=aux_coefficient, seed=seed, dtype=dtype)
        self.threshold_momentum = threshold_momentum
        self.calibration_fraction = calibration_fraction
        self.calibrating = False
        # -1 marks "not estimated yet"; fp32 whatever the model dtype, it is a running average.
        self.register_buffer("threshold", torch.full((), -1.0, dtype=torch.float32))
        # batches averaged so far in the calibration window (a buffer: checkpoints keep it)
        self.register_buffer("calibration_batches", torch.zeros((), dtype=torch.long))

    def hyperparams(self) -> dict:
        return {**super().hyperparams(), "threshold_momentum": self.threshold_momentum,
                "calibration_fraction": self.calibration_fraction}

    # -- inference ---------------------------------------------------------------------------------
    def activate(self, pre: Tensor) -> Tensor:
        if self.threshold < 0:
            # Untrained: there is no threshold yet, so behave as in training on this batch.
            return batch_topk_activation(pre, self.k)
        return pre * (pre > self.threshold.to(pre.dtype))

    # -- training: TopK's step (sparse kernels or the dense reference) with batch-level selection ----------------
    def dense_select(self, pre: Tensor) -> Tensor:
        return batch_topk_activation(pre, self.k)

    def sparse_select(self, pre: Tensor) -> tuple[Tensor, SparsePattern]:
        return select_per_batch(pre, self.k)

    def training_step(self, x: Tensor, ctx: StepContext) -> SAEOutput:
        self.calibrating = ctx.progress >= 1 - self.calibration_fraction
        out = super().training_step(x, ctx)
        out.terms["threshold"] = float(self.threshold)
        return out

    @torch.no_grad()
    def after_sparse_code(self, values: Tensor) -> None:
        """Average of the smallest activation each batch kept: the inference threshold."""
        positive = values[values > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min().float()
        if self.threshold < 0:
            self.threshold.copy_(smallest)
        elif self.calibrating:  # plain running mean, restarted when the window opens
            self.calibration_batches += 1
            self.threshold.lerp_(smallest, 1.0 / float(self.calibration_batches))
        else:
            self.threshold.lerp_(smallest, 1 - self.threshold_momentum)

    # -- export: a JumpReLU with one threshold for all latents -------------------------------------------
    def check_exportable(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"{self.architecture} SAE has no inference threshold yet: train it "
                             "(training_step estimates the threshold) before exporting")

    def saelens_tensors(self) -> dict[str, Tensor]:
        tensors = super().saelens_tensors()
        tensors["threshold"] = self.threshold.clamp_min(0).expand(self.d_sae).to(self.W_enc.dtype).clone()
        return tensors

    @torch.no_grad()
    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        threshold = tensors["threshold"]
        if not torch.all(threshold == threshold.flatten()[0]):
            raise ValueError(f"{self.architecture} export must have one threshold shared by all latents; "
                             "this file has per-latent thresholds: load it as architecture 'jumprelu'")
        super().load_saelens_tensors({k: v for k, v in tensors.items() if k != "threshold"})
        self.threshold.fill_(float(threshold.flatten()[0]))

    def saelens_config(self) -> dict:
        return {}
