"""What a stage tells its user: Python `logging` in one concise format, and TensorFlow's start-up
noise kept off the terminal (never its errors).

Stages and library modules log through `logging.getLogger(__name__)`; `setup(stage)` sends the
`oiplab` loggers' messages to stdout as `[stage] message`, warnings and errors to stderr as
`warning: ...` / `error: ...` (one line, as before), and, under Hydra, everything with time and
level to the job's log file `<output dir>/<stage>.log`. The level is `OIPLAB_LOG_LEVEL` (debug,
info, warning, error; default info): it is not a setting of the study (it changes no output), so
it is not in `conf/`, where MLflow and DVC would record it as one.

TensorFlow writes through abseil, whose messages before its own initialization (which TensorFlow
never calls) ignore `TF_CPP_MIN_LOG_LEVEL` and go straight to file descriptor 2: two banners and
two oneDNN notices at every `import tensorflow`. `filter_native_stderr` passes descriptor 2
through a small forked process that drops exactly those lines (abseil-format lines below
`TF_CPP_MIN_LOG_LEVEL`, the banner, and one known-harmless TensorFlow "error"); every other byte
reaches the terminal, also when the stage crashes (the filter drains the pipe after the stage's
end). TensorFlow's Python warning that Keras' predict function "triggered tf.function retracing"
is dropped too: every network traces its own predict function once, by design.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from oiplab.errors import OiplabError

LEVEL_ENV = "OIPLAB_LOG_LEVEL"
LEVELS = ("debug", "info", "warning", "error")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "_oiplab_handler"  # marks the handlers `setup` added (a second setup replaces them)


class LogLevelError(OiplabError, ValueError):
    """`OIPLAB_LOG_LEVEL` is not a level name."""


def level() -> int:
    """The level of the `oiplab` loggers: `OIPLAB_LOG_LEVEL`, else info."""
    given = os.environ.get(LEVEL_ENV, "")
    name = given.strip().lower() or "info"
    if name not in LEVELS:
        raise LogLevelError(f"{LEVEL_ENV}={given!r}: expected one of {', '.join(LEVELS)}")
    return int(logging.getLevelName(name.upper()))


class ConsoleFormat(logging.Formatter):
    """`[stage] message`; a warning or an error as `warning: message` / `error: message`."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"[{stage}] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {record.getMessage()}"
        return super().format(record)


class _StdStream(logging.StreamHandler):
    """A handler writing to `sys.stdout` or `sys.stderr` as they are when a message is written
    (a test's capture, or a stream a caller has replaced, gets the message)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_of_stream = name

    @property
    def stream(self):  # noqa: D102
        return getattr(sys, self.name_of_stream)

    @stream.setter
    def stream(self, _value) -> None:
        pass  # StreamHandler.__init__ sets it; the stream is looked up at every write


# a stage module run as `python -m oiplab.stages.<stage>` logs as `__main__`
LOGGERS = ("oiplab", "__main__")


def _attach(logger: logging.Logger, handlers: list[logging.Handler], at: int) -> None:
    """Give `logger` `handlers` (instead of those an earlier `setup` gave it) at level `at`."""
    for handler in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        setattr(handler, _OURS, True)
        logger.addHandler(handler)
    logger.setLevel(at)
    logger.propagate = False  # Hydra's or a test's root handlers would print every line twice


def setup(stage: str, log_file: Path | None = None) -> None:
    """Send the `oiplab` loggers' messages to the console (and `log_file`, if given) at
    `level()`; replaces what an earlier `setup` added (a sweep's next job).

    Raises:
        LogLevelError: OIPLAB_LOG_LEVEL is no level; the handlers are set up (at info) first,
            so the caller's one-line error shows.
    """
    try:
        chosen, bad = level(), None
    except LogLevelError as exc:
        chosen, bad = logging.INFO, exc
    out, err = _StdStream("stdout"), _StdStream("stderr")
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [out, err]
    for handler in handlers:
        handler.setFormatter(ConsoleFormat(stage))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter(FILE_FORMAT))
        handlers.append(to_file)
    for name in LOGGERS:
        _attach(logging.getLogger(name), handlers, chosen)
    tensorflow = logging.getLogger("tensorflow")
    if expected_retracing not in tensorflow.filters:
        tensorflow.addFilter(expected_retracing)
    if bad is not None:
        raise bad


def expected_retracing(record: logging.LogRecord) -> bool:
    """False for TensorFlow's warning that Keras' predict function was traced again: each
    network (trained, untrained, each snapshot) traces its own predict function once, and
    TensorFlow counts them together because they share one code object. A retracing of any
    other function (ours: the OIP ascent step) still shows."""
    message = record.getMessage()
    return not ("triggered tf.function retracing" in message and "make_predict_function" in message)


# --- TensorFlow's native start-up lines ------------------------------------------------------

ABSL_BANNER = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
)
# abseil's line prefix: severity, MMDD, time, thread, file:line]
# (before abseil's initialization the seconds field counts from 1970: "00:00:1796583344.728982")
ABSL_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\s]+:\d+\] ")
SEVERITIES = b"IWEF"  # TF_CPP_MIN_LOG_LEVEL 0..3 hides the severities below its index
# TensorFlow 2.21's own tf.data graphs carry an attribute its C++ op does not declare; it says
# itself "Unknown attributes will be ignored" (seen after every `model.predict` on new data)
HARMLESS_ERRORS = (rb"NodeDef mentions attribute use_unbounded_threadpool which is not in the op",)


def keep_line(line: bytes, min_level: int) -> bool:
    """Whether a line written to descriptor 2 reaches the user: all but abseil's banner, abseil
    lines of a severity below `min_level` (TF_CPP_MIN_LOG_LEVEL) and the known-harmless ones."""
    text = line.rstrip(b"\r\n")
    if text == ABSL_BANNER:
        return False
    found = ABSL_LINE.match(text)
    if found is None:
        return True
    if SEVERITIES.index(found.group(1)) < min_level:
        return False
    return not any(re.search(pattern, text) for pattern in HARMLESS_ERRORS)


def tf_min_level() -> int:
    """TensorFlow's `TF_CPP_MIN_LOG_LEVEL` (0 when unset or not a number, as TensorFlow has it)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def filter_native_stderr(keep: Callable[[bytes], bool] | None = None) -> None:
    """Pass this process's descriptor 2 (and its children's) through a forked filter that
    forwards every line `keep` accepts (default: `keep_line` at `tf_min_level()`). Call it once,
    first thing in a process entry point, before any thread starts; not where a test runs a
    stage in its own process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the project's default: errors only
    min_level = tf_min_level()
    accept = keep or (lambda line: keep_line(line, min_level))
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the filter: it outlives the stage until every writer has closed the pipe
        os.close(write_end)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a Ctrl-C ends the stage; the filter drains
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # holds no reader of the stage's stdout
        try:
            _forward(read_end, 2, accept)
        finally:
            os._exit(0)
    os.close(read_end)
    original = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    atexit.register(_restore_stderr, original, pid)


def _forward(source: int, target: int, accept: Callable[[bytes], bool]) -> None:
    """Copy `source` to `target` line by line, dropping the lines `accept` refuses. A partial
    line redrawn with carriage returns (a progress bar) is passed on at once."""
    pending = b""
    while chunk := os.read(source, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if accept(line))
        if b"\r" in pending:
            cut = pending.rindex(b"\r") + 1
            out, pending = out + pending[:cut], pending[cut:]
        _write_all(target, out)
    if pending and accept(pending):
        _write_all(target, pending)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # the terminal or pipe went away: nothing more can be shown
        os._exit(0)


def _restore_stderr(original: int, filter_pid: int, grace: float = 2.0) -> None:
    """At exit: give descriptor 2 back and let the filter forward what it still holds."""
    sys.stderr.flush()
    os.dup2(original, 2)  # closes this process's end of the pipe: the filter reads to its end
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:  # a child process still writing keeps the filter alive
        try:
            if os.waitpid(filter_pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)


# --- keras progress and pipeline position -----------------------------------------------------


def keras_verbosity() -> int:
    """Keras' `verbose` for `fit`: a progress bar (1) on a terminal; in a log or pipe none (0),
    the caller logs one line per epoch instead (`EpochLines`), which says whose epoch it is when
    two trainings share a log. (Keras' own "auto" draws the bar everywhere on Linux, escape
    codes included; its one line per epoch, 2, names no training.)"""
    return 1 if sys.stdout.isatty() else 0


def pipeline_position(root: Path, address: str) -> tuple[int, int] | None:
    """Where DVC stage `address` (`train@3`) stands in the order `dvc repro` runs the whole
    pipeline of `root`: (k, N), 1-based; None when DVC cannot say. A repro that skips
    up-to-date stages runs a subsequence of this order."""
    try:
        from dvc.repo import Repo  # type: ignore[import-untyped]
        from dvc.repo.reproduce import plan_repro  # type: ignore[import-untyped]

        with Repo(str(root)) as repo:
            order = [stage.addressing for stage in plan_repro(repo.index.graph)]
    except Exception:  # an unreadable dvc.yaml, another DVC version: no position, no failure
        return None
    return (order.index(address) + 1, len(order)) if address in order else None
