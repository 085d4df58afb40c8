"""Inference for the answer on cases with a known answer: the exact same-index law against brute
force and Monte Carlo, the keep-rate bound's coverage, Holm by hand, the seed intervals' coverage,
the relabelling test's calibration, and AUROC at its ends."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations, permutations

import numpy as np
import pytest
from scipy import stats as sps

from oiplab.compare.inference import (
    RelabelSettings,
    auroc,
    bootstrap_interval,
    exact_same_index_test,
    fixed_point_counts,
    holm,
    jackknife_interval,
    keep_rate_upper_bound,
    trained_vs_untrained,
)
from oiplab.compare.stats import same_index_test, seed_pairs


def brute_force_pmf(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """P(#{k: s(j_k) = i_k} = x) over all n! permutations s."""
    counts = np.zeros(len(i) + 1)
    for s in permutations(range(n)):
        counts[int((np.array(s)[j] == i).sum())] += 1
    return counts / counts.sum()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_exact_law_equals_enumeration_of_all_permutations(n):
    rng = np.random.default_rng(n)
    for m in range(n + 1):
        i = rng.choice(n, m, replace=False)
        j = rng.choice(n, m, replace=False)
        out = exact_same_index_test([(i, j)], n)
        np.testing.assert_allclose(out.pmf, brute_force_pmf(i, j, n), atol=1e-15)
        assert sum(fixed_point_counts(n, m)) == np.prod(np.arange(1, n + 1))
        assert out.observed == int((i == j).sum()) and out.n_tested == m
        assert out.p_value == pytest.approx(out.pmf[out.observed :].sum())
        assert out.expected == pytest.approx((np.arange(m + 1) * out.pmf).sum())


def test_exact_law_of_two_pairs_is_the_convolution():
    i1, j1 = np.array([0, 1, 2]), np.array([0, 2, 1])
    i2, j2 = np.array([3, 4]), np.array([3, 4])
    out = exact_same_index_test([(i1, j1), (i2, j2)], 5)
    both = np.convolve(brute_force_pmf(i1, j1, 5), brute_force_pmf(i2, j2, 5))
    np.testing.assert_allclose(out.pmf, both, atol=1e-15)
    assert out.observed == 3 and out.n_tested == 5 and out.fraction == pytest.approx(0.6)
    assert out.p_value == pytest.approx(both[3:].sum())


def test_exact_p_has_no_floor_and_edge_cases():
    n = 32
    same = exact_same_index_test([(np.arange(n), np.arange(n))] * 3, n)
    assert same.observed == 96 and same.expected == pytest.approx(3.0)
    assert 0 < same.p_value < 1e-100  # Monte Carlo would print its floor, 1 / (draws + 1)
    shifted = exact_same_index_test([(np.arange(n), np.roll(np.arange(n), 1))], n)
    assert shifted.observed == 0 and shifted.p_value == pytest.approx(1.0)
    empty = exact_same_index_test([(np.array([], int), np.array([], int))], n)
    assert empty.n_tested == 0 and empty.p_value == 1.0 and np.isnan(empty.fraction)
    with pytest.raises(ValueError, match="one-to-one"):
        exact_same_index_test([(np.array([0, 0]), np.array([1, 2]))], n)
    with pytest.raises(ValueError, match="distinct rows"):
        fixed_point_counts(3, 4)


def test_exact_p_agrees_with_the_monte_carlo_test_at_the_projects_sizes():
    rng = np.random.default_rng(7)
    draws = 20_000
    for n, keep in [(32, 0), (32, 2), (64, 1), (128, 0)]:
        pairs = []
        for _ in range(10):  # 10 pairs of 5 seeds, each with a partial matching
            m = int(rng.integers(n // 4, n))
            i = rng.choice(n, m, replace=False)
            j = rng.choice(n, m, replace=False)
            j[:keep] = i[:keep]
            _, first = np.unique(j, return_index=True)
            keep_rows = np.sort(first)  # stay one-to-one after planting
            pairs.append((i[keep_rows], j[keep_rows]))
        exact = exact_same_index_test(pairs, n)
        mc = same_index_test(pairs, n, draws, rng)
        assert mc["observed"] == exact.observed and mc["n_tested"] == exact.n_tested
        assert mc["expected"] == pytest.approx(exact.expected)
        error = 4 * np.sqrt(exact.p_value * (1 - exact.p_value) / draws) + 2 / draws
        assert abs(mc["p_value"] - exact.p_value) <= error


def synthetic_keep_counts(theta: float, sims: int, rng: np.random.Generator) -> np.ndarray:
    """Same-index counts of 5 pairs x 20 tested maps of 32 when each tested map keeps its index
    with probability theta and the others go to a random free map of b."""
    n, m = 32, 20
    counts = np.zeros(sims, dtype=int)
    for s in range(sims):
        for _ in range(5):
            i = rng.choice(n, m, replace=False)
            kept = rng.random(m) < theta
            free = np.setdiff1d(np.arange(n), i[kept])
            j = i.copy()
            j[~kept] = rng.choice(free, (~kept).sum(), replace=False)
            counts[s] += int((i == j).sum())
    return counts


@pytest.mark.parametrize("theta", [0.0, 0.1, 0.5])
def test_keep_rate_upper_bound_covers_the_true_share(theta):
    rng = np.random.default_rng(11)
    counts = synthetic_keep_counts(theta, 400, rng)
    bounds = np.array([keep_rate_upper_bound(int(c), 100) for c in counts])
    assert np.mean(bounds >= theta) >= 0.95
    assert np.all((bounds >= counts / 100) & (bounds <= 1.0))


def test_keep_rate_upper_bound_known_values():
    assert keep_rate_upper_bound(0, 0) == 1.0
    assert keep_rate_upper_bound(10, 10) == 1.0
    # 0 of m: the one-sided exact limit solves (1 - u)^m = 0.05
    assert keep_rate_upper_bound(0, 71) == pytest.approx(1 - 0.05 ** (1 / 71))
    assert keep_rate_upper_bound(4, 71) == pytest.approx(sps.beta.ppf(0.95, 5, 67))


def test_holm_against_hand_computed_values():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, np.nan, 0.02])
    np.testing.assert_allclose(holm(np.array([0.5, 0.9])), [1.0, 1.0])
    assert holm(np.array([])).shape == (0,)
    # 3 of 60 below 0.05, as 60 true nulls give: none survives
    family = np.r_[0.01, 0.02, 0.04, np.linspace(0.06, 1.0, 57)]
    assert (holm(family) >= 0.05).all()
    assert holm(np.array([[0.001, 0.2], [0.01, 0.03]])).shape == (2, 2)


def test_jackknife_interval_known_answer():
    out = jackknife_interval(np.array([1.0, 2.0, 3.0]), seed_pairs(3), 3)
    # leave-one-out means 3, 2, 1: variance 2/3 * 2, t with 2 degrees of freedom
    se = np.sqrt(4 / 3)
    assert out.value == 2.0 and out.se == pytest.approx(se)
    assert out.high - out.value == pytest.approx(sps.t.ppf(0.975, 2) * se)
    assert out.method == "jackknife-t"
    with_nan = jackknife_interval(np.array([1.0, np.nan, 3.0]), seed_pairs(3), 3)
    assert with_nan.value == 2.0 and np.isfinite(with_nan.se)
    too_few = jackknife_interval(np.array([1.0]), seed_pairs(2), 2)
    assert too_few.value == 1.0 and np.isnan(too_few.low) and np.isnan(too_few.high)


def seed_effect_pairs(share: float, sims: int, rng: np.random.Generator) -> np.ndarray:
    """(sims, 10) v_ab = u_a + u_b + e_ab over 5 seeds (mu = 0), seed effects a `share` of
    the variance of v."""
    p = np.array(seed_pairs(5))
    u = rng.normal(0.0, np.sqrt(share / 2), (sims, 5))
    return u[:, p[:, 0]] + u[:, p[:, 1]] + rng.normal(0.0, np.sqrt(1 - share), (sims, 10))


@pytest.mark.parametrize("share", [0.5, 0.95])
def test_jackknife_interval_covers_with_seed_effects(share):
    rng = np.random.default_rng(3)
    values = seed_effect_pairs(share, 2000, rng)
    cover = [jackknife_interval(v, seed_pairs(5), 5) for v in values]
    rate = np.mean([c.low <= 0.0 <= c.high for c in cover])
    assert 0.90 <= rate <= 0.995


def test_percentile_seed_bootstrap_under_covers_in_the_same_simulation():
    rng = np.random.default_rng(4)
    values = seed_effect_pairs(0.8, 600, rng)
    boot = [bootstrap_interval(v, seed_pairs(5), 5, 400, rng) for v in values]
    jack = [jackknife_interval(v, seed_pairs(5), 5) for v in values]
    boot_rate = np.mean([b.low <= 0.0 <= b.high for b in boot])
    jack_rate = np.mean([j.low <= 0.0 <= j.high for j in jack])
    assert boot_rate < 0.90 < jack_rate  # about 0.83 against 0.96
    assert boot[0].method == "percentile bootstrap" and np.isnan(boot[0].se)


def planted(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A pair statistic 1 between trained networks, 0 otherwise, plus small noise."""
    trained = np.zeros(n, dtype=bool)
    trained[rng.choice(n, k, replace=False)] = True
    noise = rng.normal(0, 0.01, (n, n))
    return np.outer(trained, trained) + (noise + noise.T) / 2, trained


def test_relabelling_test_planted_difference_reaches_its_minimum():
    rng = np.random.default_rng(5)
    s, trained = planted(10, 5, rng)
    out = trained_vs_untrained(s, trained, rng)
    assert out.exact and out.n_relabellings == 252 and out.p_value == pytest.approx(1 / 252)
    assert out.statistic == pytest.approx(1.0, abs=0.05)
    reverse = trained_vs_untrained(s, ~trained, rng)
    assert reverse.p_value == pytest.approx(1.0)


def test_relabelling_test_ties_are_not_flipped_by_float_noise():
    s = np.full((10, 10), 0.1) + np.full((10, 10), 0.2)  # 0.30000000000000004
    out = trained_vs_untrained(s, np.arange(10) < 5, np.random.default_rng(0))
    assert out.p_value == 1.0


def test_relabelling_test_counts_exact_ties_that_float_sums_split():
    # tenths: one relabelling's difference equals the observed one exactly, but its float sum
    # comes out an ulp lower; the p-value must be the one of exact arithmetic
    tenths = np.array(
        [
            [0, 6, 5, 3, 3, 1],
            [6, 0, 2, 8, 6, 9],
            [5, 2, 0, 7, 6, 5],
            [3, 8, 7, 0, 7, 1],
            [3, 6, 6, 7, 0, 7],
            [1, 9, 5, 1, 7, 0],
        ]
    )
    trained = np.arange(6) < 3

    def difference(group: tuple[int, ...]) -> Fraction:
        rest = tuple(sorted(set(range(6)) - set(group)))
        return (
            sum((Fraction(int(tenths[a, b]), 10) for a, b in combinations(group, 2)), Fraction(0))
            / 3
            - sum((Fraction(int(tenths[a, b]), 10) for a, b in combinations(rest, 2)), Fraction(0))
            / 3
        )

    exact = [difference(g) for g in combinations(range(6), 3)]
    p_exact = np.mean([d >= difference((0, 1, 2)) for d in exact])
    out = trained_vs_untrained(tenths / 10, trained, np.random.default_rng(0))
    assert out.p_value == pytest.approx(p_exact)


def test_relabelling_test_monte_carlo_branch():
    rng = np.random.default_rng(6)
    s, trained = planted(14, 7, rng)  # C(14, 7) = 3432 relabellings
    out = trained_vs_untrained(s, trained, rng, RelabelSettings(exact_limit=1000, draws=999))
    assert not out.exact and out.n_relabellings == 1000 and out.p_value == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="two networks"):
        trained_vs_untrained(s, np.arange(14) < 1, rng)


def test_relabelling_test_is_calibrated_on_exchangeable_networks():
    rng = np.random.default_rng(8)
    ps = []
    for _ in range(1000):
        u = rng.normal(0, 1, 10)  # network effects, the same law for every network
        e = rng.normal(0, 1, (10, 10))
        s = u[:, None] + u[None, :] + (e + e.T) / 2
        ps.append(trained_vs_untrained(s, np.arange(10) < 5, rng).p_value)
    rate = np.mean(np.array(ps) <= 0.05)
    assert 0.02 <= rate <= 0.08  # nominal 12 / 252 = 0.048
    assert 0.4 <= np.median(ps) <= 0.6


def group(rng: np.random.Generator, loc: float, seeds: int = 5) -> list[np.ndarray]:
    return [rng.normal(loc, 0.1, 30) for _ in seed_pairs(seeds)]


def test_auroc_known_answers():
    rng = np.random.default_rng(9)
    same = auroc(group(rng, 0.5), group(rng, 0.5))
    assert abs(same.value - 0.5) < 0.06 and same.low < 0.5 < same.high
    assert same.n_trained == same.n_untrained == 300
    apart = auroc(group(rng, 5.0), group(rng, 0.0))
    assert apart.value == 1.0 and apart.low == 1.0 and apart.high == 1.0
    below = auroc(group(rng, 0.0, 3), group(rng, 5.0, 4))
    assert below.value == 0.0 and below.high == 0.0
    # ties count one half: each trained 1 beats two untrained 0s and ties one untrained 1
    tie = auroc([np.array([1.0])] * 3, [np.array([0.0]), np.array([1.0]), np.array([0.0])])
    assert tie.value == pytest.approx((3 * 2 + 3 * 0.5) / 9)
    with pytest.raises(ValueError, match="pairs of a set of seeds"):
        auroc([np.ones(3)] * 4, group(rng, 0.0))


def test_exact_test_is_calibrated_on_random_matchings():
    rng = np.random.default_rng(10)
    n, sims = 32, 1500
    ps = []
    for _ in range(sims):
        pairs = [(np.arange(n)[:20], rng.permutation(n)[:20]) for _ in range(5)]
        ps.append(exact_same_index_test(pairs, n).p_value)
    law = exact_same_index_test(pairs, n)
    tails = np.cumsum(law.pmf[::-1])[::-1]  # P(X >= x)
    size = law.pmf[tails <= 0.05].sum()  # the attainable level of a discrete test, <= 0.05
    assert 0.02 <= size <= 0.05
    rate = np.mean(np.array(ps) <= 0.05)
    assert abs(rate - size) <= 3 * np.sqrt(size * (1 - size) / sims)
