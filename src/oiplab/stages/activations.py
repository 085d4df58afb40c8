"""Stage `activations`: every layer's maps for the selected images of one seed, their grids, and the
patterns common to a group (FCPs), with within- vs across-group overlaps.

    dvc repro activations        # every seed of `seeds`, in one process (--each-seed)
    python -m oiplab.stages.activations train.seed=0 activations.standardize_maps=true
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from oiplab import tracking
from oiplab.analysis.activations import layer_outputs
from oiplab.analysis.patterns import PatternSummary, group_patterns, selected_rows
from oiplab.analysis.selection import Selection
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import staged
from oiplab.layout import ActivationsFiles, Layout, Stage
from oiplab.model import load_model
from oiplab.render.maps import save_activation_figures
from oiplab.stages import record, stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Dump, draw and compare the selected images' layer outputs for seed `cfg.train.seed`."""
    lay, a, seed = Layout.of(cfg), cfg.activations, cfg.train.seed
    with tracking.stage_run(cfg, Stage.ACTIVATIONS, seed=seed) as run:
        selection = Selection.load_from(lay.selection())
        data = load_prepared(lay.prepared, cfg.data)
        model = load_model(lay.model_file(seed), cfg.model)
        rows = selected_rows(selection.groups)
        images = data.x_test[rows[0]]
        outputs = layer_outputs(model, images, a.layers)
        c = a.common
        patterns = group_patterns(outputs, rows[2], c.layers, c.comparisons, c.threshold)
        summary = PatternSummary(seed=seed, n_images=len(rows[0]), common=patterns[0])
        metrics = summary.data()
        with staged(lay.activations_dir(seed)) as (folder,):
            dump: dict[str, Any] = {
                "image_indices": np.asarray(rows[0]),
                "groups": np.asarray(rows[1]),
                "layer_names": np.asarray(a.layers),
                **outputs,
            }
            np.savez(folder / ActivationsFiles.dump, **dump)
            images01 = data.standardization.invert(images[..., 0])
            save_activation_figures(folder, seed, images01, outputs, rows, data.y_test, patterns, a)
            record(run, folder, metrics, "activations")
    for layer, by_cmp in patterns[0].items():
        for cmp, r in by_cmp.items():
            log.info(
                f"seed {seed} {layer} {cmp}: {r['n_common']} common, "
                f"{r['n_distinct']} distinct, Jaccard within {r['jaccard_within']:.3f} "
                f"across {r['jaccard_across']:.3f}"
            )
    return metrics


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, per_seed=True, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
