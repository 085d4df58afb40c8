"""The project's error base: every expected failure (bad config, missing or corrupt input) derives
from `OiplabError`, so a stage's entry point reports it as one clear line instead of a traceback."""

from os import PathLike


class OiplabError(Exception):
    """An expected failure whose message names the key, file or value and what was expected."""


class MissingInputError(OiplabError, FileNotFoundError):
    """A stage's input (an earlier stage's output) does not exist yet."""


def missing_input(
    path: str | PathLike[str], what: str, stage: str = "", otherwise: str = ""
) -> MissingInputError:
    """The error for a stage input that does not exist: the file, what it is, where it was
    looked for (paths are relative to the working directory), and what makes it (`otherwise`:
    what makes it where the DVC stage does not)."""
    from pathlib import Path

    where = Path.cwd()
    make = f"`dvc repro {stage}`" if stage else "`dvc repro`"
    return MissingInputError(
        f"{path}: {what} not found (paths are relative to {where}): run {make} in the project "
        "root, the folder holding dvc.yaml" + (f"; {otherwise}" if otherwise else "")
    )


class StageInterrupted(BaseException):
    """SIGTERM or SIGINT arrived while a stage ran (its run is then closed as KILLED)."""


class Interrupt:
    """A stage's stop request (SIGTERM/SIGINT, see `tracking.stage_run`). Its handler raises
    `StageInterrupted` at once, except inside a write to the store (`held` > 0): an exception
    raised in the middle of MLflow's SQLAlchemy session leaves its transaction open, the store
    locked and the run RUNNING, so there the stop waits until the write ends. Python swallows an
    exception raised inside a finalizer or weakref callback ("Exception ignored in ..."), so the
    stop is also kept (`pending`) and raised at the next check: the end of a write, the start of
    an epoch, before an output is moved into place, the end of the stage's work."""

    held = 0
    pending: str | None = None


def raise_if_interrupted() -> None:
    """Raise `StageInterrupted` if a stop arrived that has not ended the stage yet."""
    if Interrupt.pending and not Interrupt.held:
        raise StageInterrupted(f"stopped by {Interrupt.pending}")
