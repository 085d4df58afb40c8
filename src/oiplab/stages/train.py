"""Stage `train`: train the articles' CNN for one seed, deterministically.

dvc repro train              # every seed in `seeds` (fanned out by dvc.yaml's matrix)
python -m oiplab.stages.train -m train.seed=0,1,2 hydra/launcher=joblib
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
from oiplab.render.training import save_training_figures
from oiplab.stages import record, stage_main
from oiplab.training import Checkpointing, History, TrainMetrics, checkpoint_fingerprint, train

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Train seed `cfg.train.seed`; write its model folder and metrics file."""
    lay, seed = Layout.of(cfg), cfg.train.seed
    with tracking.stage_run(cfg, Stage.TRAIN, seed=seed) as run:
        data = load_prepared(lay.prepared, cfg.data)
        fingerprint = checkpoint_fingerprint(cfg.model, cfg.train, data.meta.sha256["train"])
        checkpoint = lay.checkpoint(seed, fingerprint)
        callbacks = [run.epoch_logger()] if run.enabled else []
        saving = Checkpointing(checkpoint, fingerprint, run.run_id)
        result = train(data, cfg.model, cfg.train, saving, callbacks, keras_verbosity())
        if result.resumed_from is not None:
            run.continue_from(result.resumed_from)
        run.log_dataset(
            (data.x_train, data.y_train),
            f"{data.name}-train",
            data.meta.sha256["train"],
            str(lay.prepared),
            "training",
        )
        out = lay.model_dir(seed)
        with staged(out) as (folder,):
            result.model.save(folder / TrainFiles.model)
            result.trajectory.save(folder / TrainFiles.trajectory)
            History(curves=result.history).save(folder)
            save_training_figures(folder, result, data.class_names)
            run.log_keras_model(result.model, data.x_test[:8], registered_name(cfg))
            record(run, folder, TrainMetrics.model_validate(result.metrics).data(), "outputs")
        shutil.rmtree(checkpoint, ignore_errors=True)  # the saved model supersedes it
    m = result.metrics
    log.info(
        f"seed {seed}: test accuracy {m['test_accuracy']:.4f}, loss {m['test_loss']:.4f}, "
        f"{m['train_seconds']:.1f} s -> {out}"
    )
    return m


def registered_name(cfg: Config) -> str | None:
    """The registered model a trained network becomes a version of: one per data set and study
    (`oiplab-mnist-default-cnn`), so a smoke run never adds versions to the study's model; a
    Hydra sweep's jobs register nothing (they explore settings; their runs keep the models)."""
    found = tracking.execution()
    if found is not None and found[0].startswith("sweep:"):
        return None
    return f"oiplab-{cfg.data.name}-{cfg.study}-cnn"


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, per_seed=True, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
