"""Stage `report`: one offline HTML page with the whole study's figures, numbers and verdict.

dvc repro report        # writes reports/index.html (open it in any browser, no network needed)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from oiplab import tracking
from oiplab.config import Config
from oiplab.io import read_json, staged
from oiplab.layout import METRICS, Layout, TrainFiles
from oiplab.oip.census import CAUSES
from oiplab.render import save_figure
from oiplab.render.oip import census_figure
from oiplab.render.training import seeds_history_figure
from oiplab.report import page
from oiplab.stages import stage_main

ARTICLES_SILENT = 67  # of 128 Conv2D_3 maps, in the articles' network (part X)


def run(cfg: Config) -> dict[str, Any]:
    """Write the report page from the outputs of every earlier stage."""
    lay = Layout.of(cfg)
    with tracking.stage_run(cfg, "report") as run, tempfile.TemporaryDirectory() as scratch:
        uri = tracking.tracking_uri(cfg) if cfg.tracking.enabled else None
        histories = {s: read_json(lay.model_dir(s) / TrainFiles.history) for s in cfg.seeds}
        census = {s: read_json(lay.precursor_dir(s) / METRICS) for s in cfg.seeds}
        figures = {"curves": Path(scratch) / "curves.png", "census": Path(scratch) / "census.png"}
        save_figure(seeds_history_figure(histories, "every seed"), figures["curves"])
        save_figure(census_figure(census, CAUSES, ARTICLES_SILENT), figures["census"])
        splits = {s: tracking.latest_study_headline(cfg, s) for s in page.SPLIT_STUDIES}
        provenance = (tracking.git_commit(), tracking.config_digest(cfg))
        links = page.Links(page.ui_base(uri), lay)
        html = page.render(page.context(cfg, lay, links, provenance, figures, splits))
        with staged(lay.report()) as (tmp,):
            tmp.write_text(html, encoding="utf-8")
            run.log_text(html, f"report/{lay.report().name}")
    size = lay.report().stat().st_size
    print(f"[report] wrote {lay.report()} ({size / 1e6:.1f} MB)")
    return {"path": str(lay.report()), "bytes": size}


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
