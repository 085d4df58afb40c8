"""Stage `prepare`: read the data set offline, verify it is canonical, store it with its statistics.

dvc repro prepare
python -m oiplab.stages.prepare data=fashion_mnist      # as a Hydra app
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from oiplab import tracking
from oiplab.config import Config
from oiplab.data import SPECS, load_verified, make_synthetic, save_prepared
from oiplab.data.prepared import META_FILE
from oiplab.data.registry import content_sha256
from oiplab.stages import stage_main


def run(cfg: Config) -> dict[str, Any]:
    """Produce `cfg.paths.prepared` (train.npz, test.npz, meta.json); return its metadata."""
    d = cfg.data
    start = time.perf_counter()
    if d.name == "synthetic":
        raw = make_synthetic(d.n_train, d.n_test, d.synthetic_seed, cfg.model.n_classes)
        digests = {
            "train": content_sha256(raw.x_train, raw.y_train),
            "test": content_sha256(raw.x_test, raw.y_test),
        }
        class_names = tuple(str(c) for c in range(cfg.model.n_classes))
        checked = "generated"
    else:
        raw, digests = load_verified(d.name, d.source, d.idx_dir, d.allow_download)
        class_names = SPECS[d.name].class_names
        checked = "content verified"
    print(
        f"[prepare] {d.name}: {len(raw.y_train)} train / {len(raw.y_test)} test images from "
        f"{raw.origin}; {checked}",
        flush=True,
    )
    meta = save_prepared(cfg.paths.prepared, d.name, raw, digests, class_names)
    meta["seconds"] = round(time.perf_counter() - start, 2)
    with tracking.stage_run(cfg, "prepare"):
        tracking.log_metrics(
            {
                "n_train": meta["n_train"],
                "n_test": meta["n_test"],
                "pixel_mean": meta["standardization"]["mean"],
                "pixel_std": meta["standardization"]["std"],
                "seconds": meta["seconds"],
            }
        )
        tracking.log_artifact(Path(cfg.paths.prepared) / META_FILE)
    print(
        f"[prepare] wrote {cfg.paths.prepared} (mean {meta['standardization']['mean']:.4f}, "
        f"std {meta['standardization']['std']:.4f})",
        flush=True,
    )
    return meta


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
