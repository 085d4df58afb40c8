"""Stage `oip`: for every map of a layer and several starts, the input pattern that drives it.

dvc repro oip                               # every seed of `seeds`, in one process (--each-seed)
python -m oiplab.stages.oip train.seed=0 oip.maps=[120] oip.n_starts=16 oip.start_kind=dark
python -m oiplab.stages.oip train.seed=0 oip.n_starts=1 oip.halving_after=0 oip.wake_steps=100
"""

from __future__ import annotations

import logging
from typing import Any

from oiplab import tracking
from oiplab.config import Config
from oiplab.data import load_image_target, load_prepared
from oiplab.io import staged
from oiplab.layout import Layout, OipFiles, Stage
from oiplab.model import layer_shapes, load_model
from oiplab.oip.survey import SurveyMetrics, starts_for, survey
from oiplab.render.oip import save_survey_figures
from oiplab.stages import record, stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Ascend every (map, start) of `cfg.oip.layer` for seed `cfg.train.seed` in one batch."""
    lay, o, seed = Layout.of(cfg), cfg.oip, cfg.train.seed
    with tracking.stage_run(cfg, Stage.OIP, seed=seed) as run:
        model = load_model(lay.model_file(seed), cfg.model)
        data = load_prepared(lay.prepared, cfg.data)
        starts = starts_for(o, data.standardization, load_image_target(lay.prepared), data.x_test)
        shape = layer_shapes(cfg.model)[o.layer]
        log.info(f"seed {seed}: {o.layer}, {len(o.maps) or shape[2]} maps x {o.n_starts} starts")
        found = survey(model, o, shape, starts)
        summary = SurveyMetrics.model_validate({"seed": seed, "layer": o.layer, **found.metrics()})
        metrics = summary.data()
        with staged(lay.oip_dir(seed)) as (folder,):
            found.save(folder / OipFiles.arrays)
            save_survey_figures(folder, found, seed, o)
            record(run, folder, metrics, "oip")
    log.info(
        f"seed {seed}: {metrics['n_with_oip']} of {metrics['n_maps']} maps gave an OIP, "
        f"{metrics['n_silent']} silent from every start ({metrics['seconds']:.1f} s)"
    )
    return metrics


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, per_seed=True, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
