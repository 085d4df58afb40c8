"""The real thing: `dvc repro` of the smoke experiment in a project copy, logging to a real
`mlflow server`, checked through DVC, the server's REST API, a DVC remote, Hydra sweeps (joblib
and submitit), and the report page (in headless Chromium when installed)."""

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

from tests.conftest import MlflowServer, copy_project

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
    """A project copy on which `dvc repro` of the smoke experiment ran against an MLflow server."""
    root = tmp_path_factory.mktemp("smoke")
    project = copy_project(root / "project")
    server = MlflowServer(root)
    try:
        server.wait()
        env = {
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MLFLOW_TRACKING_URI": server.uri,
        }
        _run([sys.executable, "-m", "oiplab.params", "experiment=smoke"], project)
        _run(["dvc", "repro"], project, env)
        params = yaml.safe_load((project / "params.yaml").read_text())
        yield {"project": project, "env": env, "params": params, "server": server}
    finally:
        server.stop()


def search_runs(server: MlflowServer, filter_string: str = "") -> list[dict]:
    """Runs of experiment `oiplab`, through the server's REST API, as {tags, metrics, run_id}."""
    exp = server.api("/api/2.0/mlflow/experiments/get-by-name?experiment_name=oiplab")
    found = server.api(
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [exp["experiment"]["experiment_id"]],
            "filter": filter_string,
            "max_results": 1000,
        },
    )
    return [
        {
            "run_id": r["info"]["run_id"],
            "status": r["info"]["status"],
            "tags": {t["key"]: t["value"] for t in r["data"].get("tags", [])},
            "metrics": {m["key"]: m["value"] for m in r["data"].get("metrics", [])},
        }
        for r in found.get("runs", [])
    ]


def test_dvc_repro_produces_every_stage_output(smoke):
    project, env, params = smoke["project"], smoke["env"], smoke["params"]
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


def test_every_stage_run_reached_the_tracking_server(smoke):
    project, params, server = smoke["project"], smoke["params"], smoke["server"]
    runs = search_runs(server)
    stages = sorted((r["tags"]["oiplab.stage"], r["tags"].get("oiplab.seed", "")) for r in runs)
    seeds = [str(s) for s in params["seeds"]]
    assert stages == sorted(
        [(stage, "") for stage in GLOBAL_STAGES]
        + [(stage, s) for stage in PER_SEED_STAGES for s in seeds]
    )
    assert all(r["status"] == "FINISHED" for r in runs)
    assert len({r["tags"]["oiplab.group"] for r in runs}) == 1  # one pipeline execution
    commit = _run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert all(r["tags"]["oiplab.git_commit"].startswith(commit) for r in runs)
    train = next(r for r in runs if r["tags"]["oiplab.stage"] == "train")
    history = server.api(
        f"/api/2.0/mlflow/metrics/get-history?run_id={train['run_id']}&metric_key=val_accuracy"
    )
    assert [m["step"] for m in history["metrics"]] == list(range(1, params["train"]["epochs"] + 1))
    report = next(r for r in runs if r["tags"]["oiplab.stage"] == "report")
    listed = server.api(f"/api/2.0/mlflow/artifacts/list?run_id={report['run_id']}&path=report")
    assert [f["path"] for f in listed["files"]] == ["report/index.html"]


def test_report_page_has_every_section_and_embedded_figure(smoke):
    html = (smoke["project"] / "reports" / "index.html").read_text()
    for anchor in ("setup", "training", "activations", "oip", "precursor", "compare"):
        assert f'<section id="{anchor}">' in html, anchor
    assert "figure missing" not in html
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) >= 20
    assert "Answer, from the numbers:" in html
    assert 'src="http' not in html  # nothing to fetch: the page works offline
    assert smoke["server"].uri + "/#/experiments/" in html  # sections link their runs


def test_dvc_push_then_pull_into_a_fresh_clone_leaves_nothing_to_run(smoke, tmp_path):
    project, env = smoke["project"], smoke["env"]
    _run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], project, env)
    _run(["git", "add", "-A"], project)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], project)
    _run(["dvc", "push"], project, env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    _run(["dvc", "pull"], clone, env)
    assert (clone / "models" / "seed_0" / "model.keras").is_file()
    status = _run(["dvc", "status"], clone, env)
    assert "up to date" in status.stdout, status.stdout
    repro = _run(["dvc", "repro"], clone, env)
    assert "Running stage" not in repro.stdout, repro.stdout


@pytest.mark.slow
def test_four_parallel_jobs_on_the_embedded_store_lose_nothing(smoke):
    """joblib launcher, 4 processes, all logging to one sqlite:///mlflow.db."""
    project = smoke["project"]
    env = {**smoke["env"], "MLFLOW_TRACKING_URI": ""}  # empty: the config's sqlite store
    seeds = ["10", "11", "12", "13"]
    _run(
        [
            sys.executable,
            "-m",
            "oiplab.stages.train",
            "-m",
            "experiment=smoke",
            f"train.seed={','.join(seeds)}",
            "paths.models=par_models",
            "paths.metrics=par_metrics",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
        ],
        project,
        env,
    )
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name("oiplab").experiment_id
    runs = client.search_runs([exp], filter_string="tags.`oiplab.stage` = 'train'")
    assert sorted(r.data.tags["oiplab.seed"] for r in runs) == seeds
    for r in runs:
        assert r.info.status == "FINISHED"
        assert "test_accuracy" in r.data.metrics
        assert len(client.get_metric_history(r.info.run_id, "val_accuracy")) == 1
        files = {a.path for a in client.list_artifacts(r.info.run_id, "model")}
        assert "model/model.keras" in files
        assert (project / "par_models" / f"seed_{r.data.tags['oiplab.seed']}").is_dir()


@pytest.mark.slow
def test_submitit_sweep_then_compare_and_gather_without_dvc(smoke):
    project, env, server = smoke["project"], smoke["env"], smoke["server"]
    common = [
        "experiment=smoke",
        "seeds=[20,21]",
        "paths.models=sub_models",
        "paths.metrics=sub_metrics",
        "paths.artifacts=sub_artifacts",
    ]
    _run(
        [
            sys.executable,
            "-m",
            "oiplab.stages.train",
            "-m",
            *common,
            "train.seed=20,21",
            "hydra/launcher=local",
            "hydra.sweep.dir=multirun/submitit",
        ],
        project,
        env,
    )
    logs = list((project / "multirun" / "submitit").rglob("*_log.out"))
    assert len(logs) >= 2  # each job ran as its own submitit process
    _run([sys.executable, "-m", "oiplab.stages.compare", *common], project, env)
    assert (project / "sub_artifacts" / "compare" / "summary.png").is_file()
    runs = search_runs(server, "tags.`oiplab.stage` = 'train'")
    assert {"20", "21"} <= {r["tags"].get("oiplab.seed") for r in runs}
    gathered = _run(
        [sys.executable, "-m", "oiplab.gather", "--uri", server.uri, "--json", "gathered.json"],
        project,
        env,
    )
    rows = json.loads((project / "gathered.json").read_text())
    assert {row["seed"] for row in rows} >= {"20", "21"}, gathered.stdout


@pytest.mark.slow
def test_report_renders_in_headless_chromium(smoke, tmp_path):
    """Every image of the page decodes in a real browser (Debian packages chromium)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium chromium-driver")
    page = (smoke["project"] / "reports" / "index.html").as_uri()
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
