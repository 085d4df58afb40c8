"""Stage `compare_split`: does a shared initialization, or a shared image order, keep the order of
the maps? Compares the networks of one seed-split design (`conf/split/`) the way `compare` compares
the seeds: the shared seed's own network and the design's members, against untrained networks.

dvc repro compare_split      # both designs, in one process (--each-design)
python -m oiplab.stages.compare_split --params params.yaml split.design=same_order

With `--each-design` the designs' common inputs (the probe and evaluation images, the shared
seed's network, and the untrained side: the null networks' outputs, pairs, thresholds and fits)
are read and measured once, by the first design (`oiplab.compare.designs`); each design still has
its own MLflow run and output folder, with the numbers of a design run alone.
"""

from __future__ import annotations

import logging
from typing import Any

from oiplab import tracking
from oiplab.compare.designs import shared_inputs
from oiplab.compare.study import compare_networks
from oiplab.compare.summary import summary_numbers
from oiplab.config import Config
from oiplab.io import staged
from oiplab.layout import Layout, Stage, TrainFiles
from oiplab.model import load_model
from oiplab.stages import record, stage_main

log = logging.getLogger(__name__)


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
            verdicts = "\n".join(f"- {a.verdict}" for a in answer.layers.values())
            run.describe(f"## Seed-split design `{sp.design}`, per layer\n\n{verdicts}")
            record(run, folder, numbers, "compare_split")
    log.info("%s: %s", sp.design, result.verdict)
    return numbers


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, per_design=True, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
