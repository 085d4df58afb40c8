"""MLflow bookkeeping, by concern: `store` (the store's URI, server probe, lock and errors),
`identity` (git commit, config digest, execution, the tags of a run), `runs` (the parent and stage
run lifecycle), `handle` (the `Run` a stage logs through), `query` (what the report and
`oiplab runs` ask of the store)."""

from oiplab.tracking.handle import Registration, Run, TrackedRun
from oiplab.tracking.identity import config_digest, execution, git_commit
from oiplab.tracking.query import execution_table
from oiplab.tracking.runs import stage_run
from oiplab.tracking.store import (
    TrackingError,
    check_server,
    default_uri,
    store_root,
    tracking_uri,
    use_uri,
)

__all__ = [
    "Registration",
    "Run",
    "TrackedRun",
    "TrackingError",
    "check_server",
    "config_digest",
    "default_uri",
    "execution",
    "execution_table",
    "git_commit",
    "stage_run",
    "store_root",
    "tracking_uri",
    "use_uri",
]
