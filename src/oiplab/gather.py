"""Gather a sweep's results from MLflow, without DVC: one row per run of a stage.

python -m oiplab.gather                         # latest group's train runs, as a table
python -m oiplab.gather --stage oip --group G --json results.json
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from oiplab.io import write_json

DEFAULT_URI = "sqlite:///mlflow.db"


def gather(
    uri: str, experiment: str = "oiplab", stage: str = "train", group: str | None = None
) -> list[dict[str, Any]]:
    """Rows {run_id, seed, group, metrics...} of the stage's finished runs, by seed.

    Without `group`, the group of the most recent run of that stage is used.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = f"tags.`oiplab.stage` = '{stage}' and attributes.status = 'FINISHED'"
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=query,
        order_by=["attributes.start_time DESC"],
        max_results=5000,
    )
    if not runs:
        return []
    group = group or runs[0].data.tags.get("oiplab.group")
    rows = [
        {
            "run_id": r.info.run_id,
            "seed": r.data.tags.get("oiplab.seed"),
            "group": r.data.tags.get("oiplab.group"),
            **r.data.metrics,
        }
        for r in runs
        if r.data.tags.get("oiplab.group") == group
    ]
    return sorted(rows, key=lambda row: int(row["seed"]) if row["seed"] else -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI))
    parser.add_argument("--experiment", default="oiplab")
    parser.add_argument("--stage", default="train")
    parser.add_argument("--group")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = gather(args.uri, args.experiment, args.stage, args.group)
    if not rows:
        raise SystemExit(f"no finished '{args.stage}' runs in {args.uri}")
    keys = ["seed"] + sorted({k for r in rows for k in r} - {"seed", "run_id", "group"})
    print(f"group {rows[0]['group']}: {len(rows)} {args.stage} runs")
    print("  ".join(keys))
    for row in rows:
        print(
            "  ".join(
                f"{row.get(k, ''):.4g}" if isinstance(row.get(k), float) else str(row.get(k, ""))
                for k in keys
            )
        )
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
