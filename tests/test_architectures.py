"""Every SAE architecture keeps the contract in sae/nn/base.py, and its sparsity knob does what it says.

Training tests use planted sparse data (Sharkey et al.): unit feature directions in a small space,
a few active per sample, so a few hundred CPU steps are enough to see behaviour.
"""
from __future__ import annotations

import pytest
import torch

from sae.nn import ARCHITECTURES, StepContext, build_sae
from sae.nn.batchtopk import batch_topk_activation
from sae.nn.jumprelu import JumpReLUFunction, StepFunction
from sae.nn.matryoshka import default_group_sizes

D_IN, D_SAE = 16, 64


def planted_data(n: int, d_in: int = D_IN, n_features: int = 64, active: float = 3.0, seed: int = 0,
                 scale: float = 7.0) -> torch.Tensor:
    """x = sum of ~`active` random unit features with U[0,1] coefficients, times an arbitrary scale
    (so act_scale has work to do), plus an offset (so b_dec has work to do)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n_features, d_in, generator=torch.Generator().manual_seed(1234))
    features /= features.norm(dim=1, keepdim=True)
    coeffs = (torch.rand(n, n_features, generator=g) < active / n_features) * torch.rand(n, n_features, generator=g)
    return scale * (coeffs @ features) + 0.5


def make(arch: str, d_in: int = D_IN, d_sae: int = D_SAE, **hp):
    sae = build_sae(arch, d_in, d_sae, **hp)
    sae.init_from_data(planted_data(2048, d_in))
    return sae


def train(sae, steps: int, batch: int = 256, lr: float = 3e-3, seed: int = 1):
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    for step in range(steps):
        x = planted_data(batch, sae.d_in, seed=seed * 100_000 + step)
        sae.apply_gradients(sae.training_step(x, StepContext(progress=step / steps)).loss, opt)
    sae.finalize_training()
    return sae


def inference_l0(sae, n: int = 2048) -> float:
    with torch.no_grad():
        return (sae.encode(planted_data(n, sae.d_in, seed=999)) > 0).float().sum(-1).mean().item()


ALL = sorted(ARCHITECTURES)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second thread only adds synchronisation (10x slower on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- registry and documentation ------------------------------------------------------------------------
def test_registry_has_every_architecture():
    assert set(ALL) >= {"relu", "topk", "batchtopk", "jumprelu", "gated", "matryoshka_batchtopk"}
    with pytest.raises(ValueError, match="unknown SAE architecture"):
        build_sae("nonsense", 4, 8)


@pytest.mark.parametrize("arch", ALL)
def test_architecture_is_documented_with_its_paper(arch):
    import sys
    doc = sys.modules[ARCHITECTURES[arch].__module__].__doc__ or ""
    assert any(str(year) in doc for year in (2023, 2024, 2025)), f"{arch} module docstring should cite its paper"


@pytest.mark.parametrize("arch", ALL)
def test_hyperparams_rebuild_the_same_architecture(arch):
    sae = build_sae(arch, D_IN, D_SAE)
    again = build_sae(arch, D_IN, D_SAE, **sae.hyperparams())
    assert again.hyperparams() == sae.hyperparams()
    assert {n: p.shape for n, p in again.named_parameters()} == {n: p.shape for n, p in sae.named_parameters()}


# -- shapes and the encode/decode contract -----------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_shapes_and_saelens_parameter_names(arch):
    sae = build_sae(arch, D_IN, D_SAE)
    assert sae.W_enc.shape == (D_IN, D_SAE) and sae.W_dec.shape == (D_SAE, D_IN) and sae.b_dec.shape == (D_IN,)
    if arch == "gated":
        assert {"b_gate", "r_mag", "b_mag"} <= dict(sae.named_parameters()).keys()
        assert "b_enc" not in dict(sae.named_parameters())
    else:
        assert sae.b_enc.shape == (D_SAE,)


@pytest.mark.parametrize("arch", ALL)
def test_init_from_data_scales_inputs_to_sqrt_d_in(arch):
    x = planted_data(4096)
    sae = build_sae(arch, D_IN, D_SAE)
    sae.init_from_data(x)
    assert (x * sae.act_scale).norm(dim=1).mean().item() == pytest.approx(D_IN ** 0.5, rel=1e-4)
    # b_dec starts at the geometric median of the scaled data: it must sit inside the data's range.
    xs = x * sae.act_scale
    assert torch.all(sae.b_dec >= xs.min(0).values) and torch.all(sae.b_dec <= xs.max(0).values)


@pytest.mark.parametrize("arch", ALL)
def test_encode_decode_contract(arch):
    sae = train(make(arch), steps=20)  # trained a little so BatchTopK has its inference threshold
    x = planted_data(300, seed=5)
    with torch.no_grad():
        f = sae.encode(x)
        x_hat = sae.decode(f)
        assert f.shape == (300, D_SAE) and x_hat.shape == x.shape
        assert (f >= 0).all(), "latent activations are non-negative"
        assert torch.equal(sae(x), x_hat)
        # decode is affine in f and returns raw (unscaled) activations: decode(0) = b_dec / act_scale.
        torch.testing.assert_close(sae.decode(torch.zeros(1, D_SAE))[0], sae.b_dec / sae.act_scale)
        # training_step's x_hat lives in the scaled space: it is decode(feats) * act_scale.
        out = sae.training_step(x, StepContext(progress=1.0))
        torch.testing.assert_close(out.x_hat, sae.decode(out.feats) * sae.act_scale, rtol=1e-5, atol=1e-5)
        assert out.feats.shape == (300, D_SAE) and torch.isfinite(out.loss)
        assert all(isinstance(v, float) for v in out.terms.values())


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu", "gated"])
def test_training_code_equals_inference_code(arch):
    """Where training has no batch dependence, the latents trained on are the latents served."""
    sae = make(arch)
    x = planted_data(200, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(sae.training_step(x, StepContext()).feats, sae.encode(x))


@pytest.mark.parametrize("arch", ALL)
def test_gradients_reach_every_parameter(arch):
    sae = make(arch)
    out = sae.training_step(planted_data(512, seed=2), StepContext(progress=0.5, dead_mask=torch.ones(D_SAE, dtype=torch.bool)))
    out.loss.backward()
    for name, p in sae.named_parameters():
        assert p.grad is not None, f"{arch}.{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{arch}.{name} gradient not finite"
        assert p.grad.abs().sum() > 0, f"{arch}.{name} gradient is all zero"


@pytest.mark.parametrize("arch", [a for a in ALL if ARCHITECTURES[a].unit_norm_decoder])
def test_unit_norm_decoder_is_kept(arch):
    sae = make(arch)
    out = sae.training_step(planted_data(256), StepContext(progress=0.5))
    out.loss.backward()
    sae.before_optimizer_step()
    # The gradient has no component along each decoder row (it could only change the norm).
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max() < 1e-5
    torch.optim.SGD(sae.parameters(), lr=1.0).step()
    sae.after_optimizer_step()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))


# -- sparsity as configured --------------------------------------------------------------------------------
def test_topk_fires_exactly_k():
    k = 5
    sae = make("topk", k=k)
    x = planted_data(500, seed=4)
    with torch.no_grad():
        pre = sae.pre_acts(x * sae.act_scale)
        kth = pre.topk(k, dim=-1).values[:, -1]
        counts = (sae.encode(x) > 0).sum(-1)
    assert (counts <= k).all()
    positive = kth > 0  # when the k-th largest pre-activation is positive, exactly k fire
    assert positive.float().mean() > 0.9
    assert (counts[positive] == k).all()


def test_batch_topk_fires_k_on_average_per_batch():
    k = 4
    sae = make("batchtopk", k=k)
    x = planted_data(256, seed=6)
    out = sae.training_step(x, StepContext())
    counts = (out.feats > 0).sum(-1)
    assert counts.sum().item() == k * 256  # the whole batch's budget is used exactly
    assert counts.min() < k < counts.max(), "tokens share the budget unevenly, unlike TopK"


def test_batch_topk_activation_keeps_the_largest():
    pre = torch.tensor([[3.0, -1.0, 0.5], [0.2, 2.0, 1.0]])
    out = batch_topk_activation(pre, k=1)  # 2 tokens x k=1 -> the two largest entries overall
    assert torch.equal(out, torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))


def test_batch_topk_inference_threshold_gives_l0_near_k():
    k = 4
    # A short run: a faster running average than the default so the estimate keeps up with training.
    sae = make("batchtopk", k=k, threshold_momentum=0.9)
    assert sae.threshold < 0  # before training there is no threshold: inference falls back to batch top-k
    assert inference_l0(sae) == pytest.approx(k)
    train(sae, steps=150)
    assert sae.threshold > 0
    # The threshold is the running minimum kept activation, so on held-out data L0 ~ k.
    assert k * 0.75 < inference_l0(sae) < k * 1.33


def test_batch_topk_threshold_is_the_plain_mean_of_kept_minima_over_the_calibration_window():
    from sae.nn.sparse_ops import top_entries
    k, steps = 4, 40
    sae = make("batchtopk", k=k, calibration_fraction=0.25)
    opt = torch.optim.Adam(sae.parameters(), lr=3e-3)
    minima = []
    for step in range(steps):
        x = planted_data(256, sae.d_in, seed=500 + step)
        with torch.no_grad():
            kept_min = top_entries(sae.pre_acts(x * sae.act_scale), k * 256)[0].min()
        out = sae.training_step(x, StepContext(progress=step / steps))
        if step / steps >= 0.75:
            minima.append(kept_min.item())
        sae.apply_gradients(out.loss, opt)
    # not the lagging EMA: exactly the mean over the last quarter of training
    assert sae.threshold.item() == pytest.approx(sum(minima) / len(minima), rel=1e-5)
    assert int(sae.calibration_batches) == len(minima)


def test_matryoshka_loss_is_the_mean_of_prefix_losses():
    from sae.nn.base import normalized_mse
    sae = make("matryoshka_batchtopk", k=4, group_sizes=[8, 8, 16, 32])
    x = planted_data(256, seed=8)
    out = sae.training_step(x, StepContext())
    xs, f = x * sae.act_scale, out.feats.detach()
    expected = torch.stack([normalized_mse(f[:, :m] @ sae.W_dec[:m] + sae.b_dec, xs) for m in (8, 16, 32, 64)]).mean()
    torch.testing.assert_close(out.loss.detach(), expected.detach())
    assert sum(default_group_sizes(4608)) == 4608 and default_group_sizes(4608)[0] == 288
    with pytest.raises(ValueError, match="group_sizes"):
        build_sae("matryoshka_batchtopk", D_IN, D_SAE, group_sizes=[10, 10])


def test_matryoshka_first_prefix_reconstructs_better_than_plain_batchtopk():
    """The point of the nesting: the first group alone is trained to reconstruct."""
    from sae.nn.base import normalized_mse
    results = {}
    for arch in ("batchtopk", "matryoshka_batchtopk"):
        torch.manual_seed(0)
        sae = train(make(arch, k=4, **({"group_sizes": [8, 56]} if arch != "batchtopk" else {})), steps=150)
        x = planted_data(1024, seed=77)
        with torch.no_grad():
            f = sae.encode(x)
            xs = x * sae.act_scale
            results[arch] = normalized_mse(f[:, :8] @ sae.W_dec[:8] + sae.b_dec, xs).item()
    assert results["matryoshka_batchtopk"] < results["batchtopk"]


@pytest.mark.parametrize("arch,knob,values", [
    ("jumprelu", "sparsity_coefficient", [1e-4, 3e-3, 3e-2]),
    ("relu", "l1_coefficient", [0.1, 1.0, 5.0]),
    ("gated", "l1_coefficient", [1e-3, 1e-2, 1e-1]),
])
def test_l0_falls_as_the_sparsity_coefficient_rises(arch, knob, values):
    l0s = []
    for value in values:
        torch.manual_seed(0)
        l0s.append(inference_l0(train(make(arch, **{knob: value}), steps=200, lr=1e-2)))
    assert l0s[0] > l0s[1] > l0s[2], f"{arch}: L0 {l0s} for {knob}={values}"
    assert l0s[0] > 2 * l0s[2], f"{arch}: L0 {l0s} barely moves with {knob}={values}"


def test_jumprelu_guard_against_l0_that_never_falls():
    """With the paper's tiny initial threshold and bandwidth (0.001, tuned for E||x||^2 = 1), the
    threshold window is nearly empty and L0 hardly responds to the penalty; our defaults must."""
    l0 = {}
    for name, hp in {"ours": {}, "paper": {"init_threshold": 1e-3, "bandwidth": 1e-3}}.items():
        torch.manual_seed(0)
        l0[name] = inference_l0(train(make("jumprelu", sparsity_coefficient=3e-2, **hp), steps=200, lr=1e-2))
    assert l0["ours"] < 0.6 * l0["paper"], l0


# -- JumpReLU's straight-through estimators --------------------------------------------------------------
def test_jumprelu_pseudo_derivatives():
    pre = torch.tensor([[0.50, 0.52, 0.60, 0.40]], requires_grad=True)
    theta = torch.full((4,), 0.5, requires_grad=True)
    eps = 0.1
    StepFunction.apply(pre, theta, eps).sum().backward()
    # Inside the window |pre - theta| < eps/2 the L0 pseudo-derivative is 1/eps, else 0.
    torch.testing.assert_close(theta.grad, torch.tensor([-10.0, -10.0, 0.0, 0.0]))
    torch.testing.assert_close(pre.grad, torch.tensor([[10.0, 10.0, 0.0, 0.0]]))
    pre.grad = theta.grad = None
    out = JumpReLUFunction.apply(pre, theta, eps)
    assert torch.equal(out.detach(), torch.tensor([[0.0, 0.52, 0.60, 0.0]]))  # strictly above theta fires
    out.sum().backward()
    torch.testing.assert_close(pre.grad, torch.tensor([[0.0, 1.0, 1.0, 0.0]]))
    torch.testing.assert_close(theta.grad, torch.tensor([-5.0, -5.0, 0.0, 0.0]))  # -theta/eps in the window


@pytest.mark.parametrize("arch", ALL)
def test_half_precision_models_train(arch):
    sae = build_sae(arch, D_IN, D_SAE, dtype=torch.bfloat16)
    sae.init_from_data(planted_data(512))
    out = sae.training_step(planted_data(64).to(torch.bfloat16), StepContext(progress=0.5))
    out.loss.backward()
    assert torch.isfinite(out.loss) and sae.W_enc.grad.dtype == torch.bfloat16


def test_jumprelu_log_threshold_stays_fp32():
    sae = build_sae("jumprelu", D_IN, D_SAE, dtype=torch.bfloat16)
    assert sae.log_threshold.dtype == torch.float32 and sae.W_enc.dtype == torch.bfloat16
    f = sae.encode(planted_data(8))
    assert f.dtype == torch.bfloat16


# -- Gated: the auxiliary loss must not move the dictionary ---------------------------------------------------
def test_gated_aux_loss_goes_through_a_frozen_decoder():
    from sae.nn.base import normalized_mse
    sae = make("gated", l1_coefficient=0.0)
    x = planted_data(256, seed=9)
    sae.training_step(x, StepContext(progress=1.0)).loss.backward()
    full_grad = sae.W_dec.grad.clone()
    assert sae.b_gate.grad.abs().sum() > 0, "with L1 off, the gate learns from the aux loss alone"
    sae.zero_grad()
    # The reconstruction term alone gives W_dec the same gradient: the aux term adds nothing to it.
    xs = x * sae.act_scale
    pi_gate, pi_mag = sae.gate_and_magnitude(xs)
    feats = (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()
    normalized_mse(sae.decode_scaled(feats), xs).backward()
    torch.testing.assert_close(full_grad, sae.W_dec.grad)


def test_finalize_training_exists_everywhere():
    for arch in ALL:
        assert callable(getattr(build_sae(arch, D_IN, D_SAE), "finalize_training"))


# -- the k-sparse architectures' sparse training kernels are the dense path, computed sparsely ---------------------
@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka_batchtopk"])
@pytest.mark.parametrize("apply_b_dec_to_input", [True, False])
@pytest.mark.parametrize("with_dead", [False, True])
def test_sparse_kernels_equal_the_dense_path(arch, apply_b_dec_to_input, with_dead):
    import copy
    extra = {"group_sizes": [8, 24, 32]} if arch == "matryoshka_batchtopk" else {}
    sparse = train(make(arch, k=6, aux_k=10, **extra), steps=5)  # off the symmetric init
    sparse.apply_b_dec_to_input = apply_b_dec_to_input
    sparse.sparse_kernels = True
    sparse.zero_grad(set_to_none=True)
    dense = copy.deepcopy(sparse)
    dense.sparse_kernels = False
    dead = (torch.rand(D_SAE, generator=torch.Generator().manual_seed(0)) < 0.4) if with_dead else None
    x = planted_data(300, seed=21)
    outs, grads = {}, {}
    for name, sae in (("sparse", sparse), ("dense", dense)):
        xr = x.clone().requires_grad_(True)  # the input gradient path must agree too
        out = sae.training_step(xr, StepContext(progress=0.5, dead_mask=dead))
        out.loss.backward()
        outs[name] = out
        grads[name] = {n: p.grad for n, p in sae.named_parameters()} | {"x": xr.grad}
    assert torch.equal(outs["sparse"].feats, outs["dense"].feats)
    torch.testing.assert_close(outs["sparse"].x_hat, outs["dense"].x_hat, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outs["sparse"].loss, outs["dense"].loss, rtol=1e-6, atol=1e-7)
    assert outs["sparse"].terms.keys() == outs["dense"].terms.keys()
    assert ("auxk" in outs["sparse"].terms) == with_dead
    if arch != "topk":  # both paths move the inference threshold identically
        assert float(sparse.threshold) == pytest.approx(float(dense.threshold), rel=1e-6)
    for name in grads["dense"]:
        torch.testing.assert_close(grads["sparse"][name], grads["dense"][name], rtol=1e-5, atol=1e-7, msg=lambda m: f"{name}: {m}")


def test_top_entries_is_exact_and_ordered(monkeypatch):
    from sae.nn import sparse_ops
    g = torch.Generator().manual_seed(0)
    x = torch.randn(700, 300, generator=g)  # above 4 * SAMPLE once SAMPLE is small: the sampled path
    monkeypatch.setattr(sparse_ops, "SAMPLE", 4096)
    for n in (1, 700 * 8, 700 * 300 - 1):
        values, flat = sparse_ops.top_entries(x, n)
        ref_values, ref_flat = x.view(-1).topk(n)
        assert torch.equal(flat, ref_flat.sort().values)
        assert torch.equal(values, x.view(-1)[flat])
    # An unlucky sample (threshold too high) must fall back to the exact search, not lose entries.
    monkeypatch.setattr(torch.Tensor, "topk", _topk_with_inflated_sample_threshold(torch.Tensor.topk))
    values, flat = sparse_ops.top_entries(x, 700 * 8)
    assert torch.equal(flat, x.view(-1).topk(700 * 8).indices.sort().values)


def _topk_with_inflated_sample_threshold(topk):
    def patched(self, k, *args, **kwargs):
        out = topk(self, k, *args, **kwargs)
        if self.numel() == 4096:  # the sample: pretend its k-th largest is huge
            return torch.return_types.topk((out.values + 100.0, out.indices))
        return out
    return patched
