"""A rescue for silent maps: warm up on the map's pre-activation, then ascend the map itself.

A ReLU map that is 0 everywhere on an image has a zero input gradient, so ascent from that image
never moves (`engine`: silent). Its pre-activation (the linear output before the ReLU) always has
a gradient: a few steps that raise it bring some positions above zero, and the ordinary ascent
takes over from there. Feature-visualization libraries do the same for the same reason (lucid's
redirected ReLU, xplique's warm-up steps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from oiplab.oip.engine import AscentResult, AscentSettings, ascend
from oiplab.oip.objectives import Objectives

if TYPE_CHECKING:
    import keras


def preactivation_probe(model: keras.Model, layer: str) -> keras.Model:
    """A Keras model from the input to `layer`'s output without its ReLU: the convolution or
    dense layer's linear output (for a pooling layer, the pooled linear output of the layer
    before it)."""
    import keras

    target = model.get_layer(layer)
    pool = None
    if isinstance(target, keras.layers.MaxPooling2D):
        pool, target = target, target.input._keras_history.operation
    config = target.get_config() | {"activation": "linear", "name": f"{target.name}_linear"}
    linear = type(target).from_config(config)
    out = linear(target.input)
    linear.set_weights(target.get_weights())
    if pool is not None:
        out = type(pool).from_config(pool.get_config() | {"name": f"{pool.name}_linear"})(out)
    return keras.Model(model.inputs, out)


def warmed_ascent(
    probe: keras.Model,
    linear_probe: keras.Model,
    starts: np.ndarray,
    objectives: Objectives,
    settings: AscentSettings,
    warmup_steps: int,
    progress: Callable[[str], None] | None = print,
) -> AscentResult:
    """`warmup_steps` of ascent on the pre-activation (`linear_probe`), then the usual ascent on
    the map (`probe`) from where the warm-up ended. Steps and loss history are the second
    phase's; silence is judged there too (a map still 0 with zero gradient after the warm-up)."""
    warm = replace(settings, n_epochs=warmup_steps, stop_on_convergence=False, n_snapshots=0)
    first = ascend(linear_probe, starts, objectives, warm, progress=None)
    if progress is not None:
        lifted = int((first.loss > 0).sum())
        progress(f"[rescue] warm-up: {warmup_steps} steps, {lifted}/{len(starts)} starts lifted")
    return ascend(probe, first.images, objectives, settings, progress=progress, label="[rescue]")
