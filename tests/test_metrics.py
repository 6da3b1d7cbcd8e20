"""The metric definitions, checked against closed forms."""
import math

import pytest
import torch

from sae.metrics import (ReconstructionStats, ce_loss_recovered, decoder_mean_max_cos, explained_variance, kl_score,
                         token_cross_entropy, token_kl)


@pytest.fixture
def x():
    return torch.randn(500, 12, generator=torch.Generator().manual_seed(0)) * 3 + 1


def test_identity_gives_ev_one_and_mean_gives_zero(x):
    assert explained_variance(x, x) == pytest.approx(1.0, abs=1e-12)
    assert explained_variance(x, x.mean(0).expand_as(x)) == pytest.approx(0.0, abs=1e-9)


def test_ev_streams_to_same_value_as_one_batch(x):
    x_hat = x + 0.5 * torch.randn_like(x)
    streamed = ReconstructionStats()
    for a, b in zip(x.split(64), x_hat.split(64)):
        streamed.update(a, b)
    xd, xhd = x.double(), x_hat.double()
    direct = 1 - ((xd - xhd) ** 2).sum() / ((xd - xd.mean(0)) ** 2).sum()
    assert streamed.summary()["explained_variance"] == pytest.approx(direct.item(), rel=1e-9)
    assert streamed.summary()["mse"] == pytest.approx(((xd - xhd) ** 2).mean().item(), rel=1e-9)


def test_l0_dead_and_dense_counts():
    feats = torch.zeros(100, 6)
    feats[:, 0] = 1.0            # fires always -> dense
    feats[:5, 1] = 2.0           # 5% -> alive, not dense
    feats[::2, 2] = 0.5          # 50% -> dense
    stats = ReconstructionStats(6)
    stats.update(torch.randn(100, 3), torch.randn(100, 3), feats)
    s = stats.summary()
    assert s["l0"] == pytest.approx(1 + 0.05 + 0.5)
    assert s["dead_fraction"] == pytest.approx(3 / 6)
    assert s["dense_fraction"] == pytest.approx(2 / 6)


def test_cosine_l2_ratio_and_bias_of_a_scaled_reconstruction(x):
    s = ReconstructionStats()
    s.update(x, 0.5 * x)
    out = s.summary()
    assert out["cosine_similarity"] == pytest.approx(1.0)
    assert out["l2_ratio"] == pytest.approx(0.5)
    assert out["relative_reconstruction_bias"] == pytest.approx(0.5)


def test_ce_recovered_endpoints():
    assert ce_loss_recovered(ce_clean=2.0, ce_sae=2.0, ce_zero_ablation=7.0) == pytest.approx(1.0)
    assert ce_loss_recovered(ce_clean=2.0, ce_sae=7.0, ce_zero_ablation=7.0) == pytest.approx(0.0)
    assert ce_loss_recovered(2.0, 4.5, 7.0) == pytest.approx(0.5)
    assert math.isnan(ce_loss_recovered(2.0, 2.0, 2.0))
    assert kl_score(0.0, 3.0) == 1.0 and kl_score(3.0, 3.0) == 0.0


def test_cross_entropy_and_kl_match_torch():
    logits = torch.randn(2, 5, 11)
    tokens = torch.randint(0, 11, (2, 5))
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1), reduction="none")
    assert torch.allclose(token_cross_entropy(logits, tokens).reshape(-1), ref, atol=1e-6)
    assert token_kl(logits, logits).abs().max() < 1e-6
    other = torch.randn(2, 5, 11)
    ref_kl = torch.nn.functional.kl_div(other.log_softmax(-1), logits.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(token_kl(logits, other), ref_kl, atol=1e-5)


def test_decoder_mean_max_cos():
    assert decoder_mean_max_cos(torch.eye(8)) == pytest.approx(0.0)
    W = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert decoder_mean_max_cos(W, chunk=2) == pytest.approx(2 / 3)
