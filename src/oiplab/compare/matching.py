"""One-to-one matching of maps across two networks (Li et al. 2016), restricted to maps that are
alive on the probe images, with each match's margin over its next-best candidate."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def hungarian(similarity: np.ndarray) -> np.ndarray:
    """perm[i] = the map of network b matched one-to-one to map i of a (maximizing the total)."""
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    perm = np.empty(similarity.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm


def match_live(corr: np.ndarray, live_a: np.ndarray, live_b: np.ndarray) -> np.ndarray:
    """partner[i] = the live map of b matched one-to-one to live map i of a; -1 for a's dead maps
    (and for live ones left over when b has fewer live maps). Dead maps take no part: a forced
    match to a constant map (r = 0) says nothing about either network."""
    ia, ib = np.flatnonzero(live_a), np.flatnonzero(live_b)
    partner = np.full(corr.shape[0], -1, dtype=np.int64)
    if len(ia) and len(ib):
        rows, cols = linear_sum_assignment(corr[np.ix_(ia, ib)], maximize=True)
        partner[ia[rows]] = ib[cols]
    return partner


def margins(
    corr: np.ndarray, partner: np.ndarray, live_a: np.ndarray, live_b: np.ndarray
) -> np.ndarray:
    """By how much each match's r exceeds every other live candidate in its row and its column
    (NaN where a map has no partner). A small margin means a near-tie that last-bit float noise
    could flip."""
    masked = np.where(live_a[:, None] & live_b[None, :], corr, -np.inf)
    rows = np.flatnonzero(partner >= 0)
    cols = partner[rows]
    out = np.full(len(partner), np.nan)
    if not len(rows):
        return out
    matched = masked[rows, cols]
    masked[rows, cols] = -np.inf
    competitor = np.maximum(masked[rows].max(axis=1), masked[:, cols].max(axis=0))
    out[rows] = matched - competitor
    return out


def consistency(p_ab: np.ndarray, p_bc: np.ndarray, p_ac: np.ndarray, maps: np.ndarray) -> float:
    """Fraction of a's `maps` for which going a->b->c lands where a->c does (partners, -1: none)."""
    ok = maps[(p_ab[maps] >= 0) & (p_ac[maps] >= 0)]
    ok = ok[p_bc[p_ab[ok]] >= 0]
    return float((p_bc[p_ab[ok]] == p_ac[ok]).mean()) if len(ok) else float("nan")
