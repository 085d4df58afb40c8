"""MLflow bookkeeping shared by all stages: one run per stage execution, tagged so that the runs of
one pipeline execution are easy to find together (`tags.oiplab.group`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from oiplab.config import Config, tracking_uri
from oiplab.errors import OiplabError

TAG_PREFIX = "oiplab."
SERVER_PROBE_TIMEOUT_S = 5.0


class TrackingError(OiplabError):
    """The MLflow tracking store cannot be used (server unreachable, sqlite store locked)."""


def check_server(uri: str, timeout: float = SERVER_PROBE_TIMEOUT_S) -> None:
    """Fail fast, with the way out, when an http(s) tracking server does not answer.

    MLflow itself retries for minutes before giving up; a probe of the server's /health
    endpoint turns that into a clear error within `timeout` seconds.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
            if reply.status == 200:
                return
            problem = f"HTTP {reply.status}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise TrackingError(
        f"MLflow tracking server {uri} is unreachable ({problem}). Start it, or unset "
        "MLFLOW_TRACKING_URI to use the local store sqlite:///mlflow.db, or run with "
        "tracking.enabled=false (nothing is logged then)."
    )


@contextmanager
def _store_setup_lock(uri: str) -> Iterator[None]:
    """Serialize the creation of an sqlite store and its experiment across processes.

    Parallel jobs that all find no `mlflow.db` would otherwise run MLflow's schema migrations at
    the same time and fail; the first job creates the store, the others then find it ready.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    with FileLock(str(db) + ".lock", timeout=300):
        yield


def _is_sqlite_lock(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "database is locked" in text or "database table is locked" in text


def git_commit(root: Path | None = None) -> str:
    """HEAD commit, with `-dirty` when tracked files differ; `unknown` outside a git checkout."""
    cwd = str(root or Path.cwd())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty.strip() else "")


def config_digest(cfg: Config) -> str:
    """A short digest of the study's settings, the same for every stage and seed of one pipeline."""
    tree = asdict(cfg)
    tree["train"].pop("seed", None)
    tree.pop("tracking", None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def run_tags(cfg: Config, stage: str, seed: int | None) -> dict[str, str]:
    commit = git_commit()
    digest = config_digest(cfg)
    # dvc exp run exports DVC_EXP_NAME; otherwise commit + config digest identify one execution.
    group = (
        os.environ.get("DVC_EXP_NAME") or os.environ.get("OIPLAB_GROUP") or f"{commit[:8]}-{digest}"
    )
    tags = {
        "stage": stage,
        "dataset": cfg.data.name,
        "git_commit": commit,
        "config_digest": digest,
        "group": group,
        "dvc_exp": os.environ.get("DVC_EXP_NAME", ""),
    }
    if seed is not None:
        tags["seed"] = str(seed)
    return {TAG_PREFIX + k: v for k, v in tags.items()}


@contextmanager
def stage_run(cfg: Config, stage: str, seed: int | None = None) -> Iterator[Any]:
    """Open one MLflow run for a stage execution (or do nothing when tracking is disabled).

    The run carries the resolved config as parameters and the tags of `run_tags`. Yields the
    active `mlflow.ActiveRun`, or None when `tracking.enabled` is false.
    """
    if not cfg.tracking.enabled:
        yield None
        return
    import mlflow

    from oiplab.backend import versions

    uri = tracking_uri(cfg)
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    name = stage if seed is None else f"{stage}-seed{seed}"
    tags = run_tags(cfg, stage, seed) | {TAG_PREFIX + "v." + k: v for k, v in versions().items()}
    try:
        with _store_setup_lock(uri):
            mlflow.set_experiment(cfg.tracking.experiment)
        with mlflow.start_run(run_name=name, tags=tags) as run:
            mlflow.log_params(flatten(asdict(cfg)))
            yield run
            mlflow.flush_async_logging()  # surface logging errors here, not silently later
    except Exception as exc:
        if uri.startswith("sqlite") and _is_sqlite_lock(exc):
            raise TrackingError(
                f"the embedded MLflow store {uri} was locked by concurrent jobs, so this run's "
                "records could not be written. For parallel jobs use a tracking server: "
                "`mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 "
                "--port 5000` and MLFLOW_TRACKING_URI=http://127.0.0.1:5000"
            ) from exc
        raise


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log numeric metrics on the active run, if any (asynchronously: it never stalls training)."""
    import mlflow

    if mlflow.active_run() is None:
        return
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    mlflow.log_metrics(clean, step=step, synchronous=False)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_artifacts(folder: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def epoch_logger():
    """A Keras callback that sends each epoch's metrics to the active MLflow run."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            log_metrics(logs or {}, step=epoch + 1)

    return EpochLogger()
