"""When does the correspondence between seeds set in, and when is a network's own map order
fixed? The comparison's statistics, at every snapshot of the weights kept during training.

Per layer and snapshot t: the partnered fraction between the seeds' networks at t (against the
null threshold of untrained networks, with a seed-bootstrap interval), their same-index
relabelling p-value and CKA; and each seed's network at t against its own final network (the
self-alignment): how many maps already have their final partner, and how many of those at the
same index - beside chance (1 / maps) and the exact same-index test summed over seeds
(`inference.exact_same_index_test`). Each family of p-values (one per layer: the snapshots) is
Holm-adjusted (`inference.holm`); the unadjusted values are kept beside, named as such. The
final snapshot against itself is no test (every map is its own partner): its p is left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from oiplab.analysis.activations import layer_outputs
from oiplab.compare.cka import centered_gram, linear_cka
from oiplab.compare.correlation import Units
from oiplab.compare.inference import SameIndexExact, exact_same_index_test, holm
from oiplab.compare.pairs import LayerMatch, match_layer
from oiplab.compare.stats import (
    SameIndex,
    bootstrap_means,
    interval,
    pair_weights,
    same_index_test,
    seed_resamples,
)
from oiplab.compare.study import partner_threshold
from oiplab.compare.summary import Estimate
from oiplab.config import AlignmentConfig, CompareConfig
from oiplab.io import Fields, ListRecord, Real
from oiplab.layout import AlignmentFiles

if TYPE_CHECKING:
    import keras


log = logging.getLogger(__name__)


@dataclass
class LayerCurves:
    """One layer's statistics at each snapshot (lists aligned with `Alignment.steps`)."""

    threshold: float
    partnered: list[Estimate] = field(default_factory=list)  # between seeds
    same_index: list[SameIndex] = field(
        default_factory=list
    )  # observed, expected, p, between seeds
    cka: list[Estimate] = field(default_factory=list)  # between seeds
    final_partnered: list[Estimate] = field(default_factory=list)  # each seed vs its final net
    final_same_index: list[Estimate] = field(default_factory=list)  # ... at the same index
    final_test: list[SameIndexExact] = field(default_factory=list)  # ... its exact test


@dataclass
class Alignment:
    steps: list[int]  # optimizer steps at each snapshot
    epochs: list[float]  # the same, in epochs
    layers: dict[str, LayerCurves]

    def records(self) -> list[dict[str, Any]]:
        """One flat record per (layer, snapshot): for tables and `dvc plots`."""
        out = []
        last = len(self.steps) - 1
        for layer, c in self.layers.items():
            between_p = np.array([s["p_value"] for s in c.same_index], dtype=np.float64)
            own_p = np.array([t.p_value for t in c.final_test], dtype=np.float64)
            own_p[last] = np.nan  # the final network against itself: no test
            between_holm, own_holm = holm(between_p), holm(own_p)
            for k, (step, epoch) in enumerate(zip(self.steps, self.epochs, strict=True)):
                out.append(
                    {
                        "layer": layer,
                        "step": step,
                        "epoch": round(epoch, 4),
                        "partnered": c.partnered[k].value,
                        "partnered_low": c.partnered[k].low,
                        "partnered_high": c.partnered[k].high,
                        "partnered_null": c.partnered[k].null,
                        "same_index_p": c.same_index[k]["p_value"],
                        "same_index_p_holm": float(between_holm[k]),
                        "same_index_observed": c.same_index[k]["observed"],
                        "same_index_expected": c.same_index[k]["expected"],
                        "cka": c.cka[k].value,
                        "final_partnered": c.final_partnered[k].value,
                        "final_same_index": c.final_same_index[k].value,
                        "final_same_index_chance": 1.0 / c.final_test[k].n_maps,
                        "final_same_index_p": float(own_p[k]),
                        "final_same_index_p_holm": float(own_holm[k]),
                    }
                )
        return out


class SnapshotRecord(Fields):
    """One layer at one snapshot (`Alignment.records`)."""

    layer: str
    step: int  # optimizer steps
    epoch: float
    partnered: Real  # between seeds, with its seed-bootstrap interval
    partnered_low: Real
    partnered_high: Real
    partnered_null: float | None  # the same on untrained pairs
    same_index_p: Real  # unadjusted
    same_index_p_holm: Real  # Holm-adjusted over the layer's snapshots
    same_index_observed: int
    same_index_expected: Real
    cka: Real
    final_partnered: Real  # each seed against its own final network
    final_same_index: Real  # of its matched maps, the share at their final index
    final_same_index_chance: Real  # the same share under random labels: 1 / maps
    final_same_index_p: Real  # exact, summed over seeds, unadjusted (NaN: the final snapshot)
    final_same_index_p_holm: Real  # Holm-adjusted over the layer's snapshots


class AlignmentRecords(ListRecord):
    """The alignment study (`artifacts/alignment/alignment.json`, a list of records)."""

    FILE: ClassVar[str] = AlignmentFiles.records
    STAGE: ClassVar[str] = "alignment"
    WHAT: ClassVar[str] = "alignment over training"
    ITEMS: ClassVar[str] = "records"

    records: list[SnapshotRecord]


def _estimate(values: list[float], pair_w: np.ndarray, null: float | None = None) -> Estimate:
    """Mean over seed pairs with a seed-bootstrap interval (and the null's value, if given)."""
    values_arr = np.asarray(values, dtype=np.float64)
    low, high = interval(bootstrap_means(values_arr, pair_w))
    return Estimate(float(values_arr.mean()), low, high, null)


@dataclass(frozen=True)
class AlignmentSettings:
    """The study's knobs (`conf/alignment/`, and `conf/compare/` for those it shares)."""

    layers: list[str]
    quantile: float  # partner threshold: this quantile of the untrained pairs' matched r
    tolerance: float  # correlations closer than this to a map's best are ties (not decisive)
    draws: int  # relabellings of the same-index test
    bootstrap_draws: int  # seed resamples of the intervals
    seed: int  # of the one generator behind both

    @classmethod
    def of(cls, a: AlignmentConfig, c: CompareConfig) -> AlignmentSettings:
        return cls(
            layers=list(a.layers),
            quantile=c.partner_quantile,
            tolerance=c.tie_tolerance,
            draws=a.permutation_draws,
            bootstrap_draws=a.bootstrap_draws,
            seed=c.bootstrap_seed,
        )


@dataclass(frozen=True)
class TrainingSnapshots:
    """The weights kept along the training of every seed (`training.Trajectory`)."""

    weights: dict[int, list[list[np.ndarray]]]  # per seed, the weights at each snapshot
    steps: list[int]  # the optimizer step of each snapshot (the same for every seed)
    steps_per_epoch: int


@dataclass(frozen=True)
class _Resamples:
    """The seed pairs and the seeded resamples every snapshot shares."""

    pairs: list[tuple[int, int]]
    seed_counts: np.ndarray  # (draws, n_seeds)
    pair_w: np.ndarray  # (draws, n_pairs)
    rng: np.random.Generator  # for the relabelling test, drawn from in snapshot, layer order


@dataclass(frozen=True)
class _NullReference:
    threshold: float  # matched r above which a map is partnered
    partnered: float  # the fraction of partnered maps between untrained networks


@dataclass(frozen=True)
class _LayerPoint:
    """One layer's statistics at one snapshot (see `LayerCurves`)."""

    partnered: Estimate
    same_index: SameIndex
    cka: Estimate
    final_partnered: Estimate
    final_same_index: Estimate
    final_test: SameIndexExact


def alignment_over_training(
    net: keras.Model,
    snapshots: TrainingSnapshots,
    nulls: list[keras.Model],
    probe_x: np.ndarray,
    settings: AlignmentSettings,
    progress: Callable[[str], None] | None = log.info,
) -> Alignment:
    """The comparison's statistics at every snapshot of training.

    Args:
        net: a model of the architecture (its weights are set to each snapshot in turn).
        nulls: untrained models of the architecture (their pairs set the partner threshold).
        probe_x: (n, 28, 28, 1) images the activations are compared on.
    """
    s, seeds, steps, layers = settings, list(snapshots.weights), snapshots.steps, settings.layers
    pairs = list(combinations(range(len(seeds)), 2))
    rng = np.random.default_rng(s.seed)
    seed_counts = seed_resamples(len(seeds), s.bootstrap_draws, rng)
    res = _Resamples(pairs, seed_counts, pair_weights(seed_counts, pairs), rng)
    nulls_of = _null_references(nulls, probe_x, layers, s.quantile)

    def units_at(k: int) -> list[dict[str, Units]]:
        found = []
        for seed in seeds:
            net.set_weights(snapshots.weights[seed][k])
            found.append(units_of(layer_outputs(net, probe_x, layers)))
        return found

    final = units_at(len(steps) - 1)
    points: dict[str, list[_LayerPoint]] = {n: [] for n in layers}
    for k, step in enumerate(steps):
        outs = final if k == len(steps) - 1 else units_at(k)
        for n in layers:
            points[n].append(_layer_at(outs, final, n, nulls_of[n], res, s))
        if progress is not None:
            epoch = step / snapshots.steps_per_epoch
            shown = ", ".join(f"{n} {points[n][-1].partnered.value:.0%}" for n in layers)
            progress(f"step {step} (epoch {round(epoch, 2):g}): partnered {shown}")
    epochs = [step / snapshots.steps_per_epoch for step in steps]
    curves = {n: _curves(nulls_of[n].threshold, points[n]) for n in layers}
    return Alignment(list(steps), epochs, curves)


def _null_references(
    nulls: list[keras.Model], probe_x: np.ndarray, layers: list[str], quantile: float
) -> dict[str, _NullReference]:
    """Per layer, the partner threshold the untrained pairs set, and their partnered fraction."""
    null_units = [units_of(layer_outputs(m, probe_x, layers)) for m in nulls]
    found = {}
    for n in layers:
        null = [
            match_layer(null_units[a][n], null_units[b][n], False, False)
            for a, b in combinations(range(len(nulls)), 2)
        ]
        threshold = partner_threshold(null, quantile)
        found[n] = _NullReference(
            threshold, float(np.mean([(m.r > threshold).mean() for m in null]))
        )
    return found


def _layer_at(
    outs: list[dict[str, Units]],
    final: list[dict[str, Units]],
    n: str,
    null: _NullReference,
    res: _Resamples,
    s: AlignmentSettings,
) -> _LayerPoint:
    """Layer `n` at one snapshot: between the seeds' networks, and each against its final one."""
    between = [match_layer(outs[a][n], outs[b][n], False, False) for a, b in res.pairs]
    same_index = same_index_test(
        [(d, m.partner[d]) for m in between for d in [m.decisive(s.tolerance)]],
        n_maps=between[0].corr.shape[1],
        draws=s.draws,
        rng=res.rng,
    )
    grams = [centered_gram(o[n].values.reshape(o[n].n_images, -1)) for o in outs]
    own = [match_layer(outs[i][n], final[i][n], False, False) for i in range(len(outs))]
    seed_w = res.seed_counts.astype(np.float64)
    return _LayerPoint(
        partnered=_estimate(_fracs(between, null.threshold), res.pair_w, null=null.partnered),
        same_index=same_index,
        cka=_estimate([linear_cka(grams[a], grams[b]) for a, b in res.pairs], res.pair_w),
        final_partnered=_per_seed(_fracs(own, null.threshold), seed_w),
        final_same_index=_per_seed([_same(m) for m in own], seed_w),
        final_test=self_alignment_test(own, n_maps=own[0].corr.shape[1]),
    )


def _curves(threshold: float, points: list[_LayerPoint]) -> LayerCurves:
    return LayerCurves(
        threshold=threshold,
        partnered=[p.partnered for p in points],
        same_index=[p.same_index for p in points],
        cka=[p.cka for p in points],
        final_partnered=[p.final_partnered for p in points],
        final_same_index=[p.final_same_index for p in points],
        final_test=[p.final_test for p in points],
    )


def self_alignment_test(own: list[LayerMatch], n_maps: int) -> SameIndexExact:
    """Are a network's maps already at their final index? The exact same-index test of every
    seed's matches to its own final network, summed over seeds.

    Null hypothesis: the snapshot's map order carries no information about the final order
    (each seed's final labels a uniformly random permutation of its `n_maps` maps). Every
    live-to-live match is tested: the matching does not look at the labels, so the test stays
    exact. Chance: 1 / n_maps of the tested matches.
    """
    return exact_same_index_test([(m.matched, m.partner[m.matched]) for m in own], n_maps)


def units_of(outputs: dict[str, np.ndarray]) -> dict[str, Units]:
    """Each layer's outputs as `Units` (standardized once, for every match they enter)."""
    return {n: Units.of(o) for n, o in outputs.items()}


def _fracs(matches: list[LayerMatch], threshold: float) -> list[float]:
    """Per match, the fraction of matched maps with r above `threshold`."""
    return [float((m.r > threshold).mean()) if len(m.r) else 0.0 for m in matches]


def _same(m: LayerMatch) -> float:
    """Fraction of a network's live maps matched to the same index in another network."""
    return float((m.partner[m.matched] == m.matched).mean()) if len(m.matched) else 0.0


def _per_seed(values: list[float], seed_counts: np.ndarray) -> Estimate:
    """Mean over seeds with a seed-bootstrap interval (each seed's own value, resampled)."""
    values_arr = np.asarray(values, dtype=np.float64)
    means = seed_counts @ values_arr / seed_counts.sum(axis=1)
    low, high = interval(means)
    return Estimate(float(values_arr.mean()), low, high)
