"""The answer per layer: each statistic with its 95% interval beside the same statistic on
untrained networks, and a verdict whose every word names the number behind it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Estimate:
    """A statistic over the trained pairs, its bootstrap interval, and its null value."""

    value: float
    low: float
    high: float
    null: float | None = None  # the same statistic on pairs of untrained networks
    null_high: float | None = None  # the largest value over those pairs


@dataclass
class OrderTest:
    """Same-index matches summed over pairs, against relabelled maps (`stats.same_index_test`)."""

    observed: int
    expected: float
    p_value: float
    n_tested: int

    @property
    def fraction(self) -> float:
        return self.observed / self.n_tested if self.n_tested else float("nan")


@dataclass
class LayerAnswer:
    layer: str
    n_maps: int
    threshold: float  # matched r above which a map is partnered (a quantile of the null's)
    partnered: Estimate  # fraction of live-to-live matches with r above the threshold
    matched_r: Estimate  # median matched r
    cka: Estimate  # linear CKA of the layer between the two networks
    order: OrderTest  # trained pairs
    order_null: OrderTest  # untrained pairs: a p-value that should be large
    stable: Estimate  # fraction of matches with the same partner on either half of the images
    dead: dict[str, int]  # maps constant over the probe images, per seed
    consistency: dict[str, float]  # a->b->c == a->c: all matches, stable ones, chance
    weight_agreement: dict[str, float] = field(default_factory=dict)  # same keys; permutable only
    verdict: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["order"]["fraction"] = self.order.fraction
        out["order_null"]["fraction"] = self.order_null.fraction
        return out


@dataclass(frozen=True)
class VerdictRules:
    """When a word is earned (values from `conf/compare/`)."""

    alpha: float  # a p-value below this is "more than chance"
    same_order_fraction: (
        float  # ... and with at least this fraction at the same index, "same order"
    )


def verdict(a: LayerAnswer, rules: VerdictRules) -> str:
    """One sentence for one layer, each word followed by the numbers it rests on."""
    p = a.partnered
    # "beyond the null": the whole interval above the largest fraction any untrained pair reached
    beyond = p.null_high is not None and p.low > p.null_high
    if beyond and p.value >= 0.5:
        maps = "most maps have a partner"
    elif beyond:
        maps = "some maps have a partner"
    else:
        maps = "not clearly more maps have a partner than between untrained networks"
    o = a.order
    if o.p_value < rules.alpha and o.fraction >= rules.same_order_fraction:
        order = "same order"
    elif o.p_value < rules.alpha:
        order = "order partly kept"
    else:
        order = "order at chance"
    return (
        f"{a.layer}: {maps} ({p.value:.0%} partnered, 95% CI {p.low:.0%}-{p.high:.0%}; "
        f"untrained {p.null:.0%}, at most {p.null_high or 0:.0%} in one untrained pair); "
        f"{order}: {o.observed} same-index vs {o.expected:.1f} expected, "
        f"p = {o.p_value:.2g}"
    )


def summary_numbers(answers: dict[str, LayerAnswer]) -> dict[str, dict[str, float | None]]:
    """The few numbers per layer a user compares between experiments."""
    return {
        layer: {
            "partnered": a.partnered.value,
            "partnered_null": a.partnered.null,
            "same_index_p": a.order.p_value,
            "cka": a.cka.value,
        }
        for layer, a in answers.items()
    }


def mean_or_nan(values: Iterable[float | None]) -> float:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def headline_metrics(
    answers: dict[str, LayerAnswer], barriers: dict, accuracies: list[float]
) -> dict[str, Any]:
    """The small set of numbers DVC shows per experiment (`dvc exp show`, `dvc metrics diff`)."""
    return {
        "accuracy": {"mean": float(np.mean(accuracies)), "min": float(np.min(accuracies))},
        **{
            layer: {
                "partnered": a.partnered.value,
                "partnered_null": a.partnered.null,
                "same_index_p": a.order.p_value,
                "cka": a.cka.value,
            }
            for layer, a in answers.items()
        },
        "loss_barrier": {
            "as_trained": barriers["naive.test.loss_barrier"].value,
            "aligned": barriers["weights.test.loss_barrier"].value,
        },
    }


def answer_records(answers: dict[str, LayerAnswer]) -> list[dict[str, Any]]:
    """Per layer, the partnered fraction of trained pairs (with its interval) and of untrained
    ones: the data of the `answer` plot."""
    return [
        {
            "layer": layer,
            "layer_index": k,
            "partnered": a.partnered.value,
            "low": a.partnered.low,
            "high": a.partnered.high,
            "untrained": a.partnered.null,
            "untrained_max": a.partnered.null_high,
        }
        for k, (layer, a) in enumerate(answers.items())
    ]


def learning_curve_records(histories: dict[int, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """One record per (seed, epoch): the data of the `learning_curves` plot."""
    return [
        {"seed": str(seed), "epoch": epoch + 1, **{k: v[epoch] for k, v in history.items()}}
        for seed, history in histories.items()
        for epoch in range(len(next(iter(history.values()))))
    ]
