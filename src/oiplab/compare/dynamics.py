"""When does the correspondence between seeds set in, and when is a network's own map order
decided? The comparison's statistics, at every snapshot of the weights kept during training.

Per layer and snapshot t: the partnered fraction between the seeds' networks at t (against the
null threshold of untrained networks, with a seed-bootstrap interval), their same-index
relabelling p-value and CKA; and each seed's network at t against its own final network: how
many maps already have their final partner, and how many of those at the same index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, ClassVar

import numpy as np
from pydantic import model_validator

from oiplab.analysis.activations import layer_outputs
from oiplab.compare.cka import centered_gram, linear_cka
from oiplab.compare.correlation import Units
from oiplab.compare.pairs import LayerMatch, match_layer
from oiplab.compare.stats import (
    bootstrap_means,
    interval,
    pair_weights,
    same_index_test,
    seed_resamples,
)
from oiplab.compare.study import partner_threshold
from oiplab.compare.summary import Estimate
from oiplab.io import Fields, Real, Record
from oiplab.layout import AlignmentFiles


@dataclass
class LayerCurves:
    """One layer's statistics at each snapshot (lists aligned with `Alignment.steps`)."""

    threshold: float
    partnered: list[Estimate] = field(default_factory=list)  # between seeds
    same_index: list[dict] = field(default_factory=list)  # observed, expected, p, between seeds
    cka: list[Estimate] = field(default_factory=list)  # between seeds
    final_partnered: list[Estimate] = field(default_factory=list)  # each seed vs its final net
    final_same_index: list[Estimate] = field(default_factory=list)  # ... at the same index


@dataclass
class Alignment:
    steps: list[int]  # optimizer steps at each snapshot
    epochs: list[float]  # the same, in epochs
    layers: dict[str, LayerCurves]

    def records(self) -> list[dict[str, Any]]:
        """One flat record per (layer, snapshot): for tables and `dvc plots`."""
        out = []
        for layer, c in self.layers.items():
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
                        "same_index_observed": c.same_index[k]["observed"],
                        "same_index_expected": c.same_index[k]["expected"],
                        "cka": c.cka[k].value,
                        "final_partnered": c.final_partnered[k].value,
                        "final_same_index": c.final_same_index[k].value,
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
    same_index_p: Real
    same_index_observed: int
    same_index_expected: Real
    cka: Real
    final_partnered: Real  # each seed against its own final network
    final_same_index: Real


class AlignmentRecords(Record):
    """The alignment study (`artifacts/alignment/alignment.json`, a list of records)."""

    FILE: ClassVar[str] = AlignmentFiles.records
    STAGE: ClassVar[str] = "alignment"
    WHAT: ClassVar[str] = "alignment over training"

    records: list[SnapshotRecord]

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return {"records": data} if isinstance(data, list) else data

    def data(self) -> list[dict[str, Any]]:
        return [r.model_dump() for r in self.records]


def _estimate(values: list[float], pair_w: np.ndarray) -> Estimate:
    """Mean over seed pairs with a seed-bootstrap interval."""
    values_arr = np.asarray(values, dtype=np.float64)
    low, high = interval(bootstrap_means(values_arr, pair_w))
    return Estimate(float(values_arr.mean()), low, high)


def alignment_over_training(
    net,
    snapshots: dict[int, list[list[np.ndarray]]],
    steps: list[int],
    steps_per_epoch: int,
    nulls: list,
    probe_x: np.ndarray,
    layers: list[str],
    *,
    quantile: float,
    tolerance: float,
    draws: int,
    bootstrap_draws: int,
    seed: int,
    progress: Callable[[str], None] | None = print,
) -> Alignment:
    """The comparison's statistics at every snapshot of training.

    Args:
        net: a model of the architecture (its weights are set to each snapshot in turn).
        snapshots: per seed, the weights at each snapshot (`training.Trajectory.weights`).
        steps: the optimizer step of each snapshot (the same for every seed).
        nulls: untrained models of the architecture (their pairs set the partner threshold).
    """
    seeds = list(snapshots)
    pairs = list(combinations(range(len(seeds)), 2))
    rng = np.random.default_rng(seed)
    seed_counts = seed_resamples(len(seeds), bootstrap_draws, rng)
    pair_w = pair_weights(seed_counts, pairs)
    null_units = [units_of(layer_outputs(m, probe_x, layers)) for m in nulls]
    curves, null_frac = {}, {}
    for n in layers:
        null = [
            match_layer(null_units[a][n], null_units[b][n], False, False)
            for a, b in combinations(range(len(nulls)), 2)
        ]
        curves[n] = LayerCurves(partner_threshold(null, quantile))
        null_frac[n] = float(np.mean([(m.r > curves[n].threshold).mean() for m in null]))

    def units_at(k: int) -> list[dict[str, Units]]:
        found = []
        for s in seeds:
            net.set_weights(snapshots[s][k])
            found.append(units_of(layer_outputs(net, probe_x, layers)))
        return found

    final = units_at(len(steps) - 1)
    for k, step in enumerate(steps):
        outs = final if k == len(steps) - 1 else units_at(k)
        for n in layers:
            c = curves[n]
            between = [match_layer(outs[a][n], outs[b][n], False, False) for a, b in pairs]
            partnered = _estimate(_fracs(between, c.threshold), pair_w)
            partnered.null = null_frac[n]
            c.partnered.append(partnered)
            c.same_index.append(
                same_index_test(
                    [(d, m.partner[d]) for m in between for d in [m.decisive(tolerance)]],
                    between[0].corr.shape[1],
                    draws,
                    rng,
                )  # fmt: skip
            )
            grams = [centered_gram(o[n].values.reshape(o[n].n_images, -1)) for o in outs]
            c.cka.append(_estimate([linear_cka(grams[a], grams[b]) for a, b in pairs], pair_w))
            own = [match_layer(outs[i][n], final[i][n], False, False) for i in range(len(seeds))]
            seed_w = seed_counts.astype(np.float64)
            c.final_partnered.append(_per_seed(_fracs(own, c.threshold), seed_w))
            c.final_same_index.append(_per_seed([_same(m) for m in own], seed_w))
        if progress is not None:
            epoch = step / steps_per_epoch
            shown = ", ".join(f"{n} {curves[n].partnered[-1].value:.0%}" for n in layers)
            progress(f"[alignment] step {step} (epoch {epoch:.2f}): partnered {shown}")
    epochs = [s / steps_per_epoch for s in steps]
    return Alignment(list(steps), epochs, curves)


def units_of(outputs: dict[str, np.ndarray]) -> dict[str, Units]:
    return {n: Units.of(o) for n, o in outputs.items()}


def _fracs(matches: list[LayerMatch], threshold: float) -> list[float]:
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
