"""Matplotlib figures for the analyses (files only; Agg backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from sae.analysis.polysemanticity import PolysemanticityScores

COLOURS = {"sae_features": "tab:orange", "mlp_neurons": "tab:blue", "residual_basis": "tab:gray"}
METRICS = [("token_entropy", "token-type entropy of top activations (bits)\nlower = more specific"),
           ("tokens_for_80pct", "token types covering 80% of top-activation mass\nlower = more specific"),
           ("class_specificity", "largest token-class share of top-activation mass\nhigher = more specific")]


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def polysemanticity_figure(scores: dict[str, PolysemanticityScores], path: Path, title: str = "") -> Path:
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 3.8))
    for ax, (metric, label) in zip(axes, METRICS):
        values = {name: getattr(s, metric).double() for name, s in scores.items() if s.unit_ids.numel()}
        lo = min(v.min().item() for v in values.values())
        hi = max(v.max().item() for v in values.values())
        bins = torch.linspace(lo, hi + 1e-9, 30).numpy() if metric != "tokens_for_80pct" else \
            torch.arange(lo - 0.5, hi + 1.5).numpy()
        for name, v in values.items():
            colour = COLOURS.get(name)
            ax.hist(v.numpy(), bins=bins, density=True, histtype="step", linewidth=1.8, color=colour,
                    label=f"{name} (n={v.numel()}, median {v.median().item():.2f})")
            ax.axvline(v.median().item(), color=colour, linestyle="--", linewidth=1)
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("density of units")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def interference_figure(max_cos: Tensor, random_max_cos: Tensor, welch: float, alignment: Tensor | None,
                        pair_cos: Tensor | None, pair_coact: Tensor | None, pair_nearest: Tensor | None,
                        path: Path, title: str = "") -> Path:
    panels = 1 + (alignment is not None) + (pair_cos is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8))
    axes = [axes] if panels == 1 else list(axes)
    ax = axes.pop(0)
    hi = max(max_cos.max().item(), random_max_cos.max().item(), welch) * 1.05
    bins = torch.linspace(0, hi, 60).numpy()
    ax.hist(max_cos.numpy(), bins=bins, alpha=0.7, label=f"decoder (median {max_cos.median().item():.3f})", color="tab:orange")
    ax.hist(random_max_cos.numpy(), bins=bins, alpha=0.5, label=f"random, same N and d (median {random_max_cos.median().item():.3f})",
            color="tab:gray")
    ax.axvline(welch, color="k", linestyle="--", label=f"Welch bound {welch:.3f}")
    ax.set_xlabel("max |cos| to any other feature")
    ax.set_ylabel("features")
    ax.legend(fontsize=7)
    if alignment is not None:
        ax = axes.pop(0)
        lo, hi = alignment.min().item(), alignment.max().item()
        ax.hist(alignment.numpy(), bins=50, range=(lo - 1e-3, hi + 1e-3), color="tab:green")  # range: all-equal data
        ax.set_xlabel("cos(encoder row, decoder row) per feature")
        ax.set_ylabel("features")
    if pair_cos is not None:
        ax = axes.pop(0)
        ok = ~pair_coact.isnan()
        for mask, label, colour in ((pair_nearest & ok, "nearest-neighbour pairs", "tab:red"),
                                    (~pair_nearest & ok, "random pairs", "tab:gray")):
            ax.scatter(pair_cos[mask].numpy(), pair_coact[mask].numpy(), s=4, alpha=0.4, label=label, color=colour)
        ax.set_xlabel("|cos| between the two decoder directions (interference)")
        ax.set_ylabel("P(both fire | rarer fires)")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
