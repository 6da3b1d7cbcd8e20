"""(d) Phase diagram: 2 features in 1 dimension.

Feature 1 has importance 1, feature 2 importance r; both have density 1 - S. For each (r, density)
we ask what the model does with feature 2:
    not represented      ||W_2|| small
    dedicated dimension  feature 2 holds the dimension alone (feature 1 dropped)
    superposition        both stored, antipodally (W_1 W_2 < 0), the ReLU filtering interference
Dense: only the more important feature is kept. Sparse: both, in superposition.

Run: .venv/bin/python experiments/toy_phase_diagram.py [configs/toy_phase_diagram.yaml] [key=value ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install

import torch

from sae.toy.config import PhaseDiagramConfig, config_from_argv
from sae.toy.model import ToyModels
from sae.toy.plots import PHASE_NAMES, phase_figure
from sae.toy.report import Timer, save_json, setup_run
from sae.toy.train import train_sweep

NOT_REPRESENTED, DEDICATED, SUPERPOSITION, SAME_DIRECTION = 0, 1, 2, 3


def classify(w: torch.Tensor, threshold: float) -> int:
    """w: [2] the two features' weights in the single hidden dimension."""
    kept = w.abs() > threshold
    if not kept[1]:
        return NOT_REPRESENTED
    if not kept[0]:
        return DEDICATED
    # Both kept: antipodal is superposition; same sign is the "confused" solution at r ~ 1.
    return SUPERPOSITION if w[0] * w[1] < 0 else SAME_DIRECTION


def both_sign_patterns(n_models: int, seeds: list[int]) -> ToyModels:
    """With one hidden dimension, W_2 can only change sign by passing through 0, so a run whose
    features start with the same sign rarely finds the antipodal (superposition) solution: with
    random signs, 1 in 4 cells of 2 seeds got stuck. So even seeds start with the two weights of
    the same sign and odd seeds with opposite signs; the lower loss of the two is the phase."""
    model = ToyModels(n_models, 2, 1, "relu", seeds)
    with torch.no_grad():
        W = model.W[:, 0, :]
        flip = torch.tensor([-1.0 if s % 2 else 1.0 for s in seeds])
        W[:, 1] = W[:, 1].abs() * W[:, 0].sign() * flip
    return model


def main():
    cfg = config_from_argv(PhaseDiagramConfig, "configs/toy_phase_diagram.yaml")
    out = setup_run(cfg.out_dir)
    importances = torch.logspace(torch.log10(torch.tensor(cfg.min_relative_importance)),
                                 torch.log10(torch.tensor(cfg.max_relative_importance)), cfg.n_importance)
    densities = torch.logspace(torch.log10(torch.tensor(cfg.min_density)), 0.0, cfg.n_density)
    grid = [(d.item(), r.item()) for d in densities for r in importances]
    settings = [(torch.full((2,), d), torch.tensor([1.0, r])) for d, r in grid]
    with Timer() as timer:
        sweep = train_sweep(settings, cfg.seeds, both_sign_patterns,
                            **cfg.train.model_dump(), desc=f"phase diagram ({len(settings)} cells)")
    W = sweep.model.W.detach()[:, 0, :]  # [n_models, 2]
    phase = torch.tensor([classify(W[sweep.best_of(s)], cfg.represented_norm) for s in range(len(settings))])
    phase_grid = phase.reshape(cfg.n_density, cfg.n_importance)
    phase_figure(importances, densities, phase_grid.clamp(max=2), out / "phase_diagram.png")
    names = {**PHASE_NAMES, SAME_DIRECTION: "both, same direction (confused)"}
    cells = [{"density": d, "relative_importance": r, "phase": names[int(p)], "w": W[sweep.best_of(s)]}
             for s, ((d, r), p) in enumerate(zip(grid, phase))]
    counts = {names[i]: int((phase == i).sum()) for i in names}
    save_json(out / "phase_diagram.json", {"config": cfg.model_dump(), "seconds": timer.seconds,
                                            "phase_counts": counts, "cells": cells})
    print("phase counts:", counts)
    print("rows: density (top = sparsest), columns: relative importance 0.1 -> 10;",
          "0 not represented, 1 dedicated, 2 superposition, 3 same direction")
    for d, row in zip(densities.tolist(), phase_grid.tolist()):
        print(f"  density {d:6.3f}: {' '.join(map(str, row))}")


if __name__ == "__main__":
    main()
