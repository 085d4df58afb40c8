"""The function check of a match: loss and accuracy on the straight line between two networks'
weights, as trained and after re-ordering one of them (Ainsworth et al. 2023, Git Re-Basin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from oiplab.checks import at_least_zero
from oiplab.compare.weights import interpolate
from oiplab.model import cross_entropy_and_accuracy

if TYPE_CHECKING:
    import keras

if TYPE_CHECKING:
    import keras

BATCH = 1000


def evaluate_weights(
    net: keras.Model, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the architecture `net` with `weights` on (x, y).

    Through the model's compiled predict step (faster than an eager call; the same
    numbers with TensorFlow on a CPU, a backend compiling with XLA may differ in the last bits).
    """
    net.set_weights(weights)
    probs = np.concatenate(
        [np.asarray(net.predict_on_batch(x[k : k + BATCH])) for k in range(0, len(x), BATCH)]
    ).astype(np.float64)
    return cross_entropy_and_accuracy(probs, y)


def path(
    net: keras.Model,
    weights_a: list[np.ndarray],
    weights_b: list[np.ndarray],
    alphas: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    known: dict[float, tuple[float, float]] | None = None,
) -> dict[str, list[float]]:
    """Loss and accuracy at each point (1 - alpha) * a + alpha * b of the weight line.

    `known`: points already evaluated, by alpha (an end of the line is a network itself, which
    the caller may share between the lines that start or end at it).
    """
    known = known or {}
    points = [
        known[float(t)]
        if float(t) in known
        else evaluate_weights(net, interpolate(weights_a, weights_b, float(t)), x, y)
        for t in alphas
    ]
    return {"loss": [p[0] for p in points], "accuracy": [p[1] for p in points]}


def barriers(curve: dict[str, list[float]], alphas: np.ndarray) -> dict[str, float]:
    """How far the path rises above (loss) or falls below (accuracy) the straight line between
    its endpoints, at its worst point: 0 for a path that is as good as its ends everywhere."""
    t = np.asarray(alphas)
    loss, acc = np.asarray(curve["loss"]), np.asarray(curve["accuracy"])
    line_loss = (1 - t) * loss[0] + t * loss[-1]
    line_acc = (1 - t) * acc[0] + t * acc[-1]
    # NaN is an error here: clamping a NaN with `max` would report a perfect 0.0
    return {
        "loss_barrier": at_least_zero((loss - line_loss).max(), "the loss barrier"),
        "accuracy_barrier": at_least_zero((line_acc - acc).max(), "the accuracy barrier"),
    }
