"""The width study: `model.width` (width 1 is the articles' network to the digit), the per-width
completion record, the aggregate on hand-made per-width results with a known answer, the report's
section; and (slow) the sweep end to end on synthetic data, rerun without recomputing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oiplab.compare.summary import Answer, Barriers, Estimate
from oiplab.compare.width import (
    WidthResult,
    WidthStudyError,
    by_layer_and_width,
    is_done,
    load_widths,
    settings_digest,
    trend,
    width_metrics,
    width_records,
)
from oiplab.config import ConfigError
from oiplab.layout import Layout, WidthFiles
from oiplab.model import ARTICLES_PARAM_COUNT, build_model, layer_shapes
from oiplab.report import page
from oiplab.report.html import Links, render
from tests import results
from tests.conftest import REPO_ROOT, compose_typed, model_cfg

ARTICLES_SHAPES = {
    "Conv2D_1": (26, 26, 32),
    "Max_Pool_1": (13, 13, 32),
    "Conv2D_2": (11, 11, 64),
    "Max_Pool_2": (5, 5, 64),
    "Conv2D_3": (3, 3, 128),
    "Dense_1": (1, 1, 100),
    "Dense_2": (1, 1, 10),
}


def test_width_one_is_the_articles_network_to_the_digit():
    cfg = model_cfg()
    assert cfg.width == 1.0
    model = build_model(cfg)
    assert model.count_params() == ARTICLES_PARAM_COUNT == 208_982
    assert layer_shapes(cfg) == ARTICLES_SHAPES
    built = {n: tuple(model.get_layer(n).output.shape[1:]) for n in ARTICLES_SHAPES}
    assert built["Conv2D_3"] == (3, 3, 128) and built["Dense_1"] == (100,)


@pytest.mark.parametrize(
    ("width", "filters", "units", "n_params"),
    [
        (0.25, [8, 16, 32], 25, 13_373),
        (0.5, [16, 32, 64], 50, 52_656),
        (2, [64, 128, 256], 200, 832_674),
    ],
)
def test_width_scales_every_conv_and_the_hidden_dense_layer(width, filters, units, n_params):
    cfg = model_cfg().model_copy(update={"width": width})
    assert (cfg.conv_filters, cfg.hidden_units) == (filters, units)
    model = build_model(cfg)
    assert model.count_params() == n_params
    for name, (h, w, c) in layer_shapes(cfg).items():  # the one arithmetic agrees with Keras
        shape = tuple(model.get_layer(name).output.shape[1:])
        assert shape == ((c,) if name.startswith("Dense") else (h, w, c)), name


def test_a_width_leaving_a_layer_without_units_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"model.width=0.01 leaves Conv2D_1 with no unit"):
        compose_typed("model.width=0.01")
    with pytest.raises(ConfigError, match=r"model.width"):
        compose_typed("model.width=0")
    assert compose_typed("model.width=0.02").model.conv_filters == [1, 1, 3]  # rounded half up


def test_the_settings_digest_ignores_width_and_paths_but_not_training():
    base = compose_typed("experiment=width_cpu")
    assert settings_digest(base) == settings_digest(
        compose_typed("experiment=width_cpu", "model.width=2")
    )
    moved = compose_typed("experiment=width_cpu", "paths.models=elsewhere", "oip.n_starts=3")
    assert settings_digest(base) == settings_digest(moved)
    assert settings_digest(base) != settings_digest(
        compose_typed("experiment=width_cpu", "train.epochs=3")
    )
    assert settings_digest(base) != settings_digest(
        compose_typed("experiment=width_cpu", "seeds=[0,1]")
    )


def _result(width: float, digest: str = "d1", accuracies=(0.98, 0.99, 1.0)) -> WidthResult:
    return WidthResult(
        width=width,
        settings_digest=digest,
        n_params=int(1000 * width),
        seeds=[0, 1, 2],
        test_accuracy=list(accuracies),
    )


def _answer(r2: float, barrier: float) -> Answer:
    """An answer whose every layer has one-to-one r2 `r2` and whose re-ordered test-loss barrier
    is `barrier` (as trained: 1.0), intervals +-0.125."""
    a = results.answer(["Conv2D_1", "Dense_1"])
    layers = {
        n: dataclasses.replace(la, one_to_one=Estimate(r2, r2 - 0.125, r2 + 0.125, 0.25))
        for n, la in a.layers.items()
    }
    by = {
        how: {"test": {"loss": Estimate(b, b - 0.125, b + 0.125)}}
        for how, b in (("naive", 1.0), ("weights", barrier))
    }
    return Answer(layers=layers, barriers=Barriers(by_alignment=by))


def _write_width(folder: Path, result: WidthResult, answer: Answer) -> None:
    sub = folder / WidthFiles.folder(result.width)
    sub.mkdir(parents=True)
    answer.save(sub)
    result.save(sub)


# The known answer: one-to-one r2 rises 0.25 -> 0.5 -> 0.75 as width doubles, the re-ordered
# barrier falls 0.5 -> 0.25 -> 0.125.
KNOWN = [(0.5, 0.25, 0.5), (1.0, 0.5, 0.25), (2.0, 0.75, 0.125)]


def _study(tmp_path: Path) -> Path:
    folder = tmp_path / "widths" / "width_cpu"
    for width, r2, barrier in reversed(KNOWN):  # written widest first: read back narrowest first
        _write_width(folder, _result(width), _answer(r2, barrier))
    _write_width(folder, _result(4.0, digest="other"), _answer(0.0, 9.0))  # other settings
    (folder / "w8").mkdir()  # a width whose job never finished
    return folder


def test_the_aggregate_of_hand_made_widths_has_the_known_answer(tmp_path):
    points, left_out = load_widths(_study(tmp_path), "d1")
    assert [p.result.width for p in points] == [0.5, 1.0, 2.0]
    assert left_out == ["w4 (other settings: other)", "w8 (unfinished)"]
    rows = width_records(points)
    r2 = [r for r in rows if r["statistic"] == "one_to_one_r2" and r["layer"] == "Dense_1"]
    assert [(r["width"], r["value"], r["low"], r["high"], r["null"]) for r in r2] == [
        (0.5, 0.25, 0.125, 0.375, 0.25),
        (1.0, 0.5, 0.375, 0.625, 0.25),
        (2.0, 0.75, 0.625, 0.875, 0.25),
    ]
    reordered = [r["value"] for r in rows if r["statistic"] == "loss_barrier_reordered"]
    assert reordered == [0.5, 0.25, 0.125]
    partnered = next(r for r in rows if r["statistic"] == "partnered")
    assert partnered["null"] == 0.375  # beside the rotated units' 95th percentile
    assert trend(rows, "one_to_one_r2", "Conv2D_1") == 1.0
    assert trend(rows, "loss_barrier_reordered", "network") == -1.0
    assert np.isnan(trend(rows[:3], "one_to_one_r2", "Conv2D_1"))  # one width: no trend
    accuracy = next(r for r in rows if r["statistic"] == "test_accuracy")
    # mean 0.99, t(0.975, 2) = 4.303 times the standard error 0.01 / sqrt(3)
    assert accuracy["value"] == pytest.approx(0.99)
    assert accuracy["value"] - accuracy["low"] == pytest.approx(4.3027 * 0.01 / np.sqrt(3), 1e-4)
    assert accuracy["high"] == 1.0  # clipped: an accuracy
    metrics = width_metrics(points)
    assert list(metrics) == ["w0.5", "w1", "w2"]
    assert metrics["w2"]["Conv2D_1"]["one_to_one_r2"] == 0.75
    assert metrics["w1"]["network"] == pytest.approx(
        {
            "loss_barrier_as_trained": 1.0,
            "loss_barrier_reordered": 0.25,
            "test_accuracy": 0.99,
            "n_params": 1000,
            "n_seeds": 3,
        }
    )
    cells = by_layer_and_width(rows)
    assert [(c["layer"], c["width"]) for c in cells][:4] == [
        ("Conv2D_1", 0.5),
        ("Conv2D_1", 1.0),
        ("Conv2D_1", 2.0),
        ("Dense_1", 0.5),
    ]


def test_no_finished_width_is_an_error_naming_the_command(tmp_path):
    with pytest.raises(WidthStudyError, match="oiplab run width -m experiment=width_cpu"):
        load_widths(_study(tmp_path), "never")


def test_a_width_is_done_only_with_its_result_under_the_same_settings(tmp_path):
    folder = _study(tmp_path)
    assert is_done(folder / "w1", 1.0, "d1")
    assert not is_done(folder / "w1", 1.0, "d2")  # other settings: computed again
    assert not is_done(folder / "w8", 8.0, "d1")  # unfinished
    (folder / "w2" / WidthFiles.result).write_text("{not json")
    assert not is_done(folder / "w2", 2.0, "d1")  # unreadable: computed again


def test_the_report_shows_the_width_section_or_the_command(smoke_cfg, tmp_path):
    from oiplab.io import write_json

    lay = results.write_study(smoke_cfg)
    links = Links(None, lay)
    missing = Path("no-figure.png")
    html = render(page.context(smoke_cfg, lay, links, ("c", "d"), missing, missing))
    assert '<section id="width"><h2>Does width change the answer?</h2>' in html
    assert "has not been run" in html and page.WIDTH_COMMAND in html
    points, _ = load_widths(_study(tmp_path), "d1")
    write_json(Layout.of(smoke_cfg).width_records(), width_records(points))
    context = page.context(smoke_cfg, lay, links, ("c", "d"), missing, missing)
    html = render(context)
    assert "has not been run" not in html
    assert "<td>Dense_1</td><td>2</td><td>0.75 (0.62-0.88)</td><td>0.25</td>" in html
    assert (
        "<td>1</td><td>99.0% (96.5%-100.0%)</td><td>1.00 (0.88-1.12)</td><td>0.25 (0.12-0.38)</td>"
        in html
    )
    assert "one-to-one r2 Conv2D_1 +1.00, Dense_1 +1.00; re-ordered test-loss barrier -1.00" in html


@pytest.mark.slow
def test_the_sweep_end_to_end_then_rerun_computes_nothing(tmp_path):
    """2 widths x 2 seeds on the synthetic data, one Hydra multirun; the rerun skips both widths
    (their files untouched) and writes the same summary; the figures go to the sweep's parent
    MLflow run."""
    project = tmp_path / "p"
    project.mkdir()
    for rel in ("conf", "params.yaml"):
        src, dst = REPO_ROOT / rel, project / rel
        (subprocess.run(["cp", "-r", str(src), str(dst)], check=True))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    uri = f"sqlite:///{project}/mlflow.db"

    def oiplab(*args: str) -> str:
        cmd = [sys.executable, "-m", "oiplab.cli", "run", *args, f"tracking.uri={uri}"]
        done = subprocess.run(
            cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    oiplab(
        "prepare",
        "-m",
        "experiment=smoke",
        "hydra.sweep.dir=multirun/prep",
        "paths.prepared=data/prepared",
    )
    first = oiplab("width", "-m", "experiment=width_smoke", "hydra.sweep.dir=multirun/a")
    folders = [project / "widths" / "width_smoke" / w for w in ("w0.5", "w1")]
    for folder in folders:
        assert WidthResult.load(folder).seeds == [0, 1]
        assert (folder / "seed_1" / "model.keras").is_file()
    assert "skipped" not in first
    summary = (project / "metrics" / "width.json").read_text()
    assert set(Answer.load(folders[0], "width").layers) == set(compose_typed().compare.layers)
    stamps = {p: p.stat().st_mtime_ns for f in folders for p in f.rglob("*")}

    second = oiplab("width", "-m", "experiment=width_smoke", "hydra.sweep.dir=multirun/b")
    assert second.count("already computed with these settings") == 2
    assert "[train]" not in second and "[compare]" not in second  # nothing trained or compared
    assert {p: p.stat().st_mtime_ns for f in folders for p in f.rglob("*")} == stamps
    assert (project / "metrics" / "width.json").read_text() == summary

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("oiplab")
    runs = client.search_runs([experiment.experiment_id], "tags.`oiplab.stage` = 'pipeline'")
    sweep_a = next(r for r in runs if r.data.tags["oiplab.execution"].endswith("multirun/a"))
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{sweep_a.info.run_id}'"
    )
    assert sorted(c.data.params["model.width"] for c in children) == ["0.5", "1.0"]
    logged = [f.path for f in client.list_artifacts(sweep_a.info.run_id, "width")]
    assert "width/width_one_to_one_r2.png" in logged
    assert (project / "artifacts" / "width" / "width_one_to_one_r2.png").is_file()


def test_a_width_figure_names_a_dashed_reference_only_where_it_draws_one_and_keeps_r2_readable():
    from oiplab.render.width import R2_FLOOR, width_figure

    def row(statistic: str, width: float, value: float, null: float | None) -> dict:
        return {
            "statistic": statistic,
            "layer": "Conv2D_1",
            "width": width,
            "value": value,
            "low": value - 0.1,
            "high": value + 0.1,
            "null": null,
        }

    accuracy = width_figure(
        [row("test_accuracy", w, 0.99, None) for w in (0.5, 1.0)], "test_accuracy"
    )
    assert "dashed" not in accuracy.axes[0].get_title()
    r2 = [row("many_to_one_r2", 0.5, 0.6, -10.5), row("many_to_one_r2", 1.0, 0.7, 0.5)]
    many = width_figure(r2, "many_to_one_r2")
    assert "dashed: untrained networks" in many.axes[0].get_title()
    assert many.axes[0].get_ylim()[0] == R2_FLOOR  # the -10.5 null does not flatten the trained
