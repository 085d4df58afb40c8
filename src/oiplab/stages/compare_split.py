"""Stage `compare_split`: does a shared initialization, or a shared image order, keep the order of
the maps? Compares the networks of one seed-split design (`conf/split/`) the way `compare` compares
the seeds: the shared seed's own network and the design's members, against untrained networks.

dvc repro compare_split      # both designs (fanned out by dvc.yaml's foreach)
python -m oiplab.stages.compare_split --params params.yaml split.design=same_order
"""

from __future__ import annotations

import logging
from typing import Any

from oiplab import tracking
from oiplab.compare.study import compare_networks, comparison_images, untrained_networks
from oiplab.compare.summary import summary_numbers
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import staged
from oiplab.layout import Layout, Stage, TrainFiles
from oiplab.model import load_model
from oiplab.stages import record, stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Compare the networks of design `cfg.split.design`; write its `Answer`."""
    lay, c, sp = Layout.of(cfg), cfg.compare, cfg.split
    with tracking.stage_run(cfg, Stage.COMPARE_SPLIT) as run:
        probe_x, eval_sets = comparison_images(load_prepared(lay.prepared, cfg.data), c)
        shared = cfg.seeds[0]  # its own network is the design's shared member
        models = {shared: load_model(lay.model_file(shared), cfg.model)}
        for member in sp.members:
            models[member] = load_model(
                lay.split_model_dir(sp.design, member) / TrainFiles.model, cfg.model
            )
        nulls = untrained_networks(cfg.model, c)
        result = compare_networks(models, nulls, probe_x, eval_sets, c)
        answer = result.answer().model_copy(update={"design": sp.design})
        numbers = summary_numbers(answer.layers)
        with staged(lay.split_compare_dir(sp.design)) as (folder,):
            answer.save(folder)
            run.set_tags({"oiplab.design": sp.design})
            run.describe(f"**{sp.design}**: {result.verdict}")
            record(run, folder, numbers, "compare_split")
    log.info("%s: %s", sp.design, result.verdict)
    return numbers


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
