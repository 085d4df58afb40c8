"""Figures of the cross-seed comparison."""

from __future__ import annotations

import math

import numpy as np

from oiplab.render import pyplot
from oiplab.render.oip import min_max


def ordered_correlations_figure(
    corrs: dict[str, np.ndarray], perms: dict[str, np.ndarray], title: str
):
    """Correlation matrices with b's maps re-ordered by the matching: a bright diagonal means
    every map of a has a partner in b."""
    plt = pyplot()
    n = len(corrs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.9 * rows), squeeze=False, layout="constrained"
    )
    for ax, (layer, corr) in zip(axes.flat, corrs.items(), strict=False):
        shown = ax.imshow(
            corr[:, perms[layer]], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest"
        )
        ax.set_title(layer)
        ax.set_xlabel("map of b (matched order)")
        ax.set_ylabel("map of a")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(shown, ax=axes, shrink=0.6, label="activation correlation")
    fig.suptitle(title)
    return fig


def summary_figure(
    summary: dict[str, dict], baseline: dict[str, dict], cka_diag: dict, cka_base: dict, title: str
):
    """Per layer: matched correlation, same-index fraction vs chance, CKA; trained vs untrained."""
    plt = pyplot()
    layers = list(summary)
    x = np.arange(len(layers))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    width = 0.38
    panels = (
        ("matched_corr_median", "median matched correlation"),
        ("same_index_fraction", "same-index fraction"),
    )
    for ax, (key, label) in zip(axes[:2], panels, strict=True):
        ax.bar(x - width / 2, [summary[n][key] for n in layers], width, label="seed vs seed")
        ax.bar(
            x + width / 2,
            [baseline[n][key] for n in layers],
            width,
            label="seed vs untrained",
            color="lightgray",
        )
        ax.set_title(label)
    axes[1].plot(
        x, [summary[n]["same_index_chance"] for n in layers], "k_", ms=18, label="chance (1/n maps)"
    )
    axes[2].bar(x - width / 2, [cka_diag[n] for n in layers], width, label="seed vs seed")
    axes[2].bar(
        x + width / 2,
        [cka_base[n] for n in layers],
        width,
        label="seed vs untrained",
        color="lightgray",
    )
    axes[2].set_title("linear CKA, same layer")
    for ax in axes:
        ax.set_xticks(x, layers, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def aligned_filters_figure(
    filters_a: np.ndarray, filters_b: np.ndarray, cosine: np.ndarray, title: str, per_row: int = 8
):
    """Conv2D_1 filters of a (upper tile) above b's matched filter (lower tile), with cosines."""
    plt = pyplot()
    n = filters_a.shape[-1]
    rows = math.ceil(n / per_row)
    fig, axes = plt.subplots(2 * rows, per_row, figsize=(per_row * 1.1, rows * 2.5), squeeze=False)
    lim = float(max(np.abs(filters_a).max(), np.abs(filters_b).max()))
    for k in range(rows * per_row):
        r, c = divmod(k, per_row)
        for ax, filters in ((axes[2 * r, c], filters_a), (axes[2 * r + 1, c], filters_b)):
            ax.set_xticks([])
            ax.set_yticks([])
            if k < n:
                ax.imshow(filters[:, :, 0, k], cmap="RdBu_r", vmin=-lim, vmax=lim)
            else:
                ax.axis("off")
        if k < n:
            axes[2 * r, c].set_title(f"{k}: cos {cosine[k]:.2f}", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def interpolation_figure(alphas: np.ndarray, curves: dict[str, dict[str, list[float]]], title: str):
    """Test accuracy along the straight line between two networks, before and after alignment."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (pair, curve) in enumerate(curves.items()):
        color = f"C{k % 10}"
        ax.plot(
            alphas,
            curve["naive"],
            "--",
            color=color,
            alpha=0.7,
            label=f"{pair} as trained" if k < 4 else None,
        )
        ax.plot(
            alphas, curve["aligned"], "-", color=color, label=f"{pair} aligned" if k < 4 else None
        )
    ax.set(xlabel="alpha (0: seed a, 1: seed b)", ylabel="test accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def matched_oip_figure(
    images_a: np.ndarray, images_b: np.ndarray, labels: list[str], title: str, per_row: int = 8
):
    """Matched map pairs' OIPs: seed a's above seed b's."""
    plt = pyplot()
    n = len(images_a)
    rows = max(1, math.ceil(n / per_row))
    fig, axes = plt.subplots(2 * rows, per_row, figsize=(per_row * 1.15, rows * 2.7), squeeze=False)
    for k in range(rows * per_row):
        r, c = divmod(k, per_row)
        for ax, images in ((axes[2 * r, c], images_a), (axes[2 * r + 1, c], images_b)):
            ax.set_xticks([])
            ax.set_yticks([])
            if k < n:
                ax.imshow(min_max(images[k]), cmap="gray")
            else:
                ax.axis("off")
        if k < n:
            axes[2 * r, c].set_title(labels[k], fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
