"""The project's error base: every expected failure (bad config, missing or corrupt input) derives
from `OiplabError`, so a stage's entry point reports it as one clear line instead of a traceback."""


class OiplabError(Exception):
    """An expected failure whose message names the key, file or value and what was expected."""


class MissingInputError(OiplabError, FileNotFoundError):
    """A stage's input (an earlier stage's output) does not exist yet."""
