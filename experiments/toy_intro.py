"""(a) The intro figure of Toy Models of Superposition: n=5 features in m=2 dimensions.

Dense features: the model keeps the 2 most important, orthogonally, and sets the dropped
features' bias to E[x] = 0.5. As features get sparser it packs more of them: antipodal pairs,
then a pentagon (5 features, 72 degrees apart, negative bias to filter interference).

Run: .venv/bin/python experiments/toy_intro.py [configs/toy_intro.yaml] [key=value ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install

import matplotlib.pyplot as plt
import torch

from sae.toy import geometry
from sae.toy.config import IntroConfig, config_from_argv
from sae.toy.model import ToyModels
from sae.toy.plots import draw_features_2d, save
from sae.toy.report import Timer, save_json, setup_run
from sae.toy.train import train_sweep


def describe(W: torch.Tensor, b: torch.Tensor, loss: float) -> dict:
    represented = geometry.feature_norms(W) > 0.5
    return {
        "loss": loss,
        "norms": geometry.feature_norms(W),
        "bias": b,
        "polar_angles_deg": geometry.polar_angles_2d(W),
        "adjacent_gaps_deg": geometry.adjacent_angle_gaps(W),
        "n_represented": int(represented.sum()),
        "dimensionality": geometry.dimensionality(W),
        "is_pentagon": geometry.is_regular_polygon(W, 5),
        "is_square": geometry.is_regular_polygon(W, 4),   # two antipodal pairs at 90 degrees
        "is_orthogonal_pair": int(represented.sum()) == 2 and
                              abs(geometry.cosine_matrix(W[:, represented])[0, 1].item()) < 0.05,
    }


def main():
    cfg = config_from_argv(IntroConfig, "configs/toy_intro.yaml")
    out = setup_run(cfg.out_dir)
    n, m = cfg.n_features, cfg.n_hidden
    importance = cfg.importance_decay ** torch.arange(n, dtype=torch.float32)
    settings = [(torch.full((n,), d), importance) for d in cfg.densities]
    with Timer() as timer:
        sweep = train_sweep(settings, cfg.seeds, lambda k, seeds: ToyModels(k, n, m, "relu", seeds),
                            **cfg.train.model_dump(), desc="intro n=5 m=2")
    W, b = sweep.model.W.detach(), sweep.model.b.detach()

    results = []
    fig, axes = plt.subplots(1, len(cfg.densities), figsize=(2.3 * len(cfg.densities), 2.6))
    for s, density in enumerate(cfg.densities):
        runs = [{"seed": sweep.seed_of[k], **describe(W[k], b[k], sweep.result.final_loss[k].item())}
                for k in sweep.models_of(s)]
        best = sweep.best_of(s)
        results.append({"density": density, "sparsity": 1 - density, "best_seed": sweep.seed_of[best],
                        "pentagon_seeds": sum(r["is_pentagon"] for r in runs), "runs": runs})
        draw_features_2d(axes[s], W[best], importance, f"S = {1 - density:.2f}")
    save(fig, out / "intro_features_2d.png")
    save_json(out / "intro.json", {"config": cfg.model_dump(), "seconds": timer.seconds, "densities": results})
    for r in results:
        print(f"density {r['density']:<5} pentagon in {r['pentagon_seeds']}/{len(cfg.seeds)} seeds; "
              f"represented per seed: {[x['n_represented'] for x in r['runs']]}")


if __name__ == "__main__":
    main()
