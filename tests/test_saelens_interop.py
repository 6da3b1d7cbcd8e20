"""Interop with the real SAELens (v6): it loads our exports, and we load its saves, with identical
encode/decode on the same inputs. Skipped when sae-lens is not installed (it is in the `dev` extra)."""
from __future__ import annotations

import warnings

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")

from sae.io.saelens import load_sae, save_sae  # noqa: E402
from sae.nn import ARCHITECTURES, StepContext, build_sae  # noqa: E402

D_IN, D_SAE = 24, 96
TOL = 1e-5
META = {"model_name": "smollm2-135m", "hook_name": "blocks.6.hook_resid_post", "context_size": 128,
        "prepend_bos": True, "exclude_special_tokens": True}
EXPECTED_CLASS = {"standard": "StandardSAE", "topk": "TopKSAE", "jumprelu": "JumpReLUSAE", "gated": "GatedSAE"}


@pytest.fixture(autouse=True, scope="module")
def quiet_one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(before)


def data(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(n, D_IN, generator=g) + 0.7


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# -- SAELens reads ours ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_saelens_loads_our_export(arch, tmp_path):
    torch.manual_seed(0)
    sae = build_sae(arch, D_IN, D_SAE)
    sae.init_from_data(data(1024))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for step in range(15):
        sae.apply_gradients(sae.training_step(data(256, seed=step + 1), StepContext(progress=step / 15)).loss, opt)
    sae.finalize_training()
    save_sae(sae, tmp_path / "sae", META, sparsity=torch.full((D_SAE,), -3.0))

    theirs = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    assert type(theirs).__name__ == EXPECTED_CLASS[sae.saelens_architecture]
    assert theirs.cfg.metadata.hook_name == META["hook_name"]
    x = data(500, seed=99)
    with torch.no_grad():
        f_ours, f_theirs = sae.encode(x), theirs.encode(x)
        assert (f_ours > 0).float().sum() > 0
        assert max_diff(f_ours, f_theirs) < TOL
        assert max_diff(sae.decode(f_ours), theirs.decode(f_ours)) < TOL
        assert max_diff(sae(x), theirs(x)) < TOL


# -- we read SAELens's ---------------------------------------------------------------------------------------
def randomised(saelens_sae):
    """SAELens initialises biases (and thresholds) to zero; make every tensor matter."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in saelens_sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)  # decoder rows of norm ~1.5, not 1
            if name == "threshold":
                p.abs_()
    return saelens_sae


SAELENS_CASES = {
    "standard": lambda: sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=D_IN, d_sae=D_SAE)),
    "standard_no_b_dec_in": lambda: sae_lens.StandardSAE(
        sae_lens.StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=False)),
    "topk": lambda: sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=9)),
    "topk_rescaled": lambda: sae_lens.TopKSAE(
        sae_lens.TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=9, rescale_acts_by_decoder_norm=True)),
    "jumprelu": lambda: sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE)),
}


@pytest.mark.parametrize("case", sorted(SAELENS_CASES))
def test_we_load_saelens_saves(case, tmp_path):
    theirs = randomised(SAELENS_CASES[case]())
    theirs.save_model(tmp_path / "sae")
    ours = load_sae(tmp_path / "sae")
    x = data(500, seed=5)
    with torch.no_grad():
        f_theirs = theirs.encode(x)
        assert (f_theirs > 0).float().sum() > 0
        assert max_diff(ours.encode(x), f_theirs) < TOL
        assert max_diff(ours.decode(f_theirs), theirs.decode(f_theirs)) < TOL


def test_we_load_a_saelens_batchtopk_inference_save(tmp_path):
    """SAELens saves a trained BatchTopK as JumpReLU with its running threshold: same as ours."""
    cfg = sae_lens.BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=8, rescale_acts_by_decoder_norm=False)
    trainer_sae = randomised(sae_lens.BatchTopKTrainingSAE(cfg))
    trainer_sae.topk_threshold.fill_(0.4)
    trainer_sae.save_inference_model(tmp_path / "sae")
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    ours = load_sae(tmp_path / "sae")
    x = data(400, seed=6)
    with torch.no_grad():
        assert max_diff(ours.encode(x), theirs.encode(x)) < TOL
        assert max_diff(ours(x), theirs(x)) < TOL
