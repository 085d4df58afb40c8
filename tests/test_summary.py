"""The verdict's words, branch by branch, from hand-made numbers; the DVC metrics of the answer;
the answer figure at the edges (an interval of width 0 a rounding error off its value)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from oiplab.compare.summary import (
    Estimate,
    OrderTest,
    VerdictRules,
    answer_records,
    headline_metrics,
    identity_words,
    order_words,
    verdict,
)
from tests import results

RULES = VerdictRules(alpha=0.05, same_order_fraction=0.5, most_fraction=0.5)


def _order(observed: int, n_tested: int, p: float) -> OrderTest:
    return OrderTest(
        observed=observed,
        expected=n_tested / 32,
        p_value=p,
        n_tested=n_tested,
        n_matches=n_tested + 10,
        p_all=p,
        observed_all=observed,
        keep_upper=None if p < 0.05 else 0.125,
    )


@pytest.mark.parametrize(
    ("observed", "p", "words"),
    [
        (50, 1e-9, "same order"),  # exactly the fraction needed: 50 of 100
        (49, 1e-9, "order partly kept"),  # just below it
        (50, 0.05, "order at chance"),  # p at alpha is not below it
        (1, 0.049, "order partly kept"),
        (100, 0.5, "order at chance"),  # a large fraction without a small p: chance
    ],
)
def test_order_words_each_branch(observed, p, words):
    assert order_words(_order(observed, 100, p), RULES) == words


@pytest.mark.parametrize(
    ("partnered", "rotation_95", "p", "words"),
    [
        (0.6, 0.5, 0.01, "units recur"),
        (0.5, 0.5, 0.01, "shared subspace"),  # at the rotations' 95th percentile: not above it
        (0.6, 0.7, 0.01, "shared subspace"),
        (0.9, 0.1, 0.05, "like untrained"),  # p at alpha: not beyond untrained, whatever else
        (0.9, None, 0.01, "shared subspace"),  # no rotation null: never "units recur"
    ],
)
def test_identity_words_each_branch(partnered, rotation_95, p, words):
    part = Estimate(partnered, partnered - 0.1, partnered + 0.1, 0.05, 0.1)
    rot = Estimate(0.2, 0.1, 0.3, None, rotation_95)
    assert identity_words(part, rot, p, RULES) == words


@pytest.mark.parametrize(
    ("identity", "fraction", "phrase"),
    [
        ("units recur", 0.5, "units recur: most maps have a partner"),
        ("units recur", 0.49, "units recur: some maps have a partner"),
        ("shared subspace", 0.8, "a shared subspace, not units: most maps"),
        ("shared subspace", 0.2, "a shared subspace, not units: some maps"),
        ("like untrained", 0.9, "like untrained: not clearly more maps have a partner"),
    ],
)
def test_verdict_words_most_and_some_by_the_fraction(identity, fraction, phrase):
    a = results.layer_answer("Conv2D_2")
    a = dataclasses.replace(
        a, identity=identity, partnered=Estimate(fraction, 0.0, 1.0, 0.05, 0.1), threshold=0.875
    )
    text = verdict(a, RULES)
    assert text.startswith(f"Conv2D_2: {phrase}")
    assert "at this layer's threshold r > 0.88" in text  # never a bare cross-layer fraction
    assert "untrained 5%, trained vs untrained p = 0.0039" in text
    assert "rotated units 25%, 95th percentile 38%" in text
    assert "3 of 24 tested at the same index (30 matches: 4, p = 0.031)" in text
    assert "exact p = 0.013" in text and "keep their index" not in text
    bound = dataclasses.replace(a, order=dataclasses.replace(a.order, keep_upper=0.1875))
    assert verdict(bound, RULES).endswith("at most 19% keep their index")


def test_headline_metrics_carry_each_layers_new_numbers_in_layer_order():
    layers = ["Conv2D_1", "Max_Pool_1", "Dense_1"]
    answer = results.answer(layers)
    head = headline_metrics(answer.layers, answer.barriers, [0.9, 0.95])
    assert [k for k in head if k in layers] == layers
    d = head["Dense_1"]
    # four columns a layer in `dvc exp show` (6 layers: 28 metric columns in all)
    assert d == {
        "partnered": 0.625,
        "rotation_null_95": 0.375,
        "vs_untrained_p": 0.00390625,
        "same_index_p": 0.0125,
    }
    records = answer_records(answer.layers)  # the layer's other numbers: metrics/answer.json
    assert [r["layer"] for r in records] == layers
    assert records[2]["keep_upper"] is None and records[2]["matches"] == 30
    assert records[2]["siblings"] == 0.125 and records[2]["many_to_one_r2"] == 0.875


def test_answer_figure_draws_identical_networks_and_undefined_intervals(tmp_path):
    """Identical networks: the interval's ends may sit a rounding error off the value (matplotlib
    refused the negative error bar); two seeds' AUROC has no interval (NaN)."""
    from oiplab.render import save_figure
    from oiplab.render.compare import answer_figure

    a = results.layer_answer("Conv2D_1")
    one = 1.0 + 2e-16
    a = dataclasses.replace(
        a,
        partnered=Estimate(1.0, one, one, 0.05, 0.1),
        stable=Estimate(1.0, 1.0, 1.0 - 1e-16, 0.2, 0.3),
        one_to_one=Estimate(1.0, float("nan"), float("nan"), 0.1, 0.2),
    )
    fig = answer_figure(a, np.ones(64), np.linspace(0, 0.5, 64))
    save_figure(fig, tmp_path / "answer.png", dpi=40)
    assert (tmp_path / "answer.png").stat().st_size > 0


def test_mean_or_nan_leaves_out_none_and_nan():
    from oiplab.compare.summary import mean_or_nan

    assert mean_or_nan([1.0, None, float("nan"), 3.0]) == 2.0
    assert np.isnan(mean_or_nan([])) and np.isnan(mean_or_nan([None, float("nan")]))
    assert mean_or_nan(x for x in (0.5,)) == 0.5
