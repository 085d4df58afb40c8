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
    """Same-index matches summed over pairs, against relabelled maps, with the exact law
    (`inference.exact_same_index_test`): over the decisive matches (k of n tested), and beside it
    over all matches."""

    __pydantic_config__ = _STORED
    observed: int  # k: decisive matches at the same index, over all pairs
    expected: Real  # their null mean (n_tested / n_maps)
    p_value: Real  # exact P(X >= observed) over the decisive matches (no simulation floor)
    n_tested: int  # n: decisive matches tested
    # (defaults: an answer stored before these were computed)
    n_matches: int = 0  # N: every live-to-live match, decisive or not
    p_all: Real = 1.0  # exact p over all N matches (same-index count `observed_all`)
    observed_all: int = 0  # same-index matches among all N
    keep_upper: float | None = None  # one-sided 95% bound on the keep rate; None: p < alpha

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
    consistency: dict[str, Real]  # a->b->c == a->c: all, stable, chance; untrained(_stable)
    # partnered fraction with one network's live units rotated (value: mean over pairs and draws;
    # null_high: 95th percentile of the draws)
    rotation_null: Estimate
    siblings: Estimate  # within-network sibling rate (value trained mean, null untrained mean)
    one_to_one: Estimate  # one-to-one r2 on held-out images (value trained, null untrained)
    many_to_one: Estimate  # many-to-one R2 on held-out images (value trained, null untrained)
    auroc: Estimate  # trained vs untrained matched r (value, low, high; null 0.5)
    vs_untrained_p: Real  # label-permutation p, trained vs untrained (median matched r)
    identity: str  # "units recur" | "shared subspace" | "like untrained"
    order_words: str  # "same order" | "order partly kept" | "order at chance"
    cka_debiased: Estimate  # debiased linear CKA (Nguyen et al. 2021), beside untrained
    weight_agreement: dict[str, Real] = field(default_factory=dict)  # as consistency; permutable
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
    same_order_fraction: float  # with p < alpha, "same order" needs this share at the same index
    most_fraction: float = 0.5  # "most maps" at or above this partnered fraction, else "some"


IDENTITY = ("units recur", "shared subspace", "like untrained")
ORDER = ("same order", "order partly kept", "order at chance")


def identity_words(
    partnered: Estimate, rotation_null: Estimate, vs_untrained_p: float, rules: VerdictRules
) -> str:
    """ "units recur": matched r beyond the untrained networks' (the label-permutation test) AND
    a partnered fraction above what one network's rotated units reach (the rotation null's 95th
    percentile); "shared subspace": beyond untrained, but rotated units do as well (no privileged
    basis is needed to explain it); "like untrained" otherwise."""
    if not vs_untrained_p < rules.alpha:
        return IDENTITY[2]
    top = rotation_null.null_high
    above = top is not None and partnered.value > top
    return IDENTITY[0] if above else IDENTITY[1]


def order_words(order: OrderTest, rules: VerdictRules) -> str:
    """From the exact same-index p (decisive matches) and the share at the same index."""
    if order.p_value < rules.alpha and order.fraction >= rules.same_order_fraction:
        return ORDER[0]
    if order.p_value < rules.alpha:
        return ORDER[1]
    return ORDER[2]


def _maps_words(a: LayerAnswer, rules: VerdictRules) -> str:
    """The identity words with "most"/"some" by the partnered fraction."""
    share = "most" if a.partnered.value >= rules.most_fraction else "some"
    if a.identity == IDENTITY[0]:
        return f"units recur: {share} maps have a partner"
    if a.identity == IDENTITY[1]:
        return f"a shared subspace, not units: {share} maps have a partner, as rotated units do"
    return "like untrained: not clearly more maps have a partner than between untrained networks"


def _p(p: float) -> str:
    """A p-value as the page prints it: exact values have no floor, tiny ones in e-notation."""
    return f"{p:.2g}"


def verdict(a: LayerAnswer, rules: VerdictRules) -> str:
    """One sentence for one layer from its `identity` and `order_words`, each word followed by
    the numbers it rests on. The partnered fraction is stated with this layer's own threshold:
    thresholds differ between layers, so fractions are not compared across layers."""
    p, o, rot = a.partnered, a.order, a.rotation_null
    bound = "" if o.keep_upper is None else f", at most {o.keep_upper:.0%} keep their index"
    return (
        f"{a.layer}: {_maps_words(a, rules)} ({p.value:.0%} partnered at this layer's "
        f"threshold r > {a.threshold:.2f}, 95% CI {p.low:.0%}-{p.high:.0%}; untrained "
        f"{p.null or 0:.0%}, trained vs untrained p = {_p(a.vs_untrained_p)}; rotated units "
        f"{rot.value:.0%}, 95th percentile {rot.null_high or 0:.0%}); "
        f"{a.order_words}: {o.observed} of {o.n_tested} tested at the same index "
        f"({o.n_matches} matches: {o.observed_all}, p = {_p(o.p_all)}) vs "
        f"{o.expected:.1f} expected, exact p = {_p(o.p_value)}{bound}"
    )


def layer_numbers(a: LayerAnswer) -> dict[str, Any]:
    """The four numbers of one layer a user compares between experiments (DVC's metrics file,
    one column each in `dvc exp show`), in the order the answer reads: the partnered fraction, the
    two references its identity words rest on, and the order test. The rest of the layer's numbers
    (siblings, one-to-one and many-to-one fits, k of n, the bound) are in `answer_records`."""
    return {
        "partnered": a.partnered.value,
        "rotation_null_95": a.rotation_null.null_high,
        "vs_untrained_p": a.vs_untrained_p,
        "same_index_p": a.order.p_value,
    }


def summary_numbers(answers: dict[str, LayerAnswer]) -> dict[str, dict[str, Any]]:
    """The few numbers per layer a user compares between experiments."""
    return {layer: layer_numbers(a) for layer, a in answers.items()}


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
        **summary_numbers(answers),
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
            "rotation_null": a.rotation_null.value,
            "rotation_null_95": a.rotation_null.null_high,
            "siblings": a.siblings.value,
            "siblings_untrained": a.siblings.null,
            "one_to_one_r2": a.one_to_one.value,
            "many_to_one_r2": a.many_to_one.value,
            "vs_untrained_p": a.vs_untrained_p,
            "same_index_p": a.order.p_value,
            "same_index_k": a.order.observed,
            "same_index_n": a.order.n_tested,
            "matches": a.order.n_matches,
            "same_index_p_all": a.order.p_all,
            "keep_upper": a.order.keep_upper,
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
