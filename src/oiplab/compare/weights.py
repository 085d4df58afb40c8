"""Permutations of a network's hidden units: applying one to the weights, and finding one from the
weights alone (Git Re-Basin's weight matching).

Weights are the Keras `get_weights()` list of the articles' CNN: (kernel, bias) for Conv2D_1..3,
Dense_1 and Dense_2. A permutation `perm` for a layer maps network a's unit i to network b's unit
perm[i]; `permute` re-orders b so that its unit i is the old unit perm[i] (same function).
"""

from __future__ import annotations

import numpy as np

from oiplab.compare.matching import hungarian
from oiplab.model import PERMUTABLE


def _split(weights: list[np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    names = (*PERMUTABLE, "Dense_2")
    if len(weights) != 2 * len(names):
        raise ValueError(
            f"expected {2 * len(names)} weight arrays (kernel, bias per layer), got {len(weights)}"
        )
    return {n: (weights[2 * k], weights[2 * k + 1]) for k, n in enumerate(names)}


def _dense1_as_conv(kernel: np.ndarray, n_maps: int) -> np.ndarray:
    """Dense_1's (h*w*c, units) kernel as (h, w, c, units), c being Conv2D_3's maps (channels
    last, so Flatten orders inputs as (row, col, map))."""
    side = int(round(np.sqrt(kernel.shape[0] / n_maps)))
    return kernel.reshape(side, side, n_maps, kernel.shape[1])


def permute(weights: list[np.ndarray], perms: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Re-order network b's hidden units by `perms` (missing layers: identity); same function."""
    w = _split([np.asarray(x) for x in weights])
    p = {n: perms.get(n, np.arange(w[n][1].shape[0])) for n in PERMUTABLE}
    k1, b1 = w["Conv2D_1"]
    k2, b2 = w["Conv2D_2"]
    k3, b3 = w["Conv2D_3"]
    d1, e1 = w["Dense_1"]
    d2, e2 = w["Dense_2"]
    k1, b1 = k1[..., p["Conv2D_1"]], b1[p["Conv2D_1"]]
    k2, b2 = k2[:, :, p["Conv2D_1"], :][..., p["Conv2D_2"]], b2[p["Conv2D_2"]]
    k3, b3 = k3[:, :, p["Conv2D_2"], :][..., p["Conv2D_3"]], b3[p["Conv2D_3"]]
    d1_4 = _dense1_as_conv(d1, len(b3))[:, :, p["Conv2D_3"], :][..., p["Dense_1"]]
    d1, e1 = d1_4.reshape(d1.shape), e1[p["Dense_1"]]
    d2 = d2[p["Dense_1"], :]
    return [k1, b1, k2, b2, k3, b3, d1, e1, d2, e2]


def _incoming(w: dict, layer: str, p_prev: np.ndarray | None) -> np.ndarray:
    """(units, features): each unit's incoming weights (input units re-ordered by p_prev), bias."""
    kernel, bias = w[layer]
    if layer == "Dense_1":
        kernel = _dense1_as_conv(kernel, w["Conv2D_3"][1].shape[0])
    rows = np.moveaxis(kernel, -1, 0)  # (units, ..., inputs)
    if p_prev is not None:
        rows = rows[..., p_prev]
    return np.concatenate([rows.reshape(len(bias), -1), bias[:, None]], axis=1)


def _outgoing(w: dict, layer: str, p_next: np.ndarray | None) -> np.ndarray:
    """(units, features): each unit's outgoing weights (next layer's units re-ordered by p_next)."""
    following = PERMUTABLE[PERMUTABLE.index(layer) + 1] if layer != "Dense_1" else "Dense_2"
    kernel = w[following][0]
    if following == "Dense_1":
        kernel = _dense1_as_conv(kernel, w[layer][1].shape[0])
    if p_next is not None:
        kernel = kernel[..., p_next]
    return np.moveaxis(kernel, -2, 0).reshape(kernel.shape[-2], -1)


def weight_matching(
    weights_a: list[np.ndarray], weights_b: list[np.ndarray], max_iter: int = 50
) -> dict[str, np.ndarray]:
    """Permutations of b's hidden units that best align its weights with a's.

    Coordinate ascent over layers (Ainsworth et al. 2023): each layer's permutation maximizes
    the summed inner products of incoming and outgoing weights, given its neighbours' current
    permutations; repeated until no permutation changes.
    """
    wa, wb = _split(weights_a), _split(weights_b)
    perms = {n: np.arange(wa[n][1].shape[0]) for n in PERMUTABLE}
    for _ in range(max_iter):
        changed = False
        for k, layer in enumerate(PERMUTABLE):
            p_prev = perms[PERMUTABLE[k - 1]] if k > 0 else None
            p_next = perms[PERMUTABLE[k + 1]] if k + 1 < len(PERMUTABLE) else None
            sim = _incoming(wa, layer, None) @ _incoming(wb, layer, p_prev).T
            sim += _outgoing(wa, layer, None) @ _outgoing(wb, layer, p_next).T
            new = hungarian(sim)
            if not np.array_equal(new, perms[layer]):
                perms[layer], changed = new, True
        if not changed:
            break
    return perms


def interpolate(
    weights_a: list[np.ndarray], weights_b: list[np.ndarray], alpha: float
) -> list[np.ndarray]:
    """(1 - alpha) * a + alpha * b, array by array."""
    return [(1 - alpha) * a + alpha * b for a, b in zip(weights_a, weights_b, strict=True)]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two (n, d) arrays (0 where a row is all zero)."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
