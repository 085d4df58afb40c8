"""Typed stage results: each saves and loads back equal, an output of another format is one clear
error naming the file and the stage to rerun, and DVC's metrics files keep their exact bytes."""

from __future__ import annotations

import json

import pytest

from oiplab.compare.summary import (
    Answer,
    answer_records,
    headline_metrics,
    learning_curve_records,
)
from oiplab.errors import MissingInputError
from oiplab.io import Record, StaleOutputError, to_json
from tests import results
from tests.conftest import compose_typed

CFG = compose_typed("experiment=smoke")
LAYERS = ["Conv2D_1", "Dense_1"]
EVERY_TYPE = [
    results.train_metrics(0),
    results.history(),
    results.run_record(),
    results.prepared_meta(),
    results.patterns(CFG, 0),
    results.survey(0, "Conv2D_3"),
    results.census(0, "Conv2D_3"),
    results.answer(LAYERS),
    results.matched_pairs(LAYERS),
    results.response_summary(),
    results.alignment(LAYERS),
]


@pytest.mark.parametrize("result", EVERY_TYPE, ids=lambda r: type(r).__name__)
def test_a_saved_result_loads_back_equal(result: Record, tmp_path):
    result.save(tmp_path)
    assert type(result).load(tmp_path) == result


def test_the_selection_loads_back_equal(tmp_path):
    selection = results.selection(CFG)
    selection.save_to(tmp_path / "selection.json")
    assert type(selection).load_from(tmp_path / "selection.json") == selection


def test_the_answer_file_keeps_its_format_with_flat_barrier_keys(tmp_path):
    """compare/headline.json: the layers, the barriers, and which networks were compared."""
    results.answer(LAYERS).save(tmp_path)
    data = json.loads((tmp_path / "headline.json").read_text())
    assert list(data) == [*LAYERS, "interpolation", "design"]
    assert data["design"] == "default"
    split = results.split_answer(LAYERS, "same_order", kept=True)
    split.save(tmp_path)
    assert Answer.load(tmp_path).design == "same_order"
    del data["design"]  # a file written before the seed-split design: the default study's
    (tmp_path / "headline.json").write_text(json.dumps(data))
    assert Answer.load(tmp_path).design == "default"
    flat = ["naive.test.loss_barrier", "naive.test.accuracy_barrier"]
    assert list(data["interpolation"])[:2] == flat
    assert data["Conv2D_1"]["order"] == {
        "observed": 3,
        "expected": 1.5,
        "p_value": 0.0125,
        "n_tested": 24,
        "n_matches": 30,
        "p_all": 0.03125,
        "observed_all": 4,
        "keep_upper": None,
        "fraction": 0.125,
    }
    assert type(results.answer(LAYERS)).load(tmp_path) == results.answer(LAYERS)


def _older(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("test_loss"),
        lambda d: d.update(top5_accuracy=0.99),
        lambda d: d.update(epochs="two"),
    ],
    ids=["missing field", "extra field", "wrong type"],
)
def test_an_older_format_names_the_file_and_the_stage_to_rerun(change, tmp_path):
    results.train_metrics(0).save(tmp_path)
    _older(tmp_path / "metrics.json", change)
    with pytest.raises(StaleOutputError) as caught:
        type(results.train_metrics(0)).load(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "metrics.json") in message
    assert "rerun its stage: `dvc repro train`" in message


def test_an_older_answer_names_the_nested_field(tmp_path):
    results.answer(LAYERS).save(tmp_path)
    _older(tmp_path / "headline.json", lambda d: d["Dense_1"]["order"].pop("p_value"))
    with pytest.raises(StaleOutputError, match=r"Dense_1\.order\.p_value.*`dvc repro compare`"):
        type(results.answer(LAYERS)).load(tmp_path)


def test_dvc_metrics_files_keep_their_bytes():
    """metrics/headline.json, answer.json and learning_curves.json, written from hand-made
    results: the same keys, key order and float formatting as before the typed results."""
    answer = results.answer(["Conv2D_1"])
    headline = headline_metrics(answer.layers, answer.barriers, [0.9375, 0.875])
    assert to_json(headline) == HEADLINE
    assert to_json(answer_records(answer.layers)) == ANSWER
    curves = learning_curve_records({0: {"loss": [1.5, 0.5], "val_accuracy": [0.625, 0.875]}})
    assert to_json(curves) == CURVES


HEADLINE = """{
  "accuracy": {
    "mean": 0.90625,
    "min": 0.875
  },
  "Conv2D_1": {
    "partnered": 0.625,
    "rotation_null_95": 0.375,
    "vs_untrained_p": 0.00390625,
    "same_index_p": 0.0125
  },
  "loss_barrier": {
    "as_trained": 0.25,
    "aligned": 0.5
  }
}
"""
ANSWER = """[
  {
    "layer": "Conv2D_1",
    "layer_index": 0,
    "partnered": 0.625,
    "low": 0.5,
    "high": 0.75,
    "untrained": 0.25,
    "untrained_max": 0.375,
    "rotation_null": 0.25,
    "rotation_null_95": 0.375,
    "siblings": 0.125,
    "siblings_untrained": 0.25,
    "one_to_one_r2": 0.5,
    "many_to_one_r2": 0.875,
    "vs_untrained_p": 0.00390625,
    "same_index_p": 0.0125,
    "same_index_k": 3,
    "same_index_n": 24,
    "matches": 30,
    "same_index_p_all": 0.03125,
    "keep_upper": null
  }
]
"""
CURVES = """[
  {
    "seed": "0",
    "epoch": 1,
    "loss": 1.5,
    "val_accuracy": 0.625
  },
  {
    "seed": "0",
    "epoch": 2,
    "loss": 0.5,
    "val_accuracy": 0.875
  }
]
"""


def test_a_missing_result_names_the_stage_that_makes_it(tmp_path):
    with pytest.raises(MissingInputError, match=r"metrics\.json.*`dvc repro oip`"):
        type(results.survey(0, "Conv2D_3")).load(tmp_path)
