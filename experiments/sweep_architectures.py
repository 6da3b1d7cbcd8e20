"""Train every SAE architecture on the same SmolLM2 activations and compare them.

    .venv/bin/python experiments/sweep_architectures.py [configs/sweep_architectures.yaml] [--only topk relu] [key=value ...]

Each architecture runs the main job (sae.pipeline.run) with the shared base config plus its own
hyperparameters; the activation store is captured once and reused (same model+data fingerprint).
Writes results/architectures/{table.md, table.json, pareto.png} and one run folder per architecture.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sae.config import ConfigError, load_config  # noqa: E402

COLUMNS = [("explained_variance", "EV"), ("mse", "MSE"), ("l0", "L0"), ("dead_fraction", "dead %"),
           ("ce_loss_recovered", "CE rec."), ("kl_sae", "KL"), ("kl_score", "KL score")]


def read_sweep(path: Path) -> dict:
    sweep = yaml.safe_load(path.read_text())
    unknown = set(sweep) - {"base", "overrides", "output_dir", "architectures"}
    if unknown:
        raise ConfigError(f"unknown sweep keys {sorted(unknown)} in {path}; valid: base, overrides, output_dir, architectures")
    return sweep


def table_markdown(rows: list[dict]) -> str:
    head = "| architecture | hyperparameters | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        ev = row["eval"]
        cells = [f"{100 * ev[k]:.2f}" if k == "dead_fraction" else f"{ev.get(k, float('nan')):.4g}" for k, _ in COLUMNS]
        hp = ", ".join(f"{k}={v}" for k, v in row["hyperparams"].items() if k not in ("aux_k", "aux_coefficient", "threshold_momentum", "group_sizes"))
        lines.append(f"| {row['architecture']} | {hp} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_pareto(rows: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for row in rows:
        ev = row["eval"]
        ax.scatter(ev["l0"], ev["explained_variance"], s=40)
        ax.annotate(row["architecture"], (ev["l0"], ev["explained_variance"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("L0 (held-out tokens)")
    ax.set_ylabel("explained variance (held-out)")
    ax.set_title("SAE architectures on SmolLM2-135M " + rows[0]["hook"], fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep", nargs="?", default="configs/sweep_architectures.yaml")
    parser.add_argument("--only", nargs="*", help="architectures to (re)run; others are read from earlier results")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    sweep = read_sweep(Path(args.sweep))
    out_dir = Path(sweep.get("output_dir", "results/architectures"))
    from sae.models.zoo import load_model
    from sae.pipeline import run
    model, rows = None, []
    for arch, entry in sweep["architectures"].items():
        entry = entry or {}
        unknown = set(entry) - {"hyperparams", "overrides"}
        if unknown:
            raise ConfigError(f"architecture {arch!r}: unknown keys {sorted(unknown)}; valid: hyperparams, overrides")
        hyperparams = entry.get("hyperparams", {})
        summary_path = out_dir / arch / "metrics.json"
        if args.only is None or arch in args.only:
            overrides = [*sweep.get("overrides", []), *entry.get("overrides", []), *args.overrides,
                         f"name={arch}", f"output_dir={out_dir}",
                         f"sae.architecture={arch}", f"sae.hyperparams={json.dumps(hyperparams or {})}"]
            cfg = load_config(sweep["base"], overrides)
            model = model or load_model(cfg.model.name, device=cfg.model.device)
            print(f"== {arch}: {hyperparams} {entry.get('overrides', [])}", flush=True)
            shutil.rmtree(out_dir / arch / "checkpoints", ignore_errors=True)  # a sweep entry always retrains
            run(cfg, model=model)
        if summary_path.exists():
            rows.append(json.loads(summary_path.read_text()))
    (out_dir / "table.json").write_text(json.dumps(
        [{"architecture": r["architecture"], "hyperparams": r["hyperparams"], **r["eval"]} for r in rows], indent=2))
    (out_dir / "table.md").write_text(table_markdown(rows))
    plot_pareto(rows, out_dir / "pareto.png")
    print(table_markdown(rows))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ConfigError as err:
        print(f"sweep: error: {err}", file=sys.stderr)
        sys.exit(2)
