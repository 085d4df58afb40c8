"""Stage `compare_split`: does a shared initialization, or a shared image order, keep the order of
the maps? Compares the networks of one seed-split design (`conf/split/`) the way `compare` compares
the seeds: the shared seed's own network and the design's members, against untrained networks.

dvc repro compare_split      # both designs, in one process (--each-design)
python -m oiplab.stages.compare_split --params params.yaml split.design=same_order

With `--each-design` the designs' common inputs (the probe and evaluation images, the shared
seed's network, and the untrained side: the null networks' outputs, pairs, thresholds and fits)
are read and measured once, by the first design; each design still has its own MLflow run and
output folder, with the numbers of a design run alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oiplab import tracking
from oiplab.compare.study import (
    UntrainedSide,
    compare_networks,
    comparison_images,
    measure_untrained,
    untrained_networks,
)
from oiplab.compare.summary import summary_numbers
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import staged
from oiplab.layout import Layout, PreparedFiles, Stage, TrainFiles
from oiplab.model import load_model
from oiplab.stages import record, stage_main

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedInputs:
    """What every design of one process compares against: the same for each design."""

    key: str  # the settings and paths it was made from
    probe_x: np.ndarray  # (n, 28, 28, 1) standardized probe images
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]]
    shared_model: Any  # the shared seed's own network (keras.Model)
    untrained: UntrainedSide


# The last design's shared inputs, for the next design of the same process (`--each-design`).
_LAST: list[SharedInputs] = []


def shared_inputs(cfg: Config) -> SharedInputs:
    """The designs' common inputs: made for the first design, reused while the settings and
    paths they come from are the same."""
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


def run(cfg: Config) -> dict[str, Any]:
    """Compare the networks of design `cfg.split.design`; write its `Answer`."""
    lay, c, sp = Layout.of(cfg), cfg.compare, cfg.split
    with tracking.stage_run(cfg, Stage.COMPARE_SPLIT) as run:
        common = shared_inputs(cfg)
        models = {cfg.seeds[0]: common.shared_model}  # its own network is the shared member
        for member in sp.members:
            models[member] = load_model(
                lay.split_model_dir(sp.design, member) / TrainFiles.model, cfg.model
            )
        result = compare_networks(models, common.untrained, common.probe_x, common.eval_sets, c)
        answer = result.answer().model_copy(update={"design": sp.design})
        numbers = summary_numbers(answer.layers)
        with staged(lay.split_compare_dir(sp.design)) as (folder,):
            answer.save(folder)
            run.set_tags({"oiplab.design": sp.design})
            verdicts = "\n".join(f"- {a.verdict}" for a in answer.layers.values())
            run.describe(f"## Seed-split design `{sp.design}`, per layer\n\n{verdicts}")
            record(run, folder, numbers, "compare_split")
    log.info("%s: %s", sp.design, result.verdict)
    return numbers


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, per_design=True, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
