"""Training speed options on the real data: images/s and seconds to 99% test accuracy, each
configuration beside the articles' setting, in one run; plus MLflow's logging cost per epoch.

    python -m benchmarks.bench_train [--seed 0] [--epochs 5]
    # writes benchmarks/results/train.{json,md}; needs `dvc repro prepare` (data/prepared)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import default_config, model_cfg, timed, write_results
from oiplab.backend import seed_everything
from oiplab.config import TrainConfig
from oiplab.data import load_prepared
from oiplab.model import build_model
from oiplab.training import compile_model, epoch_order, train


def replace(cfg: TrainConfig, **changes) -> TrainConfig:
    return cfg.model_copy(update=changes)


def options(default: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """(label, settings): the articles' setting first, the naive reference for the ratio."""
    return [
        (
            "articles (batch 64, exp. decay)",
            replace(
                default,
                batch_size=64,
                learning_rate=0.01,
                lr_schedule="exponential",
                lr_decay_per_epoch=0.9,
                l2=1e-4,
            ),
        ),
        ("default (batch 128, cosine)", default),
        ("batch 256, lr 0.1", replace(default, batch_size=256, learning_rate=0.1)),
        ("batch 128, steps_per_execution 1", replace(default, steps_per_execution=1)),
        ("batch 128, XLA on", replace(default, jit_compile="on")),
        ("default, no weight snapshots", replace(default, trajectory_every=0)),
        ("default, former loop of one fit per epoch", default),
    ]


class _Clock:
    """Times each epoch's end (a Keras callback made on first use)."""

    def __init__(self):
        import keras

        self.ends: list[float] = []
        ends = self.ends

        class Clock(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                ends.append(time.perf_counter())

        self.callback = Clock()


def _result(data, cfg, history, start: float, ends: list[float]):
    seconds = ends[-1] - start
    hit = [i for i, acc in enumerate(history["val_accuracy"]) if acc >= 0.99]
    to_99 = ends[hit[0]] - start if hit else None
    return len(data.y_train) * cfg.epochs / seconds, to_99, history["val_accuracy"][-1], seconds


def measure(data, cfg: TrainConfig, save: str | None = None):
    """Train one seed as the pipeline does (epoch 1 with weight snapshots, then one `fit` for the
    rest; no checkpoint); return
    (images/s, seconds to 99% test accuracy or None, final accuracy, seconds)."""
    clock = _Clock()
    start = time.perf_counter()
    result = train(data, model_cfg(), cfg, None, callbacks=[clock.callback], verbose=0)
    if save:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        result.model.save(save)
    return _result(data, cfg, result.history, start, clock.ends)


def measure_per_epoch_fits(data, cfg: TrainConfig):
    """The former way, for the ratio: one `fit` per epoch on arrays in the epoch's order."""
    clock = _Clock()
    seed_everything(cfg.seed)
    model = build_model(model_cfg(), l2=cfg.l2)
    compile_model(model, cfg, n_train=len(data.y_train))
    history: dict[str, list[float]] = {}
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        order = epoch_order(cfg.seed, epoch, len(data.y_train))
        found = model.fit(
            data.x_train[order], data.y_train[order], batch_size=cfg.batch_size,
            epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0,
            validation_data=(data.x_test, data.y_test), callbacks=[clock.callback],
            validation_batch_size=cfg.eval_batch_size,
        )  # fmt: skip
        for key, values in found.history.items():
            history.setdefault(key, []).extend(values)
    return _result(data, cfg, history, start, clock.ends)


def mlflow_overhead(n_epochs: int = 50) -> float:
    """Milliseconds per epoch that logging one epoch's metrics costs (sqlite store)."""
    import mlflow

    from oiplab import tracking

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/bench.db")
        mlflow.set_experiment("bench")
        logs = {"loss": 0.1, "accuracy": 0.9, "val_loss": 0.1, "val_accuracy": 0.9}
        with mlflow.start_run() as active:
            run = tracking.TrackedRun(active)
            _, seconds = timed(lambda: [run.log_metrics(logs, step=e) for e in range(n_epochs)])
    return seconds / n_epochs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    default = default_config().train
    parser.add_argument("--epochs", type=int, default=default.epochs)
    parser.add_argument("--only", nargs="*", help="labels to run (default: all)")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the logging overhead")
    parser.add_argument("--save-model", help="save the first setting's first-seed model here")
    args = parser.parse_args()
    data = load_prepared(args.prepared)
    rows = []
    reference = None
    for label, cfg in options(default):
        if args.only and label not in args.only:
            continue
        for seed in args.seeds:
            cfg = replace(cfg, seed=seed, epochs=args.epochs)
            save = args.save_model if not rows else None
            if "former loop" in label:
                ips, to_99, acc, seconds = measure_per_epoch_fits(data, cfg)
            else:
                ips, to_99, acc, seconds = measure(data, cfg, save)
            row = {
                "setting": label,
                "seed": seed,
                "images_per_s": ips,
                "seconds": seconds,
                "seconds_to_99pct": to_99,
                "final_test_accuracy": acc,
            }
            reference = reference or row
            row["speedup_images_per_s"] = ips / reference["images_per_s"]
            rows.append(row)
            print(row, flush=True)
    if not args.no_mlflow:
        ms = mlflow_overhead()
        epoch_s = float(np.mean([r["seconds"] for r in rows])) / args.epochs
        rows.append(
            {
                "setting": "MLflow logging, per epoch (sqlite)",
                "seconds": ms / 1000,
                "note": f"{ms / 1000 / epoch_s:.2%} of an epoch",
            }
        )
    path = write_results("train", rows, {"data": data.name, "epochs": args.epochs})
    print(path.read_text())


if __name__ == "__main__":
    main()
