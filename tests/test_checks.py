"""No NaN or infinity crosses a stage boundary, and no "first N images" setting is silently cut:
each entry point of a stage's inputs (model file, .npz, typed JSON record, clamped statistic) on
tiny arrays and models, each with the file or key its one-line error must name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oiplab.checks import (
    NonFiniteError,
    TooFewImagesError,
    at_least_zero,
    first_images,
    require_finite,
)
from oiplab.compare.interpolation import barriers
from oiplab.compare.oip_response import MatchedPairs
from oiplab.config import ConfigError
from oiplab.io import InputError, Real, load_npz, read_json, read_typed, to_json
from oiplab.model import ModelConfig, ModelFileError, build_model, load_model
from oiplab.oip.init import digit_starts
from oiplab.oip.survey import load_outcome
from oiplab.training import History, Trajectory
from tests.conftest import compose_typed

TINY = ModelConfig(
    filters=[2, 2, 3], kernel_size=3, dense_units=4, n_classes=10, input_shape=[28, 28, 1]
)


def test_require_finite_names_where_and_counts():
    values = np.array([1.0, np.nan, np.inf, -np.inf])
    with pytest.raises(NonFiniteError, match=r"^f.npz: x: 1 NaN and 2 infinite of 4 values; rerun"):
        require_finite(values, "f.npz: x", "rerun")
    assert require_finite(np.arange(3), "ints", "-") is not None  # integers are always finite


def test_clamping_at_zero_keeps_nan_an_error():
    assert at_least_zero(-0.5, "b") == 0.0 and at_least_zero(0.25, "b") == 0.25
    with pytest.raises(NonFiniteError, match="the loss barrier is nan"):
        at_least_zero(float("nan"), "the loss barrier")


def test_a_nan_on_the_interpolation_path_is_no_zero_barrier():
    alphas = np.linspace(0, 1, 3)
    assert barriers({"loss": [1.0, 2.0, 1.0], "accuracy": [0.9, 0.5, 0.9]}, alphas) == {
        "loss_barrier": 1.0,
        "accuracy_barrier": pytest.approx(0.4),
    }
    with pytest.raises(NonFiniteError, match="loss barrier"):  # main read 0.0 here
        barriers({"loss": [1.0, np.nan, 1.0], "accuracy": [0.9, 0.9, 0.9]}, alphas)


def test_first_images_refuses_more_than_there_are():
    images = np.zeros((200, 28, 28, 1))
    assert len(first_images(images, 200, "precursor.probe_images")) == 200
    expected = r"'precursor.probe_images': 1,000,000 images asked for, the test set holds 200"
    with pytest.raises(TooFewImagesError, match=expected):
        first_images(images, 1_000_000, "precursor.probe_images")
    with pytest.raises(TooFewImagesError, match="300 images asked for, the training set holds 200"):
        first_images(images, 300, "compare.eval_images", "training")


def test_digit_starts_refuse_more_than_half_the_test_set():
    with pytest.raises(TooFewImagesError, match="'oip.n_starts': 9 digit starts"):
        digit_starts(np.zeros((16, 28, 28, 1)), 9, 0, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochs=100000000000000000000", "'train.epochs'"),  # was a TensorFlow traceback
        ("train.epochs=1000000000", "'train.epochs'"),  # was accepted
        ("precursor.probe_images=1000000", "'precursor.probe_images'"),  # was cut to 200
        ("alignment.probe_images=1000000", "'alignment.probe_images'"),  # was cut to 200
        ("oip.start_kind=digits", "'oip.n_starts'"),  # with oip.n_starts=200 below
        ("compare.eval_images=700 data.n_test=1000", "'compare.eval_images'"),  # n_train 600
    ],
)
def test_schema_bounds_of_counts(override, key):
    with pytest.raises(ConfigError, match=key):
        compose_typed("experiment=smoke", "oip.n_starts=200", *override.split())


def _saved(tmp_path, cfg: ModelConfig = TINY, damage=None):
    model = build_model(cfg)
    if damage is not None:
        damage(model)
    path = tmp_path / "model.keras"
    model.save(path)
    return path


def _inf_in_four_conv3_kernels(model) -> None:
    kernel, bias = model.get_layer("Conv2D_3").get_weights()
    kernel.reshape(-1)[:4] = np.inf
    model.get_layer("Conv2D_3").set_weights([kernel, bias])


def _nan_bias(model) -> None:
    kernel, bias = model.get_layer("Dense_1").get_weights()
    bias[0] = np.nan
    model.get_layer("Dense_1").set_weights([kernel, bias])


def test_a_model_with_infinite_or_nan_weights_is_refused(tmp_path):
    assert load_model(_saved(tmp_path), TINY).count_params() > 0
    path = _saved(tmp_path, damage=_inf_in_four_conv3_kernels)
    with pytest.raises(NonFiniteError, match=r"model.keras: weights not finite: Conv2D_3 kernel"):
        load_model(path)
    path = _saved(tmp_path, damage=_nan_bias)
    with pytest.raises(NonFiniteError, match=r"Dense_1 bias \(1 NaN of 4 values\)"):
        load_model(path)


def test_a_model_of_another_width_is_named_with_its_layer(tmp_path):
    wider = TINY.model_copy(update={"filters": [2, 2, 5]})
    with pytest.raises(ModelFileError, match=r"layer Conv2D_3 has output shape \(3, 3, 5\)"):
        load_model(_saved(tmp_path, wider), TINY)
    other_dense = TINY.model_copy(update={"dense_units": 6})
    with pytest.raises(ModelFileError, match=r"layer Dense_1 has output shape \(6,\)"):
        load_model(_saved(tmp_path, other_dense), TINY)


def _survey(path, **changes) -> None:
    arrays = {
        "map_index": np.arange(2),
        "loss": np.ones((2, 3), np.float32),
        "silent": np.zeros((2, 3), bool),
        "best_images": np.zeros((2, 28, 28), np.float32),
        "images": np.zeros((2, 3, 28, 28), np.float32),
        "start_images": np.zeros((3, 28, 28), np.float32),
    }
    np.savez(path, **(arrays | changes))


@pytest.mark.parametrize("key", ["loss", "images"])
def test_nan_in_an_oip_survey_is_refused(tmp_path, key):
    path = tmp_path / "oip.npz"
    _survey(path)
    assert load_outcome(path)["found"].all()
    bad = np.ones((2, 3), np.float32) if key == "loss" else np.zeros((2, 3, 28, 28), np.float32)
    bad.reshape(-1)[1] = np.nan
    _survey(path, **{key: bad})
    with pytest.raises(NonFiniteError, match=rf"oip.npz: OIP survey array '{key}': 1 NaN of"):
        load_outcome(path)  # main counted the NaN loss as a map without an OIP


def test_an_object_array_is_refused_and_never_unpickled(tmp_path):
    path = tmp_path / "trajectory.npz"
    w = np.empty(2, dtype=object)
    w[:] = [np.zeros(3), np.zeros(4)]
    np.savez(path, steps=np.arange(2), w0=np.zeros((2, 3)), w1=w)
    with pytest.raises(InputError, match="trajectory.npz: weight trajectory is unreadable"):
        Trajectory.load_checked(path)  # main: a ValueError traceback from np.load
    with pytest.raises(InputError, match="object arrays"):
        load_npz(path, None, "weight trajectory")


def test_a_trajectory_with_an_infinite_weight_is_refused(tmp_path):
    path = tmp_path / "trajectory.npz"
    np.savez(path, steps=np.arange(2), w0=np.array([[0.0, 1.0], [np.inf, 1.0]]))
    with pytest.raises(NonFiniteError, match="array 'w0': 1 infinite of 4 values"):
        Trajectory.load_checked(path)


def test_a_typed_record_with_null_where_a_number_is_needed_is_named(tmp_path):
    """History (every value finite: a diverged training fails), matched r (the live maps' r);
    a legitimately undefined field (a `Real`, such as a consistency without triples) stays NaN."""
    (tmp_path / "history.json").write_text(to_json({"loss": [0.5, float("nan")]}))
    expected = r"history.json: training history field 'curves.loss.1' is not a finite number"
    with pytest.raises(NonFiniteError, match=expected):
        History.load(tmp_path)
    pairs = {"0-1": {"Conv2D_3": {"partner": [1, 0], "matched_r": [0.9, float("nan")]}}}
    (tmp_path / "compare.json").write_text(to_json({"pairs": pairs}))
    expected = r"compare.json: comparison details field 'pairs.*Conv2D_3.matched_r.1' is not a fin"
    with pytest.raises(NonFiniteError, match=expected):
        MatchedPairs.load(tmp_path)
    (tmp_path / "consistency.json").write_text(to_json({"all": float("nan")}))
    undefined = read_typed(tmp_path / "consistency.json", dict[str, Real], "compare", "x")
    assert np.isnan(undefined["all"])


def test_a_nan_literal_in_json_is_refused(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"test_loss": float("nan")}))  # Python writes NaN; to_json never
    with pytest.raises(NonFiniteError, match="metrics.json: stage output holds NaN"):
        read_json(path)
