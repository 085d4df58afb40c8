"""Stage `train`: train the articles' CNN for one seed, deterministically.

dvc repro train              # every seed in `seeds` (fanned out by dvc.yaml's matrix)
python -m oiplab.stages.train -m train.seed=0,1,2 hydra/launcher=joblib
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from oiplab import tracking
from oiplab.backend import seed_everything
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import atomic_dir, write_json
from oiplab.model import build_model
from oiplab.render import save_figure
from oiplab.render.training import confusion_figure, history_figure
from oiplab.stages import stage_main
from oiplab.training import compile_model, confusion_matrix, evaluate, fit

MODEL_FILE = "model.keras"


def model_dir(cfg: Config, seed: int) -> Path:
    return Path(cfg.paths.models) / f"seed_{seed}"


def model_path(cfg: Config, seed: int) -> Path:
    return model_dir(cfg, seed) / MODEL_FILE


def metrics_path(cfg: Config, seed: int) -> Path:
    return Path(cfg.paths.metrics) / f"train_seed_{seed}.json"


def checkpoint_path(cfg: Config, seed: int, data_sha: str) -> Path:
    """Where seed `seed` keeps its per-epoch checkpoint; the name carries a fingerprint of the
    settings, so a checkpoint of other settings is never resumed."""
    settings = json.dumps([asdict(cfg.model), asdict(cfg.train), data_sha], sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
    return Path(cfg.paths.checkpoints) / f"train_seed_{seed}_{digest}.keras"


def run(cfg: Config) -> dict[str, Any]:
    """Train seed `cfg.train.seed`; write `models/seed_<n>/` and its metrics file."""
    seed = cfg.train.seed
    data = load_prepared(cfg.paths.prepared)
    seed_everything(seed)  # the initialization; each epoch's order comes from (seed, epoch)
    model = build_model(cfg.model, l2=cfg.train.l2)
    compile_model(model, cfg.train, n_train=len(data.y_train))
    print(
        f"[train] seed {seed}: {model.count_params():,} parameters, {len(data.y_train)} images, "
        f"{cfg.train.epochs} epochs of batch {cfg.train.batch_size}",
        flush=True,
    )

    checkpoint = checkpoint_path(cfg, seed, data.meta["sha256"]["train"])
    with tracking.stage_run(cfg, "train", seed=seed) as run_:
        start = time.perf_counter()
        model, history, epochs_run = fit(
            model,
            data.x_train,
            data.y_train,
            data.x_test,
            data.y_test,
            cfg.train,
            callbacks=[tracking.epoch_logger()] if run_ is not None else [],
            checkpoint=checkpoint,
        )
        train_seconds = time.perf_counter() - start
        result = evaluate(model, data.x_test, data.y_test, cfg.train.eval_batch_size)
        matrix = confusion_matrix(data.y_test, result["predicted"], cfg.model.n_classes)
        metrics = {
            "seed": seed,
            "test_accuracy": result["accuracy"],
            "test_loss": result["loss"],
            "train_seconds": round(train_seconds, 2),
            "images_per_second": round(epochs_run * len(data.y_train) / train_seconds, 1),
            "epochs": cfg.train.epochs,
            "n_params": int(model.count_params()),
        }
        out = model_dir(cfg, seed)
        with atomic_dir(out) as tmp:
            model.save(tmp / MODEL_FILE)
            write_json(tmp / "history.json", history)
            write_json(tmp / "metrics.json", metrics)
            save_figure(
                confusion_figure(
                    matrix,
                    data.class_names,
                    f"seed {seed}: test accuracy {metrics['test_accuracy']:.2%}",
                ),
                tmp / "confusion.png",
            )
            save_figure(history_figure(history, f"training, seed {seed}"), tmp / "history.png")
        write_json(metrics_path(cfg, seed), metrics)
        checkpoint.unlink(missing_ok=True)  # the finished model supersedes it
        checkpoint.with_suffix(".json").unlink(missing_ok=True)
        tracking.log_metrics({k: v for k, v in metrics.items() if k != "seed"})
        tracking.log_artifacts(out, "model")
    print(
        f"[train] seed {seed}: test accuracy {metrics['test_accuracy']:.4f}, loss "
        f"{metrics['test_loss']:.4f}, {train_seconds:.1f} s -> {out}",
        flush=True,
    )
    return metrics


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
