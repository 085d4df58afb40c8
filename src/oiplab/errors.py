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
