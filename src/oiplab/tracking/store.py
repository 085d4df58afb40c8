"""The MLflow store a stage logs to: its URI, a probe of a tracking server, the lock that
serializes its creation, and what its failures mean to the user.

The embedded store's relative `sqlite:///mlflow.db` means the project's own store even when DVC
runs the stage in a temporary copy of the workspace (`dvc exp run --queue` / `--temp`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oiplab.config import Config
from oiplab.credentials import login, redact
from oiplab.errors import OiplabError

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
    relative sqlite path is made absolute against the project root (`store_root`). The user-info
    of a server's URI is moved into MLflow's credential variables (`credentials.login`)."""
    return resolve_uri(cfg.tracking.uri)


def resolve_uri(configured: str) -> str:
    """The URI in force for a configured `tracking.uri` (see `tracking_uri`)."""
    uri = login(os.environ.get("MLFLOW_TRACKING_URI") or configured)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(store_root() / uri.removeprefix("sqlite:///"))
    return uri


def default_uri() -> str:
    """The store `oiplab runs` and `oiplab ui` read without a config: MLFLOW_TRACKING_URI, else
    the project's embedded store (user-info moved as by `tracking_uri`)."""
    return login(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}")


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


def bound_http_waits(uri: str) -> None:
    """Give requests to a tracking server the bounded waits of `HTTP_LIMITS` (unless the
    environment sets its own)."""
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_LIMITS.items():
            os.environ.setdefault(key, value)


def check_server(uri: str, timeout: float = SERVER_PROBE_TIMEOUT_S) -> None:
    """Fail fast, with the way out, when an http(s) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    uri = redact(uri)  # MLflow's /health needs no login, even behind its basic-auth app
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
def store_lock(uri: str) -> Iterator[None]:
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


def store_failed(exc: BaseException) -> bool:
    """Whether an exception is the tracking store failing (not the stage's own work)."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    return isinstance(exc, MlflowException | RequestException) or _is_sqlite_lock(exc)


def store_error(exc: BaseException, uri: str) -> Exception:
    """The error to report for the store at `uri` failing with `exc`: the store (its URI, user-info
    removed), what happened and the way out, as one line."""
    if isinstance(exc, OiplabError):
        return exc
    shown = redact(uri)
    if uri.startswith("sqlite") and _is_sqlite_lock(exc):
        return TrackingError(
            f"the embedded MLflow store {shown} was locked by concurrent jobs, so this run's "
            "records could not be written. For parallel jobs use a tracking server: "
            "`mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 "
            "--port 5000` and MLFLOW_TRACKING_URI=http://127.0.0.1:5000"
        )
    text = redact(str(exc))
    if "sqlite" in uri and ("file is not a database" in text or "malformed" in text):
        return TrackingError(
            f"{shown}: not a readable MLflow store ({text.splitlines()[0][:160]}); move it "
            "aside to start a new one"
        )
    return TrackingError(f"MLflow store {shown}: {_cause(exc, text)}")


# What sqlite and MLflow's server say, and what it means to the user.
_STORE_CAUSES = {
    "readonly database": "read-only: its database file or folder cannot be written (sqlite: "
    "attempt to write a readonly database)",
    "database or disk is full": "no space left on its disk (sqlite: database or disk is full)",
    "unable to open database file": "cannot open its database file (sqlite: unable to open "
    "database file): its folder must exist and be writable",
    "error code 401": "the server asks for a login (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
    "MLFLOW_TRACKING_PASSWORD",
    "error code 403": "the server refused this user (HTTP 403): ask its admin for permission",
}
_HINTS = {
    errno.EACCES: "the store is read-only for this user",
    errno.EPERM: "the store is read-only for this user",
    errno.EROFS: "the store is on a read-only file system",
    errno.ENOSPC: "free space on the store's disk",
    errno.EDQUOT: "free space on the store's disk",
}


def _cause(exc: BaseException, text: str) -> str:
    """What went wrong with the store, in words, from `exc` and its (redacted) `text`."""
    if isinstance(exc, OSError) and exc.strerror:
        where = redact(str(exc.filename)) if exc.filename else "its files"
        hint = _HINTS.get(exc.errno or 0)
        return f"cannot write {where} ({exc.strerror}{'; ' + hint if hint else ''})"
    lower = text.lower()
    for needle, cause in _STORE_CAUSES.items():
        if needle in lower:
            return cause
    # MLflow's message may open with SQLAlchemy's note on where the flush happened
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("(raised as")]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


class _NoTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


def quiet_store_tracebacks() -> None:
    """Drop the traceback MLflow logs for every failed database call before raising it: the
    stage reports that error itself, as one line (`store_error`)."""
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _NoTracebacks) for f in logger.filters):
        logger.addFilter(_NoTracebacks())
