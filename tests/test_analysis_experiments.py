"""The three inspection experiments end to end on the session's tiny SAE (model reused, 2 rows)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_script(smol, tiny_run, tmp_path, monkeypatch):
    cfg, _ = tiny_run

    def run(name: str):
        module = load_script(name)
        monkeypatch.setattr("sae.models.zoo.load_model", lambda *a, **k: smol)  # the session's model, not a second copy
        args = [f"sae_dir={cfg.run_dir / 'sae'}", "n_rows=2", "skip_rows=0", "top_k=4", "n_samples=4",
                "coactivation_random_pairs=50", f"out_dir={tmp_path}"]
        return module.main(["configs/inspect.yaml", *args])
    return run


def test_polysemanticity_experiment(run_script, tmp_path):
    result = run_script("polysemanticity")
    saved = json.loads((tmp_path / "polysemanticity.json").read_text())
    assert saved["neuron_hook"] == "blocks.6.mlp.hook_post" and saved["n_tokens"] == result["n_tokens"] > 0
    for metric in ("token_entropy_bits", "tokens_for_80pct", "class_specificity"):
        both = saved["comparison"][metric]
        assert {"sae_features_median", "mlp_neurons_median", "features_more_specific"} <= set(both)
    assert (tmp_path / "polysemanticity.png").stat().st_size > 10_000


def test_interference_experiment(run_script, tmp_path, tiny_run):
    cfg, summary = tiny_run
    result = run_script("interference")
    assert result["n_directions"] == summary["d_sae"] and result["dim"] == summary["d_in"]
    assert 0 < result["welch_bound"] < result["max_abs_cos"]["median"]
    assert result["coactivation"]["n_tokens"] > 0 and (tmp_path / "interference.png").is_file()


def test_inspect_experiment(run_script, tmp_path):
    summary = run_script("inspect_sae")
    assert Path(summary["dashboard"]).is_file() and Path(summary["feature_dictionary"]).is_file()
    n_lines = sum(1 for _ in open(summary["feature_dictionary"]))
    assert n_lines == summary["alive_in_sample"] == len(list((Path(summary["neuronpedia"]) / "features").iterdir()))


def test_experiment_rejects_unknown_keys(tmp_path):
    from sae.config import ConfigError
    with pytest.raises(ConfigError, match="nrows"):
        load_script("interference").main(["configs/inspect.yaml", "nrows=3"])
