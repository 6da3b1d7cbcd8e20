"""`sae` command line: `sae run CONFIG [section.key=value ...]`.

Errors the user can fix (bad config, missing corpus, unknown model, corrupt store or checkpoint)
print one line naming the problem and the fix, and exit with status 2; nothing already written
is touched.
"""
from __future__ import annotations

import argparse
import os
import sys



def _user_errors() -> tuple[type[Exception], ...]:
    from sae.activations.store import StoreError
    from sae.config import ConfigError
    from sae.data.corpora import CorpusError
    from sae.models.zoo import ModelError
    from sae.training.checkpoint import CheckpointError
    from sae.training.trainer import TrainingError
    return (ConfigError, CorpusError, ModelError, StoreError, CheckpointError, TrainingError, FileNotFoundError)


def cmd_run(args) -> int:
    from sae.config import load_config
    from sae.models.zoo import ZOO
    cfg = load_config(args.config, args.overrides)
    if cfg.model.name in ZOO:  # the embedded zoo never needs a hub; make sure nothing tries
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sae.pipeline import run
    summary = run(cfg)
    ev = summary["eval"]
    print(f"done: {cfg.run_dir}/metrics.json  EV={ev['explained_variance']:.3f}  L0={ev['l0']:.1f}  "
          f"dead={ev['dead_fraction']:.3%}  CE recovered={ev.get('ce_loss_recovered', float('nan')):.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sae", description="Sparse autoencoders on pretrained transformers, offline.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="capture activations, train an SAE, evaluate and export it")
    run.add_argument("config", help="YAML config, e.g. configs/default.yaml")
    run.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=3e-4 sae.hyperparams.k=64")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as err:
        print(f"sae: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sae: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
