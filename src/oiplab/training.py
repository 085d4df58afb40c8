"""Compile and fit the CNN: SGD with momentum, an L2 penalty (in the model) and an LR schedule.

The articles' part III names these three ingredients without values; ours are in
`conf/train/default.yaml` and documented in README.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from oiplab.backend import jit_compile_arg
from oiplab.config import TrainConfig
from oiplab.io import save_with, write_json


def learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    """The learning rate (a float or a Keras schedule) named by `cfg.lr_schedule`."""
    import keras

    total = cfg.epochs * steps_per_epoch
    warmup = min(cfg.warmup_steps, max(total - 1, 0))
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                0.0,
                decay_steps=total - warmup,
                warmup_target=cfg.learning_rate,
                warmup_steps=warmup,
            )
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=total)
    if cfg.lr_schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            cfg.learning_rate,
            decay_steps=steps_per_epoch,
            decay_rate=cfg.lr_decay_per_epoch,
            staircase=True,
        )
    raise ValueError(f"train.lr_schedule={cfg.lr_schedule!r} is not known")


def compile_model(model, cfg: TrainConfig, n_train: int) -> None:
    import keras

    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    optimizer = keras.optimizers.SGD(
        learning_rate(cfg, steps_per_epoch), momentum=cfg.momentum, nesterov=cfg.nesterov
    )
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=cfg.steps_per_execution,
        jit_compile=jit_compile_arg(cfg.jit_compile),
    )


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The training images' order in `epoch`: a function of (seed, epoch) alone, so a resumed
    run sees exactly the batches an uninterrupted one would."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def fit(
    model,
    x_train,
    y_train,
    x_val,
    y_val,
    cfg: TrainConfig,
    callbacks=(),
    verbose: int = 2,
    checkpoint: Path | None = None,
):
    """Train to `cfg.epochs` epochs; return (model, history, epochs run in this call).

    With `checkpoint` (a `.keras` path), the compiled model (weights and optimizer state) and the
    history are saved atomically after every epoch, and a run that finds one resumes after its
    last completed epoch: killed and restarted, it ends with the same weights as an
    uninterrupted run.
    """
    history: dict[str, list[float]] = {}
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        model, history, start = load_checkpoint(checkpoint)
        print(f"[train] resuming from {checkpoint} after epoch {start}", flush=True)
    for epoch in range(start, cfg.epochs):
        order = epoch_order(cfg.seed, epoch, len(y_train))
        result = model.fit(
            x_train[order],
            y_train[order],
            batch_size=cfg.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=(x_val, y_val),
            validation_batch_size=cfg.eval_batch_size,
            shuffle=False,
            callbacks=list(callbacks),
            verbose=verbose,
        )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, history, epoch + 1)
    return model, history, cfg.epochs - start


def save_checkpoint(path: Path, model, history: dict, epochs_done: int) -> None:
    save_with(path, model.save)
    write_json(path.with_suffix(".json"), {"epochs_done": epochs_done, "history": history})


def load_checkpoint(path: Path):
    """(compiled model, history, epochs done) from a checkpoint written by `save_checkpoint`."""
    import keras

    state = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    model = keras.saving.load_model(path, compile=True, safe_mode=True)
    return model, state["history"], int(state["epochs_done"])


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict:
    """Accuracy and mean cross-entropy (without the L2 term) on (x, y), plus the predictions."""
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    predicted = probs.argmax(axis=1)
    picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return {
        "accuracy": float((predicted == y).mean()),
        "loss": float(-np.log(picked).mean()),
        "probabilities": probs,
        "predicted": predicted,
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix
