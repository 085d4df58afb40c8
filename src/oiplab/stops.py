"""Stop signals during a stage: SIGTERM and SIGINT end it with `StageInterrupted`, so it can close
its MLflow run as KILLED and keep its previous outputs.

The handler raises at once, except inside a write to the store (`STOP.held` > 0): an exception
raised in the middle of MLflow's SQLAlchemy session leaves its transaction open, the store locked
and the run RUNNING, so there the stop waits until the write ends. Python swallows an exception
raised inside a finalizer or weakref callback ("Exception ignored in ..."), so the stop is also kept
(`STOP.pending`) and raised at the next check: the end of a write, the start of an epoch, before an
output is moved into place, the end of the stage's work.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class StageInterrupted(BaseException):
    """SIGTERM or SIGINT arrived while a stage ran (its run is then closed as KILLED)."""


@dataclass
class StopRequest:
    """The stop request of the stage this process runs."""

    held: int = 0  # how many store writes are under way (the stop waits for them)
    pending: str | None = None  # the signal's name, once one arrived


STOP = StopRequest()  # the one stop request of this process (signals go to the main thread)


def raise_if_interrupted() -> None:
    """Raise `StageInterrupted` if a stop arrived that has not ended the stage yet."""
    if STOP.pending and not STOP.held:
        raise StageInterrupted(f"stopped by {STOP.pending}")


@contextmanager
def held(check: bool = True) -> Iterator[None]:
    """Let a stop that arrives inside the block (a call into the store) end the stage only once
    the block is done (at its end, or at the caller's next check when `check` is false)."""
    STOP.held += 1
    try:
        yield
    finally:
        STOP.held -= 1
    if check:
        raise_if_interrupted()


def holding(write: Callable[P, R]) -> Callable[P, R]:
    """`write` (a call into the store) under `held`."""

    @functools.wraps(write)
    def held_write(*args: P.args, **kwargs: P.kwargs) -> R:
        with held():
            return write(*args, **kwargs)

    return held_write


def _handler(signum: int, _frame: FrameType | None) -> None:
    again = STOP.pending is not None
    STOP.pending = signal.Signals(signum).name
    if again:
        raise StageInterrupted(f"stopped by a second {STOP.pending}")
    raise_if_interrupted()


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into `StageInterrupted` while a stage runs, so it can close its
    run; a second one during a held write raises at once. The stop ends with the block: it is this
    stage's, not one for later work of the process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (e.g. a joblib thread): nothing to do
        return
    STOP.pending = None
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for s in previous:
            signal.signal(s, _handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        STOP.pending = None
