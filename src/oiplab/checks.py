"""Checks at a stage's boundary: no NaN or infinity enters a stage unnoticed, and no setting is
silently cut to what the data holds.

A NaN compares false with everything, so code downstream of one does not fail: `max(0.0, nan)` is
0.0, `nan > 0` counts a map as without an OIP, a NaN weight makes every activation NaN. The
checks here turn such a value into one line naming the file (or key) and what to rerun.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from oiplab.errors import OiplabError

if TYPE_CHECKING:
    import keras


class NonFiniteError(OiplabError, ValueError):
    """A stage input or result holds NaN or infinity where a number is needed."""


class TooFewImagesError(OiplabError, ValueError):
    """A "first N images" setting asks for more images than the data set holds."""


def non_finite_count(values: np.ndarray) -> tuple[int, int]:
    """(NaN count, infinity count) of a numeric array (0, 0 for integers and booleans)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.inexact):
        return 0, 0
    return int(np.isnan(values).sum()), int(np.isinf(values).sum())


def describe(nan: int, inf: int, total: int) -> str:
    """'3 NaN and 1 infinite of 208,982 values'."""
    parts = [f"{nan:,} NaN" if nan else "", f"{inf:,} infinite" if inf else ""]
    return f"{' and '.join(p for p in parts if p)} of {total:,} values"


def require_finite(values: np.ndarray, where: str, rerun: str) -> np.ndarray:
    """`values` unchanged if every one is finite; else a `NonFiniteError` naming `where` (a
    file and key) and what to rerun."""
    nan, inf = non_finite_count(values)
    if nan or inf:
        raise NonFiniteError(f"{where}: {describe(nan, inf, np.size(values))}; {rerun}")
    return values


def non_finite_weights(model: keras.Model) -> list[str]:
    """'Conv2D_3 kernel (4 infinite of 73,728 values)' for each weight array of `model` that
    is not finite; empty when all are."""
    bad = []
    for layer in model.layers:
        for weight in layer.weights:
            nan, inf = non_finite_count(np.asarray(weight))
            if nan or inf:
                name = f"{layer.name} {weight.name}"
                bad.append(f"{name} ({describe(nan, inf, int(np.prod(weight.shape)))})")
    return bad


def at_least_zero(value: float, what: str) -> float:
    """max(0, value) for a finite `value`; NaN is an error, never the 0.0 `max` would make it."""
    if not np.isfinite(value):
        raise NonFiniteError(f"{what} is {value}: an input of it is not finite")
    return max(0.0, float(value))


def first_images(images: np.ndarray, n: int, key: str, split: str = "test") -> np.ndarray:
    """The first `n` of `images`; asking for more than there are is an error naming `key`, never
    the silent cut a slice makes (the run would record `n` and use fewer)."""
    if n > len(images):
        raise TooFewImagesError(
            f"config key '{key}': {n:,} images asked for, the {split} set holds {len(images):,}; "
            f"set {key} to at most {len(images):,}"
        )
    return images[:n]
