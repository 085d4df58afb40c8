"""Stage `precursor`: coarse-pattern starts for the maps that got no OIP from noise (article X),
the warm-up rescue for those still without one, and a census of every map by cause.

dvc repro precursor                      # every seed of `seeds`, in one process (--each-seed)
python -m oiplab.stages.precursor train.seed=0 precursor.maps=[1,3,5]
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from oiplab import tracking
from oiplab.analysis.activations import layer_outputs, probe_model
from oiplab.checks import first_images
from oiplab.config import Config
from oiplab.data import load_image_target, load_prepared
from oiplab.io import staged
from oiplab.layout import Layout, OipFiles, PrecursorFiles, Stage
from oiplab.model import layer_shapes, load_model
from oiplab.oip.census import CensusMetrics, census, data_maxima
from oiplab.oip.precursor import SearchSettings, candidate_images, search, target_maps
from oiplab.oip.rescue import RescueSettings, preactivation_probe, rescue
from oiplab.oip.survey import ascent_settings, load_outcome
from oiplab.render.oip import save_precursor_figures
from oiplab.stages import record, stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Search the coarse candidates, rescue what is left, and give every map its cause."""
    lay, o, p, seed = Layout.of(cfg), cfg.oip, cfg.precursor, cfg.train.seed
    with tracking.stage_run(cfg, Stage.PRECURSOR, seed=seed) as run:
        noise = load_outcome(lay.oip_dir(seed) / OipFiles.arrays)
        layer_shape = layer_shapes(cfg.model)[o.layer]
        maps = target_maps(p.target, p.maps, noise, layer_shape[2])
        model, data = (
            load_model(lay.model_file(seed), cfg.model),
            load_prepared(lay.prepared, cfg.data),
        )
        target = load_image_target(lay.prepared) if o.standardize == "images" else None
        probe = probe_model(model, [o.layer])
        settings = replace(ascent_settings(o), chunk_size=p.chunk_size)
        found = search(
            probe,
            maps,
            candidate_images(p.grid, p.values, data.standardization, target),
            layer_shape,
            SearchSettings.of(p, settings),
        )
        still = found.map_index[~found.found]
        starts = noise["start_images"][..., None]
        linear = preactivation_probe(model, o.layer)
        rescuing = RescueSettings(settings, p.rescue_warmup_steps, tuple(p.rescue_halving_rungs))
        saved = rescue(probe, linear, still, starts, layer_shape, rescuing)
        probe_x = first_images(data.x_test, p.probe_images, "precursor.probe_images")
        outputs = layer_outputs(model, probe_x, [o.layer])[o.layer]
        cause, counts = census(
            layer_shape[2],
            from_noise=noise["map_index"][noise["found"]],
            from_precursor=found.map_index[found.found],
            from_rescue=saved.map_index[saved.found],
            maxima=data_maxima(outputs),
        )
        metrics = {"seed": seed, "layer": o.layer, **found.metrics(), **counts}
        metrics |= {"rescue_tried": len(still), "rescue_seconds": round(saved.seconds, 2)}
        metrics = CensusMetrics.model_validate(metrics).data()
        with staged(lay.precursor_dir(seed)) as (folder,):
            found.save(
                folder / PrecursorFiles.arrays,
                cause=cause,
                rescue_maps=saved.map_index,
                rescue_images=saved.images,
                rescue_loss=saved.loss,
            )
            save_precursor_figures(folder, found, saved, seed, o.layer)
            record(run, folder, metrics, "precursor")
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    log.info("seed %s: %s", seed, shown)
    return metrics


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, per_seed=True, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
