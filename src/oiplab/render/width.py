"""Figures of the width study: one per statistic, its value against width (log axis) per layer,
with the seed interval as error bars and the untrained (or rotated-units) reference dashed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from oiplab.compare.width import LABELS
from oiplab.layout import WidthFiles
from oiplab.render import pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


R2_FLOOR = -1.0  # the lowest r2 a width figure shows


def width_figure(rows: list[dict[str, Any]], statistic: str) -> Figure:
    """`statistic` against width, one line per layer (`compare.width.width_records` rows)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    mine = [r for r in rows if r["statistic"] == statistic]
    layers = list(dict.fromkeys(r["layer"] for r in mine))
    dashed = False
    for k, layer in enumerate(layers):
        pts = sorted((r for r in mine if r["layer"] == layer), key=lambda r: r["width"])
        x = np.array([r["width"] for r in pts])
        y, low, high = (
            np.array([_number(r[key]) for r in pts]) for key in ("value", "low", "high")
        )
        below, above = np.nan_to_num(y - low), np.nan_to_num(high - y)  # no interval: no bar
        color = f"C{k}"
        ax.errorbar(x, y, yerr=[below, above], marker="o", capsize=3, color=color, label=layer)
        nulls = np.array([_number(r["null"]) for r in pts])
        if np.isfinite(nulls).any():
            ax.plot(x, nulls, ls="--", lw=1, color=color, alpha=0.6)
            dashed = True
    ax.set_xscale("log", base=2)
    widths = sorted({r["width"] for r in mine})
    ax.set_xticks(widths, [f"{w:g}" for w in widths])
    if statistic == "same_index_p":
        ax.set_yscale("log")
        ax.axhline(0.05, color="crimson", lw=1, ls=":", label="alpha 0.05")
    ax.set(xlabel="model.width (x the articles' CNN)", ylabel=LABELS.get(statistic, statistic))
    if statistic.endswith("r2") and ax.get_ylim()[0] < R2_FLOOR:
        # an untrained network's held-out R2 can sit far below 0 (-10 seen) and flatten the rest
        ax.set_ylim(bottom=R2_FLOOR)
        ax.text(
            0.01,
            0.01,
            f"values below {R2_FLOOR:g} off the axis",
            transform=ax.transAxes,
            fontsize=7,
        )
    reference = "rotated units' 95th pct." if statistic == "partnered" else "untrained networks"
    key = f"; dashed: {reference}" if dashed else ""
    ax.set_title(f"{LABELS.get(statistic, statistic)}\n(bars: 95% CI over seeds{key})", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return fig


def save_width_figures(folder: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """One PNG per statistic of `rows` in `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for statistic in dict.fromkeys(r["statistic"] for r in rows):
        path = folder / WidthFiles.figure(statistic)
        save_figure(width_figure(rows, statistic), path)
        paths.append(path)
    return paths
