"""The cross-seed comparison of trained networks, as one function over in-memory arrays.

`compare_pair` holds everything measured between two networks on the same probe images:
activation matching per layer, weight matching and its agreement, and CKA. `consistency_table`
checks whether permutations compose across three networks.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from oiplab.compare.cka import cka_matrix
from oiplab.compare.correlation import cross_correlation, dead_maps, unit_matrix
from oiplab.compare.matching import consistency, hungarian, match_stats, semi_matching
from oiplab.compare.weights import HIDDEN, weight_matching


def match_layers(
    outputs_a: dict[str, np.ndarray], outputs_b: dict[str, np.ndarray], layers: list[str]
) -> dict[str, dict]:
    """Per layer: correlation matrix, one-to-one and semi matches, and their statistics."""
    out = {}
    for layer in layers:
        ua, ub = unit_matrix(outputs_a[layer]), unit_matrix(outputs_b[layer])
        corr = cross_correlation(ua, ub)
        perm, best = hungarian(corr), semi_matching(corr)
        dead_a, dead_b = dead_maps(ua), dead_maps(ub)
        stats = match_stats(corr, perm, best, ~dead_a)
        stats.update(
            n_maps=int(corr.shape[0]), n_dead_a=int(dead_a.sum()), n_dead_b=int(dead_b.sum())
        )
        out[layer] = {"corr": corr, "perm": perm, "best": best, "stats": stats}
    return out


def compare_pair(
    outputs_a: dict[str, np.ndarray],
    outputs_b: dict[str, np.ndarray],
    weights_a: list[np.ndarray],
    weights_b: list[np.ndarray],
    layers: list[str],
    grams_a: list[np.ndarray],
    grams_b: list[np.ndarray],
) -> dict:
    """Everything measured between networks a and b (grams: `cka.centered_gram` per CKA layer)."""
    matched = match_layers(outputs_a, outputs_b, layers)
    by_weights = weight_matching(weights_a, weights_b)
    agreement = {
        layer: float((by_weights[layer] == matched[layer]["perm"]).mean())
        for layer in HIDDEN
        if layer in matched
    }
    cka = cka_matrix(grams_a, grams_b)
    return {
        "layers": matched,
        "weight_perms": by_weights,
        "weight_activation_agreement": agreement,
        "cka": cka,
    }


def consistency_table(
    perms: dict[tuple[int, int], dict[str, np.ndarray]], seeds: list[int], layers: list[str]
) -> dict[str, float]:
    """Mean, over seed triples a<b<c, of the fraction of maps where a->b->c equals a->c."""
    out = {}
    for layer in layers:
        values = [
            consistency(perms[(a, b)][layer], perms[(b, c)][layer], perms[(a, c)][layer])
            for a, b, c in combinations(seeds, 3)
        ]
        if values:
            out[layer] = float(np.mean(values))
    return out
