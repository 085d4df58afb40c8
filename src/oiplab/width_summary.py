"""The width study's end: every finished width of a study gathered into metrics/width.json, the
rows the report reads and one figure per statistic, logged to the sweep's parent run. Run by the
width presets' Hydra callback (`conf/experiment/width_*.yaml`) when the sweep of
`oiplab.stages.width` ends."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from oiplab.compare.width import (
    WidthRecords,
    load_widths,
    settings_digest,
    trend_note,
    width_metrics,
    width_records,
)
from oiplab.config import Config, to_typed
from oiplab.io import write_json
from oiplab.layout import Layout
from oiplab.render.width import save_width_figures
from oiplab.tracking.sweep import log_to_execution

log = logging.getLogger("oiplab.stages.width")  # its lines read as the width study's


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
