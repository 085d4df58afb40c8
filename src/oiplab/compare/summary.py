"""The answer per layer: each statistic with its 95% interval beside the same statistic on
untrained networks, and a verdict whose every word names the number behind it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BeforeValidator, ConfigDict, model_validator

from oiplab.io import Fields, Finite, Real, Record
from oiplab.layout import CompareFiles

# A stored result is read back field by field: an unknown field is another format (`oiplab.io`).
_STORED = ConfigDict(extra="forbid")


@dataclass
class Estimate:
    """A statistic over the trained pairs, its bootstrap interval, and its null value."""

    __pydantic_config__ = _STORED
    value: Real
    low: Real
    high: Real
    null: float | None = None  # the same statistic on pairs of untrained networks
    null_high: float | None = None  # the largest value over those pairs


@dataclass
class OrderTest:
    """Same-index matches summed over pairs, against relabelled maps (`stats.same_index_test`)."""

    __pydantic_config__ = _STORED
    observed: int
    expected: Real
    p_value: Real
    n_tested: int

    @property
    def fraction(self) -> float:
        return self.observed / self.n_tested if self.n_tested else float("nan")


def _stored_order(data: Any) -> Any:
    """An `OrderTest` as `LayerAnswer.to_dict` writes it: with its `fraction` beside it."""
    return {k: v for k, v in data.items() if k != "fraction"} if isinstance(data, dict) else data


StoredOrder = Annotated[OrderTest, BeforeValidator(_stored_order)]


@dataclass
class LayerAnswer:
    __pydantic_config__ = _STORED
    layer: str
    n_maps: int
    threshold: Finite  # matched r above which a map is partnered (a quantile of the null's)
    partnered: Estimate  # fraction of live-to-live matches with r above the threshold
    matched_r: Estimate  # median matched r
    cka: Estimate  # linear CKA of the layer between the two networks
    order: StoredOrder  # trained pairs
    order_null: StoredOrder  # untrained pairs: a p-value that should be large
    stable: Estimate  # fraction of matches with the same partner on either half of the images
    dead: dict[str, int]  # maps constant over the probe images, per seed
    consistency: dict[str, Real]  # a->b->c == a->c: all matches, stable ones, chance
    weight_agreement: dict[str, Real] = field(default_factory=dict)  # same keys; permutable only
    verdict: str = ""
    # Stand-ins for the fields wt-answer2 adds (the names are the contract; take theirs on merge):
    identity: str = ""  # "units recur" | "shared subspace" | "like untrained"
    order_words: str = ""  # "same order" | "order partly kept" | "order at chance"
    rotation_null: Estimate | None = None  # partnered with one network's units mixed by a rotation

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


def order_words(o: OrderTest, rules: VerdictRules) -> str:
    """The order's words from its same-index test."""
    if o.p_value < rules.alpha and o.fraction >= rules.same_order_fraction:
        return "same order"
    if o.p_value < rules.alpha:
        return "order partly kept"
    return "order at chance"


def verdict(layer: str, partnered: Estimate, order: OrderTest, rules: VerdictRules) -> str:
    """One sentence for one layer, each word followed by the numbers it rests on."""
    p = partnered
    # "beyond the null": the whole interval above the largest fraction any untrained pair reached
    beyond = p.null_high is not None and p.low > p.null_high
    if beyond and p.value >= 0.5:
        maps = "most maps have a partner"
    elif beyond:
        maps = "some maps have a partner"
    else:
        maps = "not clearly more maps have a partner than between untrained networks"
    o, kept = order, order_words(order, rules)
    return (
        f"{layer}: {maps} ({p.value:.0%} partnered, 95% CI {p.low:.0%}-{p.high:.0%}; "
        f"untrained {p.null:.0%}, at most {p.null_high or 0:.0%} in one untrained pair); "
        f"{kept}: {o.observed} same-index vs {o.expected:.1f} expected, "
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


class Barriers(Fields):
    """Loss and accuracy barriers along the weight interpolation (mean over pairs, with a seed
    interval): alignment ("naive", "activations", "weights") -> image set ("test", "train") ->
    measure ("loss", "accuracy"). The file spells each as "<alignment>.<set>.<measure>_barrier"."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    by_alignment: dict[str, dict[str, dict[str, Estimate]]]

    def get(self, alignment: str, images: str, measure: str) -> Estimate:
        return self.by_alignment[alignment][images][measure]

    def rows(self) -> list[tuple[str, str, str, Estimate]]:
        """(alignment, image set, measure, estimate), in the order they were computed."""
        return [
            (how, images, measure, e)
            for how, by_set in self.by_alignment.items()
            for images, by_measure in by_set.items()
            for measure, e in by_measure.items()
        ]

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "by_alignment" in data:
            return data
        nested: dict[str, dict[str, dict[str, Any]]] = {}
        for key, value in data.items():
            how, images, measure = (str(key).split(".") + ["", "", ""])[:3]
            measure = measure.removesuffix("_barrier")
            nested.setdefault(how, {}).setdefault(images, {})[measure] = value
        return {"by_alignment": nested}

    def data(self) -> dict[str, Any]:
        return {f"{how}.{s}.{m}_barrier": vars(e) for how, s, m, e in self.rows()}


class Answer(Record):
    """The comparison's answer (`artifacts/compare/headline.json`, also kept in MLflow): per
    layer, then the interpolation barriers under "interpolation"."""

    FILE: ClassVar[str] = CompareFiles.headline
    STAGE: ClassVar[str] = "compare"
    WHAT: ClassVar[str] = "the comparison's answer"

    layers: dict[str, LayerAnswer]
    barriers: Barriers
    # which networks were compared: "default" (independent seeds), or a seed-split design,
    # "same_init" / "same_order" (`conf/split/`)
    design: str = "default"

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "layers" in data:
            return data
        layers = {k: v for k, v in data.items() if k not in ("interpolation", "design")}
        design = data.get("design", "default")
        return {"layers": layers, "barriers": data.get("interpolation"), "design": design}

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {layer: a.to_dict() for layer, a in self.layers.items()}
        out["interpolation"] = self.barriers.data()
        out["design"] = self.design
        return out

    @property
    def verdict(self) -> str:
        return "; ".join(a.verdict for a in self.layers.values())


def headline_metrics(
    answers: dict[str, LayerAnswer], barriers: Barriers, accuracies: list[float]
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
            "as_trained": barriers.get("naive", "test", "loss").value,
            "aligned": barriers.get("weights", "test", "loss").value,
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
