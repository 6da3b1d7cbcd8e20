"""Matplotlib figures for a run, saved as small PNGs next to its metrics."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import torch

from sae.metrics import sparsity_log10


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_training_curves(log: list[dict], out: Path) -> None:
    panels = [("loss", "training loss"), ("explained_variance", "explained variance (train batches)"),
              ("l0", "L0"), ("dead_fraction", "dead-latent fraction")]
    tokens = [r["tokens"] for r in log]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels):
        ax.plot(tokens, [r.get(key, float("nan")) for r in log])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training tokens")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_density_histogram(firing_frequency: torch.Tensor, out: Path, n_tokens: int | None = None) -> None:
    log_freq = sparsity_log10(firing_frequency)
    dead = int((firing_frequency == 0).sum())
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.hist(log_freq[firing_frequency > 0].numpy(), bins=60, color="tab:blue")
    ax.axvline(-1, color="tab:red", ls="--", lw=1, label="dense (10%)")
    ax.set_xlabel("log10 firing frequency (held-out tokens)")
    ax.set_ylabel("latents")
    ax.set_title(f"latent density; {dead} dead latents" + (f" over {n_tokens} tokens" if n_tokens else ""), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_run(run_dir: Path, firing_frequency: torch.Tensor, n_tokens: int | None = None) -> None:
    run_dir = Path(run_dir)
    if (run_dir / "train_log.jsonl").exists():
        plot_training_curves(read_log(run_dir / "train_log.jsonl"), run_dir / "training_curves.png")
    plot_density_histogram(firing_frequency, run_dir / "latent_density.png", n_tokens)
