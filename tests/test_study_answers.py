"""The study's decisions on synthetic layer outputs with a known answer (`study.study_layers`):
each identity word ("units recur", "shared subspace", "like untrained"), "most" and "some", each
order word ("same order", "order partly kept", "order at chance"), identical networks, and the
calibration of the order decision on random matchings.

A synthetic "network" is a (n_images, 32) output of a layer: images are 64 independent sources,
an untrained network mixes them at random, a trained one shares (some of) its units' mixtures with
the other trained networks. No Keras: each study takes about a second.
"""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.compare.pairs import match_layer
from oiplab.compare.study import _same_index, study_layers
from oiplab.compare.summary import ORDER, VerdictRules, order_words
from tests.conftest import compose_typed

C = compose_typed(
    "experiment=smoke",
    "compare.layers=[Dense_1]",
    "compare.null_networks=4",
    "compare.rotation_draws=20",
).compare
IMAGES, SOURCES, UNITS, TRAINED = 400, 64, 32, 4
RULES = VerdictRules(C.alpha, C.same_order_fraction, C.most_fraction)


def _sources(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((IMAGES, SOURCES))


def _random_net(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An untrained network's layer: its units mix the sources at random."""
    return x @ rng.standard_normal((SOURCES, UNITS))


def _derangement(keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the units fixing exactly `keep` (a cycle through the shuffled rest)."""
    perm = np.arange(UNITS)
    rest = rng.permutation(np.setdiff1d(perm, keep))
    perm[rest] = np.roll(rest, 1)
    return perm


def _trained(
    shared: int = UNITS, in_place: int = UNITS, rotate: bool = False, seed: int = 1
) -> list[np.ndarray]:
    """TRAINED networks sharing `shared` unit mixtures (plus 10% noise), the rest their own; all
    but the first permute their units, leaving the first `in_place` where they are. `rotate`:
    each network's units are instead a random rotation of the shared ones (same subspace)."""
    rng = np.random.default_rng(seed)
    x = _sources()
    common = x @ rng.standard_normal((SOURCES, UNITS))
    common = (common - common.mean(0)) / common.std(0)
    nets = []
    for k in range(TRAINED):
        units = common + 0.1 * rng.standard_normal(common.shape)
        units[:, shared:] = _random_net(x, rng)[:, shared:]
        if rotate:
            q, r = np.linalg.qr(rng.standard_normal((UNITS, UNITS)))
            units = units @ (q * np.sign(np.diag(r)))
        elif k:
            units = units[:, _derangement(np.arange(in_place), rng)]
        nets.append(units)
    return nets


def _answer(trained: list[np.ndarray]):
    rng = np.random.default_rng(99)
    nulls = [{"Dense_1": _random_net(_sources(), rng)} for _ in range(C.null_networks)]
    outs = [{"Dense_1": t} for t in trained]
    return study_layers(outs, nulls, list(range(len(trained))), C).answers["Dense_1"]


def test_shared_units_in_place_recur_in_the_same_order():
    a = _answer(_trained(in_place=UNITS // 2))
    assert a.identity == "units recur" and a.order_words == "same order", a.verdict
    assert "units recur: most maps have a partner" in a.verdict
    assert a.partnered.value == 1.0 and a.rotation_null.null_high < 1.0
    assert a.vs_untrained_p < C.alpha and a.auroc.value > 0.9
    assert a.order.fraction >= 0.5 and a.order.p_value < 1e-10 and a.order.keep_upper is None
    assert a.one_to_one.value > 0.9 and a.many_to_one.value > 0.9  # a permuted copy: both high
    assert a.one_to_one.null < 0.5  # untrained pairs: no one-to-one partner explains a unit


def test_ten_percent_in_place_is_order_partly_kept():
    a = _answer(_trained(in_place=3))
    assert a.order_words == "order partly kept", a.verdict
    assert a.order.fraction < C.same_order_fraction and a.order.p_value < C.alpha


def test_no_unit_in_place_is_order_at_chance_with_an_upper_bound():
    a = _answer(_trained(in_place=0))
    assert a.order_words == "order at chance", a.verdict
    assert a.order.observed <= 3 and a.order.p_value >= C.alpha
    assert a.order.keep_upper is not None and 0 < a.order.keep_upper < 0.1
    assert f"at most {a.order.keep_upper:.0%} keep their index" in a.verdict
    assert f"{a.order.observed} of {a.order.n_tested} tested" in a.verdict


def test_a_minority_of_shared_units_is_some_maps():
    a = _answer(_trained(shared=10, in_place=0))
    assert a.identity == "units recur", a.verdict
    assert 0.25 < a.partnered.value < C.most_fraction
    assert "units recur: some maps have a partner" in a.verdict


def test_a_rotated_copy_shares_the_subspace_not_the_units():
    a = _answer(_trained(rotate=True))
    assert a.identity == "shared subspace", a.verdict
    assert a.vs_untrained_p < C.alpha  # beyond untrained ...
    assert a.partnered.value <= a.rotation_null.null_high  # ... but rotated units do as well
    assert a.many_to_one.value > 0.9 > 0.5 > a.one_to_one.value  # Li et al.: many-to-one only


def test_networks_like_untrained_ones_read_like_untrained():
    rng = np.random.default_rng(5)
    a = _answer([_random_net(_sources(), rng) for _ in range(TRAINED)])
    assert a.identity == "like untrained" and a.order_words == "order at chance", a.verdict
    assert a.vs_untrained_p >= C.alpha and 0.2 < a.auroc.value < 0.8
    assert "like untrained: not clearly more maps" in a.verdict


def test_identical_networks_are_the_same_units_in_the_same_order():
    net = _trained()[0]
    a = _answer([net] * TRAINED)
    assert a.identity == "units recur" and a.order_words == "same order", a.verdict
    assert a.order.observed == a.order.n_tested == a.order.n_matches and a.order.p_value < 1e-30
    assert a.partnered.low == a.partnered.value == a.partnered.high == 1.0  # zero width, no NaN
    assert a.stable.value == 1.0 and a.consistency["all"] == 1.0


def test_comparators_are_shown_beside_untrained_pairs():
    a = _answer(_trained(in_place=0))
    assert a.stable.null is not None and 0 <= a.stable.null < a.stable.value
    assert 0 <= a.consistency["untrained"] < a.consistency["all"] == 1.0
    assert a.cka.null is not None and a.cka_debiased.null is not None
    assert a.cka_debiased.null < a.cka.null  # the plain estimator is pulled above 0
    assert a.siblings.null is not None and a.siblings.value < 0.2


def test_intervals_are_the_seed_jackknife():
    from oiplab.compare.inference import jackknife_interval
    from oiplab.compare.stats import seed_pairs

    study = study_layers(
        [{"Dense_1": t} for t in _trained(shared=20)],
        [{"Dense_1": _random_net(_sources(), np.random.default_rng(k))} for k in range(4)],
        list(range(TRAINED)),
        C,
    )
    m, a = study.matched["Dense_1"], study.answers["Dense_1"]
    median = np.array([np.median(t.r) for t in m.trained])
    ci = jackknife_interval(median, seed_pairs(TRAINED), TRAINED)
    assert (a.matched_r.low, a.matched_r.high) == pytest.approx((ci.low, ci.high))
    assert a.matched_r.low < a.matched_r.value < a.matched_r.high


def test_the_order_decision_is_calibrated_on_random_matchings():
    """Random, unrelated units: the order words are wrong ("not at chance") at most at alpha,
    and not never (a test that cannot reject would pass an upper bound alone)."""
    rng = np.random.default_rng(3)
    sims, n = 400, 12
    wrong = 0
    for _ in range(sims):
        nets = [rng.standard_normal((40, n)) for _ in range(3)]
        matches = [match_layer(nets[a], nets[b], False, False) for a, b in ((0, 1), (0, 2), (1, 2))]
        wrong += order_words(_same_index(matches, n, C.alpha, C), RULES) != ORDER[2]
    rate = wrong / sims
    se = np.sqrt(C.alpha * (1 - C.alpha) / sims)
    assert 0.01 <= rate <= C.alpha + 3 * se


def test_the_answer_carries_the_layer_its_nulls_and_its_counts():
    a = _answer(_trained(in_place=0))
    assert a.layer == "Dense_1" and a.n_maps == UNITS and a.weight_agreement == {}
    assert a.dead == {str(k): 0 for k in range(TRAINED)}
    # each untrained pair against the other pairs' threshold: about the 5% of the quantile
    assert a.partnered.null is not None and 0.0 < a.partnered.null < 0.15
    assert a.partnered.null_high is not None and a.partnered.null <= a.partnered.null_high
    assert a.order_null.n_tested > 0 and a.order_null.p_value > 0.01
    assert a.cka_debiased.value > 0.9 > 0.5 > a.cka_debiased.null
    assert a.consistency["untrained_stable"] <= 1.0


def test_an_interval_that_cannot_be_computed_stays_nan_not_zero_to_one():
    """One network gives no t interval: its ends are NaN, not the 0..1 a max/min clamp makes."""
    from oiplab.compare.study import _network_mean

    one = _network_mean([0.4], [0.1, 0.2])
    assert one.value == pytest.approx(0.4)
    assert np.isnan(one.low) and np.isnan(one.high)
    two = _network_mean([0.2, 0.4], [0.1])
    assert 0.0 <= two.low < 0.3 < two.high <= 1.0
