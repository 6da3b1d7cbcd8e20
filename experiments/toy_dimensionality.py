"""(c) Dimensionality per feature against sparsity: the "sticky" fractions.

Uniform importance, n >> m. Each feature's D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2 is the
share of a dimension it gets. Features settle on a few geometries, seen as plateaus at
D = 1 (own dimension), 3/4 (tetrahedron), 2/3 (triangle), 1/2 (antipodal pair), 2/5
(pentagon), 3/8 (square antiprism), while D* = m / ||W||_F^2 falls with sparsity.

Run: .venv/bin/python experiments/toy_dimensionality.py [configs/toy_dimensionality.yaml] [key=value ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install

import torch

from sae.toy import geometry
from sae.toy.config import DimensionalityConfig, config_from_argv
from sae.toy.model import ToyModels
from sae.toy.plots import dimensionality_figure
from sae.toy.report import Timer, save_json, setup_run
from sae.toy.train import train_sweep

STICKY = {"1": 1.0, "3/4": 3 / 4, "2/3": 2 / 3, "1/2": 1 / 2, "2/5": 2 / 5, "3/8": 3 / 8}


def sticky_fractions(D: torch.Tensor, tolerance: float = 0.02) -> dict[str, float]:
    """Share of represented features whose D_i sits within `tolerance` of each sticky value."""
    kept = D[D > 0.05]
    return {name: ((kept - v).abs() < tolerance).float().mean().item() if kept.numel() else 0.0
            for name, v in STICKY.items()}


def main():
    cfg = config_from_argv(DimensionalityConfig, "configs/toy_dimensionality.yaml")
    out = setup_run(cfg.out_dir)
    n, m = cfg.n_features, cfg.n_hidden
    inverse_density = torch.logspace(torch.log10(torch.tensor(cfg.min_inverse_density)),
                                     torch.log10(torch.tensor(cfg.max_inverse_density)), cfg.n_sparsities)
    settings = [(torch.full((n,), 1 / v.item()), torch.ones(n)) for v in inverse_density]
    with Timer() as timer:
        sweep = train_sweep(settings, [0], lambda k, s: ToyModels(k, n, m, "relu", s),
                            **cfg.train.model_dump(), desc=f"dimensionality n={n} m={m}")
    W = sweep.model.W.detach()
    D = geometry.dimensionality(W)                    # [n_sparsities, n]
    D_star = geometry.dimensions_per_feature(W)       # [n_sparsities]
    dimensionality_figure(inverse_density, D, D_star, out / "dimensionality.png")
    rows = [{"inverse_density": v.item(), "sparsity": 1 - 1 / v.item(), "D_star": D_star[s].item(),
             "sum_D": D[s].sum().item(), "n_represented": int((geometry.feature_norms(W[s]) > 0.5).sum()),
             "sticky_fraction": sticky_fractions(D[s]), "D": D[s]} for s, v in enumerate(inverse_density)]
    save_json(out / "dimensionality.json", {"config": cfg.model_dump(), "seconds": timer.seconds, "m": m,
                                             "rows": rows})
    for r in rows:
        sticky = ", ".join(f"{name}: {frac:.0%}" for name, frac in r["sticky_fraction"].items() if frac > 0)
        print(f"1/(1-S)={r['inverse_density']:7.2f}  D*={r['D_star']:.3f}  sum D_i={r['sum_D']:.2f}  "
              f"features at a sticky value (+-0.02): {sticky or 'none'}")


if __name__ == "__main__":
    main()
