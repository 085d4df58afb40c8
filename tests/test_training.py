"""Training is deterministic per seed and learns the synthetic task."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.backend import seed_everything
from oiplab.config import ModelConfig, TrainConfig
from oiplab.data import make_synthetic
from oiplab.data.prepared import standardization_of
from oiplab.model import build_model
from oiplab.training import compile_model, confusion_matrix, evaluate, fit

CFG = TrainConfig(epochs=1, batch_size=32, eval_batch_size=100)


def _data():
    raw = make_synthetic(192, 64, seed=1)
    stats = standardization_of(raw.x_train)
    x_train = stats.apply(raw.x_train[..., None] / 255.0)
    x_test = stats.apply(raw.x_test[..., None] / 255.0)
    return x_train, raw.y_train.astype(np.int64), x_test, raw.y_test.astype(np.int64)


def _train(seed: int, cfg: TrainConfig = CFG, checkpoint=None, callbacks=()):
    x_train, y_train, x_test, y_test = _data()
    seed_everything(seed)
    model = build_model(ModelConfig(), l2=cfg.l2)
    compile_model(model, cfg, n_train=len(y_train))
    model, history, _ = fit(
        model,
        x_train,
        y_train,
        x_test,
        y_test,
        cfg,
        verbose=0,
        checkpoint=checkpoint,
        callbacks=callbacks,
    )
    return model, history


def test_same_seed_gives_bit_identical_weights():
    first, h1 = _train(7)
    second, h2 = _train(7)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h1 == h2


def test_different_seed_gives_different_weights():
    first, _ = _train(7)
    other, _ = _train(8)
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


class Interrupt(Exception):
    pass


def test_interrupted_training_resumes_to_identical_weights(tmp_path):
    """Stopped after epoch 1 of 3, then restarted: the same weights as an uninterrupted run."""
    import keras

    cfg = TrainConfig(seed=4, epochs=3, batch_size=32, eval_batch_size=100)
    reference, ref_history = _train(4, cfg)

    class StopAtEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise Interrupt

    checkpoint = tmp_path / "ckpt.keras"
    with pytest.raises(Interrupt):
        _train(4, cfg, checkpoint=checkpoint, callbacks=[StopAtEpoch2()])
    assert checkpoint.is_file()
    resumed, history = _train(4, cfg, checkpoint=checkpoint)  # builds a fresh model, then resumes
    for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert history["loss"] == ref_history["loss"]


def test_each_schedule_trains():
    x_train, y_train, x_test, y_test = _data()
    for schedule in ("constant", "cosine", "exponential"):
        cfg = TrainConfig(
            epochs=2, batch_size=32, lr_schedule=schedule, warmup_steps=2, eval_batch_size=100
        )
        model, history = _train(0, cfg)
        assert history["loss"][-1] < history["loss"][0], schedule
        assert evaluate(model, x_test, y_test, 100)["accuracy"] > 0.5, schedule


def test_confusion_matrix_counts():
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
