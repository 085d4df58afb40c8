"""The study's three short answers - same filters? same order? what decides the order? - each a
sentence with its numbers, from the typed answers of the default comparison and of the seed-split
designs. The report opens with them; the compare run and the pipeline's parent run carry them.

Why the default study cannot answer "same order?": independently initialized networks are
exchangeable across units (permuting a layer's units permutes the initial weights' distribution
onto itself), so map i of one seed is as likely to match any map of another. Its same-index test
is at chance by symmetry: it checks that the test is calibrated. The order question is answered
by the seed-split design (`conf/split/`): networks sharing the first seed's initialization with
their own image order (same_init), and sharing its image order with their own initialization
(same_order). Whichever design keeps maps at their index decides the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from oiplab.compare.summary import Answer, LayerAnswer

AT_CHANCE = "order at chance"  # `LayerAnswer.order_words` of a layer whose order is not kept
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


def kept_layers(answer: Answer) -> list[str]:
    """The layers whose same-index test says the order is (partly) kept."""
    return [n for n, a in answer.layers.items() if a.order_words != AT_CHANCE]


def decider(splits: dict[str, Answer]) -> Decider:
    """Which shared seed keeps the order: the design(s) whose networks keep maps at their index
    in at least one layer."""
    if not {"same_init", "same_order"} <= set(splits):
        return "not run"
    init, order = (bool(kept_layers(splits[d])) for d in ("same_init", "same_order"))
    if init and order:
        return "both"
    if init:
        return "initialization"
    return "image order" if order else "neither"


def _same_index(a: LayerAnswer) -> str:
    """'12% at the same index (chance 3.1%, p = 1e-09)' of one layer."""
    o = a.order
    chance = o.expected / o.n_tested if o.n_tested else float("nan")
    return f"{o.fraction:.0%} at the same index (chance {chance:.1%}, p = {o.p_value:.2g})"


def same_filters(default: Answer) -> str:
    """Per layer: what the partnered fraction shows (`identity`), beside its references."""
    parts = []
    for n, a in default.layers.items():
        p = a.partnered
        refs = f"untrained {p.null:.0%}" if p.null is not None else "no untrained reference"
        if a.rotation_null is not None:
            refs += f", a rotated basis {a.rotation_null.value:.0%}"
        parts.append(f"{n}: {a.identity} ({p.value:.0%} of maps partnered; {refs})")
    return "; ".join(parts) + "."


def same_order(default: Answer) -> str:
    """The default study's order test, labelled for what it is: a calibration check."""
    off = [n for n, a in default.layers.items() if a.order_words != AT_CHANCE]
    numbers = "; ".join(f"{n} {_same_index(a)}" for n, a in default.layers.items())
    if off:
        return (
            f"Not answerable from independent seeds, and the calibration check fails in "
            f"{', '.join(off)}: independent initializations are exchangeable across units, so "
            f"same-index matches must be at chance; check the test ({numbers})."
        )
    return (
        "Not answerable from independent seeds: their initializations are exchangeable across "
        "units, so the order is at chance by symmetry, as measured in every layer: a check that "
        f"the same-index test is calibrated ({numbers}); the seed-split design answers it."
    )


def what_decides(splits: dict[str, Answer]) -> str:
    """Which shared seed keeps the order, with each design's same-index numbers per layer."""
    who = decider(splits)
    if who == "not run":
        return "Not in these results: the seed-split design answers it (`dvc repro compare_split`)."
    lead = {
        "initialization": "The initialization",
        "image order": "The image order",
        "both": "Both seeds keep part of the order",
        "neither": "Neither seed alone: sharing either leaves the order at chance",
    }[who]
    designs = []
    for d, what in DESIGNS.items():
        a = splits[d]
        n = len(kept_layers(a))
        layers = "; ".join(f"{k} {_same_index(x)}" for k, x in a.layers.items())
        designs.append(f"networks {what} keep it in {n} of {len(a.layers)} layers ({layers})")
    return f"{lead}: " + "; ".join(designs) + "."


def first_screen(default: Answer, splits: dict[str, Answer]) -> list[ShortAnswer]:
    """The three questions, answered from this run's numbers."""
    return [
        ShortAnswer("Same filters?", same_filters(default), "compare"),
        ShortAnswer("Same order?", same_order(default), "compare"),
        ShortAnswer("What decides the order?", what_decides(splits), "decides"),
    ]


def markdown(answers: list[ShortAnswer]) -> str:
    """The answers as an MLflow run description."""
    return "\n\n".join(f"**{a.question}** {a.sentence}" for a in answers)


def answer_metrics(default: Answer, splits: dict[str, Answer]) -> dict[str, float]:
    """The answers' headline numbers for the parent run: per design and layer, the same-index
    fraction and its p-value."""
    out: dict[str, float] = {}
    for design, answer in {"default": default, **splits}.items():
        for n, a in answer.layers.items():
            out[f"{design}.{n}.same_index"] = a.order.fraction
            out[f"{design}.{n}.same_index_p"] = float(a.order.p_value)
    for n, a in default.layers.items():
        out[f"default.{n}.partnered"] = float(a.partnered.value)
    return out
