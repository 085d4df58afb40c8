"""MLflow bookkeeping: one parent run per pipeline execution (a `dvc repro`, one queued or temporary
DVC experiment, one Hydra sweep), one nested run per stage execution.

A stage's run is opened before its work (so its duration is the stage's, and a crash, SIGTERM or
SIGINT ends it FAILED or KILLED with the reason) and probes the store first. The embedded store's
relative `sqlite:///mlflow.db` means the project's own store even when DVC runs the stage in a
temporary copy of the workspace (`dvc exp run --queue` / `--temp`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from oiplab.config import Config
from oiplab.errors import Interrupt, OiplabError, StageInterrupted, raise_if_interrupted
from oiplab.io import to_json

TAG_PREFIX = "oiplab."
SERVER_PROBE_TIMEOUT_S = 5.0
# Bounded waits on a tracking server (MLflow's own defaults retry for minutes): a request gives
# up after 10 s, twice retried with a short backoff, so a server that dies mid-stage is reported
# within about 30 s.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}
DVC_WORKSPACES = (".dvc", "tmp", "exps")  # where DVC runs queued and --temp experiments
# Files DVC or the pipeline itself rewrites during `dvc repro`: they do not make a checkout dirty.
PIPELINE_WRITTEN = ("dvc.lock", "*.gitignore", "metrics")


P = ParamSpec("P")
R = TypeVar("R")


class TrackingError(OiplabError):
    """The MLflow tracking store cannot be used (server unreachable, sqlite store locked)."""


def store_root(start: Path | None = None) -> Path:
    """The project root whose store and outputs a stage belongs to: the working directory, or,
    inside a DVC temporary workspace (`<root>/.dvc/tmp/exps/<tmp>/`), the project it came from."""
    path = (start or Path.cwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - len(DVC_WORKSPACES)):
        if parts[i : i + len(DVC_WORKSPACES)] == DVC_WORKSPACES:
            return Path(*parts[:i])
    return path


def tracking_uri(cfg: Config) -> str:
    """The MLflow URI in force: MLFLOW_TRACKING_URI from the environment, else the config's; a
    relative sqlite path is made absolute against the project root (`store_root`)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(store_root() / uri.removeprefix("sqlite:///"))
    return uri


def use_uri(uri: str) -> None:
    """Point MLflow's fluent API at `uri` for this process only. (`mlflow.set_tracking_uri` also
    exports MLFLOW_TRACKING_URI, which would then outrank the config of every later stage run in
    this process and leak into child processes.)"""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def check_server(uri: str, timeout: float = SERVER_PROBE_TIMEOUT_S) -> None:
    """Fail fast, with the way out, when an http(s) tracking server does not answer."""
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
def _store_lock(uri: str) -> Iterator[None]:
    """Serialize the creation of the store, its experiment and parent runs across processes."""
    from filelock import FileLock

    if uri.startswith("sqlite:///"):
        lock = uri.removeprefix("sqlite:///") + ".lock"
    else:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
        lock = str(Path(tempfile.gettempdir()) / f"oiplab-mlflow-{digest}.lock")
    with FileLock(lock, timeout=300):
        yield


def _is_sqlite_lock(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "database is locked" in text or "database table is locked" in text


def git_commit(root: Path | None = None) -> str:
    """HEAD commit, with `-dirty` when tracked files other than the pipeline's own differ;
    `unknown` outside a git checkout."""
    cwd = str(root or Path.cwd())
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


def run_tags(cfg: Config, stage: str, seed: int | None) -> dict[str, str]:
    commit = git_commit()
    digest = config_digest(cfg)
    tags = {
        "stage": stage,
        "study": cfg.study,
        "dataset": cfg.data.name,
        "git_commit": commit,
        "config_digest": digest,
        "dvc_exp": os.environ.get("DVC_EXP_NAME", ""),
    }
    if seed is not None:
        tags["seed"] = str(seed)
    return {TAG_PREFIX + k: v for k, v in tags.items()}


def _experiment_id(client, name: str, uri: str) -> str:
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


def _parent_run(client, experiment_id: str, cfg: Config, key: str, name: str) -> str:
    """The parent run of execution `key` (created by its first stage), marked RUNNING."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`oiplab.execution` = '{key}'", max_results=1
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    tags = {
        "mlflow.runName": f"{cfg.study}: {name}",
        TAG_PREFIX + "execution": key,
        TAG_PREFIX + "stage": "pipeline",
        TAG_PREFIX + "study": cfg.study,
        TAG_PREFIX + "dataset": cfg.data.name,
        TAG_PREFIX + "git_commit": git_commit(),
        TAG_PREFIX + "config_digest": config_digest(cfg),
    }
    return client.create_run(experiment_id, tags=tags).info.run_id


def _close_parent(client, parent: str) -> None:
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


@contextmanager
def _held(check: bool = True) -> Iterator[None]:
    """Let a stop that arrives inside the block (a call into the store) end the stage only once
    the block is done (at its end, or at the caller's next check when `check` is false)."""
    Interrupt.held += 1
    try:
        yield
    finally:
        Interrupt.held -= 1
    if check:
        raise_if_interrupted()


def _holding_signals(write: Callable[P, R]) -> Callable[P, R]:
    """`write` (a call into the store) under `_held`."""

    @functools.wraps(write)
    def held(*args: P.args, **kwargs: P.kwargs) -> R:
        with _held():
            return write(*args, **kwargs)

    return held


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into `StageInterrupted` while a stage runs, so it can close its
    run (see `errors.Interrupt`); a second one during a held write raises at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (e.g. a joblib thread): nothing to do
        return

    def handler(signum, _frame):
        again = Interrupt.pending is not None
        Interrupt.pending = signal.Signals(signum).name
        if again:
            raise StageInterrupted(f"stopped by a second {Interrupt.pending}")
        raise_if_interrupted()

    Interrupt.pending = None
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for s in previous:
            signal.signal(s, handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        Interrupt.pending = None  # this stage's stop; not one for later work of the process


@contextmanager
def stage_run(cfg: Config, stage: str, seed: int | None = None) -> Iterator[Any]:
    """Open the stage's MLflow run before its work (nested under the execution's parent run) and
    close it FINISHED, or FAILED/KILLED with the reason. Yields the `mlflow.ActiveRun`, or None
    when `tracking.enabled` is false (then only the signal handling applies)."""
    with _signals_raise():  # from before the run is opened until after it is closed
        if not cfg.tracking.enabled:
            yield None
            raise_if_interrupted()  # a stop whose exception was swallowed on the way
            return
        with _held(check=False):
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
            if Interrupt.pending:  # stopped while the work failed: the stop is the news
                status = "KILLED"
            if _store_failed(exc):
                raise _store_error(exc, tracking_uri(cfg)) from exc
            raise
        finally:
            with _held():
                _close(client, status, failure, parent)


def _open(cfg: Config, stage: str, seed: int | None):
    """Start the stage's run under its execution's parent run, with the resolved config as its
    parameters: (client, active run, parent id)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from oiplab.backend import versions

    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_LIMITS.items():
            os.environ.setdefault(key, value)
    check_server(uri)
    use_uri(uri)
    name = stage if seed is None else f"{stage}-seed{seed}"
    tags = run_tags(cfg, stage, seed) | {TAG_PREFIX + "v." + k: v for k, v in versions().items()}
    try:
        with _store_lock(uri):  # the first client of a new sqlite store creates its tables
            client = MlflowClient(uri)
            experiment_id = _experiment_id(client, cfg.tracking.experiment, uri)
            found = execution()
            parent = _parent_run(client, experiment_id, cfg, *found) if found else None
        mlflow.set_experiment(experiment_id=experiment_id)
        run = mlflow.start_run(run_name=name, tags=tags, parent_run_id=parent)
        mlflow.log_params(flatten(cfg.model_dump()))
    except Exception as exc:
        raise _store_error(exc, uri) from exc
    return client, run, parent


def _store_failed(exc: BaseException) -> bool:
    """Whether an exception is the tracking store failing (not the stage's own work)."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    return isinstance(exc, MlflowException | RequestException) or _is_sqlite_lock(exc)


def _close(client, status: str, failure: BaseException | None, parent: str | None) -> None:
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


def _store_error(exc: Exception, uri: str) -> Exception:
    if uri.startswith("sqlite") and _is_sqlite_lock(exc):
        return TrackingError(
            f"the embedded MLflow store {uri} was locked by concurrent jobs, so this run's "
            "records could not be written. For parallel jobs use a tracking server: "
            "`mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 "
            "--port 5000` and MLFLOW_TRACKING_URI=http://127.0.0.1:5000"
        )
    if "sqlite" in uri and ("file is not a database" in str(exc) or "malformed" in str(exc)):
        return TrackingError(
            f"{uri}: not a readable MLflow store ({str(exc).splitlines()[0][:160]}); move it "
            "aside to start a new one"
        )
    if isinstance(exc, OiplabError):
        return exc
    return TrackingError(f"MLflow store {uri}: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def active() -> bool:
    import mlflow

    return mlflow.active_run() is not None


@_holding_signals
def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log the numeric values of `metrics` on the active run, if any."""
    import mlflow

    if mlflow.active_run() is None:
        return
    clean = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # no NaN
    }
    mlflow.log_metrics(clean, step=step)


@_holding_signals
def log_artifacts(folder: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def log_results(
    metrics: dict[str, Any], folder: Path | None = None, name: str | None = None
) -> None:
    """Log a stage's numbers (nested dicts flattened) and, if given, its output folder."""
    log_metrics({k: v for k, v in flatten(metrics).items() if k != "seed"})
    if folder is not None:
        log_artifacts(folder, name)


@_holding_signals
def log_json(data: Any, artifact_file: str) -> None:
    """Log `data` as a JSON artifact named `artifact_file` on the active run, if any."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_dict(json.loads(to_json(data)), artifact_file)


@_holding_signals
def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_text(text, artifact_file)


@_holding_signals
def describe(text: str) -> None:
    """Set the active run's description (shown at the top of its page in the UI)."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tag("mlflow.note.content", text)


def run_record() -> dict[str, str]:
    """The active run's identity, for a stage's outputs (the report links exactly this run)."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return {}
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}


@_holding_signals
def log_dataset(x, y, name: str, digest: str, source: str, context: str) -> None:
    """Record a data split as an input of the active run (MLflow datasets), with its sha256."""
    import warnings

    import mlflow

    if mlflow.active_run() is None:
        return
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(x, source=source, targets=y, name=name, digest=digest[:16])
    mlflow.log_input(dataset, context=context)


@_holding_signals
def log_keras_model(model, example, registered_name: str | None) -> None:
    """Log a trained model as an MLflow Keras model with its signature; register it when the
    store has a model registry (not on plain file stores)."""
    import mlflow
    import mlflow.keras
    from mlflow.models import infer_signature

    from oiplab.backend import versions

    if mlflow.active_run() is None:
        return
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
        model, name="keras_model", signature=signature, pip_requirements=requirements,
        registered_model_name=registry,
    )  # fmt: skip


def epoch_logger():
    """A Keras callback that sends each epoch's metrics to the active MLflow run."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            log_metrics(logs or {}, step=epoch + 1)

    return EpochLogger()


@_holding_signals
def continue_from(state: dict) -> None:
    """On a resumed training: close the killed job's run as KILLED, and give the active run the
    epochs that job completed, so its learning curve is whole."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if mlflow.active_run() is None:
        return
    previous = state.get("run_id")
    if previous and previous != mlflow.active_run().info.run_id:
        client = MlflowClient()
        try:
            if client.get_run(previous).info.status == "RUNNING":
                client.set_terminated(previous, status="KILLED")
        except MlflowException:
            pass  # the killed job logged to another store: nothing to close here
        mlflow.set_tag(TAG_PREFIX + "resumed_from_run", previous)
    for key, values in state["history"].items():
        for epoch, value in enumerate(values[: state["epochs_done"]], start=1):
            log_metrics({key: value}, step=epoch)


def latest_study_headline(cfg: Config, study: str) -> dict | None:
    """The answer of the newest finished `compare` run of `study` on this data set, from the
    store: {"run_id", "headline"}; None when there is none (or tracking is off)."""
    if not cfg.tracking.enabled:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        return None
    query = (
        f"tags.`oiplab.stage` = 'compare' and tags.`oiplab.study` = '{study}' and "
        f"tags.`oiplab.dataset` = '{cfg.data.name}' and attributes.status = 'FINISHED'"
    )
    found = client.search_runs(
        [experiment.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not found:
        return None
    run = found[0]
    path = client.download_artifacts(run.info.run_id, "compare/headline.json", tempfile.mkdtemp())
    with open(path, encoding="utf-8") as fh:
        headline = json.load(fh)
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "headline": headline,
    }


@_holding_signals
def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tags(tags)
