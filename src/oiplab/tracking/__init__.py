"""MLflow bookkeeping, by concern: `store` (the store's URI, server probe, lock and errors),
`runs` (run identity, the parent and stage run lifecycle, the run handle a stage logs through),
`query` (what the report and `oiplab runs` ask of the store)."""

from oiplab.tracking.query import execution_table, latest_study_headline
from oiplab.tracking.runs import Run, TrackedRun, config_digest, git_commit, stage_run
from oiplab.tracking.store import (
    TrackingError,
    check_server,
    default_uri,
    store_root,
    tracking_uri,
    use_uri,
)

__all__ = [
    "Run",
    "TrackedRun",
    "TrackingError",
    "check_server",
    "config_digest",
    "default_uri",
    "execution_table",
    "git_commit",
    "latest_study_headline",
    "stage_run",
    "store_root",
    "tracking_uri",
    "use_uri",
]
