"""Stage `train_split`: one network of the seed-split design, sharing the shared seed's
initialization (`same_init`) or its image order (`same_order`) and owning the other.

dvc repro train_split     # every design x member of `conf/split/` (dvc.yaml's matrix)
python -m oiplab.stages.train_split split.design=same_order train.seed=2
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from oiplab import tracking
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import staged
from oiplab.layout import Layout, Stage, TrainFiles
from oiplab.logs import keras_verbosity
from oiplab.stages import log_data, record_training, stage_main
from oiplab.training import (
    Checkpointing,
    History,
    TrainMetrics,
    checkpoint_fingerprint,
    split_member,
    train,
)

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Train member `cfg.train.seed` of design `cfg.split.design`; write its model folder."""
    lay, sp = Layout.of(cfg), cfg.split
    settings = split_member(cfg.train, sp.design, cfg.seeds[0], cfg.train.seed)
    member = settings.seed
    with tracking.stage_run(cfg, Stage.TRAIN_SPLIT, seed=member) as run:
        data = load_prepared(lay.prepared, cfg.data)
        fingerprint = checkpoint_fingerprint(cfg.model, settings, data.meta.sha256["train"])
        checkpoint = lay.checkpoint(member, fingerprint)
        callbacks = [run.epoch_logger()] if run.enabled else []
        saving = Checkpointing(checkpoint, fingerprint, run.run_id)
        result = train(data, cfg.model, settings, saving, callbacks, keras_verbosity())
        if result.resumed_from is not None:
            run.continue_from(result.resumed_from)
        log_data(run, data, lay.prepared, {"train": "training", "test": "testing"})
        out = lay.split_model_dir(sp.design, member)
        with staged(out) as (folder,):
            result.model.save(folder / TrainFiles.model)
            History(curves=result.history).save(folder)
            numbers = TrainMetrics.model_validate(result.metrics).data()
            record_training(run, folder, numbers, f"{data.name}-test")
        shutil.rmtree(checkpoint, ignore_errors=True)  # the saved model supersedes it
    accuracy = result.metrics["test_accuracy"]
    log.info(f"{sp.design} seed {member}: test accuracy {accuracy:.4f}")
    return result.metrics


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
