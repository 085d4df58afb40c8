"""Why a map has an OIP, or why not: every map of the layer gets exactly one cause.

In order: an OIP from the noise starts (the survey); from a coarse precursor (article X's
search); from the rescue (warm-up on the pre-activation, `rescue`); none of those, yet the map
responds to some real digit of the probe set; or dead on data (never positive on the probe set),
which no input pattern from the data's world is likely to wake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from oiplab.io import Record
from oiplab.layout import METRICS
from oiplab.oip.engine import AscentSettings
from oiplab.oip.objectives import channel_objectives
from oiplab.oip.rescue import warmed_ascent

CAUSES = ("from_noise", "from_precursor", "from_rescue", "responds_to_digits", "dead_on_data")


@dataclass
class RescueResult:
    map_index: np.ndarray  # (M,) maps tried
    images: np.ndarray  # (M, n_starts, 28, 28)
    loss: np.ndarray  # (M, n_starts) the map's objective at the end
    seconds: float

    @property
    def found(self) -> np.ndarray:
        return (self.loss > 0).any(axis=1) if self.loss.size else np.zeros(0, dtype=bool)


def rescue(
    probe,
    linear_probe,
    maps: np.ndarray,
    starts: np.ndarray,
    grid: tuple[int, int, int],
    settings: AscentSettings,
    warmup_steps: int,
    progress: Callable[[str], None] | None = print,
) -> RescueResult:
    """Warm up, then ascend, every (map, start) of `maps` from the starts (S, 28, 28, 1)."""
    t0 = time.perf_counter()
    if not len(maps) or not warmup_steps:
        empty = np.zeros((len(maps), len(starts)), np.float32)
        return RescueResult(maps, np.zeros((*empty.shape, 28, 28), np.float32), empty, 0.0)
    n = len(starts)
    result = warmed_ascent(
        probe, linear_probe, np.tile(starts, (len(maps), 1, 1, 1)),
        channel_objectives(np.repeat(maps, n), grid), settings, warmup_steps, progress,
    )  # fmt: skip
    return RescueResult(
        maps,
        result.images[..., 0].reshape(len(maps), n, 28, 28),
        result.loss.reshape(len(maps), n),
        time.perf_counter() - t0,
    )


def data_maxima(layer_output: np.ndarray) -> np.ndarray:
    """(n_maps,) each map's largest value over the probe images and positions."""
    return layer_output.reshape(-1, layer_output.shape[-1]).max(axis=0)


def census(
    n_maps: int,
    from_noise: np.ndarray,
    from_precursor: np.ndarray,
    from_rescue: np.ndarray,
    maxima: np.ndarray,
) -> tuple[np.ndarray, dict[str, int]]:
    """(cause index per map, counts per cause), causes as in `CAUSES`.

    Args:
        from_noise, from_precursor, from_rescue: indices of the maps each method found.
        maxima: (n_maps,) from `data_maxima`.
    """
    cause = np.where(maxima > 0, CAUSES.index("responds_to_digits"), CAUSES.index("dead_on_data"))
    for name, found in (
        ("from_rescue", from_rescue),
        ("from_precursor", from_precursor),
        ("from_noise", from_noise),
    ):
        cause[np.asarray(found, dtype=np.int64)] = CAUSES.index(name)
    counts = {name: int((cause == k).sum()) for k, name in enumerate(CAUSES)}
    assert sum(counts.values()) == n_maps
    return cause, counts


class CensusMetrics(Record):
    """A seed's precursor search, rescue and census by cause (`artifacts/precursor/seed_N/
    metrics.json`): the search's numbers (`PrecursorResult.metrics`), then one count per cause
    (`CAUSES`)."""

    FILE: ClassVar[str] = METRICS
    STAGE: ClassVar[str] = "precursor"
    WHAT: ClassVar[str] = "precursor census"

    seed: int
    layer: str
    n_maps_searched: int
    n_candidates: int
    found_among_searched: int
    variant_similarity_mean: float | None
    screen_seconds: float
    full_seconds: float
    pairs_ascended_in_screen: int
    from_noise: int
    from_precursor: int
    from_rescue: int
    responds_to_digits: int
    dead_on_data: int
    rescue_tried: int
    rescue_seconds: float

    def counts(self) -> dict[str, int]:
        """Maps per cause, in the order of `CAUSES`."""
        return {cause: getattr(self, cause) for cause in CAUSES}
