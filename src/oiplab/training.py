"""Compile and fit the CNN: SGD with momentum, an L2 penalty (in the model) and an LR schedule.

The articles' part III names these three ingredients without values; ours are in
`conf/train/default.yaml` and documented in README.
"""

from __future__ import annotations

import math

import numpy as np

from oiplab.backend import jit_compile_arg
from oiplab.config import TrainConfig


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


def fit(
    model, x_train, y_train, x_val, y_val, cfg: TrainConfig, callbacks=(), verbose: int = 2
) -> dict[str, list[float]]:
    """Train `cfg.epochs` epochs (reshuffled each epoch from the global seed); return history."""
    history = model.fit(
        x_train,
        y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        validation_data=(x_val, y_val),
        validation_batch_size=cfg.eval_batch_size,
        shuffle=True,
        callbacks=list(callbacks),
        verbose=verbose,
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


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
