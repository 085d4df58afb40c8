"""Stage `compare`: do independently trained seeds learn the same maps, in the same order?

dvc repro compare
python -m oiplab.stages.compare compare.probe_images=2000
"""

from __future__ import annotations

import logging
from typing import Any

from oiplab import tracking
from oiplab.compare.answers import answer_metrics, first_screen, markdown
from oiplab.compare.study import compare_networks, comparison_images, untrained_networks
from oiplab.compare.summary import answer_records, headline_metrics, learning_curve_records
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import RunRecord, staged, to_json
from oiplab.layout import CompareFiles, Layout, Stage
from oiplab.model import load_model
from oiplab.render.compare import save_comparison_figures
from oiplab.stages import keep_figures, record, stage_main
from oiplab.training import History, TrainMetrics

PLOTS = ("learning_curves", "answer")

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Compare every pair of seeds, against pairs of untrained networks."""
    lay, c, seeds = Layout.of(cfg), cfg.compare, list(cfg.seeds)
    with tracking.stage_run(cfg, Stage.COMPARE) as run:
        probe_x, eval_sets = comparison_images(load_prepared(lay.prepared, cfg.data), c)
        models = {s: load_model(lay.model_file(s), cfg.model) for s in seeds}
        trained = {s: TrainMetrics.load(lay.model_dir(s)) for s in seeds}
        curves = {s: History.load(lay.model_dir(s)).curves for s in seeds}
        runs = [RunRecord.of(lay.model_dir(s)) for s in seeds]
        result = compare_networks(models, untrained_networks(cfg.model, c), probe_x, eval_sets, c)
        weights = {s: m.get_weights() for s, m in models.items()}
        accuracies = [m.test_accuracy for m in trained.values()]
        headline = headline_metrics(result.answers, result.barriers, accuracies)
        targets = [lay.compare_dir(), lay.headline(), *map(lay.plot_data, PLOTS)]
        targets.append(lay.figures_dir(Stage.COMPARE))
        with staged(*targets) as (folder, headline_file, curves_file, answer_file, figures):
            save_comparison_figures(folder, result, weights)
            keep_figures(folder, figures, [CompareFiles.interpolation])
            (folder / CompareFiles.details).write_text(to_json(result.details()))
            result.answer().save(folder)
            headline_file.write_text(to_json(headline))
            curves_file.write_text(to_json(learning_curve_records(curves)))
            answer_file.write_text(to_json(answer_records(result.answers)))
            run.set_tags({"oiplab.seed_runs": ",".join(r.run_id or "" for r in runs)})
            answers = markdown(first_screen(result.answer(), {}, c.alpha, c.most_fraction))
            run.describe(f"{answers}\n\nPer layer: {result.verdict}")
            run.describe_execution(answers, answer_metrics(result.answer(), {}))
            record(run, folder, headline, "compare")
    log.info("verdict: %s", result.verdict)
    return headline


def main(argv: list[str] | None = None, as_oiplab_run: bool = False) -> None:
    stage_main(run, argv, as_oiplab_run=as_oiplab_run)


if __name__ == "__main__":
    main()
