"""What `oiplab runs` asks of the store: the runs of one pipeline execution (or sweep)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oiplab.credentials import login, redact
from oiplab.errors import OiplabError
from oiplab.layout import Stage
from oiplab.tracking.identity import TAG_PREFIX
from oiplab.tracking.runs import close_stale
from oiplab.tracking.search import find_runs, tag_clause
from oiplab.tracking.store import check_server, default_uri, use_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# The number worth a column for each stage (others are in the MLflow UI).
KEY_METRIC: dict[str, str] = {
    Stage.PREPARE: "n_train",
    Stage.TRAIN: "test_accuracy",
    Stage.TRAIN_SPLIT: "test_accuracy",
    Stage.ACTIVATIONS: "n_images",
    Stage.OIP: "n_with_oip",
    Stage.PRECURSOR: "from_precursor",
    Stage.COMPARE: "accuracy.mean",
    Stage.ALIGNMENT: "snapshots",
    Stage.OIP_COMPARE: "all.top1",
}


def execution_table(
    uri: str | None, experiment: str, study: str | None = None, parent: str | None = None
) -> str:
    """A text table of the latest execution's runs (or of parent run `parent`), after closing
    the runs of this host whose process has ended (`runs.close_stale`)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = login(uri) if uri else default_uri()
    check_server(uri)
    use_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        shown = redact(uri)
        raise OiplabError(f"{shown}: no experiment named {experiment!r} (nothing logged yet?)")
    ids = [found.experiment_id]
    client = MlflowClient(uri)
    close_stale(client, ids, None, "`oiplab runs`")
    if parent is None:
        parent = _latest_parent(client, uri, ids, study)
    try:
        head = client.get_run(parent)
    except MlflowException:
        raise OiplabError(f"{redact(uri)}: no run {parent!r} (see `oiplab runs`)") from None
    runs = mlflow.search_runs(  # the id of a run that exists: hex digits, quoted as it is
        ids, tag_clause("mlflow.parentRunId", parent), order_by=["attributes.start_time ASC"]
    )
    lines = [
        f"{head.data.tags.get('mlflow.runName', parent)}  [{head.info.status}]  run {parent}",
        f"{'stage':<12} {'seed':>4} {'status':<9} {'seconds':>8}  key number",
    ]
    for _, run in runs.iterrows():
        stage = run.get("tags.oiplab.stage") or "?"
        seed = run.get("tags.oiplab.seed")
        seed = seed if isinstance(seed, str) else ""  # pandas gives NaN for a missing tag
        seconds = (run["end_time"] - run["start_time"]).total_seconds() if run["end_time"] else None
        key = KEY_METRIC.get(stage, "")
        value = run.get(f"metrics.{key}")
        shown = ""
        if value is not None and value == value:  # NaN: the stage logged no such metric
            shown = f"{key} = {int(value):,}" if value.is_integer() else f"{key} = {value:.4g}"
        lines.append(
            f"{stage:<12} {seed:>4} {run['status']:<9} "
            f"{'' if seconds is None else f'{seconds:8.1f}':>8}  {shown}"
        )
    return "\n".join(lines)


def _latest_parent(
    client: MlflowClient, uri: str, experiment_ids: list[str], study: str | None
) -> str:
    """The parent run of the newest pipeline execution (of `study`, if given)."""
    tags = {TAG_PREFIX + "stage": "pipeline"} | ({TAG_PREFIX + "study": study} if study else {})
    parents = find_runs(
        client, experiment_ids, tags, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not parents:
        raise OiplabError(
            f"{redact(uri)}: no pipeline execution recorded" + (f" for {study}" if study else "")
        )
    return parents[0].info.run_id
