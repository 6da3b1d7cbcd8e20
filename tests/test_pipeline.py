"""The main job end to end on a tiny budget, and its one-line errors on bad input."""
import json

import pytest
import torch

from sae.cli import main
from sae.config import ConfigError, load_config


def test_tiny_run_writes_metrics_export_and_plots(tiny_run):
    cfg, summary = tiny_run
    run_dir = cfg.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ev = metrics["eval"]
    assert ev["l0"] == pytest.approx(16.0)                  # TopK: exactly k per token
    assert 0.3 < ev["explained_variance"] < 1.0             # learned something, not the identity
    assert ev["ce_clean"] < ev["ce_sae"] < ev["ce_zero_ablation"]
    assert 0 < ev["ce_loss_recovered"] <= 1.0
    assert ev["n_tokens"] == 4 * 127                         # 4 eval rows, BOS excluded
    assert metrics["offline"]["HF_HUB_OFFLINE"] == "1"
    for name in ("sae/cfg.json", "sae/sae_weights.safetensors", "sae/sparsity.safetensors",
                 "training_curves.png", "latent_density.png", "train_log.jsonl", "config.yaml"):
        assert (run_dir / name).stat().st_size > 0, name
    exported = json.loads((run_dir / "sae/cfg.json").read_text())
    assert exported["metadata"]["hook_name"] == "blocks.6.hook_resid_post"
    assert exported["metadata"]["exclude_special_tokens"] is True


def test_exported_sae_reproduces_eval_reconstruction(tiny_run, smol):
    from sae.io.saelens import load_sae
    cfg, summary = tiny_run
    sae = load_sae(cfg.run_dir / "sae")
    ids = smol.tokenizer("To be, or not to be, that is the question.", return_tensors="pt").input_ids
    _, cache = smol.run_with_cache(ids, names_filter=cfg.model.hook, stop_at_layer=7)
    x = cache[cfg.model.hook][0, 1:]
    with torch.no_grad():
        x_hat = sae(x)
    ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert ev > 0.2 and (sae.encode(x) > 0).sum(-1).eq(16).all()


def test_rerun_resumes_from_checkpoint_without_retraining(tiny_run, smol, monkeypatch):
    cfg, first = tiny_run
    from sae import pipeline
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: smol)
    again = pipeline.run(cfg)
    assert again["train_steps"] == first["train_steps"]
    assert again["eval"]["explained_variance"] == pytest.approx(first["eval"]["explained_variance"], abs=1e-6)


def test_checkpoint_from_another_config_is_refused(tiny_run, smol, monkeypatch, capsys):
    cfg, _ = tiny_run
    from sae import pipeline
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: smol)
    other = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 0.5})})
    before = (cfg.run_dir / "checkpoints/latest/model.safetensors").read_bytes()
    from sae.training.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="another config"):
        pipeline.run(other)
    assert (cfg.run_dir / "checkpoints/latest/model.safetensors").read_bytes() == before  # nothing lost


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("override, message", [
    ("train.lrr=0.1", "unknown config key 'train.lrr'"),
    ("colour=blue", "unknown config key 'colour'"),
    ("train.lr=-1", "invalid config value for 'train.lr'"),
    ("sae.architecture=spiky", "unknown sae.architecture 'spiky'"),
    ("sae.hyperparams.kk=3", "unknown sae.hyperparams ['kk']"),
    ("data.corpus=/no/such/file.txt", "corpus '/no/such/file.txt' not found"),
    ("model.name=not-a-model", "unknown model 'not-a-model'"),
    ("model.hook=blocks.77.hook_resid_post", "layer 77 is out of range"),
])
def test_bad_input_is_one_line_error(override, message, capsys, tiny_config_overrides, monkeypatch, smol):
    from sae import pipeline
    real_load = pipeline.load_model
    monkeypatch.setattr(pipeline, "load_model", lambda name, **k: smol if name == "smollm2-135m" else real_load(name, **k))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = run_cli(["run", "configs/default.yaml", *tiny_config_overrides, "name=bad", override], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err


def test_missing_config_file_is_one_line_error(capsys):
    code, err = run_cli(["run", "configs/nope.yaml"], capsys)
    assert code == 2 and "config file configs/nope.yaml not found" in err and len(err.splitlines()) == 1


def test_overrides_parse_yaml_values():
    cfg = load_config("configs/default.yaml", ["train.lr=3e-4", "sae.hyperparams.k=64", "data.corpus=kjv"])
    assert cfg.train.lr == 3e-4 and cfg.sae.hyperparams["k"] == 64 and cfg.data.corpus == "kjv"
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("configs/default.yaml", ["train.lr"])


def test_corrupt_shard_is_one_line_error_and_store_is_kept(tiny_run, smol, monkeypatch, capsys, tiny_config_overrides):
    cfg, _ = tiny_run
    from sae import pipeline
    from sae.paths import cache_dir
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: smol)
    from sae.config import fingerprint
    n_train, _ = pipeline.row_counts(cfg)
    store = cache_dir() / "stores" / f"smollm2-135m-{fingerprint(pipeline.store_meta(cfg, n_train))}"
    shard = sorted(store.glob("shard_*.safetensors"))[0]
    original = shard.read_bytes()
    try:
        corrupted = bytearray(original)
        corrupted[-100] ^= 0xFF
        shard.write_bytes(bytes(corrupted))
        code, err = run_cli(["run", "configs/default.yaml", *tiny_config_overrides], capsys)
        assert code == 2 and len(err.splitlines()) == 1
        assert shard.name in err and "sha256" in err.lower() or "checksum" in err.lower(), err
        assert shard.exists() and (store / "manifest.json").exists()  # nothing deleted
    finally:
        shard.write_bytes(original)
