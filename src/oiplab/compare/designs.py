"""What the seed-split designs of one process share: measured by the first design, reused by the
next (`python -m oiplab.stages.compare_split --each-design`).

Every design compares its members with the shared seed's own network on the same probe and
evaluation images, against the same untrained side (`study.UntrainedSide`); only the members
differ. `shared_inputs` makes these once and hands them out again while the files and settings
they come from are unchanged, so each design's numbers are those of the design run alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oiplab.compare.study import (
    UntrainedSide,
    comparison_images,
    measure_untrained,
    untrained_networks,
)
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.layout import Layout, PreparedFiles
from oiplab.model import load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedInputs:
    """What every design of one process compares against: the same for each design."""

    key: str  # the settings and paths it was made from
    probe_x: np.ndarray  # (n, 28, 28, 1) standardized probe images
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]]
    shared_model: Any  # the shared seed's own network (keras.Model)
    untrained: UntrainedSide


# The last design's shared inputs, for the next design of the same process.
_LAST: list[SharedInputs] = []


def shared_inputs(cfg: Config) -> SharedInputs:
    """The designs' common inputs: made for the first design, reused while the settings and
    files they come from are the same."""
    lay, shared = Layout.of(cfg), cfg.seeds[0]
    files = [lay.model_file(shared), *(lay.prepared_file(f) for f in PreparedFiles.splits.values())]
    key = json.dumps(
        [_identity(f) for f in files]
        + [s.model_dump(mode="json") for s in (cfg.data, cfg.model, cfg.compare)]
    )
    if _LAST and _LAST[0].key == key:
        log.info("reusing the images, seed %d's network and the untrained side", shared)
        return _LAST[0]
    probe_x, eval_sets = comparison_images(load_prepared(lay.prepared, cfg.data), cfg.compare)
    model = load_model(lay.model_file(shared), cfg.model)
    nulls = untrained_networks(cfg.model, cfg.compare)
    found = SharedInputs(
        key, probe_x, eval_sets, model, measure_untrained(nulls, probe_x, cfg.compare)
    )
    _LAST[:] = [found]
    return found


def _identity(path: Path) -> list[Any]:
    """A file's path and version (a file rewritten in the same process is another input)."""
    if not path.is_file():
        return [str(path.resolve()), None]
    st = path.stat()
    return [str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns]
