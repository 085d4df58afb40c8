"""Faults and bad input, through the real command line: a training job killed with SIGKILL and
restarted, an unreachable tracking server, and a tour of wrong configs and files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from oiplab.params import compose
from tests.conftest import REPO_ROOT


def _workdir(path: Path, *overrides: str) -> Path:
    """A folder with params.yaml = the smoke study (tracking off unless overridden)."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = compose(["experiment=smoke", "tracking.enabled=false", *overrides], root=REPO_ROOT)
    (path / "params.yaml").write_text(OmegaConf.to_yaml(cfg))
    return path


def _stage(name: str, cwd: Path, *overrides: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", f"oiplab.stages.{name}", "--params", "params.yaml", *overrides]
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    if not wait:
        return subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


def _weights(model_file: Path) -> list[np.ndarray]:
    from oiplab.model import load_model

    return load_model(model_file).get_weights()


TRAIN = ("train.epochs=4", "train.batch_size=16", "train.seed=0")


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    straight = _workdir(tmp_path / "straight")
    assert _stage("prepare", straight).returncode == 0
    assert _stage("train", straight, *TRAIN).returncode == 0

    killed = _workdir(tmp_path / "killed")
    assert _stage("prepare", killed).returncode == 0
    proc = _stage("train", killed, *TRAIN, wait=False)
    deadline = time.time() + 300
    state = None
    while time.time() < deadline and proc.poll() is None:
        found = list((killed / ".checkpoints").glob("*.json"))
        if found:
            state = json.loads(found[0].read_text())
            if 1 <= state["epochs_done"] < 4:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "models" / "seed_0").exists()  # no half-written stage output
    assert not list((killed / "models").glob(".seed_0*")) if (killed / "models").exists() else True

    resumed = _stage("train", killed, *TRAIN)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"after epoch {state['epochs_done']}" in resumed.stdout
    for a, b in zip(
        _weights(straight / "models/seed_0/model.keras"),
        _weights(killed / "models/seed_0/model.keras"),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert not list((killed / ".checkpoints").glob("*.keras"))  # cleaned up after success


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_tracking_server_fails_within_seconds(tmp_path):
    work = _workdir(tmp_path, "tracking.enabled=true")
    start = time.time()
    proc = _stage(
        "prepare", work, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}"}
    )
    elapsed = time.time() - start
    assert proc.returncode == 2
    assert "unreachable" in proc.stderr and "MLFLOW_TRACKING_URI" in proc.stderr
    assert elapsed < 20, elapsed
    assert not (work / "data").exists()  # it stopped before doing any work


BAD_CONFIGS = [
    ("train.epochs=-1", "train.epochs"),
    ("oip.layer=Conv2D_9", "oip.layer"),
    ("oip.maps=[500]", "oip.maps"),
    ("seeds=[]", "seeds"),
    ("data.name=cifar", "data.name"),
    ("train.epocs=3", "train.epocs"),
]


@pytest.mark.parametrize(("override", "key"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_gives_a_clear_error(tmp_path, override, key):
    proc = _stage("train", _workdir(tmp_path), override)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and key in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_files_give_clear_errors(tmp_path):
    work = _workdir(tmp_path)
    proc = _stage("train", work)
    assert proc.returncode == 2 and "run the prepare stage first" in proc.stderr

    (work / "params.yaml").write_text("seeds: [0\ntrain: {")
    proc = _stage("train", work)
    assert proc.returncode == 2 and "not a readable YAML params file" in proc.stderr

    work = _workdir(tmp_path / "again")
    assert _stage("prepare", work).returncode == 0
    model = work / "models" / "seed_0" / "model.keras"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"PK\x03\x04 truncated archive")
    proc = _stage("oip", work)
    assert proc.returncode == 2 and "not a readable Keras model" in proc.stderr

    (work / "data" / "prepared" / "meta.json").write_text("{broken")
    proc = _stage("train", work)
    assert proc.returncode == 2 and "meta.json: not valid JSON" in proc.stderr
