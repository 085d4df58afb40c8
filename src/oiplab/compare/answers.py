"""The study's three short answers - same filters? same order? what decides the order? - each a
sentence with its numbers, from the typed answers of the default comparison and of the seed-split
designs. The report opens with them; the compare run and the pipeline's parent run carry them.

Why the default study cannot answer "same order?": independently initialized networks are
exchangeable across units (permuting a layer's units permutes the initial weights' distribution
onto itself), so map i of one seed is as likely to match any map of another. Its same-index test
is at chance by symmetry: it checks that the test is calibrated. The order question is answered
by the seed-split design (`conf/split/`): networks sharing the first seed's initialization with
their own image order (same_init), and sharing its image order with their own initialization
(same_order). Whichever design keeps maps at their index decides the order; a design keeps it
when any layer's same-index p-value, Holm-adjusted over the layers, is below `compare.alpha`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from oiplab.compare.inference import holm
from oiplab.compare.summary import Answer, LayerAnswer

DESIGNS = {
    "same_init": "sharing the first seed's initialization (own image order)",
    "same_order": "sharing the first seed's image order (own initialization)",
}
Decider = Literal["initialization", "image order", "both", "neither", "not run"]


@dataclass(frozen=True)
class ShortAnswer:
    """One question of the first screen: its answer in one sentence, with its numbers, and the
    section of the report that details it."""

    question: str
    sentence: str
    anchor: str


def layer_p_holm(answer: Answer) -> dict[str, float]:
    """Each layer's same-index p-value, Holm-adjusted over the answer's layers (one family: a
    design "keeps the order" if any layer does, so the layers are tested together)."""
    p = np.array([a.order.p_value for a in answer.layers.values()], dtype=np.float64)
    return dict(zip(answer.layers, holm(p).tolist(), strict=True))


def kept_layers(answer: Answer, alpha: float) -> list[str]:
    """The layers whose order is kept beyond chance: Holm-adjusted p below `alpha`."""
    return [n for n, p in layer_p_holm(answer).items() if p < alpha]


def decider(splits: dict[str, Answer], alpha: float) -> Decider:
    """Which shared seed keeps the order: the design(s) whose networks keep maps at their index
    in at least one layer (Holm over the layers)."""
    if not {"same_init", "same_order"} <= set(splits):
        return "not run"
    init, order = (bool(kept_layers(splits[d], alpha)) for d in ("same_init", "same_order"))
    if init and order:
        return "both"
    if init:
        return "initialization"
    return "image order" if order else "neither"


def _span(values: list[float], digits: int = 0) -> str:
    """'3%-17%', or '3%' when every value prints the same."""
    low, high = (f"{100 * v:.{digits}f}%" for v in (min(values), max(values)))
    return low if low == high else f"{low}-{high}"


def order_numbers(answer: Answer, alpha: float) -> str:
    """One design's same-index numbers in a clause: how many layers keep the order, the share
    of matched maps at the same index there, chance, and the Holm-adjusted p-values."""
    adjusted, kept = layer_p_holm(answer), kept_layers(answer, alpha)
    layers = [n for n in answer.layers if n in kept] or list(answer.layers)
    frac = [answer.layers[n].order.fraction for n in layers]
    every = [_all_fraction(answer.layers[n]) for n in layers]
    chance = [_chance(answer.layers[n]) for n in layers]
    # the test counts the clear (decisive) matches; the share among all matches is given beside,
    # so the sentence does not read as a share of every matched map
    share = f"{_span(frac)} of clear matches"
    if all(np.isfinite(every)):  # older answers carry no all-matches count
        share += f" ({_span(every)} of all matches)"
    if kept:
        worst = max(adjusted[n] for n in kept)
        return (
            f"{share} at their index in {len(kept)} of "
            f"{len(answer.layers)} layers (chance {_span(chance, 1)}; Holm p <= {worst:.2g})"
        )
    best = min(adjusted.values())
    return (
        f"{share} at their index, at chance in all {len(answer.layers)} "
        f"layers (chance {_span(chance, 1)}; smallest Holm p = {best:.2g})"
    )


def _all_fraction(a: LayerAnswer) -> float:
    """The share of all one-to-one matches at the same index (not only the clear ones)."""
    o = a.order
    return o.observed_all / o.n_matches if o.n_matches else float("nan")


def _chance(a: LayerAnswer) -> float:
    return a.order.expected / a.order.n_tested if a.order.n_tested else float("nan")


def same_filters(default: Answer, most: float = 0.5) -> str:
    """Per layer: what the partnered fraction shows (`identity`, with "some"/"most" by `most`:
    `compare.most_fraction`), beside the two numbers the word rests on: the trained-vs-untrained
    p and the rotation null's 95th percentile."""
    parts = []
    for n, a in default.layers.items():
        p = a.partnered
        share = "most" if p.value >= most else "some"
        word = a.identity if a.identity == "like untrained" else f"{a.identity} ({share} maps)"
        refs = f"untrained {p.null:.0%}" if p.null is not None else "no untrained reference"
        refs += f", trained vs untrained p = {a.vs_untrained_p:.2g}"
        top = a.rotation_null.null_high
        refs += f", rotated units up to {top:.0%}" if top is not None else ""
        parts.append(f"{n}: {word}, {p.value:.0%} of live maps partnered ({refs})")
    return "; ".join(parts) + "."


def same_order(default: Answer, alpha: float) -> str:
    """The default study's order test, labelled for what it is: a calibration check."""
    off = kept_layers(default, alpha)
    numbers = order_numbers(default, alpha)
    if off:
        return (
            f"No by symmetry with independent seeds, yet the calibration check fails in "
            f"{', '.join(off)}: independent initializations are exchangeable across units, so "
            f"same-index matches must be at chance; check the test ({numbers})."
        )
    return (
        "No, not with independent seeds: their initializations are exchangeable across units, "
        "so a map's index is arbitrary (at chance by symmetry); measured: "
        f"{numbers}, a check that the test is calibrated. The seed-split design asks what keeps it."
    )


def what_decides(splits: dict[str, Answer], alpha: float) -> str:
    """Which shared seed keeps the order, with each design's same-index numbers."""
    who = decider(splits, alpha)
    if who == "not run":
        return (
            "Answered by the seed-split design (`compare_split`, run after this comparison): "
            "see the report and the pipeline's parent run."
        )
    lead = {
        "initialization": "The initialization",
        "image order": "The image order",
        "both": "Both seeds keep part of the order",
        "neither": "Neither seed alone",
    }[who]
    designs = [
        f"networks {what} keep {order_numbers(splits[d], alpha)}" for d, what in DESIGNS.items()
    ]
    # Networks with their own initializations stay exchangeable across units whatever images
    # they share, so the same_order arm is a second calibration check, not an open question.
    note = (
        " (a shared image order cannot keep the order by symmetry: its networks' own "
        "initializations are exchangeable across units, so that arm checks the test)"
    )
    return f"{lead}: " + "; ".join(designs) + note + "."


def first_screen(
    default: Answer, splits: dict[str, Answer], alpha: float, most: float = 0.5
) -> list[ShortAnswer]:
    """The three questions, answered from this run's numbers (`alpha`: `compare.alpha`, `most`:
    `compare.most_fraction`)."""
    return [
        ShortAnswer("Same filters?", same_filters(default, most), "compare"),
        ShortAnswer("Same order?", same_order(default, alpha), "compare"),
        ShortAnswer("What decides the order?", what_decides(splits, alpha), "decides"),
    ]


def markdown(answers: list[ShortAnswer]) -> str:
    """The answers as Markdown: a heading per question, its sentence below."""
    return "\n\n".join(f"### {a.question}\n\n{a.sentence}" for a in answers)


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0%}"


def layer_table(default: Answer) -> str:
    """The default comparison per layer as a Markdown table, its numbers rounded for reading
    (the run's metrics keep them whole)."""
    rows = [
        "| Layer | Maps partnered (95% CI) | Untrained | Rotated units, 95th pct "
        "| Trained vs untrained p | Same index (p) | Reads as |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, a in default.layers.items():
        p, o = a.partnered, a.order
        rows.append(
            f"| {n} | {p.value:.0%} ({p.low:.0%}-{p.high:.0%}) | {_pct(p.null)} "
            f"| {_pct(a.rotation_null.null_high)} | {a.vs_untrained_p:.2g} "
            f"| {o.observed}/{o.n_tested} (p = {o.p_value:.2g}) | {a.identity}; {a.order_words} |"
        )
    return "\n".join(rows)


def trained_line(headline: dict[str, Any]) -> str:
    """The trained networks' accuracy and loss barrier (`headline_metrics`), in one sentence."""
    acc, barrier = headline["accuracy"], headline["loss_barrier"]
    return (
        f"Test accuracy of the trained seeds: mean {acc['mean']:.2%}, lowest {acc['min']:.2%}. "
        f"Test loss barrier between two seeds: {barrier['as_trained']:.3g} as trained, "
        f"{barrier['aligned']:.3g} with their units aligned."
    )


def in_brief(default: Answer, splits: dict[str, Answer], alpha: float) -> str:
    """The three answers in a few words each, for the line the UI shows before "Show more":
    the layers per identity word, whether the order is at chance, and what decides it."""
    words: dict[str, int] = {}
    for a in default.layers.values():
        words[a.identity] = words.get(a.identity, 0) + 1
    n = len(default.layers)
    filters = ", ".join(f"{w} in {k} of {n} layers" for w, k in words.items())
    off = kept_layers(default, alpha)
    order = f"calibration check fails in {', '.join(off)}" if off else "no, at chance by symmetry"
    who = decider(splits, alpha)
    decides = "see the seed-split comparisons (compare_split)" if who == "not run" else who
    return (
        f"**Same filters?** {filters}. **Same order?** {order}. "
        f"**What decides the order?** {decides}."
    )


def description(
    answers: list[ShortAnswer], default: Answer, headline: dict[str, Any], brief: str
) -> str:
    """The Markdown description of a run that carries the study's answer (the pipeline's parent
    run, the compare run): the answers in brief (`in_brief`), then in full, the per-layer table,
    the trained networks."""
    return (
        f"{brief}\n\n## The answers\n\n{markdown(answers)}\n\n"
        f"## Per layer (independent seeds)\n\n{layer_table(default)}\n\n{trained_line(headline)}"
    )


def execution_metrics(headline: dict[str, Any], splits: dict[str, Answer]) -> dict[str, float]:
    """The parent run's metrics: the headline numbers (`metrics/headline.json`, as
    `<layer>.<number>`) and, per seed-split design and layer, the same-index fraction and p."""
    out = {
        f"{group}.{key}": float(value)
        for group, numbers in headline.items()
        for key, value in numbers.items()
        if value is not None
    }
    for design, answer in splits.items():
        for n, a in answer.layers.items():
            out[f"{design}.{n}.same_index"] = a.order.fraction
            out[f"{design}.{n}.same_index_p"] = float(a.order.p_value)
    return out
