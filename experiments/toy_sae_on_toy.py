"""(4b) SAEs on a toy model's hidden activations: do they recover the columns of W?

Train one ReLU toy model (n features in m < n dims, sparse: it superposes), record its hidden
activations h = W x, train each SAE architecture on h, and compare the SAE's decoder rows with
the toy model's feature directions W_i (the represented ones, ||W_i|| > 0.5). This is planted
ground truth that a network chose itself, geometry and all.

Run: .venv/bin/python experiments/toy_sae_on_toy.py [configs/toy_sae_on_toy.yaml] [key=value ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout, no install

import torch

from sae.nn import ARCHITECTURES
from sae.toy import geometry
from sae.toy.config import SAEOnToyConfig, config_from_argv
from sae.toy.data import sparse_features
from sae.toy.model import ToyModels
from sae.toy.plots import cosine_histogram
from sae.toy.recovery import max_cosines, recovery_report
from sae.toy.report import Timer, save_json, setup_run
from sae.toy.sae_fit import decoder_directions, fit_sae, pooled_sampler
from sae.toy.train import train_sweep


def main():
    cfg = config_from_argv(SAEOnToyConfig, "configs/toy_sae_on_toy.yaml")
    out = setup_run(cfg.out_dir)
    n, m = cfg.n_features, cfg.n_hidden
    density = torch.full((n,), cfg.density)
    with Timer() as toy_timer:
        sweep = train_sweep([(density, torch.ones(n))], [cfg.toy_seed], lambda k, s: ToyModels(k, n, m, "relu", s),
                            **cfg.toy_train.model_dump(), desc=f"toy model n={n} m={m}")
    W = sweep.model.W.detach()[0]                              # [m, n]
    represented = geometry.feature_norms(W) > cfg.represented_norm
    true_dirs = W[:, represented].T                            # [n_represented, m]
    with torch.no_grad():
        x = sparse_features(density[None], cfg.pool_size, torch.Generator().manual_seed(cfg.toy_seed + 7))
        pool = sweep.model.hidden(x)[0]                        # [pool, m]
    print(f"toy model represents {int(represented.sum())}/{n} features in {m} dims "
          f"(mean D_i {geometry.dimensionality(W)[represented].mean():.3f}); coherence of W's columns "
          f"{geometry.coherence(true_dirs.T):.3f}")

    rows, cosines = [], {}
    with Timer() as sae_timer:
        for arch in cfg.architectures or list(ARCHITECTURES):
            t = cfg.train
            fit = fit_sae(arch, pooled_sampler(pool), m, cfg.d_sae, steps=t.steps, batch_size=t.batch_size, lr=t.lr,
                          hyperparams=cfg.hyperparams.get(arch, {}), dead_window=t.dead_window, seed=t.seed)
            learned = decoder_directions(fit.sae)
            cosines[arch] = max_cosines(true_dirs, learned)[0]
            rows.append({"architecture": arch, "hyperparams": fit.hyperparams, **recovery_report(true_dirs, learned),
                         "l0": fit.l0, "fvu": fit.fvu, "dead_fraction": fit.dead_fraction,
                         "seconds": round(fit.seconds, 1)})
            r = rows[-1]
            print(f"{arch:22s} MMCS vs W columns {r['mmcs']:.4f}  reverse {r['mmcs_reverse']:.4f}  "
                  f"recovered {r['frac_recovered_cos>0.9']:.1%}  L0 {r['l0']:.2f}  FVU {r['fvu']:.3f}")
    cosine_histogram(cosines, out / "sae_on_toy_cosines.png", f"SAEs on toy hidden h = Wx (n={n}, m={m})")
    save_json(out / "sae_on_toy.json", {
        "config": cfg.model_dump(), "toy_seconds": toy_timer.seconds, "sae_seconds": sae_timer.seconds,
        "toy": {"n_represented": int(represented.sum()), "norms": geometry.feature_norms(W),
                "dimensionality": geometry.dimensionality(W), "coherence": geometry.coherence(true_dirs.T),
                "welch_bound": geometry.welch_bound(int(represented.sum()), m)},
        "rows": rows})


if __name__ == "__main__":
    main()
