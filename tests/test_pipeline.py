"""The real thing: `dvc repro` of the smoke experiment in a project copy, and a Hydra sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from tests.conftest import copy_project

GLOBAL_STAGES = ("prepare", "select_images", "compare")
PER_SEED_STAGES = ("train", "activations", "oip", "precursor")


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_smoke_pipeline_with_dvc_and_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    project = copy_project(tmp_path / "project")
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": bindir + os.pathsep + os.environ["PATH"]}
    _run(
        [
            sys.executable,
            "-m",
            "oiplab.params",
            "experiment=smoke",
        ],
        project,
    )
    _run(["dvc", "repro"], project, env)

    params = yaml.safe_load((project / "params.yaml").read_text())
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    per_seed = {f"{stage}@{s}" for stage in PER_SEED_STAGES for s in params["seeds"]}
    assert set(lock["stages"]) == set(GLOBAL_STAGES) | per_seed
    for seed in params["seeds"]:
        assert (project / "models" / f"seed_{seed}" / "model.keras").is_file()
        metrics = json.loads((project / "metrics" / f"train_seed_{seed}.json").read_text())
        assert metrics["seed"] == seed
        assert (
            project / "artifacts" / "activations" / f"seed_{seed}" / "activations.npz"
        ).is_file()

    status = _run(["dvc", "status"], project, env)
    assert "up to date" in status.stdout  # nothing left to re-run

    shown = _run(["dvc", "metrics", "show", "--json"], project, env)
    assert "test_accuracy" in shown.stdout and "same_index_fraction" in shown.stdout
    headline = json.loads((project / "metrics" / "compare.json").read_text())
    assert 0 <= headline["Conv2D_1"]["same_index_fraction"] <= 1

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("oiplab").experiment_id])
    stages = sorted((r.data.tags["oiplab.stage"], r.data.tags.get("oiplab.seed")) for r in runs)
    seeds = [str(s) for s in params["seeds"]]
    assert stages == sorted(
        [(stage, None) for stage in GLOBAL_STAGES]
        + [(stage, s) for stage in PER_SEED_STAGES for s in seeds]
    )
    assert len({r.data.tags["oiplab.group"] for r in runs}) == 1  # one pipeline execution
    commit = _run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert all(r.data.tags["oiplab.git_commit"].startswith(commit) for r in runs)

    # The same stage code as a Hydra multirun, two jobs in parallel with the joblib launcher.
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
    runs = client.search_runs(
        [client.get_experiment_by_name("oiplab").experiment_id],
        filter_string="tags.`oiplab.stage` = 'train'",
    )
    assert {r.data.tags["oiplab.seed"] for r in runs} >= {"5", "6"}
