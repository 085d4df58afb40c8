"""Runs whose process is gone. A stage killed by SIGKILL (the OOM killer, a lost session) cannot
close its MLflow run, which would read RUNNING forever. So each stage run records where it runs
(host, pid and the process's start time, which tells a reused pid apart), and the next run of
the same stage, and `oiplab runs`, close the runs of this host whose process has ended: KILLED,
the reason in `oiplab.error`. Runs of other hosts are left alone: whether their process lives
cannot be known from here."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from oiplab.tracking.identity import TAG_PREFIX
from oiplab.tracking.search import find_runs

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

HOST, PID, STARTED = (TAG_PREFIX + k for k in ("host", "pid", "pid_started"))
# psutil derives a start time from the boot time and the process's start tick: the same process
# always gives the same value; another process given the same pid starts at least a tick later.
SAME_START_S = 0.5


def process_tags() -> dict[str, str]:
    """The tags that say which process a run belongs to."""
    import psutil  # installed with DVC

    proc = psutil.Process()
    return {HOST: socket.gethostname(), PID: str(proc.pid), STARTED: f"{proc.create_time():.2f}"}


def process_gone(pid: str, started: str) -> bool:
    """Whether the process `pid`, started at `started` (seconds since the epoch), has ended: no
    such pid, or one started at another time (the pid was reused). False when it cannot tell."""
    import psutil

    try:
        proc = psutil.Process(int(pid))
        return abs(proc.create_time() - float(started)) > SAME_START_S
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, ValueError):
        return False


def close_stale_runs(
    client: MlflowClient, experiment_ids: list[str], stage: str | None, closer: str
) -> list[Run]:
    """Close KILLED the RUNNING runs of this host (of `stage`, or of every stage) whose process
    has ended; `closer` says who closed them (for the reason). Returns the runs closed."""
    host = socket.gethostname()
    tags = {HOST: host} | ({TAG_PREFIX + "stage": stage} if stage else {})
    closed = []
    for run in find_runs(client, experiment_ids, tags, where="attributes.status = 'RUNNING'"):
        pid = run.data.tags.get(PID, "")
        if not pid or not process_gone(pid, run.data.tags.get(STARTED, "")):
            continue
        reason = (
            f"KILLED: its process (pid {pid} on {host}) ended without closing the run "
            f"(SIGKILL, out of memory, a lost session?); closed by {closer}"
        )
        run_id = run.info.run_id
        client.set_tag(run_id, TAG_PREFIX + "error", reason)
        client.set_tag(run_id, "mlflow.note.content", reason)
        client.set_terminated(run_id, status="KILLED")
        closed.append(run)
    return closed
