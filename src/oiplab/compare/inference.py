"""Inference for the answer: exact same-index p-values and an upper bound on the keep rate, Holm's
adjustment of a family of p-values, seed-level intervals whose coverage is tested, a relabelling
test of trained against untrained networks, and a threshold-free effect size (AUROC).

Pure NumPy/SciPy, seeded by a passed `np.random.Generator` where anything is random.

The exact same-index law. A pair of networks contributes m tested matches (i_k, j_k): the i are
distinct maps of a, the j distinct maps of b, among n maps. Under the null b's labels are a
uniformly random permutation s of its n maps, and the count is X = #{k: s(j_k) = i_k}. A set K of
the cells is hit together by exactly (n - |K|)! permutations (the cells share no row or column),
so by inclusion-exclusion the number of permutations hitting exactly x cells is

    N_x = sum_{k >= x} (-1)^(k - x) C(k, x) C(m, k) (n - k)!.

Pairs are relabelled independently, so the total's law is the convolution of the pairs' laws.
Both steps run on Python integers; only the final ratios become floats, so the p-value has no
simulation floor and no Monte-Carlo error.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import combinations
from math import comb, factorial

import numpy as np
from scipy import stats as sps

from oiplab.compare.stats import bootstrap_means, interval, pair_weights, seed_resamples


@dataclass(frozen=True)
class SameIndexExact:
    """Same-index matches summed over pairs of networks, with their exact null law."""

    observed: int  # matches (i, j) with i == j, over all pairs
    expected: float  # the null mean: sum over pairs of m_p / n_maps
    p_value: float  # exact P(X_total >= observed) under independent uniform relabellings
    n_tested: int  # matches tested, over all pairs (sum of m_p)
    n_maps: int  # maps per network in the layer (n)
    pmf: np.ndarray  # (n_tested + 1,) P(X_total = x) for x = 0..n_tested (floats; tiny ones -> 0)

    @property
    def fraction(self) -> float:
        """Share of tested matches at the same index (NaN when nothing was tested)."""
        return self.observed / self.n_tested if self.n_tested else float("nan")


@lru_cache(maxsize=512)
def fixed_point_counts(n_maps: int, m: int) -> tuple[int, ...]:
    """counts[x]: permutations of `n_maps` labels that hit exactly x of m given cells lying in
    distinct rows and columns (inclusion-exclusion, module docstring); they sum to n_maps!."""
    if not 0 <= m <= n_maps:
        raise ValueError(f"{m} cells cannot lie in distinct rows and columns of {n_maps} maps")
    at_least = [comb(m, k) * factorial(n_maps - k) for k in range(m + 1)]
    return tuple(
        sum((-1) ** (k - x) * comb(k, x) * at_least[k] for k in range(x, m + 1))
        for x in range(m + 1)
    )


def exact_same_index_test(
    pairs: list[tuple[np.ndarray, np.ndarray]], n_maps: int
) -> SameIndexExact:
    """Exact relabelling test of "same map order", summed over pairs of networks.

    Null hypothesis: the order of b's maps carries no information about a's, i.e. in each pair
    b's labels are a uniformly random permutation of its `n_maps` maps, independent across pairs.
    The statistic is the number of tested matches (i of a, j of b) with i == j over all pairs;
    its null law is exact (module docstring), so p = P(X_total >= observed) has no floor.
    "Exact" is for this per-pair null. The symmetry behind it relabels each *network* once; the
    pair counts are then pairwise independent with the same mean and variance, but not jointly
    (consistent a->b->c matches move three counts together), so the upper tail of the symmetry
    null can be a little heavier than this convolution's.

    Args:
        pairs: per pair of networks, the tested matches as arrays i (maps of a) and j (maps of
            b), each without repeats (a partial one-to-one matching).
        n_maps: maps per network in the layer.
    """
    total = np.array([1], dtype=object)
    observed = 0
    for i, j in pairs:
        i, j = np.asarray(i), np.asarray(j)
        if len(np.unique(i)) != len(i) or len(np.unique(j)) != len(j):
            raise ValueError("the tested matches of a pair must be one-to-one")
        observed += int((i == j).sum())
        total = np.convolve(total, np.array(fixed_point_counts(n_maps, len(i)), dtype=object))
    denominator = factorial(n_maps) ** len(pairs)
    n_tested = len(total) - 1
    return SameIndexExact(
        observed=observed,
        expected=n_tested / n_maps,
        p_value=float(Fraction(int(total[observed:].sum()), denominator)),
        n_tested=n_tested,
        n_maps=n_maps,
        pmf=np.array([float(Fraction(int(c), denominator)) for c in total]),
    )


def keep_rate_upper_bound(observed: int, n_tested: int, level: float = 0.95) -> float:
    """One-sided `level` upper bound on the share of tested maps that keep their index.

    Argument: a map that keeps its index is matched to itself and so always gives a same-index
    match; a map that does not keep it may still land on its index by chance. If each tested
    match keeps its index with probability theta (independently), the same-index count X is
    therefore stochastically at least Binomial(n_tested, theta), and the Clopper-Pearson upper
    limit u(x) of x successes in n_tested trials satisfies P(u(X) < theta) <= P(Bin <= x*) <=
    1 - level, with x* the largest x for which u(x) < theta. The bound is conservative: chance
    fixed points (about n_tested / n_maps) only raise it. If instead a fixed share theta of the
    matches keeps its index, X >= theta * n_tested always and u(X) > theta (for theta < 1).
    Matches of the same map in different pairs need not be independent; the bound then holds
    for the matches as sampled, not for maps.

    Returns:
        the upper limit in [0, 1] (1.0 when nothing was tested).
    """
    if n_tested == 0:
        return 1.0
    ci = sps.binomtest(observed, n_tested).proportion_ci(
        confidence_level=2 * level - 1, method="exact"
    )  # the equal-tailed two-sided interval at 2*level - 1 has the one-sided upper limit
    return float(ci.high)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (same shape and order; NaN stays NaN, outside the
    family).

    Sorted ascending, the k-th smallest (k = 0..m-1) is multiplied by m - k, capped at 1, and
    made monotone by a running maximum; rejecting where the adjusted value is below alpha
    controls the family-wise error rate at alpha under any dependence. Written here because
    SciPy has no Holm adjustment and statsmodels is not a dependency of the project.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p.ravel()))
    values = p.ravel()[finite]
    order = np.argsort(values, kind="stable")
    m = len(values)
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * values[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    out.ravel()[finite] = adjusted
    return out


@dataclass(frozen=True)
class SeedInterval:
    """A mean over pairs of seeds with a two-sided interval."""

    value: float  # mean over the pairs with a finite value
    low: float
    high: float
    se: float  # standard error behind the interval (NaN for a percentile interval)
    method: str  # "jackknife-t" or "percentile bootstrap"


def _pair_mask(pairs: list[tuple[int, int]], n_seeds: int) -> np.ndarray:
    """(n_seeds, n_pairs) True where a pair does not contain the seed."""
    p = np.asarray(pairs).reshape(-1, 2)
    return (p[None, :, 0] != np.arange(n_seeds)[:, None]) & (
        p[None, :, 1] != np.arange(n_seeds)[:, None]
    )


def jackknife_interval(
    values: np.ndarray, pairs: list[tuple[int, int]], n_seeds: int, level: float = 0.95
) -> SeedInterval:
    """Leave-one-seed-out jackknife-t interval for a mean over pairs of seeds.

    Leaving seed s out gives theta_s, the mean over the pairs without s; the jackknife variance is
    (n - 1) / n * sum_s (theta_s - mean_s theta_s)^2 with n seeds, and the interval is the mean
    over all pairs +- t_{n-1} * se. Seeds, not pairs, are the independent units: a seed's effect
    is shared by every pair it is in, which a resample of seeds keeps and a resample of pairs
    would not. With few seeds this covers at least its level (the coverage test in
    tests/test_inference.py), where the percentile seed bootstrap covers less.

    Args:
        values: (n_pairs,) one value per pair (NaN: the pair has no value).
        pairs: (a, b) seed indices of each pair, a < b.
        n_seeds: seeds in the design.
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    keep = _pair_mask(pairs, n_seeds) & ok[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = np.where(keep, v, 0.0).sum(axis=1) / keep.sum(axis=1)
    loo = loo[np.isfinite(loo)]
    mean = float(v[ok].mean()) if ok.any() else float("nan")
    n = len(loo)
    if n < 2:
        return SeedInterval(mean, float("nan"), float("nan"), float("nan"), "jackknife-t")
    se = float(np.sqrt((n - 1) / n * np.square(loo - loo.mean()).sum()))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * se
    return SeedInterval(mean, mean - half, mean + half, se, "jackknife-t")


def bootstrap_interval(
    values: np.ndarray,
    pairs: list[tuple[int, int]],
    n_seeds: int,
    draws: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> SeedInterval:
    """Percentile interval of a mean over pairs under a bootstrap of the seeds (the method of
    `stats`, kept here for comparison: with few seeds and large seed effects it under-covers)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    weights = pair_weights(
        seed_resamples(n_seeds, draws, rng), [pairs[k] for k in np.flatnonzero(ok)]
    )
    low, high = interval(bootstrap_means(v[ok], weights), level)
    mean = float(v[ok].mean()) if ok.any() else float("nan")
    return SeedInterval(mean, low, high, float("nan"), "percentile bootstrap")


@dataclass(frozen=True)
class RelabelSettings:
    """How the trained-vs-untrained relabelling test draws its relabellings."""

    exact_limit: int = 20_000  # enumerate every relabelling when there are at most this many
    draws: int = 9_999  # otherwise this many uniform relabellings (Monte Carlo, +1 correction)


@dataclass(frozen=True)
class GroupTest:
    """Trained against untrained networks by relabelling the networks."""

    statistic: float  # mean over trained-trained pairs minus mean over untrained-untrained pairs
    p_value: float  # one-sided: P(relabelled statistic >= observed)
    n_relabellings: int  # relabellings behind the p-value (the observed one included if exact)
    exact: bool  # True: every relabelling with the same group sizes; False: Monte Carlo


def _group_difference(s0: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(R,) mean of S over pairs within the labelled group minus the mean within the rest.

    Args:
        s0: (n, n) symmetric pair statistic with a zero diagonal.
        labels: (R, n) 0/1, k ones per row.
    """
    k = labels[0].sum()
    n = labels.shape[1]
    inside = np.einsum("ri,ij,rj->r", labels, s0, labels) / (k * (k - 1))
    rest = 1.0 - labels
    outside = np.einsum("ri,ij,rj->r", rest, s0, rest) / ((n - k) * (n - k - 1))
    return inside - outside


def trained_vs_untrained(
    s: np.ndarray,
    trained: np.ndarray,
    rng: np.random.Generator,
    settings: RelabelSettings = RelabelSettings(),
) -> GroupTest:
    """Relabelling test: is a pair statistic larger between trained networks than untrained?

    Null hypothesis: training does not change the statistic's law, so the networks' labels
    (trained / untrained) are exchangeable: the joint law of S is the same under any relabelling
    of the networks. The statistic is the mean of S over trained-trained pairs minus its mean over
    untrained-untrained pairs; the cross pairs enter through the relabellings. Every relabelling
    with the same group sizes is enumerated when there are at most `settings.exact_limit` (p is
    then at least 1 / C(n, k)); otherwise `settings.draws` are drawn.

    Args:
        s: (n, n) symmetric statistic over all networks, cross pairs included (diagonal ignored).
        trained: (n,) bool, at least two networks in each group.
        rng: for the Monte-Carlo relabellings (unused when exact).
    """
    trained = np.asarray(trained, dtype=bool)
    n, k = len(trained), int(trained.sum())
    if k < 2 or n - k < 2:
        raise ValueError("each group needs at least two networks")
    s0 = np.array(s, dtype=np.float64)
    np.fill_diagonal(s0, 0.0)
    observed = float(_group_difference(s0, trained[None, :].astype(np.float64))[0])
    tolerance = 1e-9 * max(1.0, float(np.abs(s0).max()))  # equal sums must not differ by noise
    exact = comb(n, k) <= settings.exact_limit
    if exact:
        members = np.array(list(combinations(range(n), k)))
    else:
        members = np.argsort(rng.random((settings.draws, n)), axis=1)[:, :k]
    labels = np.zeros((len(members), n))
    np.put_along_axis(labels, members, 1.0, axis=1)
    hits = int((_group_difference(s0, labels) >= observed - tolerance).sum())
    p = hits / len(labels) if exact else (1 + hits) / (1 + len(labels))
    return GroupTest(observed, p, len(labels) + (0 if exact else 1), exact)


@dataclass(frozen=True)
class Auroc:
    """Threshold-free effect size of trained against untrained matched r."""

    value: float  # P(trained r > untrained r) + P(tie) / 2 over pooled units: U / (n1 n2)
    low: float  # jackknife-t interval over seeds (both groups), clipped to [0, 1]
    high: float
    se: float  # two-sample leave-one-seed-out jackknife standard error
    n_trained: int  # values pooled over the trained pairs
    n_untrained: int  # values pooled over the untrained pairs


def _seeds_of(n_pairs: int) -> int:
    """The number of seeds whose pairs number `n_pairs` (n (n - 1) / 2)."""
    n = int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2))
    if n * (n - 1) // 2 != n_pairs:
        raise ValueError(f"{n_pairs} values are not the pairs of a set of seeds")
    return n


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney U of x against y over n_x n_y (scipy counts ties as one half)."""
    return float(sps.mannwhitneyu(x, y, method="asymptotic").statistic / (len(x) * len(y)))


def _leave_one_out(group: list[np.ndarray]) -> list[np.ndarray]:
    """Per seed, the group's values pooled over the pairs without that seed."""
    pairs = list(combinations(range(_seeds_of(len(group))), 2))
    return [
        np.concatenate([v for v, p in zip(group, pairs, strict=True) if s not in p])
        for s in range(_seeds_of(len(group)))
    ]


def auroc(trained: list[np.ndarray], untrained: list[np.ndarray], level: float = 0.95) -> Auroc:
    """AUROC of trained against untrained matched r, with a seed-level interval.

    Within a pair the units' r are dependent (one matching), and pairs share seeds, so the
    interval resamples seeds, not units: the two-sample leave-one-seed-out jackknife (leave each
    trained seed out in turn, then each untrained seed; the variance is the sum of the two groups'
    jackknife variances) and a t interval with min(n_seeds) - 1 degrees of freedom. At 0 or 1
    the leave-one-out values agree and the interval shrinks to the point.

    Args:
        trained, untrained: per pair of seeds (in `itertools.combinations` order, at least 3
            seeds each), the matched r of that pair's live-to-live matches.
    """
    x, y = np.concatenate(trained), np.concatenate(untrained)
    value = _auc(x, y)
    loo_t = np.array([_auc(xs, y) for xs in _leave_one_out(trained)])
    loo_u = np.array([_auc(x, ys) for ys in _leave_one_out(untrained)])
    var = sum((len(v) - 1) / len(v) * np.square(v - v.mean()).sum() for v in (loo_t, loo_u))
    se = float(np.sqrt(var))
    half = float(sps.t.ppf(0.5 + level / 2, min(len(loo_t), len(loo_u)) - 1)) * se
    # np.clip keeps a NaN (no interval) a NaN, where a clamp by `max` would read 0.0
    low, high = (float(np.clip(end, 0.0, 1.0)) for end in (value - half, value + half))
    return Auroc(value, low, high, se, len(x), len(y))
