"""Stage `select_images`: choose the test images of each group from all seeds' predictions.

dvc repro select_images
"""

from __future__ import annotations

import logging
from typing import Any

from oiplab import tracking
from oiplab.analysis.selection import Selection, seed_logits, select_groups
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import staged
from oiplab.layout import Layout, Stage
from oiplab.model import load_model
from oiplab.stages import stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Write the selection file: each group's test indices, scores and per-seed predictions."""
    lay = Layout.of(cfg)
    with tracking.stage_run(cfg, Stage.SELECT_IMAGES) as run:
        data = load_prepared(lay.prepared, cfg.data)
        models = [load_model(lay.model_file(s), cfg.model) for s in cfg.seeds]
        logits = seed_logits(models, data.x_test, cfg.train.eval_batch_size)
        groups = select_groups(cfg.activations.groups, logits, data.y_test, list(cfg.seeds))
        selection = Selection.model_validate({"seeds": list(cfg.seeds), "groups": groups})
        with staged(lay.selection()) as (tmp,):
            selection.save_to(tmp)
            run.log_json(selection.data(), lay.selection().name)
    for g in groups:
        log.info("%s: test images %s", g["name"], g["indices"])
    return selection.data()


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
