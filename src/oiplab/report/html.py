"""How the report page is rendered: the Jinja environment and its filters, figures embedded as
data URIs, and links into the MLflow UI from each stage's run record."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from oiplab.credentials import redact
from oiplab.io import RunRecord
from oiplab.layout import RUN, Layout
from oiplab.report.tables import fmt, pct


def data_uri(path: str | Path) -> str | None:
    """A PNG file as a data URI (the page needs no other file), or None when it is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render(context: dict[str, Any]) -> str:
    env = Environment(
        loader=PackageLoader("oiplab.report", "templates"),
        autoescape=select_autoescape(["j2", "html"]),
        undefined=StrictUndefined,
    )
    env.filters.update(fmt=fmt, data_uri=data_uri, pct=pct)
    style = env.loader.get_source(env, "style.css")[0] if env.loader else ""
    return env.get_template("report.html.j2").render(style=style, **context)


class Links:
    """Links into the MLflow UI: the runs that produced each output (their `run.json`)."""

    def __init__(self, base: str | None, lay: Layout):
        self.base, self.lay = base, lay

    def url(self, stage: str, seed: int | None = None, design: str | None = None) -> str | None:
        folder = self.lay.output_dir(stage, seed, design)
        if self.base is None or not (folder / RUN).is_file():
            return None
        return self.run(RunRecord.load(folder, stage))

    def run(self, found: RunRecord | None) -> str | None:
        """The UI page of a run record."""
        if self.base is None or found is None or not found.run_id:
            return None
        return f"{self.base}/#/experiments/{found.experiment_id}/runs/{found.run_id}"


def ui_base(uri: str | None, local_ui: str) -> str | None:
    """Where the runs of store `uri` are browsed: the server itself, or, for a store on this
    machine, `local_ui` (`tracking.ui`, where `oiplab ui` serves it)."""
    if uri is None:
        return None
    return redact(uri).rstrip("/") if uri.startswith("http") else local_ui.rstrip("/")
