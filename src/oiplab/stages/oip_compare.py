"""Stage `oip_compare`: do matched maps of two seeds respond to each other's OIPs? And the picture
of the answer: one seed's OIP gallery beside the other's, re-ordered by the matching.

dvc repro oip_compare
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from oiplab import tracking
from oiplab.checks import first_images
from oiplab.compare.oip_response import (
    MatchedPairs,
    ResponseSettings,
    ResponseSummary,
    compare_oips,
    map_responses,
    oips_from_outcome,
    partners_from_details,
)
from oiplab.compare.summary import Answer
from oiplab.config import Config, ConfigError
from oiplab.data import load_prepared
from oiplab.io import staged, to_json
from oiplab.layout import Layout, OipCompareFiles, OipFiles, Stage
from oiplab.model import layer_shapes, load_model
from oiplab.oip.survey import load_outcome
from oiplab.render import save_figure
from oiplab.render.oip import SeedOips, paired_galleries_figure
from oiplab.stages import record, stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Feed each seed's OIPs into every other seed; draw the first pair's galleries side by side."""
    lay, layer, seeds = Layout.of(cfg), cfg.oip.layer, list(cfg.seeds)
    with tracking.stage_run(cfg, Stage.OIP_COMPARE) as run:
        if layer not in cfg.compare.layers:
            raise ConfigError(f"config key 'oip.layer': {layer} must be in compare.layers")
        details = MatchedPairs.load(lay.compare_dir())
        threshold = Answer.load(lay.compare_dir()).layers[layer].threshold
        pairs = partners_from_details(details, layer, threshold)
        n_maps = layer_shapes(cfg.model)[layer][2]
        oips = {
            s: oips_from_outcome(load_outcome(lay.oip_dir(s) / OipFiles.arrays), n_maps)
            for s in seeds
        }
        models = {s: load_model(lay.model_file(s), cfg.model) for s in seeds}
        x_test = load_prepared(lay.prepared, cfg.data).x_test
        probe = first_images(x_test, cfg.compare.probe_images, "compare.probe_images")
        typical = {s: map_responses(m, layer, probe).mean(axis=0) for s, m in models.items()}
        c = cfg.compare
        settings = ResponseSettings(c.bootstrap_seed, c.bootstrap_draws)
        result = compare_oips(models, layer, oips, typical, pairs, settings)
        a, b = seeds[0], seeds[1]
        found = {s: np.asarray(o["found"].any(axis=1)) for s, o in oips.items()}
        with staged(lay.oip_compare_dir()) as (folder,):
            fig = paired_galleries_figure(
                SeedOips(a, oips[a]["best"], found[a]),
                SeedOips(b, oips[b]["best"], found[b]),
                partner=pairs[(a, b)]["partner"],
                partnered=pairs[(a, b)]["partnered"],
                layer=layer,
            )
            save_figure(fig, folder / OipCompareFiles.galleries(a, b), dpi=110)
            (folder / OipCompareFiles.pairs).write_text(to_json(result["pairs"]))
            summary = ResponseSummary.model_validate(result["summary"])
            record(run, folder, summary.data(), "oip_compare")
    s = result["summary"].get("all", {})
    if s:
        log.info(
            f"partner drives hardest (top-1) {s['top1']:.0%} vs random partner "
            f"{s['top1_random']:.0%} and chance {s['top1_chance']:.1%}; top-5 {s['top5']:.0%}"
        )
    return result["summary"]


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
