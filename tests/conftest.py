"""Shared fixtures: the real `conf/` composed with `experiment=smoke`, redirected under tmp_path."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a copy of the project needs to run its pipeline (the package itself is installed editable).
PROJECT_FILES = (
    "bin",
    "conf",
    "src",
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    ".dvc/config",
    ".dvc/plots",
    ".dvcignore",
    ".gitignore",
)
# A stage pins TensorFlow's threads to `threads` (oiplab.backend.pin_threads), which it cannot
# change once TensorFlow runs; a test that starts TensorFlow before a stage in this process starts
# it with the study's count, as a stage process would.
STUDY_THREADS = yaml.safe_load((REPO_ROOT / "conf" / "config.yaml").read_text())["threads"]
os.environ["TF_NUM_INTRAOP_THREADS"] = str(STUDY_THREADS)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run the tests marked slow or integration (`make test-slow`)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Skipped with a reason rather than deselected, so every default run lists them.
    if config.getoption("--run-slow") or os.environ.get("OIPLAB_RUN_SLOW") == "1":
        return
    reasons = {
        "slow": "slow: run with `make test-slow` (pytest --run-slow)",
        "integration": "integration (real dvc/mlflow/browser): run with `make test-slow`",
    }
    for item in items:
        for marker, reason in reasons.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture(autouse=True)
def _no_leaked_environment() -> Iterator[None]:
    """Set up before `_quiet_tf` (autouse fixtures go in the order they are defined), so its
    check runs after monkeypatch has undone what a test set on purpose."""
    yield
    # An in-process Hydra sweep names its execution in the environment, as its jobs need; the
    # next test is another execution.
    os.environ.pop("OIPLAB_EXECUTION", None)
    # `mlflow.set_tracking_uri` exports the URI: every later stage, in this process or a child,
    # would log there (the fault tour's stores came out empty). Name the test that did it.
    leaked = os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert leaked is None, f"the test left MLFLOW_TRACKING_URI={leaked} (use tracking.use_uri)"


@pytest.fixture(autouse=True)
def _quiet_tf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)


def compose_typed(*overrides: str):
    from oiplab.config import to_typed
    from oiplab.params import compose

    return to_typed(compose(list(overrides), root=REPO_ROOT))


@functools.cache
def _default_cfg():
    return compose_typed()


def model_cfg():
    """The default study's `model` section (conf/ is the only source of defaults)."""
    return _default_cfg().model.model_copy(deep=True)


def train_cfg(**changes):
    """The default study's `train` section with `changes`."""
    return _default_cfg().train.model_copy(update=changes)


@pytest.fixture
def stage_logs() -> None:
    """The `oiplab` loggers set up as a stage sets them up (what a test captures with capsys:
    a library message a stage would show)."""
    from oiplab import logs

    logs.setup("test")


@pytest.fixture
def smoke_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The smoke experiment, run from tmp_path, logging to an sqlite store inside it."""
    monkeypatch.chdir(tmp_path)
    return compose_typed(
        "experiment=smoke",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "data.n_train=200",
        "data.n_test=160",
    )


def copy_project(dest: Path) -> Path:
    """Copy the project's pipeline files into `dest` and make it a git repository of its own."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in PROJECT_FILES:
        src = REPO_ROOT / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env)
    return dest


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (sqlite backend, artifacts in a folder), for tests;
    given `admin_password`, MLflow's basic-auth app, whose only user is `admin`."""

    def __init__(self, folder: Path, admin_password: str | None = None):
        import sys

        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "server.log", "w")  # noqa: SIM115 (closed in stop)
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        self.login, env, auth = None, dict(os.environ), []
        if admin_password is not None:
            self.login = ("admin", admin_password)
            ini = folder / "basic_auth.ini"
            ini.write_text(
                f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder}/auth.db\n"
                "admin_username = admin\nauthorization_function = "
                "mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            env |= {
                "MLFLOW_AUTH_CONFIG_PATH": str(ini),
                "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
            }
            auth = ["--app-name", "basic-auth"]
        self.proc = subprocess.Popen(
            [
                str(mlflow_bin),
                "server",
                *auth,
                "--backend-store-uri",
                f"sqlite:///{folder}/server.db",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )

    def wait(self, timeout: float = 120.0) -> None:
        import time
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: see {self.log.name}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"mlflow server did not answer within {timeout} s")

    def api(self, path: str, body: dict | None = None) -> dict:
        """Call the REST API: POST `body` as JSON, or GET when there is none."""
        import json
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.login:
            import base64

            token = base64.b64encode(":".join(self.login).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(self.uri + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        import signal
        from contextlib import suppress

        with suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        with suppress(ProcessLookupError):  # its workers (uvicorn, job runners) share its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def run_study(cfg) -> dict:
    """Every stage of the study in-process, in dvc.yaml's order (the seed-split design included:
    the report answers from it); each stage's return value by name. `cfg.train.seed` and
    `cfg.split.design` are set per stage and left at the first seed afterwards."""
    from oiplab.stages import (
        activations,
        alignment,
        compare,
        compare_split,
        oip,
        oip_compare,
        precursor,
        prepare,
        report,
        select_images,
        train,
        train_split,
    )

    out = {"prepare": prepare.run(cfg)}
    for seed in cfg.seeds:
        cfg.train.seed = seed
        out[f"train{seed}"] = train.run(cfg)
    out["selection"] = select_images.run(cfg)
    for seed in cfg.seeds:
        cfg.train.seed = seed
        out[f"activations{seed}"] = activations.run(cfg)
        out[f"oip{seed}"] = oip.run(cfg)
        out[f"precursor{seed}"] = precursor.run(cfg)
    for design in cfg.split.designs:
        cfg.split.design = design
        for member in cfg.split.members:
            cfg.train.seed = member
            out[f"train_split_{design}{member}"] = train_split.run(cfg)
        out[f"compare_split_{design}"] = compare_split.run(cfg)
    cfg.train.seed = cfg.seeds[0]
    stages = {"compare": compare, "alignment": alignment, "oip_compare": oip_compare}
    for name, stage in (*stages.items(), ("report", report)):
        out[name] = stage.run(cfg)
    return out
