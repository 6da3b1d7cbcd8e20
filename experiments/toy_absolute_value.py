"""(e) Computation in superposition: compute |x_i| for sparse x_i in [-1, 1].

h = ReLU(W1 x), y = ReLU(W2 h + b). |x| = ReLU(x) + ReLU(-x), so each feature needs two
neurons. With dense inputs the model computes |x| for the most important n_neurons/2 features
with monosemantic neurons; as inputs get sparser it computes more features than it has neuron
pairs, and neurons become polysemantic (respond to several features).

Run: .venv/bin/python experiments/toy_absolute_value.py [configs/toy_absolute_value.yaml] [key=value ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install

import torch

from sae.toy.config import AbsValueConfig, config_from_argv
from sae.toy.model import HiddenReluModels
from sae.toy.plots import neuron_weights_figure
from sae.toy.report import Timer, save_json, setup_run
from sae.toy.train import train_sweep


def neuron_stats(W1: torch.Tensor, W2: torch.Tensor, threshold: float) -> dict:
    """W1 [neurons, features]. A neuron 'responds' to a feature when |W1[j, i]| > threshold."""
    alive = W1.abs().amax(1) > threshold
    features_per_neuron = (W1.abs() > threshold).sum(1)
    computed = (W1.abs() > threshold).any(0) & (W2.abs() > threshold).any(1)  # read in and written out
    return {
        "features_computed": int(computed.sum()),
        "alive_neurons": int(alive.sum()),
        "monosemantic_neurons": int((features_per_neuron == 1).sum()),
        "polysemantic_neurons": int((features_per_neuron > 1).sum()),
        "mean_features_per_alive_neuron": features_per_neuron[alive].float().mean().item() if alive.any() else 0.0,
        "features_per_neuron": features_per_neuron,
    }


def main():
    cfg = config_from_argv(AbsValueConfig, "configs/toy_absolute_value.yaml")
    out = setup_run(cfg.out_dir)
    n, m = cfg.n_features, cfg.n_neurons
    importance = cfg.importance_decay ** torch.arange(n, dtype=torch.float32)
    settings = [(torch.full((n,), d), importance) for d in cfg.densities]
    with Timer() as timer:
        sweep = train_sweep(settings, cfg.seeds, lambda k, s: HiddenReluModels(k, n, m, s), task="absolute",
                            **cfg.train.model_dump(), desc=f"|x| n={n} neurons={m}")
    W1, W2 = sweep.model.W1.detach(), sweep.model.W2.detach()
    rows, panels, titles = [], [], []
    for s, d in enumerate(cfg.densities):
        k = sweep.best_of(s)
        # Order neurons by their strongest feature so monosemantic ones line up on a diagonal.
        order = W1[k].abs().argmax(1).argsort()
        panels.append(W1[k][order])
        titles.append(f"W1, 1-S={d:g}")
        rows.append({"density": d, "best_seed": sweep.seed_of[k], "loss": sweep.result.final_loss[k].item(),
                     **neuron_stats(W1[k], W2[k], cfg.weight_threshold),
                     "per_seed_polysemantic": [neuron_stats(W1[j], W2[j], cfg.weight_threshold)["polysemantic_neurons"]
                                               for j in sweep.models_of(s)]})
    neuron_weights_figure(panels, titles, out / "absolute_value_neurons.png")
    save_json(out / "absolute_value.json", {"config": cfg.model_dump(), "seconds": timer.seconds, "rows": rows})
    for r in rows:
        print(f"density {r['density']:<5}: computes {r['features_computed']:2d} features with {r['alive_neurons']} "
              f"neurons; {r['polysemantic_neurons']} polysemantic, "
              f"{r['mean_features_per_alive_neuron']:.2f} features per neuron")


if __name__ == "__main__":
    main()
