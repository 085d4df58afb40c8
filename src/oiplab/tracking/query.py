"""What `oiplab runs` asks of the store: the runs of one pipeline execution (or sweep)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from oiplab.credentials import login, redact
from oiplab.errors import OiplabError
from oiplab.layout import Stage
from oiplab.tracking.identity import TAG_PREFIX
from oiplab.tracking.runs import close_stale
from oiplab.tracking.search import find_runs, tag_clause
from oiplab.tracking.store import check_server, default_uri, use_uri

if TYPE_CHECKING:
    from mlflow.entities import Run
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
    Stage.COMPARE_SPLIT: "Conv2D_3.same_index_p",  # the design's question: is the order kept?
}


@dataclass(frozen=True)
class StageRow:
    """One stage run of an execution, as `oiplab runs` and benchmarks/pipeline.py show it."""

    stage: str
    seed: str  # "" for a stage that is not per seed
    status: str
    seconds: float | None  # None while it runs
    key: str  # the stage's KEY_METRIC, "" if none
    value: float | None  # that metric, None if the run logged none
    design: str = ""  # the seed-split design (same_init, same_order) of train_split/compare_split

    @property
    def shown(self) -> str:
        """The stage as the table names it: with its design, where it has one."""
        return f"{self.stage} {self.design}" if self.design else self.stage


def execution_runs(
    uri: str | None, experiment: str, study: str | None = None, parent: str | None = None
) -> tuple[Run, list[StageRow]]:
    """(parent run, its stage runs by start time) of the latest execution (or of parent run
    `parent`), after closing the runs of this host whose process has ended (`runs.close_stale`)."""
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
    return head, [_stage_row(run) for _, run in runs.iterrows()]


def _stage_row(run) -> StageRow:
    stage = run.get("tags.oiplab.stage") or "?"
    seed, design = run.get("tags.oiplab.seed"), run.get("tags.oiplab.design")
    seconds = (run["end_time"] - run["start_time"]).total_seconds() if run["end_time"] else None
    key = KEY_METRIC.get(stage, "")
    value = run.get(f"metrics.{key}")
    return StageRow(
        stage,
        seed if isinstance(seed, str) else "",  # pandas gives NaN for a missing tag
        run["status"],
        seconds,
        key,
        value if value is not None and value == value else None,  # NaN: no such metric
        design if isinstance(design, str) else "",
    )


def execution_table(
    uri: str | None, experiment: str, study: str | None = None, parent: str | None = None
) -> str:
    """A text table of the latest execution's runs (or of parent run `parent`)."""
    head, rows = execution_runs(uri, experiment, study, parent)
    wide = max([len("stage"), *(len(row.shown) for row in rows)])  # "compare_split same_order"
    lines = [
        f"{head.data.tags.get('mlflow.runName', head.info.run_id)}  [{head.info.status}]  "
        f"run {head.info.run_id}",
        f"{'stage':<{wide}} {'seed':>4} {'status':<9} {'seconds':>8}  key number",
    ]
    for row in rows:
        shown = ""
        if row.value is not None:
            value = row.value
            shown = (
                f"{row.key} = {int(value):,}" if value.is_integer() else f"{row.key} = {value:.4g}"
            )
        seconds = "" if row.seconds is None else f"{row.seconds:8.1f}"
        lines.append(f"{row.shown:<{wide}} {row.seed:>4} {row.status:<9} {seconds:>8}  {shown}")
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
