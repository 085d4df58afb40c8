"""Searching runs by tag values that come from outside (a sweep's folder, a study's name, a run
id typed on the command line), whatever characters they hold.

MLflow's filter grammar has no escape character: a string literal is cut at its closing quote,
and the quotes are stripped without unescaping (`'o''brien'` matches the text `o''brien`). So a
value is put in single quotes, or in double quotes when it holds a single quote; a value holding
both kinds, or a backslash (which the tokenizer reads as escaping the quote after it), is matched
with LIKE, each of those characters a one-character wildcard, and `find_runs` keeps only the runs
whose tags are exactly the values asked for.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

SEARCH_PAGE = 50_000  # the most runs MLflow returns for one search
_UNQUOTABLE = re.compile(r"['\\]")  # inside single quotes: the quote and the backslash


def tag_clause(name: str, value: str) -> str:
    """A filter clause matching the runs whose tag `name` is `value` (a superset of them when
    `value` cannot be quoted: see the module docstring)."""
    if "\\" not in value:
        if "'" not in value:
            return f"tags.`{name}` = '{value}'"
        if '"' not in value:
            return f'tags.`{name}` = "{value}"'
    pattern = _UNQUOTABLE.sub("_", value)
    return f"tags.`{name}` LIKE '{pattern}'"


def find_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    tags: dict[str, str],
    where: str = "",
    order_by: list[str] | None = None,
    max_results: int = 1000,
) -> list[Run]:
    """The runs whose tags are exactly `tags` and that pass `where` (a filter of fixed text, no
    values from outside), in the order of `order_by`, at most `max_results` of them."""
    clauses = [tag_clause(k, v) for k, v in tags.items()]
    loose = any(" LIKE " in c for c in clauses)  # a superset: fetch every candidate
    found = client.search_runs(
        experiment_ids,
        " and ".join([*clauses, where] if where else clauses),
        order_by=order_by,
        max_results=SEARCH_PAGE if loose else max_results,
    )
    exact = [r for r in found if all(r.data.tags.get(k) == v for k, v in tags.items())]
    return exact[:max_results]
