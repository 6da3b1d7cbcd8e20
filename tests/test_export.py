"""SAELens-layout export (sae/io/saelens.py): exact round trips, the files SAELens expects, inference
from the raw files alone, atomic writes, and one-line errors for bad input. No SAELens needed here
(tests/test_saelens_interop.py checks against the real library)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sae.io import atomic

from sae.io import saelens as io
from sae.io.saelens import load_sae, read_sparsity, save_sae
from sae.nn import ARCHITECTURES, StepContext, build_sae

D_IN, D_SAE = 12, 48
META = {"model_name": "smollm2-135m", "hook_name": "blocks.6.hook_resid_post", "context_size": 128,
        "prepend_bos": True, "exclude_special_tokens": True, "dataset_path": "shakespeare"}
ALL = sorted(ARCHITECTURES)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra threads only cost synchronisation
    yield
    torch.set_num_threads(before)


def data(n: int, seed: int = 0) -> torch.Tensor:
    """Raw activations far from unit scale (so folding act_scale matters), with an offset."""
    g = torch.Generator().manual_seed(seed)
    return 4.0 * torch.randn(n, D_IN, generator=g) + 1.5


def trained(arch: str, steps: int = 15):
    torch.manual_seed(0)
    sae = build_sae(arch, D_IN, D_SAE)
    sae.init_from_data(data(1024))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for step in range(steps):  # a few steps so no parameter sits at its (often symmetric) init
        sae.apply_gradients(sae.training_step(data(256, seed=step + 1), StepContext(progress=step / steps)).loss, opt)
    sae.finalize_training()
    assert abs(float(sae.act_scale) - 1) > 0.1
    return sae


def saelens_inference(path, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What SAELens computes from the files, written out by hand from its v6 definitions."""
    cfg = json.loads((path / "cfg.json").read_text())
    w = load_file(str(path / "sae_weights.safetensors"))
    xin = x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x
    if cfg["architecture"] == "gated":
        gate = xin @ w["W_enc"] + w["b_gate"]
        mag = xin @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"]
        f = (gate > 0) * mag.relu()
    else:
        pre = xin @ w["W_enc"] + w["b_enc"]
        if cfg["architecture"] == "standard":
            f = pre.relu()
        elif cfg["architecture"] == "topk":
            v, i = pre.topk(cfg["k"], dim=-1)
            f = torch.zeros_like(pre).scatter(-1, i, v.relu())
        elif cfg["architecture"] == "jumprelu":
            f = pre.relu() * (pre > w["threshold"])
        else:
            raise AssertionError(cfg["architecture"])
    return f, f @ w["W_dec"] + w["b_dec"]


# -- round trip -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_round_trip_is_exact(arch, tmp_path):
    sae = trained(arch)
    sparsity = torch.linspace(-6, 0, D_SAE)
    save_sae(sae, tmp_path / "sae", META, sparsity=sparsity)
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is type(sae) and loaded.hyperparams() == sae.hyperparams()
    assert float(loaded.act_scale) == pytest.approx(float(sae.act_scale), rel=1e-6)
    x = data(500, seed=42)
    with torch.no_grad():
        f, f2 = sae.encode(x), loaded.encode(x)
        assert torch.equal(f > 0, f2 > 0), "the same latents fire"
        assert (f - f2).abs().max() < 1e-5
        assert (sae.decode(f) - loaded.decode(f)).abs().max() < 1e-5
    assert torch.equal(read_sparsity(tmp_path / "sae"), sparsity)
    # Parameters come back in the training space too (act_scale unfolded), so training could go on.
    for name, p in sae.named_parameters():
        torch.testing.assert_close(dict(loaded.named_parameters())[name], p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ALL)
def test_files_are_what_saelens_expects(arch, tmp_path):
    sae = trained(arch)
    save_sae(sae, tmp_path / "sae", META)
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE and cfg["dtype"] == "float32"
    assert cfg["architecture"] == sae.saelens_architecture and cfg["normalize_activations"] == "none"
    assert cfg["apply_b_dec_to_input"] == sae.apply_b_dec_to_input
    assert {k: cfg["metadata"][k] for k in META} == META
    assert cfg["superposition_lab"]["architecture"] == arch
    w = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    expected = {"W_enc": (D_IN, D_SAE), "W_dec": (D_SAE, D_IN), "b_dec": (D_IN,)}
    expected |= ({"b_gate": (D_SAE,), "r_mag": (D_SAE,), "b_mag": (D_SAE,)} if arch == "gated" else {"b_enc": (D_SAE,)})
    if cfg["architecture"] == "jumprelu":
        expected["threshold"] = (D_SAE,)
    assert {k: tuple(v.shape) for k, v in w.items()} == expected
    if arch in ("batchtopk", "matryoshka_batchtopk"):  # one fixed threshold, the running estimate
        assert torch.all(w["threshold"] == float(sae.threshold))
    assert not (tmp_path / "sae" / "sparsity.safetensors").exists()  # none given, none written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]   # no temp dirs left behind


@pytest.mark.parametrize("arch", ALL)
def test_raw_files_reproduce_the_sae_on_raw_activations(arch, tmp_path):
    """act_scale is folded in: SAELens's formulas on the files, fed raw x, give our encode/decode."""
    sae = trained(arch)
    save_sae(sae, tmp_path / "sae", META)
    x = data(400, seed=7)
    f_files, x_hat_files = saelens_inference(tmp_path / "sae", x)
    with torch.no_grad():
        f = sae.encode(x)
        assert (f - f_files).abs().max() < 1e-5
        assert (sae.decode(f) - x_hat_files).abs().max() < 1e-5


def test_foreign_saelens_exports_load(tmp_path):
    """A plain SAELens standard / topk / jumprelu folder (no key of ours) loads and matches its formulas."""
    g = torch.Generator().manual_seed(3)
    base = {"W_enc": torch.randn(D_IN, D_SAE, generator=g), "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
            "W_dec": torch.randn(D_SAE, D_IN, generator=g), "b_dec": torch.randn(D_IN, generator=g)}
    cases = {"standard": ({}, {"apply_b_dec_to_input": True}),
             "topk": ({}, {"k": 7}),
             "jumprelu": ({"threshold": torch.rand(D_SAE, generator=g)}, {})}
    x = data(300, seed=11)
    for arch, (extra, cfg_extra) in cases.items():
        folder = tmp_path / arch
        folder.mkdir()
        save_file(base | extra, str(folder / "sae_weights.safetensors"))
        cfg = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "architecture": arch, "apply_b_dec_to_input": False,
               "normalize_activations": "none", "metadata": {"sae_lens_version": "6.54.12"}} | cfg_extra
        (folder / "cfg.json").write_text(json.dumps(cfg))
        sae = load_sae(folder)
        f_ref, x_hat_ref = saelens_inference(folder, x)
        with torch.no_grad():
            assert (sae.encode(x) - f_ref).abs().max() < 1e-5, arch
            assert (sae.decode(f_ref) - x_hat_ref).abs().max() < 1e-5, arch
        assert sae.apply_b_dec_to_input == cfg["apply_b_dec_to_input"]


def test_topk_rescaled_by_decoder_norm_is_folded(tmp_path):
    g = torch.Generator().manual_seed(4)
    w = {"W_enc": torch.randn(D_IN, D_SAE, generator=g), "b_enc": torch.randn(D_SAE, generator=g),
         "W_dec": torch.randn(D_SAE, D_IN, generator=g) * 3, "b_dec": torch.randn(D_IN, generator=g)}
    save_file(w, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE, "architecture": "topk", "k": 5,
                                                   "rescale_acts_by_decoder_norm": True}))
    x = data(100, seed=1)
    norms = w["W_dec"].norm(dim=1)
    pre = ((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * norms
    v, i = pre.topk(5, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, i, v.relu())
    x_hat = f @ (w["W_dec"] / norms[:, None]) + w["b_dec"]
    sae = load_sae(tmp_path)
    with torch.no_grad():
        assert (sae(x) - x_hat).abs().max() < 1e-4


# -- atomic writes -------------------------------------------------------------------------------------------
def test_overwrite_replaces_and_a_crash_keeps_the_old_export(tmp_path, monkeypatch):
    first, second = trained("topk", steps=2), trained("topk", steps=10)
    save_sae(first, tmp_path / "sae", META)
    save_sae(second, tmp_path / "sae", META)  # replacing an existing export works
    torch.testing.assert_close(load_sae(tmp_path / "sae").W_dec, second.W_dec)

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(atomic, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_sae(first, tmp_path / "sae", META)
    torch.testing.assert_close(load_sae(tmp_path / "sae").W_dec, second.W_dec)  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]  # and no temp dir left


# -- bad input: one line, naming the problem and the fix --------------------------------------------------------
def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def good_export(tmp_path):
    path = tmp_path / "sae"
    save_sae(trained("jumprelu", steps=2), path, META)
    return path


def test_missing_directory_or_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_sae(tmp_path / "nope")
    assert "no SAE directory" in one_line(e)
    path = good_export(tmp_path)
    (path / "sae_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_sae(path)
    assert "sae_weights.safetensors is missing" in one_line(e)
    (path / "cfg.json").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_sae(path)
    assert "cfg.json is missing" in one_line(e)


def test_corrupt_files(tmp_path):
    path = good_export(tmp_path)
    weights = path / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as by a crash of a non-atomic writer
    with pytest.raises(ValueError) as e:
        load_sae(path)
    assert "not a readable safetensors file" in one_line(e) and "re-run" in one_line(e)
    (path / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError) as e:
        load_sae(path)
    assert "not valid JSON" in one_line(e)


def test_wrong_shapes_and_missing_tensors(tmp_path):
    path = good_export(tmp_path)
    w = load_file(str(path / "sae_weights.safetensors"))
    save_file(w | {"W_enc": torch.zeros(D_IN + 1, D_SAE)}, str(path / "sae_weights.safetensors"))
    with pytest.raises(ValueError) as e:
        load_sae(path)
    assert "W_enc has shape (13, 48)" in one_line(e) and "(12, 48)" in one_line(e)
    save_file({k: v for k, v in w.items() if k != "threshold"}, str(path / "sae_weights.safetensors"))
    with pytest.raises(ValueError) as e:
        load_sae(path)
    assert "lacks tensors ['threshold']" in one_line(e)


def test_unknown_architectures(tmp_path):
    path = good_export(tmp_path)
    cfg = json.loads((path / "cfg.json").read_text())
    (path / "cfg.json").write_text(json.dumps(cfg | {OUR: cfg[OUR] | {"architecture": "quantum"}}))
    with pytest.raises(ValueError) as e:
        load_sae(path)
    assert "unknown architecture 'quantum'" in one_line(e)
    (path / "cfg.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != OUR} | {"architecture": "temporal"}))
    with pytest.raises(ValueError) as e:
        load_sae(path)
    assert "'temporal' cannot be loaded" in one_line(e)


OUR = io.OUR_KEY


def test_bad_save_arguments(tmp_path):
    sae = trained("topk", steps=2)
    with pytest.raises(ValueError) as e:
        save_sae(sae, tmp_path / "a", {"model_name": "m"})
    assert "metadata lacks" in one_line(e)
    with pytest.raises(ValueError) as e:  # frequencies instead of log10 frequencies
        save_sae(sae, tmp_path / "a", META, sparsity=torch.rand(D_SAE))
    assert "log10" in one_line(e)
    with pytest.raises(ValueError) as e:
        save_sae(sae, tmp_path / "a", META, sparsity=torch.zeros(D_SAE + 1))
    assert "one value per latent" in one_line(e)
    untrained = build_sae("batchtopk", D_IN, D_SAE)
    with pytest.raises(ValueError) as e:
        save_sae(untrained, tmp_path / "a", META)
    assert "no inference threshold" in one_line(e)
    assert not (tmp_path / "a").exists()


def test_never_pickles(tmp_path):
    path = good_export(tmp_path)
    for file in path.iterdir():
        assert file.suffix in (".json", ".safetensors")
        assert b"\x80\x04" not in file.read_bytes()[:2]  # no pickle protocol header
