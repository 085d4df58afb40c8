"""Stages called in-process (`run(cfg)`), with a real MLflow sqlite store under tmp_path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from oiplab.layout import (
    METRICS,
    RUN,
    ActivationsFiles,
    AlignmentFiles,
    CompareFiles,
    Layout,
    OipCompareFiles,
    OipFiles,
    PrecursorFiles,
)
from oiplab.oip.census import CAUSES
from oiplab.stages import prepare, train
from tests.conftest import compose_typed, run_study
from tests.test_config import EXPERIMENTS


def _runs(cfg):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    return client, client.search_runs([experiment.experiment_id])


def _record(folder: Path) -> tuple[dict, dict]:
    return json.loads((folder / METRICS).read_text()), json.loads((folder / RUN).read_text())


def test_prepare_and_train_write_outputs_and_mlflow_runs(smoke_cfg, capsys, caplog):
    import mlflow

    meta = prepare.run(smoke_cfg)
    assert meta["n_train"] == 200 and Path(smoke_cfg.paths.prepared, "meta.json").is_file()
    assert meta["image_target"]["std"] > 0
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="oiplab"):
        metrics = train.run(smoke_cfg)
    # MLflow's own registry lines are dropped; one line of ours says the version and its alias
    assert "Created version" not in capsys.readouterr().err
    assert "registered model 'oiplab-synthetic-smoke-cnn' version 1 (alias smoke-seed0)" in (
        caplog.text
    )
    out = Layout.of(smoke_cfg).model_dir(0)
    for name in ("model.keras", "history.json", "confusion.png", "history.png", "trajectory.npz"):
        assert (out / name).stat().st_size > 0, name
    written, run_record = _record(out)
    assert written == metrics and 0.0 <= metrics["test_accuracy"] <= 1.0

    client, runs = _runs(smoke_cfg)
    by_stage = {r.data.tags["oiplab.stage"]: r for r in runs}
    assert set(by_stage) == {"prepare", "train"}
    run = by_stage["train"]
    assert run.info.run_id == run_record["run_id"]  # the output names its producing run
    assert run.info.status == "FINISHED" and run.info.end_time > run.info.start_time
    assert run.data.tags["oiplab.seed"] == "0" and run.data.tags["oiplab.study"] == "smoke"
    assert run.data.params["train.epochs"] == "1"
    constants = ("epochs", "n_params", "train_seconds", "images_per_second")
    assert {k: run.data.params[k] for k in constants} == {k: str(metrics[k]) for k in constants}
    assert set(run.data.metrics) & set(constants) == set()  # a constant is no one-point chart
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "outputs")}
    assert "outputs/model.keras" in artifacts and "outputs/confusion.png" in artifacts
    logged = client.get_logged_model(run.outputs.model_outputs[0].model_id)
    assert logged.name == "keras_model" and logged.source_run_id == run.info.run_id
    example = mlflow.models.get_model_info(logged.model_uri).saved_input_example_info
    assert example is not None and example["type"] == "ndarray"
    tested = {(m.key, m.dataset_name, m.dataset_digest) for m in logged.metrics if m.dataset_name}
    test_set = ("synthetic-test", meta["sha256"]["test"][:16])
    assert tested == {("test_accuracy", *test_set), ("test_loss", *test_set)}
    name = "oiplab-synthetic-smoke-cnn"
    (version,) = client.search_model_versions(f"name = '{name}'")
    assert version.run_id == run.info.run_id  # sqlite has a registry
    assert version.tags == {
        "study": "smoke",
        "seed": "0",
        "dataset": "synthetic",
        "test_accuracy": f"{metrics['test_accuracy']:.4f}",
    }
    assert version.description.startswith("Seed 0 of study `smoke` on synthetic: test accuracy")
    assert client.get_model_version_by_alias(name, "smoke-seed0").version == version.version
    inputs = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert inputs == {"synthetic-" + k: meta["sha256"][k][:16] for k in ("train", "test")}
    second = smoke_cfg.train.model_copy(update={"seed": 1})  # a second version of the model
    with caplog.at_level(logging.INFO, logger="oiplab"):
        train.run(smoke_cfg.model_copy(update={"train": second}))
    err = capsys.readouterr().err  # MLflow's "already exists ... new version" line is dropped too
    assert "already exists" not in err and "Created version" not in err
    assert "version 2 (alias smoke-seed1)" in caplog.text


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs(experiment, tmp_path, monkeypatch):
    """Each experiment's own settings (schedule, batch, seeds, ...) train, on tiny data."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_typed(
        f"experiment={experiment}",
        "data=synthetic",
        "data.n_train=100",
        "data.n_test=20",
        "train.epochs=1",
        "tracking.enabled=false",
        "compare.probe_images=10",
        "compare.eval_images=10",
        "precursor.probe_images=10",  # every "first N test images" fits the 20
        "alignment.probe_images=10",
    )
    prepare.run(cfg)
    metrics = train.run(cfg)
    assert Layout.of(cfg).model_file(cfg.train.seed).is_file()
    assert metrics["epochs"] == 1


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The smoke study run stage by stage in-process, once for the tests below: (cfg, results)."""
    import os

    root = tmp_path_factory.mktemp("pipeline")
    old = Path.cwd()
    os.chdir(root)
    os.environ["OIPLAB_EXECUTION"] = "repro:dvc repro"  # one parent run, as `dvc repro` makes
    try:
        cfg = compose_typed(
            "experiment=smoke", f"tracking.uri=sqlite:///{root}/mlflow.db", "data.n_train=200",
            "data.n_test=160", "train.epochs=3", "split.members=[1]",
        )  # fmt: skip
        out = run_study(cfg)
        del os.environ["OIPLAB_EXECUTION"]
        cfg.paths = cfg.paths.model_copy(
            update={k: str(root / getattr(cfg.paths, k)) for k in type(cfg.paths).model_fields}
        )
        cfg.tracking.uri = f"sqlite:///{root}/mlflow.db"
        yield cfg, out
    finally:
        os.environ.pop("OIPLAB_EXECUTION", None)
        os.chdir(old)


def test_select_images_and_activations_stage(pipeline):
    cfg, out = pipeline
    selection = out["selection"]
    assert [g["name"] for g in selection["groups"]] == ["clear_4", "clear_9", "ambiguous_4"]
    assert [len(g["indices"]) for g in selection["groups"]] == [3, 3, 2]
    metrics = out["activations0"]
    folder = Layout.of(cfg).activations_dir(0)
    with np.load(folder / ActivationsFiles.dump) as dump:
        expected = [i for g in selection["groups"] for i in g["indices"]]
        assert dump["image_indices"].tolist() == expected
        assert dump["Conv2D_3"].shape == (8, 3, 3, 128)
        assert list(dump["layer_names"]) == cfg.activations.layers
    assert len(list((folder / "grids").glob("*.png"))) == 8 * len(cfg.activations.layers)
    assert len(list((folder / "common").glob("*.png"))) == 2 * 3
    common = metrics["common"]["Conv2D_3"]["clear_4_vs_clear_9"]
    assert 0 <= common["n_distinct"] <= common["n_common"] <= common["n_elements"] == 1152
    assert _record(folder)[0] == metrics


def test_oip_stage_outputs_and_one_standardization_of_the_starts(pipeline):
    cfg, out = pipeline
    metrics = out["oip0"]
    assert metrics["n_maps"] == 128
    assert metrics["n_with_oip"] + metrics["n_silent"] + metrics["n_zero_not_silent"] == 128
    folder = Layout.of(cfg).oip_dir(0)
    with np.load(folder / OipFiles.arrays) as arrays:
        assert arrays["images"].shape == (128, cfg.oip.n_starts, 28, 28)
        assert arrays["best_snapshots"].shape[:2] == (128, len(arrays["snapshot_steps"]))
        starts = arrays["start_images"]
        assert int(arrays["silent"].all(axis=1).sum()) == metrics["n_silent"]
    target = out["prepare"]["image_target"]
    np.testing.assert_allclose(starts.mean(axis=(1, 2)), target["mean"], atol=1e-5)
    np.testing.assert_allclose(starts.std(axis=(1, 2)), target["std"], rtol=1e-4)
    assert metrics["start_std_spread"] < 1e-4
    for name in (OipFiles.gallery_plain, OipFiles.gallery_contrast, METRICS, RUN):
        assert (folder / name).stat().st_size > 0


def test_precursor_stage_rescues_and_gives_every_map_one_cause(pipeline):
    cfg, out = pipeline
    noise, metrics = out["oip0"], out["precursor0"]
    assert sum(metrics[c] for c in CAUSES) == 128
    assert metrics["from_noise"] == noise["n_with_oip"]
    assert metrics["n_maps_searched"] == 128 - noise["n_with_oip"]
    tried = metrics["n_maps_searched"] - metrics["found_among_searched"]
    assert metrics["rescue_tried"] == tried
    with np.load(Layout.of(cfg).precursor_dir(0) / PrecursorFiles.arrays) as arrays:
        assert arrays["cause"].shape == (128,)
        assert np.bincount(arrays["cause"], minlength=5).tolist() == [metrics[c] for c in CAUSES]
        assert arrays["rescue_loss"].shape == (tried, cfg.oip.n_starts)


def test_compare_writes_the_answer_the_headline_and_the_plot_data(pipeline):
    cfg, out = pipeline
    head, lay = out["compare"], Layout.of(cfg)
    assert set(head) == {"accuracy", "loss_barrier", *cfg.compare.layers}
    answers = json.loads((lay.compare_dir() / CompareFiles.headline).read_text())
    for layer in cfg.compare.layers:
        a = answers[layer]
        assert a["partnered"]["low"] <= a["partnered"]["value"] <= a["partnered"]["high"]
        assert 0 <= a["partnered"]["null"] <= 1 and 0 < a["order"]["p_value"] <= 1
        assert a["verdict"].startswith(f"{layer}: ") and "p = " in a["verdict"]
        assert set(a["dead"]) == {str(s) for s in cfg.seeds}
    assert json.loads(lay.headline().read_text()) == head
    for name in (
        CompareFiles.answer("Conv2D_3"),
        CompareFiles.interpolation,
        CompareFiles.details,
        CompareFiles.correlations(0, 1),
        CompareFiles.aligned_filters(0, 1),
    ):
        assert (lay.compare_dir() / name).stat().st_size > 0, name
    kept = lay.figures_dir("compare") / CompareFiles.interpolation  # the git-tracked copy
    assert kept.read_bytes() == (lay.compare_dir() / CompareFiles.interpolation).read_bytes()
    curves = json.loads(lay.plot_data("learning_curves").read_text())
    assert {(r["seed"], r["epoch"]) for r in curves} == {(s, e) for s in "01" for e in (1, 2, 3)}
    client, runs = _runs(cfg)
    run = next(r for r in runs if r.data.tags["oiplab.stage"] == "compare")
    note = run.data.tags["mlflow.note.content"]  # the first screen's answers, then the verdicts
    assert note.startswith("**Same filters?** ")  # the answers in brief: what the UI shows first
    assert "\n\n## The answers\n\n### Same filters?\n\nConv2D_1: " in note
    assert "\n| Conv2D_1 | " in note and "\n## Verdict per layer\n\n- Conv2D_1: " in note
    seed_runs = run.data.tags["oiplab.seed_runs"].split(",")
    assert len(seed_runs) == 2
    inputs = client.get_run(run.info.run_id).inputs  # a search leaves out the model inputs
    models = [client.get_logged_model(m.model_id) for m in inputs.model_inputs]
    assert sorted(m.source_run_id for m in models) == sorted(seed_runs)
    used = {(d.dataset.name, d.tags[0].value) for d in run.inputs.dataset_inputs}
    assert used == {("synthetic-test", "probe and evaluation"), ("synthetic-train", "evaluation")}


def test_the_parent_run_carries_the_answer_and_no_run_an_empty_tag(pipeline):
    """The execution's parent run (what the UI opens on): the answers with the seed-split
    design's, the per-layer table, and the headline numbers as metrics."""
    cfg, out = pipeline
    client, runs = _runs(cfg)
    (parent,) = [r for r in runs if r.data.tags["oiplab.stage"] == "pipeline"]
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**Same filters?** ") and "\n\n## The answers\n\n" in note
    assert "### What decides the order?\n\n" in note and "Answered by the seed-split" not in note
    assert "see the seed-split comparisons" not in note.splitlines()[0]
    assert "\n| Dense_1 | " in note and "\nTest accuracy of the trained seeds: mean " in note
    headline = out["compare"]
    assert parent.data.metrics["accuracy.mean"] == headline["accuracy"]["mean"]  # not rounded
    assert parent.data.metrics["Conv2D_1.same_index_p"] == headline["Conv2D_1"]["same_index_p"]
    assert "same_init.Conv2D_1.same_index_p" in parent.data.metrics
    for run in runs:
        assert all(value != "" for value in run.data.tags.values()), run.data.tags
    split = {
        r.info.run_name: r.data.tags["oiplab.design"] for r in runs if "_split" in r.info.run_name
    }
    assert split == {  # a seed-split run names its design (the UI's run list shows only names)
        **{f"train_split-{d}-seed{m}": d for d in cfg.split.designs for m in cfg.split.members},
        **{f"compare_split-{d}": d for d in cfg.split.designs},
    }


def test_alignment_tracks_every_snapshot_and_ends_at_the_final_network(pipeline):
    cfg, _ = pipeline
    records = json.loads((Layout.of(cfg).alignment_dir() / AlignmentFiles.records).read_text())
    steps = sorted({r["step"] for r in records})
    assert steps[0] == 0 and len(steps) >= 4  # the start, batches of epoch 1, each epoch's end
    final = [r for r in records if r["step"] == steps[-1]]
    assert all(r["final_partnered"] == 1.0 and r["final_same_index"] == 1.0 for r in final)
    figures = {p.name for p in Layout.of(cfg).figures_dir("alignment").iterdir()}
    assert figures == {AlignmentFiles.figure(layer) for layer in cfg.alignment.layers}


def test_oip_compare_and_the_report(pipeline):
    cfg, out = pipeline
    lay = Layout.of(cfg)
    summary = out["oip_compare"]
    assert 0 <= summary["all"]["top1"] <= 1 and summary["all"]["top1_chance"] > 0
    assert (lay.oip_compare_dir() / OipCompareFiles.galleries(0, 1)).stat().st_size > 0
    html = lay.report().read_text()
    for section in ("answers", "silent", "compare", "oip_compare", "decides", "over_training"):
        assert f'<section id="{section}">' in html
    assert "figure missing" not in html and "Not in these results" not in html


def test_the_seed_split_design_shares_one_seed_and_writes_its_answer(pipeline):
    """Every member of every design is trained under its own seed, and each design's answer is
    typed and names its design (which seed it shares: tests/test_training.py)."""
    from oiplab.compare.summary import Answer
    from oiplab.training import TrainMetrics

    cfg, out = pipeline
    lay = Layout.of(cfg)
    for design in cfg.split.designs:
        answer = Answer.load(lay.split_compare_dir(design), "compare_split")
        assert answer.design == design and set(answer.layers) == set(cfg.compare.layers)
        for member in cfg.split.members:
            trained = TrainMetrics.load(lay.split_model_dir(design, member))
            assert trained.seed == member
    assert Answer.load(lay.compare_dir()).design == "default"


PIN = """\
import os, sys
from oiplab.backend import INTRA_OP_ENV, ThreadsError, pin_threads
if sys.argv[1] == "imported":
    import tensorflow as tf  # imported, its runtime not started: the API sets the count
pin_threads(3)
import tensorflow as tf
from threadpoolctl import threadpool_info
blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print("blas", len(blas), sorted(set(blas)))
print("env", os.environ[INTRA_OP_ENV])
print("api", tf.config.threading.get_intra_op_parallelism_threads())
tf.constant(1.0) + 1.0  # the runtime starts
pin_threads(3)  # the count it runs with: nothing to change
try:
    pin_threads(2)
except ThreadsError as exc:
    print("refused:", exc)
"""


@pytest.mark.parametrize("tensorflow", ["not_imported", "imported"])
def test_pin_threads_sets_blas_and_tensorflow_and_refuses_a_change_once_running(tensorflow):
    import os
    import subprocess
    import sys

    from oiplab.backend import INTRA_OP_ENV
    from tests.conftest import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if k != INTRA_OP_ENV}
    out = subprocess.run([sys.executable, "-c", PIN, tensorflow], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["blas"] == "2 [3]" and lines["env"] == "3"  # NumPy's and SciPy's OpenBLAS
    # set through the environment before TensorFlow's import, through its API after
    assert lines["api"] == ("3" if tensorflow == "imported" else "0")
    assert lines["refused:"] == (
        "threads=2, but TensorFlow already runs in this process with 3 threads (it started "
        "before the stage); run the stage in a process of its own"
    )
