"""Study `width`: does width change the answer? One job trains `seeds` at one `model.width` and
compares them as the `compare` stage does; at the sweep's end, every width's statistics are
gathered into metrics/width.json, figures and the report's section (`oiplab.width_summary`, the
sweep's Hydra callback).

oiplab run width -m experiment=width_cpu                  # widths 0.25-2, 3 seeds, local processes
oiplab run width -m experiment=width_gpu hydra/launcher=slurm hydra.launcher.partition=gpu

Not a DVC stage: a Hydra sweep (each width is one job, in its own folder widths/<study>/w<width>;
a width already computed with the same settings is skipped), outside the default `dvc repro`.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from oiplab import tracking
from oiplab.compare.study import compare_networks, comparison_images, untrained_networks
from oiplab.compare.width import (
    WidthResult,
    is_done,
    settings_digest,
)
from oiplab.config import Config
from oiplab.data import PreparedData, load_prepared
from oiplab.io import staged
from oiplab.layout import Layout, TrainFiles
from oiplab.model import build_model
from oiplab.stages import record, stage_main
from oiplab.training import Checkpointing, TrainMetrics, TrainResult, checkpoint_fingerprint, train

log = logging.getLogger(__name__)
STUDY = "width"


def run(cfg: Config) -> dict[str, Any]:
    """Train and compare the seeds of one width, unless that width is already done."""
    lay, width = Layout.of(cfg), cfg.model.width
    folder, digest = lay.width_dir(cfg.study, width), settings_digest(cfg)
    if is_done(folder, width, digest):
        log.info(
            "%g: already computed with these settings (%s) in %s: skipped", width, digest, folder
        )
        return WidthResult.load(folder).model_dump()
    with tracking.stage_run(cfg, STUDY) as run:
        data = load_prepared(lay.prepared, cfg.data)
        trained = {seed: _train_seed(cfg, data, seed, run) for seed in cfg.seeds}
        models = {seed: t.model for seed, t in trained.items()}
        probe_x, eval_sets = comparison_images(data, cfg.compare)
        nulls = untrained_networks(cfg.model, cfg.compare)
        result = compare_networks(models, nulls, probe_x, eval_sets, cfg.compare, log.info)
        width_result = WidthResult(
            width=width,
            settings_digest=digest,
            n_params=build_model(cfg.model).count_params(),
            seeds=list(cfg.seeds),
            test_accuracy=[float(t.metrics["test_accuracy"]) for t in trained.values()],
            run_id=run.run_id if run.enabled else None,
        )
        with staged(folder) as (out,):
            for seed, t in trained.items():
                (out / f"seed_{seed}").mkdir(parents=True)
                t.model.save(out / f"seed_{seed}" / TrainFiles.model)
                TrainMetrics.model_validate(t.metrics).save(out / f"seed_{seed}")
            result.answer().save(out)
            numbers = {
                "width": width,
                "accuracy_mean": sum(width_result.test_accuracy) / len(cfg.seeds),
            }
            record(run, out, numbers, "width")
            width_result.save(out)  # last: the width's completion record
    log.info("%g: %s", width, result.verdict)
    return width_result.model_dump()


def _train_seed(cfg: Config, data: PreparedData, seed: int, run: tracking.Run) -> TrainResult:
    """Train one seed at this width with the pipeline's training (checkpointed: a killed job
    resumes where it stopped)."""
    train_cfg = cfg.train.model_copy(update={"seed": seed})
    fingerprint = checkpoint_fingerprint(cfg.model, train_cfg, data.meta.sha256["train"])
    checkpoint = Layout.of(cfg).checkpoint(seed, fingerprint)
    saving = Checkpointing(checkpoint, fingerprint, run.run_id if run.enabled else None)
    result = train(data, cfg.model, train_cfg, saving)
    shutil.rmtree(checkpoint, ignore_errors=True)  # the width's folder keeps the model
    log.info(
        "%g seed %d: test accuracy %.4f", cfg.model.width, seed, result.metrics["test_accuracy"]
    )
    return result


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
