"""The report's tables: each is its column headers beside the cell each column takes from a typed
result, so the template holds only layout and no header is written twice."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from oiplab.analysis.patterns import GroupContrast
from oiplab.analysis.selection import SelectedGroup
from oiplab.compare.dynamics import SnapshotRecord
from oiplab.compare.oip_response import TopRates
from oiplab.compare.summary import Estimate, LayerAnswer, OrderTest
from oiplab.oip.census import CAUSE_NAMES, CAUSES, CensusMetrics
from oiplab.oip.survey import SurveyMetrics
from oiplab.training import TrainMetrics

T = TypeVar("T")


@dataclass(frozen=True)
class Table:
    """A table of the page: its column headers and its rows of cells (printed by `fmt`)."""

    headers: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def table(columns: Sequence[tuple[str, Callable[[T], Any]]], items: Iterable[T]) -> Table:
    """One row per item; each column is its header beside the cell it takes from an item."""
    return Table(tuple(h for h, _ in columns), [tuple(c(x) for _, c in columns) for x in items])


def fmt(value: Any) -> str:
    """How the page prints a table cell."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def epoch_text(epoch: float) -> str:
    """An epoch count as a reader says it: "1", "5"; within an epoch "0.1", "0.31"."""
    return f"{round(epoch, 2):g}"


def pct(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.{digits}f}%"


def ci(e: Estimate, as_pct: bool = True) -> str:
    """An estimate with its interval: '62% (55%-70%)' or '0.83 (0.80-0.85)'."""
    if e.value is None or e.value != e.value:
        return "n/a"
    if as_pct:
        return f"{pct(e.value)} ({pct(e.low)}-{pct(e.high)})"
    return f"{e.value:.2f} ({e.low:.2f}-{e.high:.2f})"


def null(e: Estimate, as_pct: bool = True) -> str:
    if e.null is None:
        return "n/a"
    return pct(e.null) if as_pct else f"{e.null:.2f}"


def three(d: dict[str, float]) -> str:
    """'all / stable (untrained all / stable; chance)' of a consistency or agreement record."""
    if not d:
        return "-"
    untrained = ""
    if "untrained" in d:
        untrained = f"untrained {pct(d['untrained'])} / {pct(d.get('untrained_stable'))}; "
    chance = pct(d.get("chance"), 1)
    return f"{pct(d.get('all'))} / {pct(d.get('stable'))} ({untrained}chance {chance})"


def p_value(p: float) -> str:
    """An exact p-value: no floor, so a tiny one prints in e-notation. Exact p-values are
    fractions rounded to a double and none is 0 (the observed relabelling counts), so a 0.0 is a
    value below half the smallest double (2.5e-324): it prints '< 1e-323', never '0'."""
    if p != p:
        return "n/a"
    return "< 1e-323" if p == 0 else f"{p:.2g}"


def same_index(a: LayerAnswer) -> str:
    """'k of n tested (N matches: K)' with the expected count of the n tested."""
    o = a.order
    return (
        f"{o.observed} of {o.n_tested} tested, {o.expected:.1f} expected "
        f"({o.n_matches} matches: {o.observed_all})"
    )


def pair(x: Estimate, y: Estimate) -> str:
    """Two statistics, trained then untrained: '0.70 / 0.98 (untrained 0.46 / 0.93)'."""
    nulls = "n/a" if x.null is None or y.null is None else f"{x.null:.2f} / {y.null:.2f}"
    return f"{x.value:.2f} / {y.value:.2f} (untrained {nulls})"


ALIGNMENTS = {
    "naive": "as trained",
    "activations": "activation matching",
    "weights": "weight matching",
}

TRAINING: list[tuple[str, Callable[[TrainMetrics], Any]]] = [
    ("seed", lambda m: m.seed),
    ("test accuracy", lambda m: m.test_accuracy),
    ("test loss", lambda m: m.test_loss),
    ("train seconds", lambda m: m.train_seconds),
    ("images/s", lambda m: m.images_per_second),
]

GROUPS: list[tuple[str, Callable[[SelectedGroup], Any]]] = [
    ("group", lambda g: g.name),
    ("kind", lambda g: g.kind),
    ("test indices", lambda g: ", ".join(map(str, g.indices))),
    ("scores", lambda g: ", ".join(f"{v:.3f}" for v in g.scores)),
]

Pattern = tuple[int, str, str, GroupContrast]  # seed, layer, comparison, its numbers

PATTERNS: list[tuple[str, Callable[[Pattern], Any]]] = [
    ("seed", lambda p: p[0]),
    ("layer", lambda p: p[1]),
    ("comparison", lambda p: p[2]),
    ("common", lambda p: p[3].n_common),
    ("distinct", lambda p: p[3].n_distinct),
    ("Jaccard within", lambda p: p[3].jaccard_within),
    ("Jaccard across", lambda p: p[3].jaccard_across),
]

SURVEY: list[tuple[str, Callable[[SurveyMetrics], Any]]] = [
    ("seed", lambda m: m.seed),
    ("maps", lambda m: m.n_maps),
    ("with OIP", lambda m: m.n_with_oip),
    ("silent", lambda m: m.n_silent),
    ("converged (moving)", lambda m: pct(m.converged_fraction)),
    ("median steps (moving)", lambda m: m.median_steps_moving),
    # a mean of ~0 may print as -0
    ("start mean", lambda m: f"{m.start_mean:.2f}".replace("-0.00", "0.00")),
    ("start std spread", lambda m: f"{m.start_std_spread:.1e}"),
    ("seconds", lambda m: m.seconds),
]

CENSUS: list[tuple[str, Callable[[CensusMetrics], Any]]] = [
    ("seed", lambda m: m.seed),
    *((CAUSE_NAMES[c], lambda m, c=c: m.counts()[c]) for c in CAUSES),
    ("precursor s", lambda m: m.screen_seconds + m.full_seconds),
    ("rescue s", lambda m: m.rescue_seconds),
]

ANSWER: list[tuple[str, Callable[[LayerAnswer], Any]]] = [
    ("layer", lambda a: a.layer),
    ("same units?", lambda a: a.identity),
    ("partnered (95% CI), at the layer threshold", lambda a: ci(a.partnered)),
    ("untrained", lambda a: null(a.partnered)),
    (
        "rotated units (95th pct)",
        lambda a: f"{pct(a.rotation_null.value)} ({pct(a.rotation_null.null_high)})",
    ),
    ("siblings (untrained)", lambda a: f"{pct(a.siblings.value)} ({pct(a.siblings.null)})"),
    ("one-to-one r2 / many-to-one R2, held out", lambda a: pair(a.one_to_one, a.many_to_one)),
    ("median matched r (CI)", lambda a: ci(a.matched_r, as_pct=False)),
    ("untrained", lambda a: null(a.matched_r, as_pct=False)),
    ("AUROC trained vs untrained r (CI)", lambda a: ci(a.auroc, as_pct=False)),
    ("p trained vs untrained", lambda a: p_value(a.vs_untrained_p)),
    ("same order?", lambda a: a.order_words),
    ("same index", same_index),
    ("exact p (all matches)", lambda a: f"{p_value(a.order.p_value)} ({p_value(a.order.p_all)})"),
    (
        "keep rate, 95% bound",
        lambda a: "-" if a.order.keep_upper is None else f"at most {pct(a.order.keep_upper)}",
    ),
    ("p untrained", lambda a: p_value(a.order_null.p_value)),
    ("CKA (CI)", lambda a: ci(a.cka, as_pct=False)),
    ("CKA untrained", lambda a: null(a.cka, as_pct=False)),
    (
        "debiased CKA (untrained)",
        lambda a: f"{a.cka_debiased.value:.2f} ({null(a.cka_debiased, as_pct=False)})",
    ),
]

FIRMNESS: list[tuple[str, Callable[[LayerAnswer], Any]]] = [
    ("layer", lambda a: a.layer),
    ("partner threshold r", lambda a: f"{a.threshold:.2f}"),
    ("stable on both halves of the images (CI)", lambda a: ci(a.stable)),
    ("stable, untrained", lambda a: null(a.stable)),
    ("dead maps per seed", lambda a: ", ".join(f"{s}: {n}" for s, n in a.dead.items())),
    ("a->b->c = a->c: all / stable", lambda a: three(a.consistency)),
    ("weight matching agrees: all / stable", lambda a: three(a.weight_agreement)),
]

Barrier = tuple[str, str, str, Estimate]  # alignment, image set, measure, its estimate

BARRIERS: list[tuple[str, Callable[[Barrier], Any]]] = [
    ("alignment", lambda b: ALIGNMENTS.get(b[0], b[0])),
    ("images and measure", lambda b: f"{b[1]} images, {b[2]}"),
    ("barrier (CI)", lambda b: ci(b[3], as_pct=False)),
]

Rates = tuple[str, TopRates]  # which matches, their rates

# A random partner's rate is chance up to ties (compare/oip_response.py): only chance is shown.
RATES: list[tuple[str, Callable[[Rates], Any]]] = [
    ("matches", lambda r: r[0]),
    ("maps per direction (mean)", lambda r: r[1].n),
    ("top-1 (95% CI, seeds)", lambda r: _rate(r[1].top1, r[1].top1_low, r[1].top1_high)),
    ("chance", lambda r: pct(r[1].top1_chance, 1)),
    ("top-5 (95% CI, seeds)", lambda r: _rate(r[1].top5, r[1].top5_low, r[1].top5_high)),
    ("chance", lambda r: pct(r[1].top5_chance, 1)),
]


def _rate(value: float, low: float, high: float) -> str:
    return f"{pct(value, 1)} ({pct(low, 1)}-{pct(high, 1)})"


OVER_TRAINING: list[tuple[str, Callable[[SnapshotRecord], Any]]] = [
    ("layer", lambda r: r.layer),
    ("epoch", lambda r: epoch_text(r.epoch)),
    ("partnered between seeds", lambda r: pct(r.partnered)),
    ("untrained", lambda r: pct(r.partnered_null)),
    ("same index between seeds / expected", lambda r: _between(r)),
    ("p (unadjusted; Holm)", lambda r: _p_pair(r.same_index_p, r.same_index_p_holm)),
    ("partnered with own final", lambda r: pct(r.final_partnered)),
    ("at own final index", lambda r: pct(r.final_same_index)),
    ("chance", lambda r: pct(r.final_same_index_chance, 1)),
    (
        "exact p (unadjusted; Holm)",
        lambda r: _p_pair(r.final_same_index_p, r.final_same_index_p_holm),
    ),
]


def _between(r: SnapshotRecord) -> str:
    return f"{r.same_index_observed} / {r.same_index_expected:.1f}"


def _p_pair(p: float, adjusted: float) -> str:
    """'0.012; 0.18': an unadjusted p and its Holm-adjusted value ('-': no test)."""
    if p != p:
        return "- (the final network itself)"
    return f"{p_value(p)}; {p_value(adjusted)}"


def _chance(o: OrderTest) -> str:
    return pct(o.expected / o.n_tested, 1) if o.n_tested else "n/a"


# The seed-split design's order test per layer: its own columns beside the Holm-adjusted p.
SplitLayer = tuple[LayerAnswer, float]  # a layer's answer, its p Holm-adjusted over the layers

SPLIT_ORDER: list[tuple[str, Callable[[SplitLayer], Any]]] = [
    ("layer", lambda x: x[0].layer),
    ("same index (of tested)", lambda x: f"{x[0].order.observed} of {x[0].order.n_tested}"),
    ("same index", lambda x: pct(x[0].order.fraction)),
    ("chance", lambda x: _chance(x[0].order)),
    ("p (unadjusted)", lambda x: f"{x[0].order.p_value:.2g}"),
    ("p (Holm, over layers)", lambda x: f"{x[1]:.2g}"),
    ("order (unadjusted)", lambda x: x[0].order_words),
    ("partnered (95% CI)", lambda x: ci(x[0].partnered)),
]


def _cell(cell: dict[str, Any], statistic: str, as_pct: bool = False) -> str:
    """A width study cell: value (95% CI over seeds) from its `compare.width.width_records` row."""
    row = cell.get(statistic)
    if row is None or row["value"] is None:
        return "n/a"
    e = Estimate(row["value"], *(np.nan if row[k] is None else row[k] for k in ("low", "high")))
    if e.low != e.low:  # no interval (the exact p)
        return pct(e.value) if as_pct else f"{e.value:.2g}"
    return ci(e, as_pct)


def _accuracy(cell: dict[str, Any]) -> str:
    """Test accuracy to a tenth of a percent: widths differ by less than a percent."""
    row = cell.get("test_accuracy")
    if row is None or row["value"] is None:
        return "n/a"
    return f"{pct(row['value'], 1)} ({pct(row['low'], 1)}-{pct(row['high'], 1)})"


def _reference(cell: dict[str, Any], statistic: str, as_pct: bool = False) -> str:
    row = cell.get(statistic)
    if row is None or row["null"] is None:
        return "n/a"
    return pct(row["null"]) if as_pct else f"{row['null']:.2f}"


# The width study, per layer and width (cells: `compare.width.by_layer_and_width`).
WIDTH_LAYERS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("layer", lambda c: c["layer"]),
    ("width", lambda c: f"{c['width']:g}"),
    ("one-to-one r² (95% CI)", lambda c: _cell(c, "one_to_one_r2")),
    ("untrained", lambda c: _reference(c, "one_to_one_r2")),
    ("many-to-one R² (95% CI)", lambda c: _cell(c, "many_to_one_r2")),
    ("untrained", lambda c: _reference(c, "many_to_one_r2")),
    ("partnered (95% CI)", lambda c: _cell(c, "partnered", as_pct=True)),
    ("rotated units, 95th pct.", lambda c: _reference(c, "partnered", as_pct=True)),
    ("same-index exact p", lambda c: _cell(c, "same_index_p")),
]
WIDTH_NETWORK: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("width", lambda c: f"{c['width']:g}"),
    ("test accuracy (95% CI)", lambda c: _accuracy(c)),
    ("test-loss barrier as trained", lambda c: _cell(c, "loss_barrier_as_trained")),
    ("re-ordered (weight matching)", lambda c: _cell(c, "loss_barrier_reordered")),
]
