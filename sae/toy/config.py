"""Experiment configs: YAML files in configs/toy_*.yaml validated by pydantic models.

Unknown keys are an error (extra="forbid"), reported in one line, so a typo never silently
falls back to a default. Any field can be overridden on the command line as key=value
(values parsed as YAML: `steps=2000`, `densities=[1,0.1]`, `plot=false`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sae.config import ConfigError, load_yaml_config


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToyTraining(Strict):
    steps: int = 10_000
    batch_size: int = 1024
    lr: float = 1e-3
    seed: int = 0
    eval_batch: int = 8192   # fresh samples for the final loss that picks the best seed


class IntroConfig(Strict):
    """(a) n=5 features in m=2 dims at several sparsities: orthogonal pair -> antipodal -> pentagon."""
    n_features: int = 5
    n_hidden: int = 2
    importance_decay: float = 0.9          # I_i = decay^i
    densities: list[float] = [1.0, 0.25, 0.2, 0.1, 0.05]   # 1 - S
    seeds: list[int] = [0, 1, 2]
    train: ToyTraining = ToyTraining()
    out_dir: str = "results/toy"


class SparsitySweepConfig(Strict):
    """(b) n=20, m=5: W^T W and bias across sparsity, linear vs ReLU."""
    n_features: int = 20
    n_hidden: int = 5
    importance_decay: float = 0.7
    densities: list[float] = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]
    seeds: list[int] = [0, 1, 2]
    train: ToyTraining = ToyTraining()
    out_dir: str = "results/toy"


class DimensionalityConfig(Strict):
    """(c) uniform importance, n >> m: per-feature dimensionality D_i against 1/(1-S)."""
    n_features: int = 50
    n_hidden: int = 5
    n_sparsities: int = 16
    min_inverse_density: float = 1.0      # 1/(1-S), log-spaced between these two
    max_inverse_density: float = 100.0
    train: ToyTraining = ToyTraining()
    out_dir: str = "results/toy"


class PhaseDiagramConfig(Strict):
    """(d) 2 features in 1 dim: is the extra feature dropped, dedicated, or superposed?"""
    n_importance: int = 11                 # relative importance log-spaced in [0.1, 10]
    n_density: int = 11                    # density log-spaced in [0.01, 1]
    min_relative_importance: float = 0.1
    max_relative_importance: float = 10.0
    min_density: float = 0.01
    seeds: list[int] = [0, 1, 2]
    represented_norm: float = 0.5          # ||W_i|| above this counts as represented
    train: ToyTraining = ToyTraining()
    out_dir: str = "results/toy"


class AbsValueConfig(Strict):
    """(e) computation in superposition: learn |x| through a hidden ReLU layer."""
    n_features: int = 20
    n_neurons: int = 10
    importance_decay: float = 0.8
    densities: list[float] = [1.0, 0.3, 0.1, 0.03, 0.01]
    seeds: list[int] = [0, 1, 2]
    weight_threshold: float = 0.3          # |W1[j, i]| above this: neuron j responds to feature i
    train: ToyTraining = ToyTraining()
    out_dir: str = "results/toy"


class PlantedData(Strict):
    name: str
    frequency: str = "uniform"             # uniform | power_law
    power_law_exponent: float = 1.0
    group_size: int = 1
    correlation: float = 0.0


class SAETraining(Strict):
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    dead_window: int = 200
    seed: int = 0


class PlantedConfig(Strict):
    """(4) SAEs on sparse sums of known directions: do they find the directions?"""
    n_features: int = 512
    d: int = 64
    mean_active: float = 5.0
    pool_size: int = 131_072               # samples drawn once, then batches resampled from them
    d_sae: int = 512
    datasets: list[PlantedData] = [PlantedData(name="uniform")]
    only: str | None = None                  # run just the dataset with this name (each fits 5 CPU minutes)
    architectures: list[str] | None = None   # None: every architecture in sae.nn.ARCHITECTURES
    hyperparams: dict[str, dict] = {}        # per architecture; keys a constructor does not take are ignored
    use_sweep_results: bool = True           # take each architecture's hyperparams from sweep_results if there
    sweep_results: str = "results/toy/planted_sweep.json"
    sweep: dict[str, dict[str, list]] = {}   # toy_planted_sweep.py: per architecture {hyperparam: [values]}
    sweep_steps: int = 400
    train: SAETraining = SAETraining()
    data_seed: int = 0
    out_dir: str = "results/toy"


class SAEOnToyConfig(Strict):
    """(4b) SAEs on a toy model's hidden activations h = W x, compared with the columns of W."""
    n_features: int = 40
    n_hidden: int = 10
    density: float = 0.05
    toy_seed: int = 0
    toy_train: ToyTraining = ToyTraining()
    pool_size: int = 131_072
    d_sae: int = 40
    architectures: list[str] | None = None
    hyperparams: dict[str, dict] = {}
    train: SAETraining = SAETraining()
    represented_norm: float = 0.5
    out_dir: str = "results/toy"


def load_config(cls: type[Strict], path: str | Path | None, overrides: list[str] = ()) -> Strict:
    """The package's one YAML+overrides loader; the experiment scripts exit with its one-line message."""
    try:
        return load_yaml_config(cls, path, overrides)
    except ConfigError as err:
        raise SystemExit(f"{path or 'config'}: {err}") from None


def config_from_argv(cls: type[Strict], default_path: str, argv: list[str] | None = None) -> Strict:
    """`script.py [config.yaml] [key=value ...]`: the YAML path is optional."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = args.pop(0) if args and "=" not in args[0] else default_path
    return load_config(cls, path if Path(path).exists() or path != default_path else None, args)
