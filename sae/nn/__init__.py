"""Sparse autoencoder architectures, one class per file, all keeping the contract in base.py."""
from sae.nn.base import SAEOutput, SparseAutoencoder, StepContext, geometric_median
from sae.nn.batchtopk import BatchTopKSAE
from sae.nn.gated import GatedSAE
from sae.nn.jumprelu import JumpReLUSAE
from sae.nn.matryoshka import MatryoshkaBatchTopKSAE
from sae.nn.relu import ReluSAE
from sae.nn.topk import TopKSAE

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {
    cls.architecture: cls
    for cls in (ReluSAE, TopKSAE, BatchTopKSAE, JumpReLUSAE, GatedSAE, MatryoshkaBatchTopKSAE)
}


def build_sae(architecture: str, d_in: int, d_sae: int, **hyperparams) -> SparseAutoencoder:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown SAE architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](d_in, d_sae, **hyperparams)
