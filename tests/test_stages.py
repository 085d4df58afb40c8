"""Stages called in-process (`run(cfg)`), with a real MLflow sqlite store under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oiplab.stages import prepare, train
from tests.conftest import compose_typed
from tests.test_config import EXPERIMENTS


def _runs(cfg):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    return client, client.search_runs([experiment.experiment_id])


def test_prepare_and_train_write_outputs_and_mlflow_runs(smoke_cfg):
    meta = prepare.run(smoke_cfg)
    assert meta["n_train"] == 200 and Path(smoke_cfg.paths.prepared, "meta.json").is_file()
    metrics = train.run(smoke_cfg)
    out = train.model_dir(smoke_cfg, 0)
    for name in ("model.keras", "history.json", "metrics.json", "confusion.png", "history.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads(train.metrics_path(smoke_cfg, 0).read_text()) == metrics
    assert 0.0 <= metrics["test_accuracy"] <= 1.0

    client, runs = _runs(smoke_cfg)
    by_stage = {r.data.tags["oiplab.stage"]: r for r in runs}
    assert set(by_stage) == {"prepare", "train"}
    run = by_stage["train"]
    assert run.data.tags["oiplab.seed"] == "0"
    assert run.data.tags["oiplab.group"] == by_stage["prepare"].data.tags["oiplab.group"]
    assert run.data.params["train.epochs"] == "1"
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    per_epoch = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in per_epoch] == [1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/model.keras" in artifacts and "model/confusion.png" in artifacts


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs(experiment, tmp_path, monkeypatch):
    """Each experiment's own settings (schedule, batch, ...) run end to end, on tiny data."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_typed(
        f"experiment={experiment}",
        "data=synthetic",
        "data.n_train=100",
        "data.n_test=20",
        "train.epochs=1",
        "tracking.enabled=false",
    )
    prepare.run(cfg)
    metrics = train.run(cfg)
    assert train.model_path(cfg, cfg.train.seed).is_file()
    assert metrics["epochs"] == 1


def test_select_images_and_activations_stage(smoke_cfg):
    from oiplab.stages import activations, select_images

    smoke_cfg.train.epochs = 3  # 200 images: enough epochs that every seed gets 4s and 9s right
    prepare.run(smoke_cfg)
    for seed in smoke_cfg.seeds:
        smoke_cfg.train.seed = seed
        train.run(smoke_cfg)
    selection = select_images.run(smoke_cfg)
    names = [g["name"] for g in selection["groups"]]
    assert names == ["clear_4", "clear_9", "ambiguous_4"]
    assert [len(g["indices"]) for g in selection["groups"]] == [3, 3, 2]

    smoke_cfg.train.seed = smoke_cfg.seeds[0]
    metrics = activations.run(smoke_cfg)
    out = activations.output_dir(smoke_cfg, smoke_cfg.seeds[0])
    with np.load(out / activations.DUMP_FILE) as dump:
        expected = [i for g in selection["groups"] for i in g["indices"]]
        assert dump["image_indices"].tolist() == expected
        assert dump["Conv2D_3"].shape == (8, 3, 3, 128)
        assert list(dump["layer_names"]) == smoke_cfg.activations.layers
    assert len(list((out / "grids").glob("*.png"))) == 8 * len(smoke_cfg.activations.layers)
    assert len(list((out / "common").glob("*.png"))) == 2 * 3
    common = metrics["common"]["Conv2D_3"]["clear_4_vs_clear_9"]
    assert 0 <= common["n_distinct"] <= common["n_common"] <= common["n_elements"] == 1152
    assert json.loads(activations.metrics_path(smoke_cfg, 0).read_text()) == metrics


def test_oip_stage_census_and_outputs(smoke_cfg):
    from oiplab.stages import oip

    prepare.run(smoke_cfg)
    train.run(smoke_cfg)
    smoke_cfg.oip.maps = [0, 5, 127]
    metrics = oip.run(smoke_cfg)
    assert metrics["n_maps"] == 3
    assert metrics["n_with_oip"] + metrics["n_silent"] + metrics["n_zero_not_silent"] == 3
    out = oip.output_dir(smoke_cfg, 0)
    with np.load(out / oip.RESULT_FILE) as arrays:
        assert arrays["map_index"].tolist() == [0, 5, 127]
        assert arrays["images"].shape == (3, smoke_cfg.oip.n_starts, 28, 28)
        assert arrays["best_snapshots"].shape[:2] == (3, len(arrays["snapshot_steps"]))
        silent_maps = arrays["silent"].all(axis=1)
    assert int(silent_maps.sum()) == metrics["n_silent"]
    for name in ("gallery_plain.png", "gallery_contrast.png", "census.json"):
        assert (out / name).stat().st_size > 0


def test_precursor_stage_census(smoke_cfg):
    from oiplab.stages import oip, precursor

    prepare.run(smoke_cfg)
    train.run(smoke_cfg)
    smoke_cfg.oip.maps = [0, 1, 2, 3]
    noise = oip.run(smoke_cfg)
    smoke_cfg.precursor.target = "all"  # search every map so the search itself is exercised
    metrics = precursor.run(smoke_cfg)
    assert metrics["n_maps_searched"] == 128 and metrics["n_candidates"] == 16
    assert metrics["from_noise"] == noise["n_with_oip"]
    assert metrics["from_precursor"] + metrics["still_silent"] == noise["n_silent"]
    with np.load(precursor.output_dir(smoke_cfg, 0) / precursor.RESULT_FILE) as arrays:
        assert arrays["images"].shape == (128, 2, 28, 28)
        assert arrays["top_candidates"].shape == (128, 2)


def test_compare_stage(smoke_cfg):
    from oiplab.stages import compare, oip

    prepare.run(smoke_cfg)
    smoke_cfg.oip.maps = [0, 1, 2, 3]
    for seed in smoke_cfg.seeds:
        smoke_cfg.train.seed = seed
        train.run(smoke_cfg)
        oip.run(smoke_cfg)
    summary = compare.run(smoke_cfg)
    head = summary["headline"]
    for layer in smoke_cfg.compare.layers:
        assert -1 <= head[layer]["matched_corr_median"] <= 1
        assert head[layer]["same_index_chance"] > 0
    assert set(head["interpolation"]) >= {"barrier_naive_mean", "barrier_aligned_mean"}
    assert summary["verdict"].startswith("Conv2D_1:")
    out = compare.output_dir(smoke_cfg)
    for name in (
        "summary.png",
        "interpolation.png",
        "compare.json",
        "correlations_0_1.png",
        "aligned_filters_0_1.png",
    ):
        assert (out / name).stat().st_size > 0, name
    _, runs = _runs(smoke_cfg)
    run = next(r for r in runs if r.data.tags["oiplab.stage"] == "compare")
    assert len(run.data.tags["oiplab.seed_runs"].split(",")) == 2
