"""(4) Planted-feature benchmark: can each SAE architecture find N known directions?

Activations are sparse sums of N=512 unit directions in d=64 dims (uniform or power-law
frequencies, independent or correlated firing). We train every architecture in
sae.nn.ARCHITECTURES and report MMCS (true -> learned), the reverse MMCS, and the fraction of
true features recovered at cos > 0.9. Hyperparameters: from experiments/toy_planted_sweep.py's
choice if that has been run, else the config's.

Writes results/toy/planted_<dataset>.json and planted_cosines_<dataset>.png per dataset, then
merges every planted_<dataset>.json present into planted.json and planted.md (the table).
Run (all datasets, ~3 CPU minutes each):
    .venv/bin/python experiments/toy_planted.py [configs/toy_planted.yaml] [key=value ...]
or one dataset per command:  ... experiments/toy_planted.py only=power_law_correlated
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install

import torch

from sae.nn import ARCHITECTURES
from sae.toy.benchmark import build_dataset, run_one
from sae.toy.config import PlantedConfig, config_from_argv
from sae.toy.plots import cosine_histogram
from sae.toy.report import Timer, save_json, setup_run

COLUMNS = ["dataset", "architecture", "hyperparams", "mmcs", "mmcs_reverse", "frac_recovered_cos>0.9",
           "l0", "fvu", "dead_fraction", "seconds"]


def hyperparams_for(cfg: PlantedConfig) -> tuple[dict, str]:
    path = Path(cfg.sweep_results)
    if cfg.use_sweep_results and path.exists():
        return {**cfg.hyperparams, **json.loads(path.read_text())["chosen"]}, f"sweep ({path})"
    return cfg.hyperparams, "config"


def markdown_table(rows: list[dict]) -> str:
    def cell(column, v):
        if isinstance(v, dict):
            return ", ".join(f"{k}={x}" for k, x in v.items())
        if isinstance(v, float):
            return f"{v:.1f}" if column in ("l0", "seconds") else f"{v:.4f}"
        return str(v)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(c, r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def merge_tables(out: Path, cfg: PlantedConfig, source: str) -> list[dict]:
    """Rows of every dataset run so far, in config order, so per-dataset commands build one table."""
    order = [d.name for d in cfg.datasets]
    rows = []
    for name in order:
        path = out / f"planted_{name}.json"
        if path.exists():
            rows += [{k: v for k, v in r.items() if k != "per_true_max_cos"}  # arrays stay in the per-dataset file
                     for r in json.loads(path.read_text())["rows"]]
    best = max(rows, key=lambda r: (r["mmcs"], r["frac_recovered_cos>0.9"]))
    save_json(out / "planted.json", {"config": cfg.model_dump(exclude={"only"}), "hyperparams_source": source,
                                     "best": best, "rows": rows})
    (out / "planted.md").write_text(
        f"Planted features: {cfg.n_features} unit directions in {cfg.d} dims, {cfg.mean_active:g} active on "
        f"average, coefficients U[0,1]; d_sae={cfg.d_sae}, {cfg.train.steps} steps x batch {cfg.train.batch_size}, "
        f"lr {cfg.train.lr:g}. Hyperparameters from {source}. MMCS = mean over true features of the best "
        f"cosine with a decoder row; reverse = mean over decoder rows of the best cosine with a true feature.\n\n"
        + markdown_table(rows))
    print(f"wrote {out / 'planted.md'}; best: {best['architecture']} on {best['dataset']} MMCS {best['mmcs']:.4f}")
    return rows


def main():
    cfg = config_from_argv(PlantedConfig, "configs/toy_planted.yaml")
    out = setup_run(cfg.out_dir)
    hyperparams, source = hyperparams_for(cfg)
    architectures = cfg.architectures or list(ARCHITECTURES)
    datasets = [d for d in cfg.datasets if cfg.only in (None, d.name)]
    if not datasets:
        raise SystemExit(f"only={cfg.only!r} names no dataset; choose one of {[d.name for d in cfg.datasets]}")
    print(f"architectures: {architectures}; hyperparameters from {source}")
    for data in datasets:
        planted, pool = build_dataset(cfg, data)
        rows = []
        with Timer() as timer:
            for arch in architectures:
                t = cfg.train
                row = run_one(arch, planted, pool, cfg.d_sae, hyperparams.get(arch, {}), t.steps, t.batch_size,
                              t.lr, t.dead_window, t.seed)
                rows.append({"dataset": data.name, **row})
                print(f"{data.name:22s} {arch:22s} MMCS {row['mmcs']:.4f}  reverse {row['mmcs_reverse']:.4f}  "
                      f"recovered {row['frac_recovered_cos>0.9']:.1%}  L0 {row['l0']:.1f}")
        path = out / f"planted_{data.name}.json"
        if path.exists():  # rerunning some architectures keeps the other architectures' rows
            kept = [r for r in json.loads(path.read_text())["rows"] if r["architecture"] not in architectures]
            rows = kept + rows
        save_json(path, {"dataset": data.model_dump(), "seconds_last_run": timer.seconds,
                         "hyperparams_source": source, "rows": rows})
        cosine_histogram({r["architecture"]: torch.tensor(r["per_true_max_cos"]) for r in json.loads(path.read_text())["rows"]
                          if "per_true_max_cos" in r},
                         out / f"planted_cosines_{data.name}.png", f"{data.name}: {cfg.n_features} features in {cfg.d} dims")
    merge_tables(out, cfg, source)


if __name__ == "__main__":
    main()
