"""Study `width`: does width change the answer? One job trains `seeds` at one `model.width` and
compares them as the `compare` stage does; at the sweep's end, every width's statistics are
gathered into metrics/width.json, figures and the report's section.

oiplab run width -m experiment=width_cpu                  # widths 0.25-2, 3 seeds, local processes
oiplab run width -m experiment=width_gpu hydra/launcher=slurm hydra.launcher.partition=gpu

Not a DVC stage: a Hydra sweep (each width is one job, in its own folder widths/<study>/w<width>;
a width already computed with the same settings is skipped), outside the default `dvc repro`.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from oiplab import tracking
from oiplab.compare.study import compare_networks, comparison_images, untrained_networks
from oiplab.compare.width import (
    WidthRecords,
    WidthResult,
    is_done,
    load_widths,
    settings_digest,
    trend_note,
    width_metrics,
    width_records,
)
from oiplab.config import Config, to_typed
from oiplab.data import PreparedData, load_prepared
from oiplab.io import staged, write_json
from oiplab.layout import Layout, TrainFiles
from oiplab.model import build_model
from oiplab.render.width import save_width_figures
from oiplab.stages import record, stage_main
from oiplab.tracking.sweep import log_to_execution
from oiplab.training import Checkpointing, TrainMetrics, TrainResult, checkpoint_fingerprint, train

log = logging.getLogger(__name__)
STUDY = "width"


def run(cfg: Config) -> dict[str, Any]:
    """Train and compare the seeds of one width, unless that width is already done."""
    lay, width = Layout.of(cfg), cfg.model.width
    folder, digest = lay.width_dir(cfg.study, width), settings_digest(cfg)
    if is_done(folder, width, digest):
        log.info(
            "%g: already computed with these settings (%s) in %s: skipped",
            width,
            digest,
            folder,
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
        "%g seed %d: test accuracy %.4f",
        cfg.model.width,
        seed,
        result.metrics["test_accuracy"],
    )
    return result


def summarize(cfg: Config, execution: str | None = None) -> dict[str, Any]:
    """Gather every finished width of `cfg.study` (computed with `cfg`'s settings) into the
    metrics file, the rows the report reads and one figure per statistic; log the figures to the
    parent MLflow run of `execution` (the sweep), where there is one."""
    lay = Layout.of(cfg)
    points, left_out = load_widths(lay.width_study_dir(cfg.study), settings_digest(cfg))
    for name in left_out:
        log.info("left out of the summary: %s", name)
    rows, metrics = width_records(points), width_metrics(points)
    write_json(lay.width_metrics(), metrics)
    write_json(lay.width_records(), WidthRecords.model_validate(rows).data())
    figures = lay.width_summary_dir()
    shutil.rmtree(figures, ignore_errors=True)
    save_width_figures(figures, rows)
    note = trend_note(rows)
    if execution is not None:
        log_to_execution(cfg, execution, figures, note)
    log.info("%d widths summarized -> %s; %s", len(points), lay.width_metrics(), note)
    return metrics


class WidthSummary(Callback):
    """Hydra callback of the width presets (`conf/experiment/width_*.yaml`): at the end of the
    sweep, `summarize` the study's widths, also when some jobs failed (the `SweepReport` callback
    then lists those and ends the sweep with exit 2, after this one)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from oiplab.errors import OiplabError

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from omegaconf import OmegaConf

        # the job's keys only: `hydra.sweep.subdir` names a job, and there is none at the end
        cfg = to_typed(OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"]))
        execution = f"sweep:{Path(config.hydra.sweep.dir).resolve()}"
        try:
            summarize(cfg, execution)
        except OiplabError as exc:
            log.error("no summary: %s", exc)


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
