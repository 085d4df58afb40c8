"""Why a map has an OIP, or why not: every map of the layer gets exactly one cause.

In order: an OIP from the noise starts (the survey); from a coarse precursor (article X's
search); from the rescue (warm-up on the pre-activation, `oip.rescue`); none of those, yet the map
responds to some real digit of the probe set; or dead on data (never positive on the probe set),
which no input pattern from the data's world is likely to wake.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from oiplab.io import Record
from oiplab.layout import METRICS

CAUSES = ("from_noise", "from_precursor", "from_rescue", "responds_to_digits", "dead_on_data")
# What the report and the census figure call each cause. A map counts under the first cause that
# applies, in the order of CAUSES: a map silent on the digits whose OIP the precursor or the rescue
# found counts there, so the last is not "every map dead on the data" (the comparison's dead maps
# are more), and its name says which maps it holds.
CAUSE_NAMES = {
    "from_noise": "OIP from noise",
    "from_precursor": "OIP from the precursor",
    "from_rescue": "OIP from the rescue",
    "responds_to_digits": "no OIP found, responds to digits",
    "dead_on_data": "no OIP found, silent on every probe digit",
}


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
