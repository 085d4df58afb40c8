"""The first screen's three answers (`compare.answers`): which design keeps the order decides it,
every branch reached by a hand-made answer with a known outcome."""

from __future__ import annotations

import pytest

from oiplab.compare.answers import (
    answer_metrics,
    decider,
    first_screen,
    kept_layers,
    markdown,
    same_order,
    what_decides,
)
from oiplab.compare.summary import Answer
from tests import results

LAYERS = ["Conv2D_1", "Dense_1"]


def _splits(init: bool, order: bool) -> dict[str, Answer]:
    return {
        "same_init": results.split_answer(LAYERS, "same_init", init),
        "same_order": results.split_answer(LAYERS, "same_order", order),
    }


@pytest.mark.parametrize(
    ("init", "order", "expected"),
    [
        (True, False, "initialization"),
        (False, True, "image order"),
        (True, True, "both"),
        (False, False, "neither"),
    ],
)
def test_the_design_that_keeps_the_order_decides_it(init, order, expected):
    splits = _splits(init, order)
    assert decider(splits) == expected
    sentence = what_decides(splits)
    lead = {
        "initialization": "The initialization:",
        "image order": "The image order:",
        "both": "Both seeds keep part of the order:",
        "neither": "Neither seed alone",
    }[expected]
    assert sentence.startswith(lead)
    assert f"keep it in {2 if init else 0} of 2 layers" in sentence
    assert "Conv2D_1 50% at the same index (chance 3.1%, p = 1e-12)" in sentence or not (
        init or order
    )


def test_order_partly_kept_in_one_layer_is_kept():
    """A design keeping the order in one layer only ("order partly kept") still keeps it."""
    answer = results.split_answer(LAYERS, "same_order", kept=False)
    answer.layers["Dense_1"] = results.layer_answer("Dense_1", results.KEPT, "order partly kept")
    assert kept_layers(answer) == ["Dense_1"]
    splits = {"same_init": results.split_answer(LAYERS, "same_init", False), "same_order": answer}
    assert decider(splits) == "image order"


def test_without_both_designs_the_question_is_not_answered():
    assert decider({}) == "not run"
    one = {"same_init": results.split_answer(LAYERS, "same_init", True)}
    assert decider(one) == "not run"
    assert what_decides(one).startswith("Not in these results")


def test_the_default_order_test_reads_as_a_calibration_check():
    default = results.answer(LAYERS)  # every layer at chance, as symmetry requires
    text = same_order(default)
    assert "calibrated" in text and "fails" not in text
    assert "Conv2D_1 12% at the same index (chance 6.2%, p = 0.013)" in text
    default.layers["Dense_1"] = results.layer_answer("Dense_1", results.KEPT, "same order")
    assert "the calibration check fails in Dense_1" in same_order(default)


def test_the_answers_as_markdown_and_metrics():
    default, splits = results.answer(LAYERS), _splits(True, False)
    answers = first_screen(default, splits)
    assert [a.anchor for a in answers] == ["compare", "compare", "decides"]
    text = markdown(answers)
    assert text.startswith("**Same filters?** Conv2D_1: units recur (62% of maps partnered;")
    assert "\n\n**What decides the order?** The initialization:" in text
    metrics = answer_metrics(default, splits)
    assert metrics["same_init.Dense_1.same_index"] == 0.5
    assert metrics["same_order.Dense_1.same_index"] == 0.125
    assert metrics["default.Conv2D_1.same_index_p"] == 0.0125
    assert metrics["default.Conv2D_1.partnered"] == 0.625
    assert len(metrics) == 3 * 2 * 2 + 2
