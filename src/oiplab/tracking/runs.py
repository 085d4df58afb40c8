"""MLflow runs: one parent run per pipeline execution (a `dvc repro`, one queued or temporary DVC
experiment, one Hydra sweep), one nested run per stage execution, and the handle a stage logs
through.

A stage's run is opened before its work (so its duration is the stage's, and a crash, SIGTERM or
SIGINT ends it FAILED or KILLED with the reason) and probes the store first. Every write to the
store is held against stop signals (`oiplab.stops`): a stop waits for the write to end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oiplab.config import Config
from oiplab.io import to_json
from oiplab.stops import STOP, StageInterrupted, held, holding, raise_if_interrupted, signals_raise
from oiplab.tracking.store import (
    bound_http_waits,
    check_server,
    store_error,
    store_failed,
    store_lock,
    tracking_uri,
    use_uri,
)

if TYPE_CHECKING:
    import keras
    import numpy as np
    from mlflow import ActiveRun
    from mlflow.tracking import MlflowClient

TAG_PREFIX = "oiplab."
# Files DVC or the pipeline itself rewrites during `dvc repro`: they do not make a checkout dirty.
PIPELINE_WRITTEN = ("dvc.lock", "*.gitignore", "metrics")


def git_commit(root: Path | None = None) -> str:
    """HEAD commit, with `-dirty` when tracked files other than the pipeline's own differ;
    `unknown` outside a git checkout. Asked of git once per process and folder."""
    return _git_commit(str(root or Path.cwd()))


@functools.cache
def _git_commit(cwd: str) -> str:
    exclude = [f":(exclude,glob)**/{p}" if "*" in p else f":(exclude){p}" for p in PIPELINE_WRITTEN]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *exclude)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def config_digest(cfg: Config) -> str:
    """A short digest of the study's settings, the same for every stage and seed of one pipeline."""
    tree = cfg.model_dump()
    tree["train"].pop("seed", None)
    tree.pop("tracking", None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as one level, its keys joined with dots."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def execution() -> tuple[str, str] | None:
    """(key, name) of the pipeline execution this process belongs to, or None for a stage run
    on its own. A Hydra sweep sets OIPLAB_EXECUTION; under DVC the key is the `dvc` process
    (plus the experiment's name: a queue worker runs several experiments)."""
    if os.environ.get("OIPLAB_EXECUTION"):
        key = os.environ["OIPLAB_EXECUTION"]
        return key, key.split(":", 1)[-1]
    import psutil  # installed with DVC

    exp = os.environ.get("DVC_EXP_NAME", "")
    try:
        for proc in psutil.Process().parents():
            cmd = proc.cmdline()
            if any(Path(c).name == "dvc" for c in cmd[:2]) or cmd[1:3] == ["-m", "dvc"]:
                return f"dvc:{proc.pid}:{proc.create_time():.0f}:{exp}", exp or "dvc repro"
    except psutil.Error:
        return None
    return None


def _prefixed(tags: dict[str, str]) -> dict[str, str]:
    return {TAG_PREFIX + k: v for k, v in tags.items()}


def shared_tags(cfg: Config) -> dict[str, str]:
    """The tags a stage's run shares with its execution's parent run: what was studied, with
    which code and settings."""
    return _prefixed(
        {
            "study": cfg.study,
            "dataset": cfg.data.name,
            "git_commit": git_commit(),
            "config_digest": config_digest(cfg),
        }
    )


def run_tags(cfg: Config, stage: str, seed: int | None) -> dict[str, str]:
    """The tags of a stage's run: its stage and seed, and the tags it shares with its parent."""
    tags = _prefixed({"stage": stage}) | shared_tags(cfg)
    tags[TAG_PREFIX + "dvc_exp"] = os.environ.get("DVC_EXP_NAME", "")
    if seed is not None:
        tags[TAG_PREFIX + "seed"] = str(seed)
    return tags


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The experiment's id, creating it so that the UI opens on its runs table and, for the
    embedded store, artifacts go to the project's `mlruns/` (never to a temporary workspace)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").as_uri()
    experiment_id = client.create_experiment(name, artifact_location=location)
    client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")
    client.set_experiment_tag(
        experiment_id,
        "mlflow.note.content",
        "oiplab: do two trainings of the same CNN learn the same filters, in the same order? "
        "One parent run per pipeline execution, its stages nested under it.",
    )
    return experiment_id


def _parent_run(client: MlflowClient, experiment_id: str, cfg: Config, key: str, name: str) -> str:
    """The parent run of execution `key` (created by its first stage), marked RUNNING."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`oiplab.execution` = '{key}'", max_results=1
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    tags = {"mlflow.runName": f"{cfg.study}: {name}"}
    tags |= _prefixed({"execution": key, "stage": "pipeline"}) | shared_tags(cfg)
    return client.create_run(experiment_id, tags=tags).info.run_id


def _close_parent(client: MlflowClient, parent: str) -> None:
    """End the parent run when none of its stages runs: FAILED if any of them failed."""
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
        max_results=5000,
    )
    statuses = {c.info.status for c in children}
    if "RUNNING" in statuses:
        return
    bad = statuses & {"FAILED", "KILLED"}
    client.set_terminated(parent, status="FAILED" if bad else "FINISHED")


class Run:
    """A stage's run handle. This base is the disabled run (`tracking.enabled=false`): every
    method records nothing. `TrackedRun` records into the MLflow run the stage opened."""

    enabled = False
    run_id: str | None = None

    @property
    def record(self) -> dict[str, str]:
        """The run's identity, for a stage's outputs (the report links exactly this run)."""
        return {}

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log the numeric values of `metrics` (not NaN, not booleans)."""

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        """Log every file of `folder`, under `artifact_path`."""

    def log_json(self, data: Any, artifact_file: str) -> None:
        """Log `data` as a JSON artifact named `artifact_file`."""

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log `text` as an artifact named `artifact_file`."""

    def describe(self, text: str) -> None:
        """Set the run's description (shown at the top of its page in the UI)."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set tags on the run."""

    def log_dataset(
        self,
        arrays: tuple[np.ndarray, np.ndarray],
        name: str,
        digest: str,
        source: str,
        context: str,
    ) -> None:
        """Record a data split, its images and labels `arrays`, as an input of the run (MLflow
        datasets), with its sha256 `digest`."""

    def log_keras_model(
        self, model: keras.Model, example: np.ndarray, registered_name: str | None
    ) -> None:
        """Log a trained model as an MLflow Keras model with its signature; register it as
        `registered_name` when the store has a model registry (not on plain file stores)."""

    def continue_from(self, state: dict[str, Any]) -> None:
        """On a resumed training: close the killed job's run as KILLED, and give this run the
        epochs that job completed, so its learning curve is whole."""

    def log_results(
        self, metrics: dict[str, Any], folder: Path | None = None, name: str | None = None
    ) -> None:
        """Log a stage's numbers (nested dicts flattened) and, if given, its output folder."""
        self.log_metrics({k: v for k, v in flatten(metrics).items() if k != "seed"})
        if folder is not None:
            self.log_artifacts(folder, name)

    def epoch_logger(self) -> keras.callbacks.Callback:
        """A Keras callback that logs each epoch's metrics to this run."""
        import keras

        log_metrics = self.log_metrics

        class EpochLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                log_metrics(logs or {}, step=epoch + 1)

        return EpochLogger()


class TrackedRun(Run):
    """The handle of an MLflow run that MLflow's fluent API has active (the stage's run); every
    write is held against stop signals."""

    enabled = True

    def __init__(self, active: ActiveRun) -> None:
        self.run_id = active.info.run_id
        self.experiment_id = active.info.experiment_id

    @property
    def record(self) -> dict[str, str]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id}

    @holding
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        import mlflow

        clean = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # no NaN
        }
        mlflow.log_metrics(clean, step=step)

    @holding
    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)

    @holding
    def log_json(self, data: Any, artifact_file: str) -> None:
        import mlflow

        mlflow.log_dict(json.loads(to_json(data)), artifact_file)

    @holding
    def log_text(self, text: str, artifact_file: str) -> None:
        import mlflow

        mlflow.log_text(text, artifact_file)

    @holding
    def describe(self, text: str) -> None:
        import mlflow

        mlflow.set_tag("mlflow.note.content", text)

    @holding
    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags(tags)

    @holding
    def log_dataset(
        self,
        arrays: tuple[np.ndarray, np.ndarray],
        name: str,
        digest: str,
        source: str,
        context: str,
    ) -> None:
        import warnings

        import mlflow

        x, y = arrays
        with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(
                x, source=source, targets=y, name=name, digest=digest[:16]
            )
        mlflow.log_input(dataset, context=context)

    @holding
    def log_keras_model(
        self, model: keras.Model, example: np.ndarray, registered_name: str | None
    ) -> None:
        import mlflow
        import mlflow.keras
        from mlflow.models import infer_signature

        from oiplab.backend import versions

        signature = infer_signature(example, model.predict(example, verbose=0))
        known = versions()
        requirements = [f"keras=={known['keras']}"] + [
            f"{dist}=={known[dist]}"
            for dist in ("tensorflow-cpu", "tensorflow", "jax")
            if dist in known
        ]
        uri = mlflow.get_tracking_uri()
        registry = registered_name if not uri.startswith(("file:", "/")) else None
        mlflow.keras.log_model(
            model,
            name="keras_model",
            signature=signature,
            pip_requirements=requirements,
            registered_model_name=registry,
        )

    @holding
    def continue_from(self, state: dict[str, Any]) -> None:
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        previous = state.get("run_id")
        if previous and previous != self.run_id:
            client = MlflowClient()
            try:
                if client.get_run(previous).info.status == "RUNNING":
                    client.set_terminated(previous, status="KILLED")
            except MlflowException:
                pass  # the killed job logged to another store: nothing to close here
            mlflow.set_tag(TAG_PREFIX + "resumed_from_run", previous)
        for key, values in state["history"].items():
            for epoch, value in enumerate(values[: state["epochs_done"]], start=1):
                self.log_metrics({key: value}, step=epoch)


@contextmanager
def stage_run(cfg: Config, stage: str, seed: int | None = None) -> Iterator[Run]:
    """Open the stage's MLflow run before its work (nested under the execution's parent run) and
    close it FINISHED, or FAILED/KILLED with the reason. Yields the run's handle: a disabled one
    when `tracking.enabled` is false (then only the signal handling applies)."""
    with signals_raise():  # from before the run is opened until after it is closed
        if not cfg.tracking.enabled:
            yield Run()
            raise_if_interrupted()  # a stop whose exception was swallowed on the way
            return
        with held(check=False):
            client, run, parent = _open(cfg, stage, seed)
        status, failure = "FAILED", None
        try:
            raise_if_interrupted()  # a stop while the run was being opened
            yield run
            raise_if_interrupted()
            status = "FINISHED"
        except StageInterrupted as exc:
            status, failure = "KILLED", exc
            raise
        except BaseException as exc:
            failure = exc
            if STOP.pending:  # stopped while the work failed: the stop is the news
                status = "KILLED"
            if store_failed(exc):
                raise store_error(exc, tracking_uri(cfg)) from exc
            raise
        finally:
            with held():
                _close(client, status, failure, parent)


def _open(cfg: Config, stage: str, seed: int | None) -> tuple[MlflowClient, Run, str | None]:
    """Start the stage's run under its execution's parent run, with the resolved config as its
    parameters: (client, the run's handle, parent id)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from oiplab.backend import versions

    uri = tracking_uri(cfg)
    bound_http_waits(uri)
    check_server(uri)
    use_uri(uri)
    name = stage if seed is None else f"{stage}-seed{seed}"
    tags = run_tags(cfg, stage, seed) | {TAG_PREFIX + "v." + k: v for k, v in versions().items()}
    try:
        with store_lock(uri):  # the first client of a new sqlite store creates its tables
            client = MlflowClient(uri)
            experiment_id = _experiment_id(client, cfg.tracking.experiment, uri)
            found = execution()
            parent = _parent_run(client, experiment_id, cfg, *found) if found else None
        mlflow.set_experiment(experiment_id=experiment_id)
        run = mlflow.start_run(run_name=name, tags=tags, parent_run_id=parent)
        mlflow.log_params(flatten(cfg.model_dump()))
    except Exception as exc:
        raise store_error(exc, uri) from exc
    return client, TrackedRun(run), parent


def _close(
    client: MlflowClient, status: str, failure: BaseException | None, parent: str | None
) -> None:
    """End the stage's run (noting why it failed) and, when it was the last, its parent; a
    store that no longer answers must not hide the stage's own error, so this never raises."""
    import mlflow

    try:
        if failure is not None:
            message = f"{type(failure).__name__}: {failure}".splitlines()[0][:500]
            mlflow.set_tags({TAG_PREFIX + "error": message, "mlflow.note.content": message})
        mlflow.end_run(status)
        if parent is not None:
            _close_parent(client, parent)
    except Exception as exc:  # the store itself may be what failed
        print(f"warning: could not close the MLflow run ({str(exc).splitlines()[0][:200]})")
