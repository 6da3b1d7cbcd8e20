"""(b) n=20 features in m=5 dims, importance 0.7^i, across sparsity: linear vs ReLU.

The linear model keeps exactly the 5 most important features at every sparsity (it can only
do PCA). The ReLU model packs more features as they get sparser, shown as W^T W (off-diagonal
= interference), per-feature norms coloured by superposition, and biases (negative = filtering
interference). Reference counts (DESIGN.md): 5, 7, 9, 10, 12, 11, 13 at density 1 ... 0.001.

Run: .venv/bin/python experiments/toy_sparsity_sweep.py [configs/toy_sparsity_sweep.yaml] [key=value ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install

import matplotlib.pyplot as plt
import torch

from sae.toy import geometry
from sae.toy.config import SparsitySweepConfig, config_from_argv
from sae.toy.model import ToyModels
from sae.toy.plots import draw_bias, draw_gram, draw_norms, save
from sae.toy.report import Timer, save_json, setup_run
from sae.toy.train import train_sweep


def summarise(W: torch.Tensor, b: torch.Tensor, loss: float) -> dict:
    n = W.shape[1]
    off_diagonal = geometry.gram(W) - torch.diag(geometry.gram(W).diagonal())
    return {
        "loss": loss,
        "n_represented": int((geometry.feature_norms(W) > 0.5).sum()),
        "frobenius_sq": W.pow(2).sum().item(),
        "max_abs_offdiag_WtW": off_diagonal.abs().max().item(),
        "n_negative_bias": int((b < -0.01).sum()),
        "norms": geometry.feature_norms(W),
        "superposition": geometry.superposition(W),
        "dimensionality": geometry.dimensionality(W),
        "bias": b,
        "top_m_kept": bool((geometry.feature_norms(W)[: W.shape[0]] > 0.5).all()) and n > 0,
    }


def main():
    cfg = config_from_argv(SparsitySweepConfig, "configs/toy_sparsity_sweep.yaml")
    out = setup_run(cfg.out_dir)
    n, m = cfg.n_features, cfg.n_hidden
    importance = cfg.importance_decay ** torch.arange(n, dtype=torch.float32)
    # Linear and ReLU models in ONE batched program: settings = (activation, density) pairs.
    kinds = [(a, d) for a in ("linear", "relu") for d in cfg.densities]
    settings = [(torch.full((n,), d), importance) for _, d in kinds]
    per_model_activation = [a for a, _ in kinds for _ in cfg.seeds]   # train_sweep's model order
    with Timer() as timer:
        sweep = train_sweep(settings, cfg.seeds, lambda k, s: ToyModels(k, n, m, per_model_activation, s),
                            **cfg.train.model_dump(), desc=f"linear+relu n={n} m={m}")
    W, b = sweep.model.W.detach(), sweep.model.b.detach()
    results, best = {"linear": [], "relu": []}, {"linear": [], "relu": []}
    for s, (activation, d) in enumerate(kinds):
        k = sweep.best_of(s)
        best[activation].append((W[k], b[k]))
        results[activation].append({
            "density": d,
            "best_seed": sweep.seed_of[k],
            "best": summarise(W[k], b[k], sweep.result.final_loss[k].item()),
            "n_represented_per_seed": [int((geometry.feature_norms(W[j]) > 0.5).sum()) for j in sweep.models_of(s)],
        })

    cols = len(cfg.densities)
    fig, axes = plt.subplots(2, cols, figsize=(1.6 * cols, 3.6))
    for row, activation in enumerate(("linear", "relu")):
        for s, d in enumerate(cfg.densities):
            draw_gram(axes[row, s], best[activation][s][0], f"{activation}\n1-S={d:g}")
    save(fig, out / "sparsity_sweep_WtW.png")

    fig, axes = plt.subplots(2, cols, figsize=(1.6 * cols, 4.2))
    for s, d in enumerate(cfg.densities):
        W, b = best["relu"][s]
        draw_norms(axes[0, s], W)
        axes[0, s].set_title(f"||W_i||, 1-S={d:g}", fontsize=7)
        draw_bias(axes[1, s], b)
        axes[1, s].set_title("bias b_i", fontsize=7)
    save(fig, out / "sparsity_sweep_norms_bias.png")

    save_json(out / "sparsity_sweep.json", {"config": cfg.model_dump(), "seconds": timer.seconds, **results})
    for activation in ("linear", "relu"):
        counts = [r["best"]["n_represented"] for r in results[activation]]
        print(f"{activation:6s} features with ||W_i|| > 0.5 at densities {cfg.densities}: {counts}")


if __name__ == "__main__":
    main()
