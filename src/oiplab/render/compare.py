"""Figures of the cross-seed comparison."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from oiplab.compare.weights import cosine_rows
from oiplab.layout import CompareFiles
from oiplab.render import pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from oiplab.compare.summary import Estimate, LayerAnswer


def ordered_correlations_figure(
    corrs: dict[str, np.ndarray], perms: dict[str, np.ndarray], title: str
) -> Figure:
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


def answer_figure(answer: LayerAnswer, trained_r: np.ndarray, null_r: np.ndarray) -> Figure:
    """One layer's answer: matched r of trained vs untrained pairs (with the partner threshold),
    and each statistic's 95% interval against the untrained networks' values."""
    plt = pyplot()
    fig, (ax_r, ax_s) = plt.subplots(1, 2, figsize=(12.5, 3.4), layout="constrained")
    bins = np.linspace(-0.2, 1.0, 49)
    ax_r.hist(null_r, bins=bins, density=True, color="lightgray", label="untrained pairs")
    ax_r.hist(trained_r, bins=bins, density=True, histtype="step", lw=2, label="trained pairs")
    ax_r.axvline(answer.threshold, color="crimson", ls="--", label="partner threshold")
    ax_r.set(xlabel="matched correlation r (live maps)", ylabel="density")
    # above the axes: the histograms fill the top corners in one layer or another
    ax_r.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    stats = [
        ("partnered", answer.partnered),
        ("median r", answer.matched_r),
        ("stable", answer.stable),
        ("CKA", answer.cka),
        ("1:1 r2", answer.one_to_one),
        ("many:1 R2", answer.many_to_one),
        ("siblings", answer.siblings),
    ]
    for k, (_name, e) in enumerate(stats):
        if e.null is not None:
            top = e.null_high if e.null_high is not None else e.null
            ax_s.fill_between(
                [k - 0.35, k + 0.35],
                e.null,
                max(top, e.null + 0.005),
                color="lightgray",
                label="untrained (mean..max)" if k == 0 else None,
            )
        ax_s.errorbar(
            k,
            e.value,
            yerr=_error_bar(e),
            fmt="o",
            color="C0",
            capsize=4,
            label="trained, 95% CI" if k == 0 else None,
        )
    rot = answer.rotation_null
    ax_s.plot([-0.35, 0.35], [rot.null_high or 0.0] * 2, color="C3", lw=1.5)
    ax_s.plot([], [], color="C3", label="rotated units, 95th percentile")
    ax_s.set_xticks(range(len(stats)), [s[0] for s in stats], fontsize=7)
    ax_s.set_ylim(0, 1.05)
    ax_s.grid(axis="y", alpha=0.3)
    ax_s.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the points
    o = answer.order
    ax_s.set_title(
        f"same index: {o.observed} of {o.n_tested} tested vs {o.expected:.1f} expected, "
        f"exact p = {o.p_value:.2g}",
        fontsize=9,
    )
    fig.suptitle(
        f"{answer.layer}: {answer.n_maps} maps, live maps matched one-to-one "
        f"({answer.identity}; {answer.order_words})"
    )
    return fig


def _error_bar(e: Estimate) -> list[list[float]]:
    """matplotlib's (below, above) lengths of an interval around its value, never negative: an
    interval of width 0 (identical networks) may sit a rounding error off its value, and an
    undefined one (NaN) draws no bar."""
    below, above = e.value - e.low, e.high - e.value
    return [
        [max(below, 0.0) if np.isfinite(below) else 0.0],
        [max(above, 0.0) if np.isfinite(above) else 0.0],
    ]


def aligned_filters_figure(
    filters_a: np.ndarray, filters_b: np.ndarray, cosine: np.ndarray, title: str, per_row: int = 8
) -> Figure:
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


def interpolation_figure(alphas: np.ndarray, curves: dict, eval_set: str, title: str) -> Figure:
    """Loss and accuracy along the straight line between two networks, for every pair: as
    trained, aligned by activation matching, aligned by weight matching."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    styles = {
        "naive": ("--", "as trained"),
        "activations": ("-", "aligned (activations)"),
        "weights": (":", "aligned (weights)"),
    }
    for k, by_alignment in enumerate(curves.values()):
        for label, (style, name) in styles.items():
            curve = by_alignment[label][eval_set]
            for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
                ax.plot(
                    alphas,
                    curve[metric],
                    style,
                    color=f"C{k % 10}",
                    alpha=0.8,
                    label=f"{name}" if k == 0 else None,
                )
    axes[0].set(
        xlabel="alpha (0: seed a, 1: seed b)", ylabel="cross-entropy", yscale="log", title="loss"
    )
    axes[1].set(xlabel="alpha (0: seed a, 1: seed b)", ylabel="accuracy", title="accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def save_comparison_figures(folder: Path, comparison, weights: dict) -> None:
    """The comparison's figures: the answer per layer, and details of the first pair of seeds."""
    for layer, answer in comparison.answers.items():
        trained_r = np.concatenate([m[layer].r for m in comparison.matches.values()])
        fig = answer_figure(answer, trained_r, comparison.null_r[layer])
        save_figure(fig, folder / CompareFiles.answer(layer), dpi=90)
    (a, b), first = next(iter(comparison.matches.items()))
    save_figure(
        ordered_correlations_figure(
            {n: m.corr for n, m in first.items()},
            {n: m.perm for n, m in first.items()},
            f"seed {a} vs seed {b}: map correlations, b in matched order",
        ),
        folder / CompareFiles.correlations(a, b),
        dpi=90,
    )
    if "Conv2D_1" in first:
        perm1 = first["Conv2D_1"].perm
        fa, fb = weights[a][0], weights[b][0][..., perm1]
        cos = cosine_rows(fa.reshape(-1, fa.shape[-1]).T, fb.reshape(-1, fb.shape[-1]).T)
        title = f"Conv2D_1 filters: seed {a} (upper) and seed {b} re-ordered (lower)"
        fig = aligned_filters_figure(fa, fb, cos, title)
        save_figure(fig, folder / CompareFiles.aligned_filters(a, b), dpi=100)
    eval_set = "test"
    title = "weight interpolation, test images not used for matching"
    fig = interpolation_figure(comparison.alphas, comparison.curves, eval_set, title)
    save_figure(fig, folder / CompareFiles.interpolation)


def alignment_figure(layer: str, records: list[dict], steps_per_epoch: int) -> Figure:
    """One layer's correspondence over training: between seeds (with its interval and the
    untrained level), and each seed against its own final network."""
    plt = pyplot()
    rows = [r for r in records if r["layer"] == layer]
    step = np.array([r["step"] for r in rows], dtype=float)

    def col(key: str) -> np.ndarray:
        return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)

    fig, ax = plt.subplots(figsize=(10.5, 4), layout="constrained")
    ax.fill_between(step, col("partnered_low"), col("partnered_high"), alpha=0.25, color="C0")
    ax.plot(step, col("partnered"), "o-", color="C0", label="partnered between seeds (95% CI)")
    ax.plot(step, col("partnered_null"), "-", color="gray", label="partnered, untrained pairs")
    ax.plot(step, col("cka"), ":", color="C2", label="CKA between seeds")
    ax.plot(step, col("final_partnered"), "s--", color="C1", label="partnered with own final net")
    ax.plot(step, col("final_same_index"), "^--", color="C3", label="same index as own final net")
    for e in range(1, int(step.max() // steps_per_epoch) + 1):
        ax.axvline(e * steps_per_epoch, color="k", lw=0.5, alpha=0.3)
    ax.set_xscale("symlog", linthresh=max(1.0, steps_per_epoch / 10))
    ax.set_xlim(left=0)  # symlog would otherwise leave room for negative steps
    ax.set(
        xlabel="optimizer step (vertical lines: epoch ends)",
        ylabel="fraction of live maps",
        ylim=(0, 1.05),
        title=f"{layer}: correspondence over training",
    )
    ax.grid(alpha=0.3)
    # beside the axes: inside, every corner holds a curve at some layer or step
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
