"""Correlation between every map of one network and every map of another over a probe set."""

from __future__ import annotations

import numpy as np

DEAD_STD = 1e-8  # a map whose output varies less than this over the probe set counts as dead


def unit_matrix(layer_output: np.ndarray) -> np.ndarray:
    """(n_samples, n_maps): a map's values over images and positions as one column.

    Conv/pool outputs (n, h, w, c) give n*h*w samples; dense outputs (n, c) give n.
    """
    return layer_output.reshape(-1, layer_output.shape[-1]).astype(np.float64)


def dead_maps(units: np.ndarray) -> np.ndarray:
    """Boolean (n_maps,): maps with (numerically) constant output over the probe set."""
    return units.std(axis=0) < DEAD_STD


def cross_correlation(units_a: np.ndarray, units_b: np.ndarray) -> np.ndarray:
    """Pearson correlation (n_maps_a, n_maps_b); pairs with a dead map are 0, never NaN."""
    za, dead_a = _standardize(units_a)
    zb, dead_b = _standardize(units_b)
    corr = za.T @ zb / len(za)
    corr[dead_a, :] = 0.0
    corr[:, dead_b] = 0.0
    return np.clip(corr, -1.0, 1.0)


def _standardize(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dead = dead_maps(units)
    std = np.where(dead, 1.0, units.std(axis=0))
    return (units - units.mean(axis=0)) / std, dead
