"""One-to-one (Hungarian) and best-match (semi) matching of maps, and the statistics of a match."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

THRESHOLDS = (0.5, 0.8, 0.9)


def hungarian(similarity: np.ndarray) -> np.ndarray:
    """perm[i] = the map of network b matched one-to-one to map i of a (maximizing the total)."""
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    perm = np.empty(similarity.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm


def semi_matching(similarity: np.ndarray) -> np.ndarray:
    """best[i] = the map of b most similar to map i of a (several maps of a may share one)."""
    return similarity.argmax(axis=1)


def match_stats(
    corr: np.ndarray, perm: np.ndarray, best: np.ndarray, live: np.ndarray
) -> dict[str, float]:
    """Summary of a layer's match, over the maps of a that are not dead (`live`).

    same_index: the fraction of maps whose one-to-one partner has the same index (the articles'
    "same order" question); its chance level under a random permutation is 1 / n_maps.
    """
    idx = np.flatnonzero(live)
    if not len(idx):
        return {"n_live": 0}
    matched = corr[idx, perm[idx]]
    best_corr = corr[idx, best[idx]]
    out = {
        "n_live": int(len(idx)),
        "matched_corr_median": float(np.median(matched)),
        "matched_corr_mean": float(matched.mean()),
        "semi_corr_median": float(np.median(best_corr)),
        "same_index_fraction": float((perm[idx] == idx).mean()),
        "same_index_chance": 1.0 / corr.shape[0],
        "semi_distinct_partners": float(len(np.unique(best[idx])) / len(idx)),
    }
    for t in THRESHOLDS:
        out[f"frac_matched_above_{t}"] = float((matched > t).mean())
        out[f"frac_semi_above_{t}"] = float((best_corr > t).mean())
    return out


def consistency(p_ab: np.ndarray, p_bc: np.ndarray, p_ac: np.ndarray) -> float:
    """Fraction of maps i of a for which going a->b->c lands where a->c does: p_bc[p_ab[i]]."""
    return float((p_bc[p_ab] == p_ac).mean())
