"""The figures of Elhage et al. (2022), drawn from our measurements. Small PNGs (dpi 80)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: experiments only write files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from sae.toy import geometry  # noqa: E402

DPI = 80


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"wrote {path}")


def draw_features_2d(ax, W: Tensor, importance: Tensor, title: str) -> None:
    """Each feature as an arrow in the 2-D hidden space, darker = more important."""
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, W.shape[1]))
    for i in range(W.shape[1]):
        ax.annotate("", xy=(W[0, i].item(), W[1, i].item()), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=colors[i], lw=2))
        ax.text(1.15 * W[0, i].item(), 1.15 * W[1, i].item(), str(i), fontsize=7, ha="center", va="center")
    ax.set_xlim(-1.4, 1.4)
    ax.set_ylim(-1.4, 1.4)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.85", lw=0.5)
    ax.axvline(0, color="0.85", lw=0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def draw_gram(ax, W: Tensor, title: str) -> None:
    ax.imshow(geometry.gram(W).numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def draw_bias(ax, b: Tensor) -> None:
    colors = ["tab:red" if v > 0 else "tab:blue" for v in b.tolist()]
    ax.barh(range(len(b)), b.numpy(), color=colors)
    ax.invert_yaxis()
    ax.set_xlim(-1, 1)
    ax.set_yticks([])
    ax.tick_params(labelsize=6)


def draw_norms(ax, W: Tensor) -> None:
    """The paper's bar: feature norm, coloured by superposition (black = own dimension, yellow = shared)."""
    norms = geometry.feature_norms(W)
    sup = geometry.superposition(W).clamp(0, 1)
    ax.barh(range(len(norms)), norms.numpy(), color=plt.cm.plasma(sup.numpy() * 0.9))
    ax.invert_yaxis()
    ax.set_xlim(0, 1.5)
    ax.set_yticks([])
    ax.tick_params(labelsize=6)


def dimensionality_figure(inverse_density: Tensor, D: Tensor, D_star: Tensor, path: Path) -> None:
    """D_i for every feature of every model against 1/(1-S) (log x), with the sticky fractions."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = inverse_density[:, None].expand_as(D)
    kept = D > 0.05
    ax.scatter(x[kept].numpy(), D[kept].numpy(), s=3, alpha=0.3, color="tab:blue", label="$D_i$ per feature")
    ax.plot(inverse_density.numpy(), D_star.numpy(), color="black", lw=1.5, label="$D^* = m/\\|W\\|_F^2$")
    for frac, label in [(1, "1"), (3 / 4, "3/4"), (2 / 3, "2/3"), (1 / 2, "1/2"), (2 / 5, "2/5"), (3 / 8, "3/8")]:
        ax.axhline(frac, color="0.7", lw=0.6, ls="--")
        ax.text(inverse_density.max().item() * 1.05, frac, label, fontsize=7, va="center")
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)  (inverse feature density)")
    ax.set_ylabel("dimensions per feature")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=7, loc="upper right")
    save(fig, path)


PHASE_COLORS = {0: "#4c72b0", 1: "#222222", 2: "#c44e52"}  # not represented / dedicated / superposition
PHASE_NAMES = {0: "not represented", 1: "dedicated dimension", 2: "superposition"}


def phase_figure(relative_importance: Tensor, density: Tensor, phase: Tensor, path: Path) -> None:
    """phase: [n_density, n_importance] in {0, 1, 2}."""
    from matplotlib.colors import ListedColormap
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    cmap = ListedColormap([PHASE_COLORS[i] for i in range(3)])
    ax.pcolormesh(relative_importance.numpy(), density.numpy(), phase.numpy(), cmap=cmap, vmin=-0.5,
                  vmax=2.5, shading="nearest")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("relative importance of feature 2")
    ax.set_ylabel("feature density (1 - S)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=PHASE_COLORS[i]) for i in range(3)]
    ax.legend(handles, [PHASE_NAMES[i] for i in range(3)], fontsize=7, loc="lower left")
    ax.set_title("feature 2 of n=2 in m=1", fontsize=9)
    save(fig, path)


def neuron_weights_figure(W1s: list[Tensor], titles: list[str], path: Path) -> None:
    """W1 [neurons, features] per model: a monosemantic neuron is a row with one strong entry."""
    fig, axes = plt.subplots(1, len(W1s), figsize=(2.6 * len(W1s), 2.8))
    for ax, W1, title in zip(np.atleast_1d(axes), W1s, titles):
        lim = W1.abs().max().item()
        ax.imshow(W1.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("feature", fontsize=7)
        ax.set_ylabel("neuron", fontsize=7)
        ax.tick_params(labelsize=6)
    save(fig, path)


def cosine_histogram(per_true: dict[str, Tensor], path: Path, title: str) -> None:
    """Distribution of each true feature's best cosine with any learned direction, per SAE."""
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = torch.linspace(0, 1, 41).numpy()
    for name, cos in per_true.items():
        ax.hist(cos.numpy(), bins=bins, histtype="step", lw=1.5, label=name)
    ax.axvline(0.9, color="0.5", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("max cosine of a true feature with a decoder row")
    ax.set_ylabel("true features")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    save(fig, path)
