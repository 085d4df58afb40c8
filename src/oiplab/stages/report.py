"""Stage `report`: one offline HTML page with the whole study's figures, numbers and verdict.

dvc repro report        # writes reports/index.html (open it in any browser, no network needed)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from oiplab import tracking
from oiplab.compare.answers import answer_metrics, first_screen, markdown
from oiplab.compare.summary import Answer
from oiplab.compare.width import WidthRecords
from oiplab.config import Config
from oiplab.io import staged
from oiplab.layout import Layout, Stage
from oiplab.oip.census import CAUSES, CensusMetrics
from oiplab.render import save_figure
from oiplab.render.oip import census_figure
from oiplab.render.training import seeds_history_figure
from oiplab.render.width import save_width_figures
from oiplab.report import page
from oiplab.report.html import Links, render, ui_base
from oiplab.stages import stage_main
from oiplab.training import History

ARTICLES_SILENT = 67  # of 128 Conv2D_3 maps, in the articles' network (part X)

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Write the report page from the outputs of every earlier stage."""
    lay = Layout.of(cfg)
    with tracking.stage_run(cfg, Stage.REPORT) as run, tempfile.TemporaryDirectory() as scratch:
        uri = tracking.tracking_uri(cfg) if cfg.tracking.enabled else None
        histories = {s: History.load(lay.model_dir(s)).curves for s in cfg.seeds}
        census = {s: CensusMetrics.load(lay.precursor_dir(s)).counts() for s in cfg.seeds}
        curves, counts = Path(scratch) / "curves.png", Path(scratch) / "census.png"
        save_figure(seeds_history_figure(histories, "every seed"), curves)
        save_figure(census_figure(census, CAUSES, ARTICLES_SILENT), counts)
        provenance = (tracking.git_commit(), tracking.config_digest(cfg))
        links = Links(ui_base(uri, cfg.tracking.ui), lay)
        ctx = page.context(cfg, lay, links, provenance, curves, counts)
        ctx["width"] = page.width_study(lay, _width_figures(lay, Path(scratch)))
        html = render(ctx)
        default, splits = Answer.load(lay.compare_dir()), page.split_answers(cfg, lay)
        run.describe_execution(  # the parent run carries the page's first screen
            markdown(first_screen(default, splits, cfg.compare.alpha, cfg.compare.most_fraction)),
            answer_metrics(default, splits),
        )
        with staged(lay.report()) as (tmp,):
            tmp.write_text(html, encoding="utf-8")
            run.log_text(html, f"report/{lay.report().name}")
    size = lay.report().stat().st_size
    log.info("wrote %s (%.1f MB)", lay.report(), size / 1e6)
    return {"path": str(lay.report()), "bytes": size}


def _width_figures(lay: Layout, scratch: Path) -> dict[str, Path]:
    """The width study's figures, drawn from its summary (none where the sweep has not run)."""
    if not lay.width_records().is_file():
        return {}
    rows = WidthRecords.load(lay.metrics).data()
    paths = save_width_figures(scratch / "width", rows)
    return {p.stem.removeprefix("width_"): p for p in paths}


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
