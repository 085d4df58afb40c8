"""Every stage's seconds in one pipeline execution, from its MLflow runs, beside the training
floor ratio (the train stage's images/s over a bare fit's, benchmarks/results/train_rate.json).

    python -m benchmarks.pipeline   # the newest complete execution in ./mlflow.db
    python -m benchmarks.pipeline --uri sqlite:////path/mlflow.db [--parent RUN_ID] [--any]
    # writes benchmarks/results/pipeline.{json,md}

"Complete": the newest execution that ran the prepare stage, i.e. the whole pipeline from
scratch (a later `dvc repro` that only reran the changed stages is skipped; `--any` takes the
newest execution whatever it ran). The machine named in the table is the one running this
command; the runs' own machine is the one their execution ran on (say so if they differ).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from datetime import UTC, datetime

from benchmarks.common import RESULTS, write_results
from oiplab.layout import Stage
from oiplab.tracking.identity import TAG_PREFIX
from oiplab.tracking.query import StageRow, execution_runs
from oiplab.tracking.store import use_uri

log = logging.getLogger(__name__)


def executions(uri: str, experiment: str) -> list[str]:
    """The parent runs of every pipeline execution in `experiment`, newest first."""
    import mlflow

    use_uri(uri)  # not mlflow.set_tracking_uri: it exports MLFLOW_TRACKING_URI to later processes
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    parents = mlflow.search_runs(
        [found.experiment_id],
        f"tags.`{TAG_PREFIX}stage` = 'pipeline'",
        order_by=["attributes.start_time DESC"],
    )
    return list(parents["run_id"])


def pick(uri: str, experiment: str, complete: bool):
    """(parent run, stage rows) of the newest execution (that ran prepare, if `complete`)."""
    for parent in executions(uri, experiment):
        head, rows = execution_runs(uri, experiment, parent=parent)
        if not complete or any(row.stage == Stage.PREPARE for row in rows):
            return head, rows
    raise SystemExit(f"{uri}: no {'complete ' if complete else ''}pipeline execution recorded")


def stage_totals(rows: list[StageRow]) -> list[dict]:
    """One row per stage in first-run order: runs, total and per-run range of seconds."""
    by_stage: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_stage[row.stage].append(row.seconds if row.seconds is not None else float("nan"))
    total = sum(s for seconds in by_stage.values() for s in seconds)
    return [
        {
            "stage": stage,
            "runs": len(seconds),
            "seconds": sum(seconds),
            "share": sum(seconds) / total,
            "seconds_per_run": f"{min(seconds):.1f}-{max(seconds):.1f}"
            if len(seconds) > 1
            else f"{seconds[0]:.1f}",
        }
        for stage, seconds in by_stage.items()
    ]


def floor_ratio() -> dict:
    """The training floor ratio (medians) from benchmarks/results/train_rate.json, if run."""
    path = RESULTS / "train_rate.json"
    if not path.is_file():
        return {"train_floor_ratio": "not measured (python -m benchmarks.train_rate)"}
    found = json.loads(path.read_text())
    medians = [r for r in found["rows"] if r["repeat"] == "median" and r["precision"] == "float32"]
    if not medians:
        return {"train_floor_ratio": "no float32 median in train_rate.json"}
    m = medians[0]
    return {
        "train_floor_ratio": f"{m['ratio_wall']:.3f} (wall), {m['ratio_cpu']:.3f} (CPU s) of a "
        f"bare fit; {m['ratio_tested_cpu']:.3f} (CPU s) of a bare fit with the same test-set work",
        "train_floor_source": f"benchmarks/results/train_rate.md, {found['epochs']} epochs, "
        f"{found['machine']['cpu']}",
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="oiplab")
    parser.add_argument("--parent", help="a pipeline execution's parent run id")
    parser.add_argument("--any", action="store_true", help="the newest execution, complete or not")
    args = parser.parse_args()
    if args.parent:
        head, rows = execution_runs(args.uri, args.experiment, parent=args.parent)
    else:
        head, rows = pick(args.uri, args.experiment, complete=not args.any)
    table = stage_totals(rows)
    started = datetime.fromtimestamp(head.info.start_time / 1000, tz=UTC)
    wall = (head.info.end_time - head.info.start_time) / 1000 if head.info.end_time else None
    stage_seconds = sum(r["seconds"] for r in table)
    table.append({"stage": "all stages", "runs": len(rows), "seconds": stage_seconds, "share": 1.0})
    meta = {
        "execution": f"{head.data.tags.get('mlflow.runName', '')} (run {head.info.run_id}, "
        f"commit {head.data.tags.get('mlflow.source.git.commit', '?')[:7]}, "
        f"started {started:%Y-%m-%d %H:%M} UTC, {head.info.status})",
        "execution_wall_seconds": f"{wall:.0f}" if wall is not None else "still running",
        "stage_seconds_sum": f"{stage_seconds:.0f} (the stage runs' own seconds, added up: `make "
        "pipeline` trains two at a time, so the sum can exceed the wall time; the wall time not "
        "in a run is each process's start-up before its run opens, and DVC's own work)",
        **floor_ratio(),
    }
    path = write_results("pipeline", table, meta)
    log.info("%s", path.read_text())


if __name__ == "__main__":
    main()
