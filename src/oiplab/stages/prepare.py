"""Stage `prepare`: read the data set offline, verify it is canonical, store it with its statistics.

dvc repro prepare
python -m oiplab.stages.prepare data=fashion_mnist      # as a Hydra app
"""

from __future__ import annotations

import logging
from typing import Any

from oiplab import tracking
from oiplab.config import Config
from oiplab.data import read_dataset, save_prepared
from oiplab.io import staged
from oiplab.layout import Layout, PreparedFiles, Stage
from oiplab.stages import stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Produce the prepared folder (train.npz, test.npz, meta.json); return its metadata."""
    lay, d = Layout.of(cfg), cfg.data
    with tracking.stage_run(cfg, Stage.PREPARE) as run:
        raw, digests, class_names, checked = read_dataset(d, cfg.model.n_classes)
        log.info(
            f"{d.name}: {len(raw.y_train)} train / {len(raw.y_test)} test images from "
            f"{raw.origin}; {checked}"
        )
        with staged(lay.prepared) as (folder,):
            meta = save_prepared(folder, d.name, raw, digests, class_names)
            stats = meta.standardization
            run.log_results(
                {"n_train": meta.n_train, "n_test": meta.n_test}
                | {"pixel_mean": stats.mean, "pixel_std": stats.std}
            )
            run.log_json(meta.data(), f"prepared/{PreparedFiles.meta}")
            for split, x, y in (
                ("train", raw.x_train, raw.y_train),
                ("test", raw.x_test, raw.y_test),
            ):
                run.log_dataset((x, y), f"{d.name}-{split}", digests[split], raw.origin, split)
    log.info(f"wrote {lay.prepared} (mean {stats.mean:.4f}, std {stats.std:.4f})")
    return meta.data()


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
