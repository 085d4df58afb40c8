"""The OIP response rates (`compare.oip_response`): known answers for the partner's rank, the
random partner's exact mean, and the seed-resampled intervals."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.compare.oip_response import _summary, partner_ranks, response_rates
from oiplab.compare.stats import seed_resamples

N = 8


def _diagonal(n: int = N) -> np.ndarray:
    """b's map i responds most to a's OIP of map i (distinct values: no ties)."""
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 1.0, (n, n)) + 2.0 * np.eye(n)


def test_the_true_partner_ranks_first_and_a_shifted_one_does_not():
    responses, typical, rows = _diagonal(), np.ones(N), np.arange(N)
    assert (partner_ranks(responses, typical, np.arange(N), rows) == 0).all()
    rates = response_rates(responses, typical, np.roll(np.arange(N), 1), rows)
    assert rates["top1"] == 0.0 and rates["n"] == N


def test_a_random_partners_rate_is_exactly_chance_without_ties():
    rates = response_rates(_diagonal(), np.ones(N), np.arange(N), np.arange(N))
    assert rates["top1"] == 1.0 and rates["top5"] == 1.0
    assert rates["top1_random"] == pytest.approx(1 / N) == rates["top1_chance"]
    assert rates["top5_random"] == pytest.approx(5 / N) == rates["top5_chance"]


def test_dead_maps_of_b_are_neither_partners_nor_competitors():
    typical = np.ones(N)
    typical[[2, 5]] = 0.0  # dead: left out of the ranking
    rates = response_rates(_diagonal(), typical, np.arange(N), np.array([0, 1, 3]))
    assert rates["top1"] == 1.0 and rates["top1_chance"] == pytest.approx(1 / 6)


def _rates(top1: float) -> dict[str, float]:
    keys = ("n", "top1", "top5", "top1_random", "top5_random", "top1_chance", "top5_chance")
    return dict.fromkeys(keys, top1)


def test_the_rates_interval_resamples_seeds():
    """Equal rates in every direction: a zero-width interval at that rate; rates that differ
    by seed: an interval around the mean, inside the range of the directions."""
    seeds = [0, 1, 2]
    counts = seed_resamples(3, 500, np.random.default_rng(1))
    directions = ["0->1", "1->0", "0->2", "2->0", "1->2", "2->1"]
    same = {d: {"all": _rates(0.25), "partnered": {}} for d in directions}
    out = _summary(same, seeds, counts)["all"]
    assert out["top1"] == out["top1_low"] == out["top1_high"] == 0.25
    # seed 2 is the odd one: every direction with it has rate 1, the others 0
    odd = {d: {"all": _rates(float("2" in d)), "partnered": {}} for d in directions}
    out = _summary(odd, seeds, counts)["all"]
    assert out["top1"] == pytest.approx(4 / 6)
    assert 0.0 <= out["top1_low"] < out["top1"] < out["top1_high"] <= 1.0
    assert "partnered" not in _summary(odd, seeds, counts)  # no partnered rows: no group
