"""Stage `alignment`: when during training does the correspondence between seeds set in, and when
is each network's own map order decided? (the comparison at every kept snapshot of the weights)

dvc repro alignment
python -m oiplab.stages.alignment alignment.layers=[Conv2D_3]
"""

from __future__ import annotations

import logging
import math
from typing import Any

from oiplab import tracking
from oiplab.checks import first_images
from oiplab.compare.dynamics import (
    AlignmentRecords,
    AlignmentSettings,
    TrainingSnapshots,
    alignment_over_training,
)
from oiplab.compare.study import untrained_networks
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import staged
from oiplab.layout import AlignmentFiles, Layout, Stage, TrainFiles
from oiplab.model import build_model
from oiplab.render import save_figure
from oiplab.render.compare import alignment_figure
from oiplab.stages import keep_figures, record, stage_main
from oiplab.training import Trajectory

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Compare the seeds' networks at every snapshot of their training."""
    lay, a, c = Layout.of(cfg), cfg.alignment, cfg.compare
    with tracking.stage_run(cfg, Stage.ALIGNMENT) as run:
        data = load_prepared(lay.prepared, cfg.data)
        paths = {s: lay.model_dir(s) / TrainFiles.trajectory for s in cfg.seeds}
        trajectories = {s: Trajectory.load_checked(p) for s, p in paths.items()}
        steps = Trajectory.common_steps(trajectories)
        per_epoch = math.ceil(data.meta.n_train / cfg.train.batch_size)
        log.info(f"{len(cfg.seeds)} seeds x {len(steps)} snapshots, layers {a.layers}")
        nulls = untrained_networks(cfg.model, c)
        kept = TrainingSnapshots({s: t.weights for s, t in trajectories.items()}, steps, per_epoch)
        result = alignment_over_training(
            build_model(cfg.model),
            snapshots=kept,
            nulls=nulls,
            probe_x=first_images(data.x_test, a.probe_images, "alignment.probe_images"),
            settings=AlignmentSettings.of(a, c),
        )
        records = result.records()
        stored = AlignmentRecords.model_validate(records)
        with staged(lay.alignment_dir(), lay.figures_dir(Stage.ALIGNMENT)) as (folder, figures):
            stored.save(folder)
            for layer in a.layers:
                fig = alignment_figure(layer, records, per_epoch)
                save_figure(fig, folder / AlignmentFiles.figure(layer), dpi=90)
            keep_figures(folder, figures, [AlignmentFiles.figure(layer) for layer in a.layers])
            record(run, folder, {"snapshots": len(steps)}, "alignment")
    return {"snapshots": len(steps), "records": len(records)}


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
