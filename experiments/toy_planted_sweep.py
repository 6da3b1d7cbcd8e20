"""(4, step 1) A tiny hyperparameter sweep per SAE architecture on planted data.

For each architecture, try each value listed under `sweep` (k for TopK-like SAEs, the sparsity
coefficient for L1/L0-penalised ones) on the first dataset with short training, and keep the
value with the highest MMCS. This uses the ground truth to choose, which is the point of a
planted benchmark: it asks what each architecture can reach at its best setting.
experiments/toy_planted.py then reads the choice from results/toy/planted_sweep.json. Running a
subset (architectures=[gated,jumprelu]) updates those architectures' entries and keeps the rest.

Run: .venv/bin/python experiments/toy_planted_sweep.py [configs/toy_planted.yaml] [key=value ...]
     (all six architectures take ~8 CPU minutes; two commands of three architectures fit 5 each)
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install

from sae.nn import ARCHITECTURES
from sae.toy.benchmark import build_dataset, run_one
from sae.toy.config import PlantedConfig, config_from_argv
from sae.toy.report import Timer, save_json, setup_run


def main():
    cfg = config_from_argv(PlantedConfig, "configs/toy_planted.yaml")
    out = setup_run(cfg.out_dir)
    planted, pool = build_dataset(cfg, cfg.datasets[0])
    architectures = cfg.architectures or list(ARCHITECTURES)
    trials, chosen = [], {}
    with Timer() as timer:
        for arch in architectures:
            base = dict(cfg.hyperparams.get(arch, {}))
            grid = cfg.sweep.get(arch, {})
            # One hyperparameter at a time keeps the sweep tiny (it is one per architecture here).
            candidates = [dict(base, **{key: v}) for key, values in grid.items() for v in values] or [base]
            best = None
            for hp in candidates:
                row = run_one(arch, planted, pool, cfg.d_sae, hp, cfg.sweep_steps, cfg.train.batch_size,
                              cfg.train.lr, cfg.train.dead_window, cfg.train.seed)
                row.pop("per_true_max_cos")
                trials.append(row)
                print(f"{arch:22s} {hp}  MMCS {row['mmcs']:.4f}  L0 {row['l0']:.1f}  FVU {row['fvu']:.3f}")
                if best is None or row["mmcs"] > best["mmcs"]:
                    best = row
            chosen[arch] = best["hyperparams"]
    path = out / "planted_sweep.json"
    if path.exists():  # keep earlier results for architectures not rerun now
        earlier = json.loads(path.read_text())
        chosen = {**earlier["chosen"], **chosen}
        trials = [t for t in earlier["trials"] if t["architecture"] not in architectures] + trials
    save_json(path, {"config": cfg.model_dump(), "dataset": cfg.datasets[0].name,
                     "steps_per_trial": cfg.sweep_steps, "seconds_last_run": timer.seconds,
                     "chosen": chosen, "trials": trials})


if __name__ == "__main__":
    main()
