"""OIP galleries (plain and contrast-enhanced, silent maps marked), evolution strips, curves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from oiplab.layout import OipFiles, PrecursorFiles
from oiplab.oip.census import CAUSE_NAMES
from oiplab.render import pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from oiplab.config import OipConfig


def contrast_enhance(image: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Stretch the image's `low`..`high` percentile range onto [0, 1], clipping the tails."""
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def min_max(image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


LABEL_GAP = 12  # image pixels above each tile for its label (7-point text at 100 dpi)


GALLERY_CAPTION = (
    "above each tile: map number: the map's mean activation at its OIP (the ascent's objective); "
    "silent: no start made the map respond"
)


def gallery_figure(
    images: np.ndarray,
    map_index: np.ndarray,
    loss: np.ndarray,
    silent: np.ndarray,
    title: str,
    *,
    enhance: bool = False,
    per_row: int = 16,
) -> Figure:
    """One tile per map: its OIP (min-max or contrast-enhanced), the map number and final
    objective (its mean activation), with a caption saying so.

    The tiles are one image in one set of axes (a grid of 128 axes is slow to build and
    draw), each labelled above; a silent map's tile is grey, framed and marked in crimson.

    Args:
        images: (M, 28, 28) one OIP per map. silent: (M,) maps that never responded (marked).
    """
    from matplotlib.patches import Rectangle

    plt = pyplot()
    m = len(map_index)
    rows = math.ceil(m / per_row)
    cell_w, cell_h = 28 + 2, 28 + LABEL_GAP
    canvas = np.full((rows * cell_h, per_row * cell_w), np.nan, dtype=np.float32)
    fig, ax = plt.subplots(figsize=(per_row * 1.0, rows * 1.2 + 0.9))
    corners = []
    for k in range(m):
        r, c = divmod(k, per_row)
        y, x = r * cell_h + LABEL_GAP, c * cell_w + 1
        if silent[k]:
            canvas[y : y + 28, x : x + 28] = 0.85
        else:
            canvas[y : y + 28, x : x + 28] = (
                contrast_enhance(images[k]) if enhance else min_max(images[k])
            )
        corners.append((x, y))
    ax.imshow(
        canvas,
        cmap=plt.get_cmap("gray").with_extremes(bad="white"),
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    for k, (x, y) in enumerate(corners):
        label = f"{map_index[k]}: {loss[k]:.3g}"
        ax.text(x + 13.5, y - 1.5, label, ha="center", va="bottom", fontsize=7)
        if silent[k]:
            ax.text(
                x + 13.5, y + 13.5, "silent", ha="center", va="center", fontsize=7, color="crimson"
            )
            ax.add_patch(
                Rectangle((x - 0.5, y - 0.5), 28, 28, fill=False, edgecolor="crimson", lw=0.8)
            )
    ax.set_axis_off()
    fig.suptitle(f"{title}\n{GALLERY_CAPTION}", fontsize=10)
    fig.subplots_adjust(top=1 - 0.9 / (rows * 1.2 + 0.9), bottom=0.01, left=0.01, right=0.99)
    return fig


def evolution_figure(
    snapshots: np.ndarray, steps: np.ndarray, losses: np.ndarray, title: str
) -> Figure:
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


def loss_curves_figure(histories: np.ndarray, labels: list[str], title: str) -> Figure:
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


def save_survey_figures(folder: Path, survey, seed: int, o: OipConfig) -> None:
    """Galleries (plain and contrast-enhanced), evolution strips of the strongest maps and their
    loss curves, for one seed's OIP survey (`o`: the config's `oip` section)."""
    r, best, maps = survey.result, survey.best_element, survey.map_index
    silent_map = cast(np.ndarray, survey.silent.all(axis=1))  # numpy types axis= as maybe scalar
    for enhance, name in ((False, OipFiles.gallery_plain), (True, OipFiles.gallery_contrast)):
        fig = gallery_figure(
            r.images[best, ..., 0],
            maps,
            r.loss[best],
            silent_map,
            f"seed {seed}, {o.layer}: best of {o.n_starts} starts per map"
            + (" (contrast-enhanced)" if enhance else ""),
            enhance=enhance,
        )
        save_figure(fig, folder / name, dpi=100)
    strongest = np.argsort(-r.loss[best], kind="stable")[: o.evolution_maps]
    strongest = strongest[r.loss[best][strongest] > 0]
    for k in strongest:
        e = best[k]
        losses = r.loss_history[e, np.minimum(r.snapshot_steps, r.steps[e])]
        title = f"seed {seed}, {o.layer} map {maps[k]}: evolution from noise"
        fig = evolution_figure(r.snapshots[e], r.snapshot_steps, losses, title)
        save_figure(fig, folder / OipFiles.evolution(maps[k]), dpi=100)
    if len(strongest):
        fig = loss_curves_figure(
            r.loss_history[best[strongest]],
            [f"map {maps[k]}" for k in strongest],
            f"seed {seed}, {o.layer}: objective per step",
        )
        save_figure(fig, folder / OipFiles.loss_curves, dpi=100)


def save_precursor_figures(folder: Path, result, rescued, seed: int, layer: str) -> None:
    """The precursor search's gallery (best variant per map), its variants per map, and the
    rescue's gallery."""
    if len(rescued.map_index):
        best = rescued.loss.argmax(axis=1)
        rows = np.arange(len(rescued.map_index))
        fig = gallery_figure(
            rescued.images[rows, best],
            rescued.map_index,
            rescued.loss[rows, best],
            ~rescued.found,
            f"seed {seed}, {layer}: the rescue (warm-up on the pre-activation), "
            f"{int(rescued.found.sum())} of {len(rows)} maps found",
            enhance=True,
        )
        save_figure(fig, folder / PrecursorFiles.rescue, dpi=100)
    if not len(result.map_index):
        return
    maps, images, loss, found = result.map_index, result.images, result.loss, result.found
    k = images.shape[1]
    best = loss.argmax(axis=1)
    rows = np.arange(len(maps))
    fig = gallery_figure(
        images[rows, best],
        maps,
        loss[rows, best],
        ~found,
        f"seed {seed}, {layer}: OIPs from coarse precursors "
        f"({int(found.sum())} of {len(maps)} maps)",
        enhance=True,
    )
    save_figure(fig, folder / PrecursorFiles.gallery, dpi=100)
    shown = np.flatnonzero(found)[:16]
    if len(shown):
        fig = gallery_figure(
            images[shown].reshape(-1, 28, 28),
            np.repeat(maps[shown], k),
            loss[shown].ravel(),
            (loss[shown] <= 0).ravel(),
            f"seed {seed}: the {k} variants per map (one row a map)",
            enhance=True,
            per_row=k,
        )
        save_figure(fig, folder / PrecursorFiles.variants, dpi=100)


@dataclass(frozen=True)
class SeedOips:
    """One seed's best OIP per map, and which maps have one."""

    seed: int
    images: np.ndarray  # (n_maps, 28, 28)
    found: np.ndarray  # (n_maps,) bool


def paired_galleries_figure(
    a: SeedOips,
    b: SeedOips,
    partner: np.ndarray,
    partnered: np.ndarray,
    layer: str,
    per_row: int = 16,
) -> Figure:
    """Seed a's OIP gallery beside seed b's, b re-ordered so that tile i shows b's partner of
    a's map i: partnered tiles framed, the others greyed. Same filters in another order shows as
    matching tiles; a different order of maps does not hide them.

    Args:
        partner: (n_maps,) b's partner of each of a's maps (-1: none); partnered: (n_maps,) bool.
    """
    plt = pyplot()
    images_a, images_b, found_a, found_b = a.images, b.images, a.found, b.found
    n = len(images_a)
    rows = math.ceil(n / per_row)
    fig, axes = plt.subplots(
        rows,
        2 * per_row + 1,
        figsize=((2 * per_row + 1) * 0.55, rows * 0.62 + 0.8),
        squeeze=False,
        gridspec_kw={"width_ratios": [1] * per_row + [0.3] + [1] * per_row},
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for i in range(n):
        r, c = divmod(i, per_row)
        j = partner[i]
        for ax, image, ok in (
            (axes[r, c], images_a[i], found_a[i]),
            (axes[r, per_row + 1 + c], images_b[j] if j >= 0 else None, j >= 0 and found_b[j]),
        ):
            if image is None or not ok:
                ax.imshow(np.full((28, 28), 0.9), cmap="gray", vmin=0, vmax=1)
                continue
            shown = contrast_enhance(image)
            ax.imshow(shown if partnered[i] else 0.35 + 0.3 * shown, cmap="gray", vmin=0, vmax=1)
            if partnered[i]:
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_edgecolor("seagreen")
                    spine.set_linewidth(1.5)
    fig.suptitle(
        f"{layer}: seed {a.seed}'s OIPs (left, map order) and seed {b.seed}'s partners of them "
        f"(right, re-ordered); framed: partnered ({int(partnered.sum())} of {n}), "
        "grey: no partner or OIP",
        fontsize=9,
    )
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.005, right=0.995, bottom=0.005, top=0.9)
    return fig


def census_figure(
    counts: dict[int, dict[str, int]], causes: tuple[str, ...], reference: int
) -> Figure:
    """One stacked bar per seed: every map of the layer by cause; a dashed line at the articles'
    number of silent maps (`reference`)."""
    plt = pyplot()
    seeds = list(counts)
    fig, ax = plt.subplots(figsize=(1.3 * len(seeds) + 3.5, 3.6), layout="constrained")
    colors = ("#2b6cb0", "#38a169", "#d69e2e", "#a0aec0", "#4a5568")
    bottom = np.zeros(len(seeds))
    for cause, color in zip(causes, colors, strict=True):
        values = np.array([counts[s][cause] for s in seeds])
        ax.bar(
            [str(s) for s in seeds],
            values,
            bottom=bottom,
            color=color,
            label=CAUSE_NAMES.get(cause, cause.replace("_", " ")),
        )
        bottom += values
    total = bottom.max()
    ax.axhline(
        total - reference,
        color="crimson",
        ls="--",
        lw=1,
        label=f"articles: {reference} silent of {int(total)}",
    )
    ax.set(xlabel="seed", ylabel="maps", title="every map by cause")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
