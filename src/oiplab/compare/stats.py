"""The statistics behind the answer: a relabelling test for "same order", bootstrap intervals that
resample what is independent (seeds, and probe images), and null thresholds from untrained
networks. Pure NumPy, seeded, vectorized over draws.
"""

from __future__ import annotations

from itertools import combinations
from typing import TypedDict

import numpy as np


class SameIndex(TypedDict):
    """`same_index_test`'s result (the fields of `summary.OrderTest`)."""

    observed: int
    expected: float
    p_value: float
    n_tested: int


def same_index_test(
    pairs: list[tuple[np.ndarray, np.ndarray]], n_maps: int, draws: int, rng: np.random.Generator
) -> SameIndex:
    """Relabelling test of "same map order", summed over pairs of networks.

    Each pair gives the matched maps (i of network a, j of network b) that count. Under the null
    the order of b's maps carries no information, i.e. b's labels are a uniformly random
    permutation s of its `n_maps` maps, and the matching moves with them: i is then matched to
    s(j). The statistic is the number of i == j over all pairs; its null distribution is drawn
    by Monte Carlo (`draws` permutations per pair).

    Returns:
        observed and expected counts, the one-sided p-value P(null >= observed) with the usual
        +1 correction, and the number of matches tested.
    """
    observed = sum(int((i == j).sum()) for i, j in pairs)
    tested = sum(len(i) for i, _ in pairs)
    null = np.zeros(draws, dtype=np.int64)
    for i, j in pairs:
        if len(i):
            labels = np.argsort(rng.random((draws, n_maps)), axis=1)  # uniform permutations
            null += (labels[:, j] == i).sum(axis=1)
    p = (1 + int((null >= observed).sum())) / (1 + draws)
    return {
        "observed": observed,
        "expected": tested / n_maps,
        "p_value": p,
        "n_tested": tested,
    }


def seed_resamples(n_seeds: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, n_seeds) counts: how often each seed is drawn when resampling the seeds."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=draws)


def pair_weights(counts: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """(draws, n_pairs) weight of each pair in a resample of seeds.

    A resample holding seed a c_a times and seed b c_b times contains c_a * c_b copies of the
    pair (a, b); pairs of a seed with itself are not comparisons and get no weight.
    """
    return np.stack([counts[:, a] * counts[:, b] for a, b in pairs], axis=1).astype(np.float64)


def bootstrap_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per draw, the weighted mean of per-pair values; NaN where a draw has no pair.

    Args:
        values: (n_pairs,) one value per pair, or (n_pairs, draws) a value per pair and draw
            (from a bootstrap of the images, shared by all pairs).
        weights: (draws, n_pairs) from `pair_weights`.
    """
    values = values[:, None] if values.ndim == 1 else values
    total = weights.sum(axis=1)
    sums = np.einsum("dp,pd->d", weights, np.broadcast_to(values, (len(values), len(weights))))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sums / total, np.nan)


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap samples (NaN draws ignored)."""
    tail = (1 - level) / 2 * 100
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def image_resamples(n_images: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, n_images) counts of each probe image in a resample of the images."""
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=draws)


def per_image_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n_images, 5, m) sums over each image's positions of a, b, a*a, b*b, a*b for m map pairs.

    Args:
        a, b: (n_images, positions, m) the matched maps' values, pair k in column k.
    """
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return np.stack([a.sum(1), b.sum(1), (a * a).sum(1), (b * b).sum(1), (a * b).sum(1)], axis=1)


def resampled_correlations(moments: np.ndarray, counts: np.ndarray, positions: int) -> np.ndarray:
    """(draws, m) Pearson correlation of each map pair over resampled images.

    Args:
        moments: (n_images, 5, m) from `per_image_moments`.
        counts: (draws, n_images) from `image_resamples`.
    """
    # one matrix product (BLAS): faster than the same contraction by einsum, equal to ~1e-15
    shape = (len(counts), *moments.shape[1:])
    sums = (counts.astype(np.float64) @ moments.reshape(len(moments), -1)).reshape(shape)
    n = counts.sum(axis=1)[:, None] * positions
    sa, sb, saa, sbb, sab = (sums[:, k] for k in range(5))
    var_a = n * saa - sa * sa
    var_b = n * sbb - sb * sb
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (n * sab - sa * sb) / np.sqrt(var_a * var_b)
    return np.where((var_a > 0) & (var_b > 0), np.clip(r, -1.0, 1.0), 0.0)


def leave_one_out_thresholds(null_values: list[np.ndarray], quantile: float) -> list[float]:
    """For each null pair, the `quantile` of the other null pairs' pooled values."""
    return [
        float(np.quantile(np.concatenate(null_values[:k] + null_values[k + 1 :]), quantile))
        for k in range(len(null_values))
    ]


def seed_pairs(n_seeds: int) -> list[tuple[int, int]]:
    """Index pairs (a < b) of `n_seeds` networks, in the order `itertools.combinations` gives."""
    return list(combinations(range(n_seeds), 2))
