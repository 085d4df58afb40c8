"""The OIP survey of one layer (articles VII to IX): every map ascended from the same start images,
one batch, and what came of it per map (the best start's image and loss, silent or not).

`survey` runs it; `Survey` holds the arrays, counts the census, and saves / loads the `.npz` the
precursor search and the comparison read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from oiplab.analysis.activations import probe_model
from oiplab.config import OipConfig
from oiplab.data.prepared import ImageTarget, Standardization
from oiplab.io import Record, load_npz
from oiplab.layout import METRICS
from oiplab.oip.engine import AscentResult, AscentSettings, ascend
from oiplab.oip.init import NoiseScales, digit_starts, start_images
from oiplab.oip.objectives import Objectives, channel_objectives, neuron_objectives
from oiplab.oip.rescue import preactivation_probe, warmed_ascent

if TYPE_CHECKING:
    import keras


log = logging.getLogger(__name__)


def ascent_settings(o: OipConfig, n_steps: int | None = None) -> AscentSettings:
    return AscentSettings(
        epsilon=o.epsilon,
        n_steps=n_steps or o.n_steps,
        convergence_tol=o.convergence_tol,
        convergence_window=o.convergence_window,
        stop_on_convergence=o.stop_on_convergence,
        n_snapshots=o.n_snapshots,
        chunk_size=o.chunk_size,
    )


def survey_settings(o: OipConfig, n_starts: int) -> AscentSettings:
    """The survey's ascent: `ascent_settings` with successive halving over each map's starts
    (the batch holds a map's `n_starts` starts side by side, see `survey`)."""
    return replace(
        ascent_settings(o),
        halving_after=o.halving_after,
        halving_keep=o.halving_keep,
        halving_group=n_starts,
    )


def objectives_for(
    o: OipConfig, map_of_element: np.ndarray, layer_shape: tuple[int, int, int]
) -> Objectives:
    """The configured objective (channel mean or one neuron) for each batch element."""
    if o.objective == "channel":
        return channel_objectives(map_of_element, layer_shape)
    position = o.neuron_position or [layer_shape[0] // 2, layer_shape[1] // 2]
    return neuron_objectives(
        map_of_element, np.tile(position, (len(map_of_element), 1)), layer_shape
    )


class SurveyMetrics(Record):
    """A seed's OIP survey in numbers (`artifacts/oip/seed_N/metrics.json`)."""

    FILE: ClassVar[str] = METRICS
    STAGE: ClassVar[str] = "oip"
    WHAT: ClassVar[str] = "OIP survey metrics"

    seed: int
    layer: str
    n_maps: int
    n_with_oip: int
    n_silent: int
    n_zero_not_silent: int
    seconds: float
    steps_per_second: float
    median_steps_moving: float
    converged_fraction: float  # of the moving elements ascended to the end (not halted)
    halted_fraction: float  # of the moving elements: stopped at the halving rung
    n_woken: int  # maps silent from every start that the wake-up (`oip.wake_steps`) woke
    start_mean: float
    start_std_spread: float


@dataclass
class Survey:
    map_index: np.ndarray  # (M,) maps of the layer
    start_images: np.ndarray  # (S, 28, 28) the starts every map shares, network scale
    result: AscentResult  # flat over (map, start): element m * S + s
    seconds: float
    woken: np.ndarray  # (M * S,) bool: silent from every start of its map, woken (`wake_steps`)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.map_index), len(self.start_images)

    @property
    def loss(self) -> np.ndarray:
        return self.result.loss.reshape(self.shape)

    @property
    def silent(self) -> np.ndarray:
        return self.result.silent.reshape(self.shape)

    @property
    def best_element(self) -> np.ndarray:
        """(M,) flat index of each map's best start (highest final objective)."""
        return np.arange(self.shape[0]) * self.shape[1] + self.loss.argmax(axis=1)

    def census(self) -> dict[str, int]:
        """Maps with an OIP (objective > 0 from some start), silent maps (from every start)."""
        with_oip = (self.loss > 0).any(axis=1)
        all_silent = self.silent.all(axis=1)
        return {
            "n_maps": int(len(self.map_index)),
            "n_with_oip": int(with_oip.sum()),
            "n_silent": int(all_silent.sum()),
            "n_zero_not_silent": int((~with_oip & ~all_silent).sum()),
        }

    def metrics(self) -> dict[str, float]:
        r = self.result
        moving = ~r.silent  # silent elements never move: "converged" says nothing about them
        full = moving & ~r.halted  # halted elements stopped at the rung, by design
        return {
            **self.census(),
            "seconds": round(self.seconds, 2),
            "steps_per_second": round(float(r.steps.sum()) / max(self.seconds, 1e-9), 1),
            "median_steps_moving": float(np.median(r.steps[moving])) if moving.any() else 0.0,
            "converged_fraction": float(r.converged[full].mean()) if full.any() else 0.0,
            "halted_fraction": float(r.halted[moving].mean()) if moving.any() else 0.0,
            "n_woken": int(self.woken.reshape(self.shape).any(axis=1).sum()),
            "start_mean": float(self.start_images.mean()),
            "start_std_spread": float(np.ptp(self.start_images.std(axis=(1, 2)))),
        }

    def save(self, path: Path) -> None:
        r, best = self.result, self.best_element
        np.savez_compressed(
            path,
            map_index=self.map_index,
            start_images=self.start_images,
            images=r.images[..., 0].reshape(*self.shape, 28, 28),
            loss=self.loss,
            steps=r.steps.reshape(self.shape),
            converged=r.converged.reshape(self.shape),
            halted=r.halted.reshape(self.shape),
            woken=self.woken.reshape(self.shape),
            silent=self.silent,
            best_start=self.loss.argmax(axis=1),
            best_images=r.images[best, ..., 0],
            best_snapshots=r.snapshots[best],
            best_loss_history=r.loss_history[best],
            snapshot_steps=r.snapshot_steps,
        )


def load_outcome(path: Path) -> dict[str, np.ndarray]:
    """What later stages need of a saved survey: maps, starts, images, and per-map outcome."""
    keys = ("map_index", "loss", "silent", "best_images", "images", "start_images")
    arrays = load_npz(path, keys, "OIP survey", "oip")
    return {
        "map_index": arrays["map_index"],
        "start_images": arrays["start_images"],
        "best_images": arrays["best_images"],
        "images": arrays["images"],
        "found_per_start": arrays["loss"] > 0,
        "found": (arrays["loss"] > 0).any(axis=1),
        "silent": arrays["silent"].all(axis=1),
    }


def starts_for(
    o: OipConfig, stats: Standardization, target: ImageTarget, x_test: np.ndarray | None
) -> np.ndarray:
    """The configured start images (n_starts, 28, 28, 1): multi-scale noise, its dark-background
    variant, or real test digits; brought to `target` unless `o.standardize` is `start`."""
    to = target if o.standardize == "images" else None
    if o.start_kind == "digits":
        if x_test is None:
            raise ValueError("oip.start_kind=digits needs the test images")
        return digit_starts(x_test, o.n_starts, o.start_seed, target)
    dark = o.dark_quantile if o.start_kind == "dark" else None
    scales = NoiseScales(o.grids, o.weights, o.smoothing)
    return start_images(o.n_starts, scales, o.start_seed, stats, to, dark)


def survey(
    model: keras.Model,
    o: OipConfig,
    layer_shape: tuple[int, int, int],
    starts: np.ndarray,
    progress: Callable[[str], None] | None = log.info,
) -> Survey:
    """Ascend every (map, start) of the configured layer in one batch (chunked); with
    `o.warmup_steps`, each first warms up on the map's pre-activation (`rescue`); with
    `o.halving_after`, only each map's best `o.halving_keep` starts go on after that step;
    with `o.wake_steps`, the maps silent from every start are then warmed up and ascended
    (`wake_silent_maps`).

    Args:
        layer_shape: the layer's output shape (h, w, n_maps) (`oiplab.model.layer_shapes`).
        starts: (n_starts, 28, 28, 1) the images every map starts from (`starts_for`).
    """
    maps = np.asarray(o.maps or range(layer_shape[2]), dtype=np.int64)
    map_of_element = np.repeat(maps, len(starts))
    tiled = np.tile(starts, (len(maps), 1, 1, 1))
    objectives = objectives_for(o, map_of_element, layer_shape)
    probe = probe_model(model, [o.layer])
    t0 = time.perf_counter()
    if o.warmup_steps:  # config validation keeps halving off here
        linear = preactivation_probe(model, o.layer)
        result = warmed_ascent(
            probe, linear, tiled, objectives, ascent_settings(o), o.warmup_steps, progress
        )
    else:
        settings = survey_settings(o, len(starts))
        result = ascend(probe, tiled, objectives, settings, progress=progress)
    found = Survey(maps, starts[..., 0], result, 0.0, np.zeros(len(tiled), dtype=bool))
    if o.wake_steps:
        found = wake_silent_maps(model, o, found, tiled, objectives, progress)
    found.seconds = time.perf_counter() - t0
    return found


def wake_silent_maps(
    model: keras.Model,
    o: OipConfig,
    found: Survey,
    tiled: np.ndarray,
    objectives: Objectives,
    progress: Callable[[str], None] | None = log.info,
) -> Survey:
    """Warm up every start of the maps silent from every start on the map's pre-activation for
    `o.wake_steps` steps, then ascend the map itself (`rescue.warmed_ascent`); their elements'
    results replace the silent ones, `woken` marks those that end above 0.

    A silent start has a zero input gradient, so plain ascent cannot move it (`engine`); other
    tools keep such images moving (jitter, regularizers) and some drift into the map's range.
    """
    n_starts = found.shape[1]
    silent_maps = found.silent.all(axis=1)
    rows = np.flatnonzero(np.repeat(silent_maps, n_starts))
    if not rows.size:
        return found
    probe = probe_model(model, [o.layer])
    linear = preactivation_probe(model, o.layer)
    settings = ascent_settings(o)
    woke = warmed_ascent(
        probe, linear, tiled[rows], objectives.take(rows), settings, o.wake_steps, progress
    )
    merged = {}
    for name in AscentResult.__dataclass_fields__:
        whole = getattr(found.result, name)
        if name != "snapshot_steps":
            whole = whole.copy()
            whole[rows] = getattr(woke, name)
        merged[name] = whole
    woken = found.woken.copy()
    woken[rows] = woke.loss > 0
    return Survey(found.map_index, found.start_images, AscentResult(**merged), 0.0, woken)
