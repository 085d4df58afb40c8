"""A rescue for silent maps: warm up on the map's pre-activation, then ascend the map itself.

A ReLU map that is 0 everywhere on an image has a zero input gradient, so ascent from that image
never moves (`engine`: silent). Its pre-activation (the linear output before the ReLU) always has
a gradient: a few steps that raise it bring some positions above zero, and the ordinary ascent
takes over from there. Feature-visualization libraries do the same for the same reason (lucid's
redirected ReLU, xplique's warm-up steps).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from oiplab.oip.engine import AscentResult, AscentSettings, ascend
from oiplab.oip.objectives import Objectives, channel_objectives
from oiplab.oip.rungs import race

if TYPE_CHECKING:
    import keras


log = logging.getLogger(__name__)


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
    progress: Callable[[str], None] | None = log.info,
) -> AscentResult:
    """`warmup_steps` of ascent on the pre-activation (`linear_probe`), then the usual ascent on
    the map (`probe`) from where the warm-up ended. Steps and loss history are the second
    phase's; silence is judged there too (a map still 0 with zero gradient after the warm-up)."""
    warm = replace(settings, n_steps=warmup_steps, stop_on_convergence=False, n_snapshots=0)
    first = ascend(linear_probe, starts, objectives, warm, progress=None)
    if progress is not None:
        lifted = int((first.loss > 0).sum())
        progress(f"rescue warm-up: {warmup_steps} steps, {lifted}/{len(starts)} starts lifted")
    return ascend(probe, first.images, objectives, settings, progress=progress, label="rescue")


@dataclass(frozen=True)
class RescueSettings:
    """How the rescue ascends (`conf/precursor/`: rescue_*)."""

    ascent: AscentSettings  # the oip stage's ascent (its n_steps follow the warm-up)
    warmup_steps: int  # on the pre-activation; 0: no rescue
    halving_rungs: tuple[int, ...] = ()  # steps after the warm-up at which a map's starts are
    # halved (`oip.rungs`); (): every start ascends the full length (the old rescue, bit for bit)


@dataclass
class RescueResult:
    map_index: np.ndarray  # (M,) maps tried
    images: np.ndarray  # (M, n_starts, 28, 28)
    loss: np.ndarray  # (M, n_starts) the map's objective at the end
    seconds: float

    @property
    def found(self) -> np.ndarray:
        return (
            np.asarray((self.loss > 0).any(axis=1)) if self.loss.size else np.zeros(0, dtype=bool)
        )


def rescue(
    probe: keras.Model,
    linear_probe: keras.Model,
    maps: np.ndarray,
    starts: np.ndarray,
    layer_shape: tuple[int, int, int],
    settings: RescueSettings,
    progress: Callable[[str], None] | None = log.info,
) -> RescueResult:
    """Warm up, then ascend, every (map, start) of `maps` from the starts (S, 28, 28, 1).

    Args:
        probe: the network up to the layer; linear_probe: the same without its ReLU
            (`preactivation_probe`). layer_shape: the layer's (h, w, n_maps).
    """
    t0 = time.perf_counter()
    if not len(maps) or not settings.warmup_steps:
        empty = np.zeros((len(maps), len(starts)), np.float32)
        return RescueResult(maps, np.zeros((*empty.shape, 28, 28), np.float32), empty, 0.0)
    n = len(starts)
    tiled = np.tile(starts, (len(maps), 1, 1, 1))
    objectives = channel_objectives(np.repeat(maps, n), layer_shape)
    if settings.halving_rungs:
        grouped = tiled.reshape(len(maps), n, *tiled.shape[1:])
        images, loss = _halved_rescue(probe, linear_probe, grouped, objectives, settings, progress)
    else:
        result = warmed_ascent(
            probe,
            linear_probe,
            starts=tiled,
            objectives=objectives,
            settings=settings.ascent,
            warmup_steps=settings.warmup_steps,
            progress=progress,
        )
        images, loss = result.images, result.loss
    return RescueResult(
        maps,
        images[..., 0].reshape(len(maps), n, 28, 28),
        loss.reshape(len(maps), n),
        time.perf_counter() - t0,
    )


def _halved_rescue(
    probe: keras.Model,
    linear_probe: keras.Model,
    starts: np.ndarray,
    objectives: Objectives,
    settings: RescueSettings,
    progress: Callable[[str], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """`warmed_ascent`'s warm-up, then a `race` of each map's starts (M, n, 28, 28, 1) after it:
    (images, loss), one per (map, start) in that order."""
    s, flat = settings.ascent, starts.reshape(-1, *starts.shape[2:])
    warm = replace(s, n_steps=settings.warmup_steps, stop_on_convergence=False, n_snapshots=0)
    first = ascend(linear_probe, flat, objectives, warm, progress=None)
    if progress is not None:
        lifted = int((first.loss > 0).sum())
        progress(f"rescue warm-up: {settings.warmup_steps} steps, {lifted}/{len(flat)} lifted")
    raced = race(
        probe,
        first.images.reshape(starts.shape),
        objectives,
        replace(s, n_snapshots=0),
        settings.halving_rungs,
        progress=progress,
    )
    return raced.images.reshape(flat.shape), raced.loss.ravel()
