"""The first screen's three answers (`compare.answers`): which design keeps the order decides it,
every branch reached by a hand-made answer with a known outcome."""

from __future__ import annotations

import pytest

from oiplab.compare.answers import (
    decider,
    description,
    execution_metrics,
    first_screen,
    in_brief,
    kept_layers,
    markdown,
    same_order,
    what_decides,
)
from oiplab.compare.summary import Answer, OrderTest
from tests import results

LAYERS = ["Conv2D_1", "Dense_1"]
ALPHA = 0.05


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
    assert decider(splits, ALPHA) == expected
    sentence = what_decides(splits, ALPHA)
    lead = {
        "initialization": "The initialization:",
        "image order": "The image order:",
        "both": "Both seeds keep part of the order:",
        "neither": "Neither seed alone",
    }[expected]
    assert sentence.startswith(lead)
    assert "a shared image order cannot keep the order by symmetry" in sentence
    kept = (
        "keep 50% of clear matches at their index in 2 of 2 layers (chance 3.1%; Holm p <= 2e-12)"
    )
    at_chance = "keep 4% of clear matches at their index, at chance in all 2 layers (chance 3.1%;"
    assert sentence.count(kept) == init + order
    assert sentence.count(at_chance) == 2 - init - order


def test_one_layer_beyond_chance_after_holm_keeps_the_order():
    """A design keeping the order in one layer only still keeps it; one layer at p = 0.03 of
    two does not, once the layers are adjusted together (Holm: 0.06)."""
    answer = results.split_answer(LAYERS, "same_order", kept=False)
    answer.layers["Dense_1"] = results.layer_answer("Dense_1", results.KEPT, "order partly kept")
    assert kept_layers(answer, ALPHA) == ["Dense_1"]
    splits = {"same_init": results.split_answer(LAYERS, "same_init", False), "same_order": answer}
    assert decider(splits, ALPHA) == "image order"
    weak = OrderTest(observed=3, expected=0.75, p_value=0.03, n_tested=24)
    answer.layers["Dense_1"] = results.layer_answer("Dense_1", weak, "order partly kept")
    assert kept_layers(answer, ALPHA) == [] and decider(splits, ALPHA) == "neither"


def test_without_both_designs_the_question_is_not_answered():
    assert decider({}, ALPHA) == "not run"
    one = {"same_init": results.split_answer(LAYERS, "same_init", True)}
    assert decider(one, ALPHA) == "not run"
    assert what_decides(one, ALPHA).startswith("Answered by the seed-split design")


def test_the_default_order_test_reads_as_a_calibration_check():
    default = results.split_answer(LAYERS, "default", kept=False)  # at chance, by symmetry
    text = same_order(default, ALPHA)
    assert "calibrated" in text and "fails" not in text
    assert "4% of clear matches at their index, at chance in all 2 layers (chance 3.1%; " in text
    default.layers["Dense_1"] = results.layer_answer("Dense_1", results.KEPT, "same order")
    assert "the calibration check fails in Dense_1" in same_order(default, ALPHA)


def test_the_answers_as_markdown_and_metrics():
    default, splits = results.answer(LAYERS), _splits(True, False)
    answers = first_screen(default, splits, ALPHA)
    assert [a.anchor for a in answers] == ["compare", "compare", "decides"]
    text = markdown(answers)
    assert text.startswith(
        "### Same filters?\n\nConv2D_1: units recur (most maps), 62% of live maps partnered "
        "(untrained 25%, trained vs untrained p = 0.0039, rotated units up to 38%)"
    )
    assert "\n\n### What decides the order?\n\nThe initialization:" in text
    assert in_brief(default, splits, ALPHA).endswith("**What decides the order?** initialization.")
    headline = {
        "accuracy": {"mean": 0.99308, "min": 0.9916},
        "Conv2D_1": {"partnered": 0.625, "rotation_null_95": None, "same_index_p": 0.0125},
        "loss_barrier": {"as_trained": 1.989519687441869, "aligned": 0.0638541773534583},
    }
    metrics = execution_metrics(headline, splits)
    assert metrics["accuracy.mean"] == 0.99308 and metrics["Conv2D_1.partnered"] == 0.625
    assert "Conv2D_1.rotation_null_95" not in metrics  # no number, no metric
    assert metrics["same_init.Dense_1.same_index"] == 0.5
    assert metrics["same_order.Dense_1.same_index"] == 1 / 24
    assert len(metrics) == 2 + 2 + 2 + 2 * 2 * 2


def test_the_description_is_markdown_with_a_rounded_table():
    """Headings, one table row per layer and the trained networks' line, every number rounded
    for reading."""
    default = results.answer(LAYERS)
    headline = {
        "accuracy": {"mean": 0.99308, "min": 0.9916},
        "loss_barrier": {"as_trained": 1.989519687441869, "aligned": 0.0638541773534583},
    }
    brief = in_brief(default, {}, ALPHA)
    assert brief == (
        "**Same filters?** units recur in 2 of 2 layers. **Same order?** calibration check "
        "fails in Conv2D_1, Dense_1. **What decides the order?** see the seed-split comparisons "
        "(compare_split)."
    )
    text = description(first_screen(default, {}, ALPHA), default, headline, brief)
    lines = text.splitlines()
    assert lines[:3] == [brief, "", "## The answers"]
    assert "## Per layer (independent seeds)" in lines
    assert [line.split(" | ")[0] for line in lines if line.startswith("| Conv")] == ["| Conv2D_1"]
    row = next(line for line in lines if line.startswith("| Dense_1 |"))
    assert row.startswith("| Dense_1 | 62% (50%-75%) | 25% | ")
    assert "| 3/24 (p = 0.013) |" in row
    assert lines[-1] == (
        "Test accuracy of the trained seeds: mean 99.31%, lowest 99.16%. Test loss barrier "
        "between two seeds: 1.99 as trained, 0.0639 with their units aligned."
    )
