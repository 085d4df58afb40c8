"""A sweep's own results on its MLflow parent run (the width study's aggregate): kept apart from
the run lifecycle in `runs`, which a stage's run goes through."""

from __future__ import annotations

from pathlib import Path

from oiplab.config import Config
from oiplab.tracking.identity import TAG_PREFIX
from oiplab.tracking.search import find_runs
from oiplab.tracking.store import bound_http_waits, check_server, store_error, tracking_uri


def log_to_execution(cfg: Config, key: str, folder: Path, note: str) -> str | None:
    """Log every file of `folder` and the description `note` to the parent run of execution
    `key` (a sweep's: `sweep:<its folder>`); the parent's id, or None when tracking is off or no
    stage of that execution opened a run."""
    if not cfg.tracking.enabled:
        return None
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(cfg)
    try:
        bound_http_waits(uri)
        check_server(uri)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        if experiment is None:
            return None
        tags = {TAG_PREFIX + "execution": key}
        found = find_runs(client, [experiment.experiment_id], tags, max_results=1)
        if not found:
            return None
        parent = found[0].info.run_id
        client.log_artifacts(parent, str(folder), folder.name)
        client.set_tag(parent, "mlflow.note.content", note)
    except Exception as exc:
        raise store_error(exc, uri) from exc
    return parent
