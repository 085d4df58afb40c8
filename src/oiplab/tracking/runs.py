"""MLflow runs: one parent run per pipeline execution (a `dvc repro`, one queued or temporary DVC
experiment, one Hydra sweep), one nested run per stage execution.

A stage's run is opened before its work (so its duration is the stage's, and a crash, SIGTERM or
SIGINT ends it FAILED or KILLED with the reason) and probes the store first; the stage gets its
handle (`Run`). Opening and closing the run are held against stop signals (`oiplab.stops`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oiplab.config import Config, TrackingConfig
from oiplab.credentials import redact
from oiplab.stops import STOP, StageInterrupted, held, raise_if_interrupted, signals_raise
from oiplab.tracking.handle import Run, TrackedRun
from oiplab.tracking.identity import (
    TAG_PREFIX,
    execution,
    flatten,
    prefixed,
    run_name,
    run_tags,
    shared_tags,
)
from oiplab.tracking.search import find_runs
from oiplab.tracking.stale import close_stale_runs, process_tags
from oiplab.tracking.store import (
    TrackingError,
    bound_http_waits,
    check_server,
    quiet_store_tracebacks,
    resolve_uri,
    store_error,
    store_failed,
    store_lock,
    tracking_uri,
    use_uri,
)

if TYPE_CHECKING:
    from mlflow.entities import Run as StoredRun
    from mlflow.tracking import MlflowClient

__all__ = ["Run", "TrackedRun", "close_stale", "record_failure", "runs_opened", "stage_run"]

FAILED_RUNS = TAG_PREFIX + "failed_runs"  # a parent's tag: how many of its stage runs failed
_opened = [0]  # stage runs this process has opened (`runs_opened`)


def runs_opened() -> int:
    """How many stage runs this process has opened: a failure with no new run since a count
    was taken has no run recording it yet (`record_failure`)."""
    return _opened[0]


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


def _parent_run(client: MlflowClient, experiment_id: str, key: str, tags: dict[str, str]) -> str:
    """The parent run of execution `key` (created, with `tags`, by its first stage), marked
    RUNNING."""
    found = find_runs(client, [experiment_id], {TAG_PREFIX + "execution": key}, max_results=1)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    tags = tags | prefixed({"execution": key, "stage": "pipeline"})
    return client.create_run(experiment_id, tags=tags).info.run_id


def _close_parent(client: MlflowClient, parent: str) -> None:
    """End the parent run when none of its stages runs: FAILED, with the count of its failed
    stage runs (`FAILED_RUNS`: a sweep's failed jobs), if any of them failed."""
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
        max_results=5000,
    )
    statuses = [c.info.status for c in children]
    if "RUNNING" in statuses:
        return
    bad = sum(s in ("FAILED", "KILLED") for s in statuses)
    if bad:
        client.set_tag(parent, FAILED_RUNS, str(bad))
    client.set_terminated(parent, status="FAILED" if bad else "FINISHED")


def close_stale(
    client: MlflowClient, experiment_ids: list[str], stage: str | None, closer: str
) -> list[StoredRun]:
    """Close KILLED the runs of this host whose process has ended (`stale.close_stale_runs`),
    and their parent runs where those were their last running stages; say so, one line each."""
    closed = close_stale_runs(client, experiment_ids, stage, closer)
    for run in closed:
        print(f"closed stale run {run.info.run_name} ({run.info.run_id}): its process had ended")
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent:
            _close_parent(client, parent)
    return closed


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
        status = "FAILED"
        failure: BaseException | None = None
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
    name = run_name(cfg, stage, seed)
    tags = run_tags(cfg, stage, seed) | {TAG_PREFIX + "v." + k: v for k, v in versions().items()}
    tags |= process_tags()  # so that a later run can tell this one was killed
    quiet_store_tracebacks()
    try:
        with store_lock(uri):  # the first client of a new sqlite store creates its tables
            client = MlflowClient(uri)
            experiment_id = _experiment_id(client, cfg.tracking.experiment, uri)
            parent = None
            if found := execution():
                parent_tags = {"mlflow.runName": f"{cfg.study}: {found[1]}"} | shared_tags(cfg)
                parent = _parent_run(client, experiment_id, found[0], parent_tags)
        close_stale(client, [experiment_id], stage, f"the next run of `{stage}`")
        mlflow.set_experiment(experiment_id=experiment_id)
        # MLflow says at INFO that its sampler starts and stops, three lines a stage
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        run = mlflow.start_run(
            run_name=name,
            tags=tags,
            parent_run_id=parent,
            log_system_metrics=cfg.tracking.system_metrics,
        )
        params = flatten(cfg.model_dump())
        mlflow.log_params({k: redact(v) if isinstance(v, str) else v for k, v in params.items()})
    except Exception as exc:
        raise store_error(exc, uri) from exc
    _opened[0] += 1
    return client, TrackedRun(run, parent), parent


def _close(
    client: MlflowClient, status: str, failure: BaseException | None, parent: str | None
) -> None:
    """End the stage's run (noting why it failed) and, when it was the last, its parent; a
    store that no longer answers must not hide the stage's own error, so this never raises."""
    import mlflow

    try:
        if failure is not None:
            message = _failure_message(failure)
            with suppress(Exception):  # the note matters less than the status: try both
                mlflow.set_tags({TAG_PREFIX + "error": message, "mlflow.note.content": message})
        mlflow.end_run(status)
        if parent is not None:
            _close_parent(client, parent)
    except Exception as exc:  # the store itself may be what failed
        why = store_error(exc, mlflow.get_tracking_uri())
        print(f"warning: could not close the stage's MLflow run: {why}", file=sys.stderr)


def _failure_message(failure: BaseException) -> str:
    return redact(f"{type(failure).__name__}: {failure}").splitlines()[0][:500]


def record_failure(tree: Mapping[str, Any] | None, stage: str, failure: BaseException) -> None:
    """Leave a FAILED run, with the reason, for a stage that failed before its own run opened
    (its parameters did not load or validate, an output folder cannot be written), so that a
    failed queued experiment or sweep job is seen in MLflow too. `tree`: the parameters as far
    as they were read (their `tracking` section says where to record). Nothing is recorded when
    tracking is off, the store is what failed, or the embedded store does not exist yet; this
    never raises."""
    section = (tree or {}).get("tracking")
    try:
        settings = TrackingConfig.model_validate(section)
    except ValueError:
        return  # no usable tracking settings: nowhere to record
    if not settings.enabled or isinstance(failure, TrackingError) or store_failed(failure):
        return
    uri = resolve_uri(settings.uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return  # no store yet: a failure does not create one (in whatever folder this ran)
    try:
        bound_http_waits(uri)
        check_server(uri)
        with held(check=False):
            _record_failure(uri, settings.experiment, tree or {}, stage, failure)
    except Exception as exc:  # the store must not hide the stage's own error
        why = store_error(exc, uri)
        print(f"warning: could not record the failed run: {why}", file=sys.stderr)


def _record_failure(
    uri: str, experiment: str, tree: Mapping[str, Any], stage: str, failure: BaseException
) -> None:
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    message = _failure_message(failure)
    study, dataset = str(tree.get("study", "")), str((tree.get("data") or {}).get("name", ""))
    with store_lock(uri):
        client = MlflowClient(uri)
        experiment_id = _experiment_id(client, experiment, uri)
        shared = prefixed({"study": study, "dataset": dataset})
        parent = None
        if found := execution():
            parent_tags = {"mlflow.runName": f"{study}: {found[1]}"} | shared
            parent = _parent_run(client, experiment_id, found[0], parent_tags)
    tags = shared | prefixed({"stage": stage, "error": message})
    tags |= {"mlflow.runName": f"{stage} (failed at start)", "mlflow.note.content": message}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    params = [Param(k, redact(str(v))[:6000]) for k, v in flatten(dict(tree)).items()]
    for start in range(0, len(params), 100):  # the most one batch may carry
        client.log_batch(run_id, params=params[start : start + 100])
    client.set_terminated(run_id, status="FAILED")
    if parent is not None:
        _close_parent(client, parent)
