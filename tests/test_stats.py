"""The statistics behind the answer, on cases with a known answer: the relabelling test, the
bootstrap over seeds and images, the null thresholds, and ties that float noise must not flip."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.compare.matching import margins, match_live
from oiplab.compare.pairs import match_layer
from oiplab.compare.stats import (
    bootstrap_means,
    image_resamples,
    interval,
    leave_one_out_thresholds,
    pair_weights,
    per_image_moments,
    resampled_correlations,
    same_index_test,
    seed_pairs,
    seed_resamples,
)


def test_same_index_test_knows_identity_derangement_and_chance():
    rng = np.random.default_rng(0)
    n = 32
    identity = [(np.arange(n), np.arange(n))] * 3
    same = same_index_test(identity, n, 2000, rng)
    assert same["observed"] == 96 and same["expected"] == pytest.approx(3.0)
    assert same["p_value"] == pytest.approx(1 / 2001)  # nothing in the null reaches 96

    shifted = [(np.arange(n), np.roll(np.arange(n), 1))] * 3  # a permuted copy: no fixed point
    moved = same_index_test(shifted, n, 2000, rng)
    assert moved["observed"] == 0 and moved["p_value"] == 1.0

    # random matchings are at chance: p-values spread over (0, 1], few below 0.05
    ps = [
        same_index_test([(np.arange(n), rng.permutation(n))] * 1, n, 400, rng)["p_value"]
        for _ in range(300)
    ]
    assert 0.0 <= np.mean(np.array(ps) < 0.05) <= 0.09
    assert 0.3 < np.median(ps) <= 1.0


def test_same_index_test_counts_only_given_matches():
    rng = np.random.default_rng(1)
    i, j = np.array([0, 1, 5]), np.array([0, 7, 5])
    out = same_index_test([(i, j)], 10, 500, rng)
    assert out["observed"] == 2 and out["n_tested"] == 3 and out["expected"] == pytest.approx(0.3)


def test_seed_bootstrap_weights_pairs_by_their_seeds():
    rng = np.random.default_rng(2)
    pairs = seed_pairs(4)
    assert pairs == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    ones = np.ones((1, 4), dtype=np.int64)
    np.testing.assert_array_equal(pair_weights(ones, pairs), np.ones((1, 6)))
    counts = np.array([[2, 0, 1, 1]])  # seed 0 twice, seed 1 never
    np.testing.assert_array_equal(pair_weights(counts, pairs), [[0, 2, 2, 0, 0, 1]])
    counts = seed_resamples(4, 1000, rng)
    assert (counts.sum(axis=1) == 4).all()
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    means = bootstrap_means(values, pair_weights(counts, pairs))
    low, high = interval(means)
    assert low < values.mean() < high and low >= 0.1 and high <= 0.6
    same = bootstrap_means(np.full(6, 0.7), pair_weights(counts, pairs))
    assert interval(same) == pytest.approx((0.7, 0.7))  # a constant has a zero-width interval


def test_a_resample_without_pairs_is_left_out():
    weights = pair_weights(np.array([[2, 0], [1, 1]]), seed_pairs(2))
    means = bootstrap_means(np.array([0.4]), weights)
    assert np.isnan(means[0]) and means[1] == pytest.approx(0.4)
    assert interval(means) == pytest.approx((0.4, 0.4))


def test_image_resampling_reproduces_pearson_and_varies():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 9, 3))
    b = 0.6 * a + rng.normal(size=(40, 9, 3))
    moments = per_image_moments(a, b)
    plain = resampled_correlations(moments, np.ones((1, 40)), positions=9)[0]
    for k in range(3):
        expected = np.corrcoef(a[:, :, k].ravel(), b[:, :, k].ravel())[0, 1]
        assert plain[k] == pytest.approx(expected)
    counts = image_resamples(40, 500, rng)
    boot = resampled_correlations(moments, counts, positions=9)
    low, high = interval(boot[:, 0])
    assert low < plain[0] < high and high - low > 0.01
    for d in range(3):  # a resample is the images repeated as often as drawn
        rows = np.repeat(np.arange(40), counts[d])
        for k in range(3):
            expected = np.corrcoef(a[rows, :, k].ravel(), b[rows, :, k].ravel())[0, 1]
            assert boot[d, k] == pytest.approx(expected)


def test_null_thresholds_leave_each_pair_out():
    values = [np.full(10, 0.1), np.full(10, 0.2), np.full(10, 0.9)]
    assert leave_one_out_thresholds(values, 0.5) == pytest.approx([0.55, 0.5, 0.15])


def test_dead_maps_take_no_part_in_matching():
    corr = np.array([[0.9, 0.0, 0.3], [0.2, 0.0, 0.8], [0.0, 0.0, 0.0]])
    live_a = np.array([True, True, False])
    live_b = np.array([True, False, True])
    partner = match_live(corr, live_a, live_b)
    assert partner.tolist() == [0, 2, -1]
    np.testing.assert_allclose(margins(corr, partner, live_a, live_b)[:2], [0.6, 0.5])


def test_a_near_tie_is_not_decisive_so_float_noise_cannot_flip_the_count():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(200, 4))
    b = a[:, [0, 1, 2, 3]] + 0.01 * rng.normal(size=(200, 4))
    b[:, 1] = b[:, 0] * (1 + 1e-9)  # maps 0 and 1 of b are copies: a tie for map 0 of a
    layer = match_layer(a, b)
    decisive = set(layer.decisive(1e-4).tolist())
    assert 0 not in decisive and {2, 3} <= decisive
    noisy = match_layer(a, b + 1e-7 * rng.normal(size=b.shape))
    assert set(noisy.decisive(1e-4).tolist()) == decisive  # the same maps count, noise or not


def test_split_half_stability_of_a_clear_match():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(100, 6))
    clear = match_layer(a, a[:, ::-1] + 0.05 * rng.normal(size=a.shape))
    assert clear.stable.all() and clear.partner.tolist() == [5, 4, 3, 2, 1, 0]
    noise = match_layer(a, rng.normal(size=(100, 6)))
    assert noise.stable.mean() < 0.7  # unrelated maps: halves rarely agree
