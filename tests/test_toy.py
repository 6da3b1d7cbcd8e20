"""Toy models of superposition: the paper's qualitative results, and the measurements on shapes
whose answers are known. Seeded; trains small batched models (~30 s on 2 cores).

The toy-model tests use lr 1e-2 and 3k steps (instead of the experiments' 1e-3 and 10k) so they
converge fast; the geometry they reach is the same (checked against experiments/toy_intro.py).
"""
import math

import pytest
import torch

from sae.toy import geometry
from sae.toy.config import IntroConfig, PlantedConfig, load_config
from sae.toy.data import sparse_features
from sae.toy.model import ToyModels
from sae.toy.planted import make_planted, random_unit_directions
from sae.toy.recovery import recovery_report
from sae.toy.sae_fit import DeadLatentTracker, fit_sae
from sae.toy.train import train_sweep

FAST = dict(steps=3000, lr=1e-2, batch_size=1024, progress=False)


def regular_polygon(k: int) -> torch.Tensor:
    angles = torch.arange(k) * 2 * math.pi / k
    return torch.stack([angles.cos(), angles.sin()])  # [2, k], columns = features


def tetrahedron() -> torch.Tensor:
    v = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    return (v / v.norm(dim=1, keepdim=True)).T  # [3, 4]


# -- measurements on hand-built polytopes ------------------------------------------------------------
@pytest.mark.parametrize("W, expected", [
    (torch.tensor([[1.0, -1.0]]), 1 / 2),            # antipodal pair in 1 dim
    (regular_polygon(3), 2 / 3),                      # triangle
    (regular_polygon(5), 2 / 5),                      # pentagon
    (tetrahedron(), 3 / 4),                           # tetrahedron
    (torch.eye(4), 1.0),                              # dedicated dimensions
])
def test_dimensionality_of_polytopes(W, expected):
    D = geometry.dimensionality(W)
    assert torch.allclose(D, torch.full_like(D, expected), atol=1e-5)
    # Scale does not change how a dimension is shared.
    assert torch.allclose(geometry.dimensionality(3 * W), D, atol=1e-5)


def test_dimensionality_of_unused_feature_is_zero_and_sums_to_m():
    W = torch.cat([regular_polygon(5), torch.zeros(2, 1)], dim=1)
    D = geometry.dimensionality(W)
    assert D[-1] == 0 and abs(D.sum().item() - 2.0) < 1e-5


def test_superposition_and_norms():
    assert torch.allclose(geometry.superposition(torch.eye(3)), torch.zeros(3))
    # Antipodal pair: each sees the other fully.
    assert torch.allclose(geometry.superposition(torch.tensor([[1.0, -1.0]])), torch.ones(2))
    # Pentagon: 2 cos^2(72) + 2 cos^2(144) = 1.5
    assert torch.allclose(geometry.superposition(regular_polygon(5)), torch.full((5,), 1.5), atol=1e-5)
    assert torch.allclose(geometry.feature_norms(2 * torch.eye(3)), torch.full((3,), 2.0))


def test_angles_and_polygon_detection():
    P = regular_polygon(5)
    assert torch.allclose(geometry.adjacent_angle_gaps(P), torch.full((5,), 72.0), atol=1e-3)
    assert geometry.is_regular_polygon(P, 5)
    assert not geometry.is_regular_polygon(regular_polygon(4), 5)
    squashed = P * torch.tensor([[1.0], [0.6]])       # same 5 features, not a regular pentagon
    assert not geometry.is_regular_polygon(squashed, 5)
    assert abs(geometry.angles_degrees(tetrahedron())[0, 1].item() - math.degrees(math.acos(-1 / 3))) < 1e-3


def test_interference_bounds():
    W = regular_polygon(3)
    assert abs(geometry.coherence(W).item() - 0.5) < 1e-5
    assert abs(geometry.coherence(W).item() - geometry.welch_bound(3, 2)) < 1e-5  # the triangle is optimal
    R = random_unit_directions(64, 16, seed=0).T
    assert geometry.coherence(R).item() >= geometry.welch_bound(64, 16)
    # Sum_{i != j} cos^2 >= N^2/d - N for unit vectors.
    assert geometry.total_interference(R).item() >= 64 ** 2 / 16 - 64 - 1e-3


def test_sparse_features_distribution():
    gen = torch.Generator().manual_seed(0)
    x = sparse_features(torch.tensor([[1.0, 0.1, 0.0]]), 200_000, gen)[0]
    assert torch.allclose((x != 0).float().mean(0), torch.tensor([1.0, 0.1, 0.0]), atol=0.005)
    nonzero = x[:, 1][x[:, 1] != 0]
    assert abs(nonzero.mean().item() - 0.5) < 0.01 and nonzero.max() <= 1 and nonzero.min() >= 0  # Uniform[0, 1]
    signed = sparse_features(torch.tensor([[0.5]]), 200_000, gen, signed=True)[0, :, 0]
    active = signed[signed != 0]
    assert abs(active.mean().item()) < 0.01 and active.min() < -0.99 and active.max() > 0.99  # Uniform[-1, 1]


# -- the paper's qualitative results, trained ----------------------------------------------------------
@pytest.fixture(scope="module")
def intro_sweep():
    torch.set_num_threads(1)
    importance = 0.9 ** torch.arange(5, dtype=torch.float32)
    settings = [(torch.full((5,), d), importance) for d in (1.0, 0.05)]
    return train_sweep(settings, [0, 1, 2], lambda k, seeds: ToyModels(k, 5, 2, "relu", seeds), **FAST)


def test_dense_keeps_two_orthogonal_features_and_biases_the_rest_to_the_mean(intro_sweep):
    W, b = intro_sweep.model.W.detach(), intro_sweep.model.b.detach()
    for k in intro_sweep.models_of(0):
        norms = geometry.feature_norms(W[k])
        kept = norms > 0.5
        assert kept.tolist() == [True, True, False, False, False], norms    # the 2 most important
        assert abs(geometry.cosine_matrix(W[k][:, kept])[0, 1].item()) < 0.05  # orthogonal
        assert torch.allclose(b[k][~kept], torch.full((3,), 0.5), atol=0.05)  # E[x] for a dropped feature


def test_sparse_features_form_a_pentagon(intro_sweep):
    W = intro_sweep.model.W.detach()
    pentagons = [geometry.is_regular_polygon(W[k], 5, min_norm=0.5, tolerance_deg=6.0)
                 for k in intro_sweep.models_of(1)]
    assert sum(pentagons) >= 2, [geometry.adjacent_angle_gaps(W[k]) for k in intro_sweep.models_of(1)]
    assert (intro_sweep.model.b.detach()[intro_sweep.models_of(1)] < 0).all()  # biases filter interference


def test_linear_model_never_represents_more_than_m_features():
    torch.set_num_threads(1)
    n, m = 20, 5
    importance = 0.7 ** torch.arange(n, dtype=torch.float32)
    settings = [(torch.full((n,), d), importance) for d in (1.0, 0.1, 0.01)]
    linear = train_sweep(settings, [0], lambda k, s: ToyModels(k, n, m, "linear", s), **FAST)
    relu = train_sweep(settings[2:], [0], lambda k, s: ToyModels(k, n, m, "relu", s), **FAST)
    for W in linear.model.W.detach():
        assert (geometry.feature_norms(W) > 0.5).sum() <= m
        assert W.pow(2).sum().item() <= m + 0.05                       # a projection: ||W||_F^2 <= m
    # ...while the ReLU model at the same sparsity does pack more than m (so this test can fail).
    assert (geometry.feature_norms(relu.model.W.detach()[0]) > 0.5).sum() > m


# -- ground-truth recovery ------------------------------------------------------------------------------
def test_mmcs_of_true_dictionary_is_one_and_of_random_directions_is_low():
    G = random_unit_directions(512, 64, seed=0)
    report = recovery_report(G, G[torch.randperm(512)])
    assert report["mmcs"] > 0.9999 and report["frac_recovered_cos>0.9"] == 1.0
    random = recovery_report(G, random_unit_directions(512, 64, seed=1))
    assert random["mmcs"] < 0.6 and random["frac_recovered_cos>0.9"] == 0.0
    # Sign matters: a decoder row pointing the wrong way reconstructs nothing.
    assert recovery_report(G, -G)["mmcs"] < 0.6


def test_planted_data_keeps_firing_probabilities_when_correlated():
    gen = torch.Generator().manual_seed(0)
    for kw in ({}, {"group_size": 8, "correlation": 0.6}):
        p = make_planted(64, 16, mean_active=4.0, frequency="power_law", seed=0, **kw)
        fires = p.sample_firing(40_000, gen).float()
        assert torch.allclose(fires.mean(0), p.probs, atol=0.01)
    # Within a group (features 56..63, rare), co-firing is more likely than independence predicts.
    within = (fires[:, 56] * fires[:, 57]).mean() / (fires[:, 56].mean() * fires[:, 57].mean())
    assert within > 1.5


def test_sae_initialisation_does_not_start_on_the_ground_truth():
    # Both draw torch.randn(N, d) from a small integer seed; they must not coincide.
    from sae.nn import build_sae
    p = make_planted(512, 64, seed=0)
    sae = build_sae("topk", 64, 512, k=5, seed=0)
    assert recovery_report(p.directions, sae.W_dec.detach())["mmcs"] < 0.6


def test_topk_sae_recovers_planted_features():
    torch.set_num_threads(1)
    p = make_planted(64, 16, mean_active=2.0, seed=0)
    before = fit_sae("topk", lambda b, g: p.sample(b, g)[0], 16, 64, steps=1, batch_size=256,
                     hyperparams={"k": 2}, progress=False)
    assert recovery_report(p.directions, before.sae.W_dec.detach())["mmcs"] < 0.8
    fit = fit_sae("topk", lambda b, g: p.sample(b, g)[0], 16, 128, steps=600, batch_size=256, lr=3e-3,
                  hyperparams={"k": 2}, progress=False)
    assert recovery_report(p.directions, fit.sae.W_dec.detach())["mmcs"] > 0.9


def test_dead_latent_tracker():
    t = DeadLatentTracker(3, window=2)
    for _ in range(2):
        t.update(torch.tensor([[1.0, 0.0, 0.0]]))
    assert t.mask().tolist() == [False, True, True]
    t.update(torch.tensor([[0.0, 0.0, 2.0]]))
    assert t.mask().tolist() == [False, True, False]


# -- configs ---------------------------------------------------------------------------------------------
def test_config_rejects_unknown_key_in_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("n_features: 5\nsteps_typo: 3\n")
    with pytest.raises(SystemExit) as err:
        load_config(IntroConfig, path)
    assert "unknown config key 'steps_typo'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SystemExit) as err:
        load_config(IntroConfig, None, ["train.stepz=3"])
    assert "unknown config key 'train.stepz' for ToyTraining" in str(err.value)


def test_config_overrides():
    cfg = load_config(PlantedConfig, None, ["train.steps=7", "d_sae=128", "architectures=[topk]"])
    assert cfg.train.steps == 7 and cfg.d_sae == 128 and cfg.architectures == ["topk"]
