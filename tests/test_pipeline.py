"""The real thing: `dvc repro` of the smoke experiment in a project copy, checked through DVC,
the MLflow client, a Hydra sweep, and the report page (in headless Chromium when installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_project

GLOBAL_STAGES = ("prepare", "select_images", "compare", "report")
PER_SEED_STAGES = ("train", "activations", "oip", "precursor")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A project copy on which `dvc repro` of the smoke experiment has run."""
    project = copy_project(tmp_path_factory.mktemp("smoke") / "project")
    env = {
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    _run([sys.executable, "-m", "oiplab.params", "experiment=smoke"], project)
    _run(["dvc", "repro"], project, env)
    params = yaml.safe_load((project / "params.yaml").read_text())
    return project, env, params


def _client(project: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    return client, client.get_experiment_by_name("oiplab").experiment_id


def test_dvc_repro_produces_every_stage_output(smoke):
    project, env, params = smoke
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    per_seed = {f"{stage}@{s}" for stage in PER_SEED_STAGES for s in params["seeds"]}
    assert set(lock["stages"]) == set(GLOBAL_STAGES) | per_seed
    for seed in params["seeds"]:
        assert (project / "models" / f"seed_{seed}" / "model.keras").is_file()
        metrics = json.loads((project / "metrics" / f"train_seed_{seed}.json").read_text())
        assert metrics["seed"] == seed
        dump = project / "artifacts" / "activations" / f"seed_{seed}" / "activations.npz"
        assert dump.is_file()
        census = json.loads((project / "metrics" / f"oip_seed_{seed}.json").read_text())
        assert census["n_with_oip"] + census["n_silent"] + census["n_zero_not_silent"] == 128
        assert (project / "artifacts" / "oip" / f"seed_{seed}" / "gallery_contrast.png").is_file()
        found = json.loads((project / "metrics" / f"precursor_seed_{seed}.json").read_text())
        assert found["from_noise"] == census["n_with_oip"]
        assert found["from_precursor"] + found["still_silent"] == census["n_silent"]

    status = _run(["dvc", "status"], project, env)
    assert "up to date" in status.stdout  # nothing left to re-run
    shown = _run(["dvc", "metrics", "show", "--json"], project, env)
    assert "test_accuracy" in shown.stdout and "same_index_fraction" in shown.stdout
    headline = json.loads((project / "metrics" / "compare.json").read_text())
    assert 0 <= headline["Conv2D_1"]["same_index_fraction"] <= 1


def test_every_stage_run_is_in_mlflow_with_its_tags(smoke):
    project, _, params = smoke
    client, experiment = _client(project)
    runs = client.search_runs([experiment])
    stages = sorted((r.data.tags["oiplab.stage"], r.data.tags.get("oiplab.seed", "")) for r in runs)
    seeds = [str(s) for s in params["seeds"]]
    assert stages == sorted(
        [(stage, "") for stage in GLOBAL_STAGES]
        + [(stage, s) for stage in PER_SEED_STAGES for s in seeds]
    )
    assert len({r.data.tags["oiplab.group"] for r in runs}) == 1  # one pipeline execution
    commit = _run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert all(r.data.tags["oiplab.git_commit"].startswith(commit) for r in runs)
    report = next(r for r in runs if r.data.tags["oiplab.stage"] == "report")
    assert [a.path for a in client.list_artifacts(report.info.run_id, "report")] == [
        "report/index.html"
    ]


def test_report_page_has_every_section_and_embedded_figure(smoke):
    project, _, _ = smoke
    html = (project / "reports" / "index.html").read_text()
    for anchor in ("setup", "training", "activations", "oip", "precursor", "compare"):
        assert f'<section id="{anchor}">' in html, anchor
    assert "figure missing" not in html
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) >= 20
    assert "Answer, from the numbers:" in html
    assert 'src="http' not in html  # nothing to fetch: the page works offline


def test_hydra_multirun_with_the_joblib_launcher(smoke):
    project, env, _ = smoke
    _run(
        [
            sys.executable,
            "-m",
            "oiplab.stages.train",
            "-m",
            "experiment=smoke",
            "train.seed=5,6",
            "paths.models=sweep_models",
            "paths.metrics=sweep_metrics",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ],
        project,
        env,
    )
    for seed in (5, 6):
        assert (project / "sweep_models" / f"seed_{seed}" / "model.keras").is_file()
    client, experiment = _client(project)
    runs = client.search_runs([experiment], filter_string="tags.`oiplab.stage` = 'train'")
    assert {r.data.tags["oiplab.seed"] for r in runs} >= {"5", "6"}


@pytest.mark.slow
def test_report_renders_in_headless_chromium(smoke, tmp_path):
    """Every image of the page decodes in a real browser (Debian packages chromium)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium chromium-driver")
    project, _, _ = smoke
    page = (project / "reports" / "index.html").as_uri()
    flags = CHROMIUM_FLAGS + [
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=180
    ).stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load check did not run"
    ok, total = map(int, loaded.groups())
    assert total >= 20 and ok == total, f"{ok} of {total} images loaded"
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1300,2400", f"--screenshot={shot}", page],
        capture_output=True,
        timeout=180,
    )
    assert shot.stat().st_size > 10_000
