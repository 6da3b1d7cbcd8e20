"""YAML config for the inspection experiments (experiments/inspect_sae.py, polysemanticity.py,
interference.py): which SAE, which text, how much of it, where results go. Unknown keys fail loudly."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sae.config import load_yaml_config


class InspectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sae_dir: str = "results/default/sae"          # analysed when present (the main job writes it)
    fallback_config: str = "configs/inspect_small_sae.yaml"   # else: train this small run first
    fallback_overrides: list[str] = Field(default_factory=list)
    corpus: str | None = None                     # None: the corpus the SAE was trained on
    context_size: int | None = None               # None: the SAE's context size
    n_rows: int = Field(64, ge=1)                 # token rows streamed through the model
    skip_rows: int = Field(0, ge=0)               # start this many rows into the corpus
    batch_size: int = Field(8, ge=1)
    top_k: int = Field(16, ge=2)                  # top activations per unit (also the polysemanticity sample)
    n_samples: int = Field(32, ge=1)
    n_contexts: int = Field(5, ge=1)              # contexts per feature in dashboard / exports
    dashboard_max_features: int | None = None     # None: every alive feature
    coactivation_random_pairs: int = Field(4000, ge=0)
    out_dir: str = "results/inspect"
    seed: int = 0


def load_inspect_config(path: str | Path | None, overrides: list[str] = ()) -> InspectConfig:
    return load_yaml_config(InspectConfig, path, overrides)


def config_from_argv(argv: list[str], default: str = "configs/inspect.yaml") -> InspectConfig:
    """`[config.yaml] [key=value ...]`."""
    path = argv[0] if argv and argv[0].endswith((".yaml", ".yml")) else default
    overrides = [a for a in argv if "=" in a]
    return load_inspect_config(path, overrides)


def run_cli(main) -> None:
    """Run an inspection script's `main(argv)`; errors a user can fix print one line and exit 2."""
    import sys

    from sae.config import ConfigError
    from sae.models.zoo import ModelError
    try:
        main(sys.argv[1:])
    except (ConfigError, ModelError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
