"""Training: deterministic per seed, two seeds (initialization, data order), one `fit` that a
killed job resumes exactly from a checkpoint that is written as one unit."""

from __future__ import annotations

import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from oiplab import training
from oiplab.backend import seed_everything
from oiplab.config import TrainConfig
from oiplab.data import make_synthetic
from oiplab.data.prepared import standardization_of
from oiplab.model import build_model
from oiplab.training import (
    CHECKPOINT_STATE,
    Checkpointing,
    compile_model,
    confusion_matrix,
    epoch_order,
    evaluate,
    train,
)
from tests.conftest import model_cfg, train_cfg

CFG = train_cfg(
    epochs=1, batch_size=32, eval_batch_size=100, trajectory_every=2, steps_per_execution=1
)


def _data():
    raw = make_synthetic(192, 64, seed=1)
    stats = standardization_of(raw.x_train)
    return SimpleNamespace(
        x_train=stats.apply(raw.x_train[..., None] / 255.0),
        y_train=raw.y_train.astype(np.int64),
        x_test=stats.apply(raw.x_test[..., None] / 255.0),
        y_test=raw.y_test.astype(np.int64),
    )


def _train(cfg: TrainConfig = CFG, checkpoint=None, callbacks=()):
    return train(_data(), model_cfg(), cfg, Checkpointing(checkpoint, "fp"), callbacks, verbose=0)


def _same(a, b) -> None:
    for x, y in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.history == b.history
    assert a.trajectory.steps == b.trajectory.steps


def test_same_seed_gives_bit_identical_weights():
    _same(_train(CFG.model_copy(update={"seed": 7})), _train(CFG.model_copy(update={"seed": 7})))


def test_one_fit_equals_the_per_epoch_fits_of_earlier_versions():
    """Today's results are unchanged: one `fit` over epoch-ordered batches gives, bit for bit,
    the weights of the former loop of one `fit` per epoch on arrays in the epoch's order."""
    cfg = CFG.model_copy(update={"seed": 5, "epochs": 2})
    data = _data()
    seed_everything(5)
    reference = build_model(model_cfg(), l2=cfg.l2)
    compile_model(reference, cfg, n_train=len(data.y_train))
    for epoch in range(cfg.epochs):
        order = epoch_order(5, epoch, len(data.y_train))
        reference.fit(
            data.x_train[order], data.y_train[order], batch_size=cfg.batch_size,
            epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0,
            validation_data=(data.x_test, data.y_test), validation_batch_size=cfg.eval_batch_size,
        )  # fmt: skip
    for x, y in zip(reference.get_weights(), _train(cfg).model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_steps_per_execution_does_not_change_the_weights():
    """Several batches per compiled call (the CPU default) train exactly as one per call."""
    base = CFG.model_copy(update={"seed": 2, "epochs": 2, "trajectory_every": 0})
    _same(_train(base), _train(base.model_copy(update={"steps_per_execution": 4})))


def test_init_and_data_seeds_split_the_two_sources_of_randomness():
    base = CFG.model_copy(update={"seed": 3})
    default = _train(base)
    explicit = _train(base.model_copy(update={"init_seed": 3, "data_seed": 3}))
    _same(default, explicit)  # null means "the run's seed"
    same_init = _train(base.model_copy(update={"seed": 4, "init_seed": 3}))
    same_order = _train(base.model_copy(update={"seed": 4, "data_seed": 3}))
    for x, y in zip(default.trajectory.weights[0], same_init.trajectory.weights[0], strict=True):
        np.testing.assert_array_equal(x, y)  # one initialization ...
    assert not np.array_equal(default.model.get_weights()[0], same_init.model.get_weights()[0])
    assert not np.array_equal(default.trajectory.weights[0][0], same_order.trajectory.weights[0][0])


def test_trajectory_keeps_the_start_every_few_batches_of_epoch_one_and_each_epoch_end():
    result = _train(CFG.model_copy(update={"epochs": 2}))
    assert result.trajectory.steps == [0, 2, 4, 6, 12]  # 192 images / 32 = 6 batches an epoch
    np.testing.assert_array_equal(result.trajectory.weights[-1][0], result.model.get_weights()[0])


class Interrupt(Exception):
    pass


def _stop_at(epoch_to_stop: int):
    import keras

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == epoch_to_stop:
                raise Interrupt

    return Stop()


RESUME = CFG.model_copy(update={"seed": 4, "epochs": 3})


@pytest.fixture(scope="module")
def uninterrupted():
    return _train(RESUME)


def test_interrupted_training_resumes_to_identical_weights(
    tmp_path, uninterrupted, capsys, stage_logs
):
    checkpoint = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        _train(RESUME, checkpoint, [_stop_at(1)])
    assert (checkpoint / CHECKPOINT_STATE).is_file()
    resumed = _train(RESUME, checkpoint)  # a fresh process would start exactly like this
    assert "[test] resuming from" in capsys.readouterr().out
    _same(uninterrupted, resumed)
    assert resumed.resumed_from["epochs_done"] == 1
    assert len(resumed.resumed_from["history"]["loss"]) == 1  # the checkpoint's, not the run's


@pytest.mark.parametrize("boundary", ["model", "trajectory", "state", "swap"])
def test_a_kill_at_any_write_boundary_never_changes_the_result(
    tmp_path, uninterrupted, monkeypatch, boundary
):
    """The checkpoint after epoch 2 dies at `boundary`; the next run ends as if nothing happened."""
    checkpoint = tmp_path / "ckpt"
    real_save = training.save_checkpoint
    calls = {"n": 0}

    def dying_save(folder, model, state, trajectory):
        calls["n"] += 1
        if calls["n"] < 2:
            return real_save(folder, model, state, trajectory)
        if boundary == "swap":
            monkeypatch.setattr(training, "atomic_dir", _dying_swap)
            return real_save(folder, model, state, trajectory)
        with training.atomic_dir(folder) as tmp:  # a partial write into the temporary folder
            model.save(tmp / training.CHECKPOINT_MODEL)
            if boundary in ("trajectory", "state"):
                trajectory.save(tmp / training.CHECKPOINT_TRAJECTORY)
            if boundary == "state":
                (tmp / CHECKPOINT_STATE).write_text("{")
            raise Interrupt

    monkeypatch.setattr(training, "save_checkpoint", dying_save)
    with pytest.raises(Interrupt):
        _train(RESUME, checkpoint)
    monkeypatch.undo()
    _same(uninterrupted, _train(RESUME, checkpoint))


def _dying_swap(target):
    from contextlib import contextmanager

    @contextmanager
    def swap():
        from oiplab.io import atomic_dir

        with atomic_dir(target) as tmp:
            yield tmp
            raise Interrupt  # killed just before the rename

    return swap()


@pytest.mark.parametrize("damage", ["no state", "truncated model", "state of another epoch"])
def test_a_torn_checkpoint_is_discarded_with_a_message(
    tmp_path, uninterrupted, capsys, damage, stage_logs
):
    checkpoint = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        _train(RESUME, checkpoint, [_stop_at(2)])  # a checkpoint after epoch 2
    if damage == "no state":
        (checkpoint / CHECKPOINT_STATE).unlink()
    elif damage == "truncated model":
        model = checkpoint / training.CHECKPOINT_MODEL
        model.write_bytes(model.read_bytes()[:5000])
    else:  # an epoch-2 model beside an epoch-1 state: the worst case of a non-atomic write
        earlier = tmp_path / "earlier"
        with pytest.raises(Interrupt):
            _train(RESUME, earlier, [_stop_at(1)])
        shutil.copy(earlier / CHECKPOINT_STATE, checkpoint / CHECKPOINT_STATE)
    result = _train(RESUME, checkpoint)
    assert "[test] discarding checkpoint" in capsys.readouterr().out
    _same(uninterrupted, result)


def test_each_schedule_trains():
    data = _data()
    for schedule in ("constant", "cosine", "exponential"):
        cfg = CFG.model_copy(update={"epochs": 2, "lr_schedule": schedule, "warmup_steps": 2})
        result = _train(cfg)
        assert result.history["loss"][-1] < result.history["loss"][0], schedule
        assert evaluate(result.model, data.x_test, data.y_test, 100)["accuracy"] > 0.5, schedule


def test_progress_counts_epochs_of_the_whole_run(tmp_path, capsys):
    checkpoint = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        train(
            _data(), model_cfg(), RESUME, Checkpointing(checkpoint, "fp"), [_stop_at(1)], verbose=2
        )
    train(_data(), model_cfg(), RESUME, Checkpointing(checkpoint, "fp"), verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/3" in out and "Epoch 2/3" in out and "Epoch 3/3" in out


def test_without_keras_lines_each_epoch_is_logged_naming_its_training(caplog):
    cfg = CFG.model_copy(update={"epochs": 2, "seed": 7, "init_seed": 3})
    with caplog.at_level(logging.INFO, logger="oiplab.training"):
        _train(cfg)  # verbose=0: Keras prints nothing
    lines = [r.getMessage() for r in caplog.records if " epoch " in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == [
        "seed 7 (init 3, data order 7) epoch 1/2",
        "seed 7 (init 3, data order 7) epoch 2/2",
    ]
    assert "val_accuracy" in lines[-1] and "loss" in lines[-1]


def test_with_keras_own_epoch_lines_none_is_logged_twice(caplog):
    with caplog.at_level(logging.INFO, logger="oiplab.training"):
        train(_data(), model_cfg(), CFG, verbose=2)
    assert not [r for r in caplog.records if " epoch " in r.getMessage()]


def test_confusion_matrix_counts():
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_a_diverging_training_fails_and_keeps_no_checkpoint(tmp_path):
    """learning_rate 1e6 makes every weight NaN within the first epoch: a failed training that
    names the epoch and the setting to change, with no checkpoint left to resume."""
    checkpoint = tmp_path / "checkpoint"
    cfg = CFG.model_copy(update={"learning_rate": 1e6, "epochs": 2})
    expected = r"training diverged in epoch 1 of 2 .*`train.learning_rate` \(now 1e\+06\)"
    with pytest.raises(training.TrainingDiverged, match=expected):
        _train(cfg, checkpoint)
    assert not checkpoint.exists()


def test_the_final_check_catches_a_non_finite_weight_with_a_finite_history():
    model = build_model(model_cfg())
    history = {"loss": [0.5], "val_loss": [0.6]}
    training.require_converged(model, history, CFG)  # finite: passes
    kernel, bias = model.get_layer("Dense_2").get_weights()
    bias[3] = np.inf
    model.get_layer("Dense_2").set_weights([kernel, bias])
    with pytest.raises(training.TrainingDiverged, match=r"Dense_2 bias \(1 infinite of 10"):
        training.require_converged(model, history, CFG)
    with pytest.raises(training.TrainingDiverged, match="epoch 1 of 1 .*loss became NaN"):
        training.require_converged(build_model(model_cfg()), {"loss": [float("nan")]}, CFG)


def test_a_diverging_train_stage_fails_its_run_and_registers_nothing(smoke_cfg):
    import mlflow

    from oiplab.layout import Layout
    from oiplab.stages import prepare
    from oiplab.stages import train as train_stage
    from oiplab.tracking.store import use_uri

    prepare.run(smoke_cfg)
    smoke_cfg.train.learning_rate = 1e6
    with pytest.raises(training.TrainingDiverged, match="epoch 1 of 1"):
        train_stage.run(smoke_cfg)
    lay = Layout.of(smoke_cfg)
    assert not lay.model_dir(0).exists()
    assert not any(lay.checkpoint(0, "x").parent.glob("*"))
    use_uri(smoke_cfg.tracking.uri)  # mlflow.set_tracking_uri would export it to later tests
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert {r.info.run_name: r.info.status for r in runs}["train-seed0"] == "FAILED"
    assert client.search_registered_models() == []


def test_a_bfloat16_training_learns_and_saves_a_float32_model(tmp_path):
    """`train.precision=bfloat16` trains in mixed precision (other weights than float32) and
    hands on a float32 network that `load_model` reads back with the same predictions; the
    global Keras policy is float32 again after it."""
    import keras

    from oiplab.model import load_model

    cfg = CFG.model_copy(update={"seed": 6, "epochs": 2, "trajectory_every": 0})
    bf16 = _train(cfg.model_copy(update={"precision": "bfloat16"}))
    f32 = _train(cfg)
    assert keras.config.dtype_policy().name == "float32"
    assert {layer.dtype_policy.name for layer in bf16.model.layers} == {"float32"}
    assert not np.array_equal(bf16.model.get_weights()[0], f32.model.get_weights()[0])
    assert bf16.history["loss"][-1] < bf16.history["loss"][0]
    assert bf16.metrics["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    bf16.model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras", model_cfg())
    x = _data().x_test
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), bf16.model.predict(x, verbose=0))
