"""The training stage's rate beside a bare `model.fit` of the same model, optimizer, data and
batch: images/s (wall and per CPU-second), interleaved, several repeats, and their ratio.

    python -m benchmarks.train_rate [--epochs 2] [--repeats 3] [--precision float32 bfloat16]
    # writes benchmarks/results/train_rate.{json,md}; needs `dvc repro prepare` (data/prepared)

The bare fit: build, compile (`steps_per_execution` of conf/), one `fit` on arrays in one fixed
order, no validation, no callbacks. The stage: `oiplab.training.train` as the train stage calls it
(model build, every epoch's test-set validation, epoch-1 weight snapshots, per-epoch checkpoints,
the final test-set evaluation). "Tested" is the bare fit plus the test-set work the stage cannot
skip (each epoch's validation on the 10,000 test images feeds metrics/learning_curves.json; the
final predictions the confusion matrix): ~5.6% of an epoch's FLOPs per validation (a forward
pass is ~1/3 of a training step), so the stage cannot reach 0.95x the untested bare fit with the
default validation. The machine is shared: only ratios of neighbouring runs count,
and CPU seconds (all threads of this process) are steadier than wall seconds under load.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import default_config, write_results
from oiplab.backend import seed_everything
from oiplab.config import TrainConfig
from oiplab.data import load_prepared
from oiplab.model import build_model
from oiplab.training import Checkpointing, compile_model, epoch_order, train

try:
    from oiplab.training import precision_policy
except ImportError:  # code from before `train.precision` (measuring an older version)
    from contextlib import nullcontext as precision_policy  # type: ignore[assignment]

log = logging.getLogger(__name__)


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def bare_fit(data, cfg: TrainConfig, evaluate: bool = False) -> tuple[float, float]:
    """(wall s, CPU s) of a bare fit: the reference the stage is held to; with `evaluate`, plus
    the test-set work the stage must do (each epoch's validation, the final predictions)."""
    wall, cpu = _clocks()
    seed_everything(cfg.seed)
    with precision_policy(getattr(cfg, "precision", "float32")):
        model = build_model(default_config().model, l2=cfg.l2)
    compile_model(model, cfg, n_train=len(data.y_train))
    order = epoch_order(cfg.seed, 0, len(data.y_train))
    tested = {"validation_data": (data.x_test, data.y_test)} if evaluate else {}
    model.fit(
        data.x_train[order],
        data.y_train[order],
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        shuffle=False,
        verbose=0,
        validation_batch_size=cfg.eval_batch_size,
        **tested,
    )
    if evaluate:
        model.predict(data.x_test, batch_size=cfg.eval_batch_size, verbose=0)
    end_wall, end_cpu = _clocks()
    return end_wall - wall, end_cpu - cpu


def stage_fit(data, cfg: TrainConfig) -> tuple[float, float, float]:
    """(wall s, CPU s, test accuracy) of the train stage's `train` call, checkpoints included."""
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = _clocks()
        result = train(
            data, default_config().model, cfg, Checkpointing(Path(tmp) / "ckpt", "bench"), verbose=0
        )
        end_wall, end_cpu = _clocks()
    return end_wall - wall, end_cpu - cpu, result.metrics["test_accuracy"]


def measure(data, cfg: TrainConfig, repeats: int) -> list[dict]:
    """Bare fit and stage, interleaved `repeats` times; one row per repeat and kind."""
    images = len(data.y_train) * cfg.epochs
    rows = []
    for repeat in range(repeats):
        bare_wall, bare_cpu = bare_fit(data, cfg)
        wall, cpu, accuracy = stage_fit(data, cfg)
        tested_wall, tested_cpu = bare_fit(data, cfg, evaluate=True)
        row = {
            "precision": getattr(cfg, "precision", "float32"),
            "repeat": repeat,
            "bare_images_per_s": images / bare_wall,
            "bare_tested_images_per_s": images / tested_wall,
            "stage_images_per_s": images / wall,
            "ratio_wall": bare_wall / wall,
            "ratio_tested_wall": tested_wall / wall,
            "bare_images_per_cpu_s": images / bare_cpu,
            "stage_images_per_cpu_s": images / cpu,
            "ratio_cpu": bare_cpu / cpu,
            "ratio_tested_cpu": tested_cpu / cpu,
            "stage_test_accuracy": accuracy,
        }
        log.info("%s", row)
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """The medians over repeats of one precision (ratios: the median of per-repeat ratios)."""
    keys = [k for k in rows[0] if k not in ("precision", "repeat")]
    return {
        "precision": rows[0]["precision"],
        "repeat": "median",
        **{k: statistics.median(r[k] for r in rows) for k in keys},
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", nargs="+", default=["float32"])
    args = parser.parse_args()
    data = load_prepared(args.prepared)
    default = default_config().train
    rows: list[dict] = []
    for precision in args.precision:
        update = {"epochs": args.epochs}
        if precision != "float32":  # an older version's settings lack the key
            update["precision"] = precision
        cfg = default.model_copy(update=update)
        found = measure(data, cfg, args.repeats)
        rows += [*found, summary(found)]
    meta = {
        "data": data.name,
        "epochs": args.epochs,
        "batch_size": default.batch_size,
        "steps_per_execution": default.steps_per_execution,
        "goal": "stage >= 0.95x the bare fit's images/s",
    }
    path = write_results("train_rate", rows, meta)
    log.info("%s", path.read_text())


if __name__ == "__main__":
    main()
