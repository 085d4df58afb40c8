"""Linear centred kernel alignment between two layers' representations of the same images."""

from __future__ import annotations

import numpy as np


def centered_gram(features: np.ndarray) -> np.ndarray:
    """The (n, n) linear Gram matrix of (n, ...) features, double-centred.

    The product runs in float32 (twice as fast as float64 on a CPU; CKA needs 3 digits, float32
    gives 6), the result is returned in float64 for the sums that follow.
    """
    x = features.reshape(len(features), -1).astype(np.float32)
    x = x - x.mean(axis=0, keepdims=True)
    return (x @ x.T).astype(np.float64)


def linear_cka(gram_a: np.ndarray, gram_b: np.ndarray) -> float:
    """CKA from centred Gram matrices: <Ka, Kb>_F / (||Ka||_F ||Kb||_F); 0 if either is 0."""
    denom = np.linalg.norm(gram_a) * np.linalg.norm(gram_b)
    return float((gram_a * gram_b).sum() / denom) if denom > 0 else 0.0


def cka_matrix(grams_a: list[np.ndarray], grams_b: list[np.ndarray]) -> np.ndarray:
    """CKA between every layer of a (rows) and every layer of b (columns), from the layers'
    centred Gram matrices (compute them once per network with `centered_gram`)."""
    return np.array([[linear_cka(ga, gb) for gb in grams_b] for ga in grams_a])
