"""Toy models of superposition (Elhage et al. 2022) and SAEs checked against planted ground truth.

One idea per file:
    data.py       sparse synthetic features (the toy model's input distribution)
    model.py      many toy models trained as one tensor program (W: [n_models, m, n])
    train.py      the training loop for a batch of toy models
    geometry.py   measurements: feature norms, superposition, dimensionality, angles, W^T W
    planted.py    activations built from N known unit directions (ground truth for SAEs)
    recovery.py   how well learned directions match true ones (MMCS, fraction recovered)
    sae_fit.py    a small SAE training loop over the sae.nn contract, with dead-latent tracking
    benchmark.py  one planted-benchmark run: build the data, fit an SAE, score it
    config.py     YAML -> pydantic configs for experiments/toy_*.py, with key=value overrides
    plots.py      the matplotlib figures the experiments write to results/toy/
    report.py     JSON output (no pickle), timers, per-run setup
"""
