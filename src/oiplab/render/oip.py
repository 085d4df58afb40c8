"""OIP galleries (plain and contrast-enhanced, silent maps marked), evolution strips, curves."""

from __future__ import annotations

import math

import numpy as np

from oiplab.render import pyplot


def contrast_enhance(image: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Stretch the image's `low`..`high` percentile range onto [0, 1], clipping the tails."""
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def min_max(image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def gallery_figure(
    images: np.ndarray,
    map_index: np.ndarray,
    loss: np.ndarray,
    silent: np.ndarray,
    title: str,
    *,
    enhance: bool = False,
    per_row: int = 16,
):
    """One tile per map: its OIP (min-max or contrast-enhanced), the map number and final loss.

    Args:
        images: (M, 28, 28) one OIP per map. silent: (M,) maps that never responded (marked).
    """
    plt = pyplot()
    m = len(map_index)
    rows = math.ceil(m / per_row)
    fig, axes = plt.subplots(
        rows, per_row, figsize=(per_row * 0.85, rows * 1.0 + 0.6), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= m:
            ax.axis("off")
            continue
        if silent[k]:
            ax.imshow(np.full((28, 28), 0.85), cmap="gray", vmin=0, vmax=1)
            ax.text(14, 15, "silent", ha="center", va="center", fontsize=6, color="crimson")
            for spine in ax.spines.values():
                spine.set_edgecolor("crimson")
        else:
            shown = contrast_enhance(images[k]) if enhance else min_max(images[k])
            ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{map_index[k]}: {loss[k]:.3g}", fontsize=5, pad=1.5)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(
        wspace=0.08, hspace=0.35, top=1 - 0.6 / (rows + 0.6), bottom=0.01, left=0.01, right=0.99
    )
    return fig


def evolution_figure(snapshots: np.ndarray, steps: np.ndarray, losses: np.ndarray, title: str):
    """The image at each snapshot step for one map (plain, then contrast-enhanced)."""
    plt = pyplot()
    n = len(steps)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(min_max(snapshots[j]), cmap="gray")
        axes[1, j].imshow(contrast_enhance(snapshots[j]), cmap="gray")
        axes[0, j].set_title(f"step {steps[j]}\nloss {losses[j]:.3g}", fontsize=7)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("plain", fontsize=8)
    axes[1, 0].set_ylabel("enhanced", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def loss_curves_figure(histories: np.ndarray, labels: list[str], title: str):
    """Objective per step (log step axis) for a few elements; NaN tails (stopped) are not drawn."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    steps = np.arange(histories.shape[1])
    for curve, label in zip(histories, labels, strict=True):
        ax.plot(steps + 1, curve, label=label, lw=1.2)
    ax.set_xscale("log")
    ax.set(xlabel="step + 1", ylabel="objective (mean activation)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
