"""Grids of a layer's maps (8 tiles a row, as in the articles) and of class-pattern masks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from oiplab.layout import ActivationsFiles
from oiplab.render import pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from oiplab.config import ActivationsConfig


def as_maps(layer_output: np.ndarray) -> np.ndarray:
    """One image's layer output as (h, w, n_maps); a dense layer's nodes become 1x1 maps."""
    return layer_output.reshape(1, 1, -1) if layer_output.ndim == 1 else layer_output


def mosaic(maps: np.ndarray, per_row: int = 8, pad: int = 1, min_tile: int = 8) -> np.ndarray:
    """Tile (h, w, n) maps into one 2-D array, `per_row` tiles a row, NaN gutters between tiles.

    Maps smaller than `min_tile` pixels are enlarged by pixel repetition, so that the one-pixel
    gutters stay thin next to 3x3 maps and 1x1 dense nodes.
    """
    factor = max(1, min_tile // max(maps.shape[0], maps.shape[1]))
    maps = np.repeat(np.repeat(maps, factor, axis=0), factor, axis=1)
    h, w, n = maps.shape
    rows = math.ceil(n / per_row)
    out = np.full((rows * (h + pad) - pad, per_row * (w + pad) - pad), np.nan, dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, per_row)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = maps[:, :, k]
    return out


def standardize_each(maps: np.ndarray) -> np.ndarray:
    """Standardize every map on its own (constant maps become zeros)."""
    mean = maps.mean(axis=(0, 1), keepdims=True)
    std = maps.std(axis=(0, 1), keepdims=True)
    return np.where(std > 0, (maps - mean) / np.where(std > 0, std, 1), 0.0).astype(np.float32)


def activation_figure(
    image01: np.ndarray,
    layer_output: np.ndarray,
    title: str,
    *,
    colormap: str = "jet",
    standardize: bool = False,
    contrast: float = 1.0,
    per_row: int = 8,
) -> Figure:
    """The input image beside the grid of all maps (or nodes) of one layer for that image.

    Args:
        image01: (28, 28) the input on the [0, 1] pixel scale.
        layer_output: (h, w, n_maps) or (n_nodes,) the layer's output for this image.
        contrast: the colour scale tops out at max / contrast, which brings out weak activity.
    """
    plt = pyplot()
    maps = as_maps(layer_output)
    if standardize:
        maps = standardize_each(maps)
    grid = mosaic(maps, per_row=per_row)
    lo, hi = float(np.nanmin(grid)), float(np.nanmax(grid))
    hi = lo + (hi - lo) / contrast if hi > lo else lo + 1.0
    height = max(2.6, 1.0 + 6.5 * grid.shape[0] / grid.shape[1])
    fig, (ax_img, ax_grid) = plt.subplots(
        1, 2, figsize=(9, height), gridspec_kw={"width_ratios": [1, 3]}, layout="constrained"
    )
    ax_img.imshow(image01, cmap="gray_r", vmin=0, vmax=1)
    ax_img.set_title("input")
    cmap = plt.get_cmap(colormap).with_extremes(bad="white")
    shown = ax_grid.imshow(grid, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    kind = "nodes" if layer_output.ndim == 1 else "maps"
    ax_grid.set_title(f"{maps.shape[2]} {kind}, in index order, {per_row} a row (0 at top left)")
    fig.colorbar(shown, ax=ax_grid, fraction=0.03, pad=0.02)
    for ax in (ax_img, ax_grid):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return fig


def common_pattern_figure(
    mean_output: np.ndarray,
    common: np.ndarray,
    distinct: np.ndarray,
    title: str,
    *,
    colormap: str = "jet",
    per_row: int = 8,
) -> Figure:
    """A group's mean layer output, and where its common (and distinct) elements lie.

    Args:
        mean_output: (h, w, n) or (n,) the layer output averaged over the group's images.
        common, distinct: boolean masks of the flattened layer output (see analysis.patterns).
    """
    plt = pyplot()
    maps = as_maps(mean_output)
    # 0: not common, 1: common to the group, 2: common and absent from the other group.
    code = (common.astype(np.int8) + distinct.astype(np.int8)).reshape(maps.shape)
    grid = mosaic(maps, per_row)
    height = 1.0 + 5.0 * grid.shape[0] / grid.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(11, height), layout="constrained")
    cmap = plt.get_cmap(colormap).with_extremes(bad="white")
    axes[0].imshow(grid, cmap=cmap, interpolation="nearest")
    axes[0].set_title("mean activation of the group")
    marks = plt.get_cmap("viridis", 3).with_extremes(bad="white")
    shown = axes[1].imshow(
        mosaic(code.astype(np.float32), per_row),
        cmap=marks,
        vmin=-0.5,
        vmax=2.5,
        interpolation="nearest",
    )
    axes[1].set_title(f"common: {int(common.sum())}, of which distinct: {int(distinct.sum())}")
    bar = fig.colorbar(shown, ax=axes[1], ticks=[0, 1, 2], fraction=0.03, pad=0.02)
    bar.ax.set_yticklabels(["-", "common", "distinct"])
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return fig


def save_activation_figures(
    folder: Path,
    seed: int,
    images01: np.ndarray,
    outputs: dict[str, np.ndarray],
    rows: tuple[list[int], list[str], dict[str, np.ndarray]],
    labels: np.ndarray,
    patterns: tuple[dict, dict],
    a: ActivationsConfig,
) -> None:
    """Every selected image's layer grids and every group's common-pattern figure (`a`: the
    config's `activations` section)."""
    indices, row_groups, positions = rows
    for row, (index, group) in enumerate(zip(indices, row_groups, strict=True)):
        for layer in a.layers:
            fig = activation_figure(
                images01[row],
                outputs[layer][row],
                f"seed {seed}, {layer}, test image {index} ({group}, label {labels[index]})",
                colormap=a.colormap,
                standardize=a.standardize_maps,
                contrast=a.contrast,
                per_row=a.tiles_per_row,
            )
            save_figure(fig, folder / ActivationsFiles.grid(group, index, layer), dpi=80)
    for layer, by_comparison in patterns[1].items():
        for key, masks in by_comparison.items():
            name, other = key.split("_vs_")
            fig = common_pattern_figure(
                outputs[layer][positions[name]].mean(axis=0),
                masks["common"],
                masks["distinct"],
                f"seed {seed}, {layer}: {name} against {other}",
                colormap=a.colormap,
                per_row=a.tiles_per_row,
            )
            save_figure(fig, folder / ActivationsFiles.common_figure(layer, name, other), dpi=90)
