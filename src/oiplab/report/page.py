"""Fill the report template from the stages' typed results (each loaded through its own type).

Every table is a `Table`: its column headers beside the cell of each column, so the template holds
only layout. A missing input, or one written by another version, is an error naming the file and
the stage to rerun: the page never leaves a seed out silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oiplab.analysis.patterns import PatternSummary
from oiplab.analysis.selection import Selection
from oiplab.backend import versions
from oiplab.compare.answers import (
    DESIGNS,
    ShortAnswer,
    decider,
    first_screen,
    kept_layers,
    layer_p_holm,
    what_decides,
)
from oiplab.compare.dynamics import AlignmentRecords
from oiplab.compare.oip_response import MatchedPairs, ResponseSummary
from oiplab.compare.summary import Answer
from oiplab.compare.width import LABELS, WidthRecords, by_layer_and_width, trend_note
from oiplab.config import Config
from oiplab.data.prepared import PreparedMeta, read_meta
from oiplab.layout import (
    ActivationsFiles,
    AlignmentFiles,
    CompareFiles,
    Layout,
    OipCompareFiles,
    OipFiles,
    PrecursorFiles,
    Stage,
    TrainFiles,
)
from oiplab.oip.census import CensusMetrics
from oiplab.oip.survey import SurveyMetrics
from oiplab.report import tables
from oiplab.report.html import Links
from oiplab.report.tables import Table, table
from oiplab.training import TrainMetrics

SECTIONS = (
    ("answers", "The answers"),
    ("setup", "Data and setup"),
    ("training", "Training"),
    ("activations", "Activation maps"),
    ("oip", "OIPs"),
    ("silent", "Silent maps"),
    ("compare", "Same filters, same order?"),
    ("oip_compare", "Matched maps, by their OIPs"),
    ("decides", "What decides the order?"),
    ("over_training", "When each network's order is fixed"),
    ("width", "Does width change the answer?"),
    ("reproduce", "Reproduce"),
)
GRID_LAYERS = ("Conv2D_1", "Conv2D_3", "Dense_1")  # one early, one late conv layer, one dense


def setup(cfg: Config, meta: PreparedMeta, commit: str, digest: str) -> dict[str, Any]:
    st, target, t = meta.standardization, meta.image_target, cfg.train
    rows = [
        ("study", cfg.study),
        ("data set", cfg.data.name),
        ("seeds", ", ".join(map(str, cfg.seeds))),
        ("threads", f"{cfg.threads} per stage (TensorFlow, BLAS: the last bits follow the count)"),
        ("git commit", commit),
        ("config digest", digest),
        ("source", meta.origin),
        ("train / test images", f"{meta.n_train} / {meta.n_test}"),
        *((f"sha256 {split}", sha) for split, sha in meta.sha256.items()),
        ("standardization", f"(x/255 - {st.mean:.4f}) / {st.std:.4f}"),
        ("synthetic inputs", f"per image: mean {target.mean:.3f}, std {target.std:.3f}"),
        *versions().items(),
    ]
    training = [
        ("epochs", t.epochs),
        ("batch size", t.batch_size),
        ("optimizer", f"SGD, momentum {t.momentum}" + (", Nesterov" if t.nesterov else "")),
        ("learning rate", f"{t.learning_rate} ({t.lr_schedule} schedule)"),
        ("L2 on kernels", t.l2),
        ("initialization seed", "the run's seed" if t.init_seed is None else t.init_seed),
        ("image-order seed", "the run's seed" if t.data_seed is None else t.data_seed),
    ]
    settings = ("setting", "value")
    return {
        "rows": Table(settings, rows),
        "training": Table(settings, training),
        "config_json": json.dumps(cfg.model_dump(), indent=1),
    }


def training(cfg: Config, lay: Layout, curves: Path) -> dict[str, Any]:
    metrics = [TrainMetrics.load(lay.model_dir(s)) for s in cfg.seeds]
    accuracies = [m.test_accuracy for m in metrics]
    return {
        "table": table(tables.TRAINING, metrics),
        "n_seeds": len(metrics),
        "acc_min": min(accuracies),
        "acc_max": max(accuracies),
        "curves": curves,
        "first_seed": cfg.seeds[0],
        "confusion": lay.model_dir(cfg.seeds[0]) / TrainFiles.confusion,
    }


def activations(cfg: Config, lay: Layout) -> dict[str, Any]:
    groups = Selection.load_from(lay.selection()).groups
    seed, folder, c = cfg.seeds[0], lay.activations_dir(cfg.seeds[0]), cfg.activations.common
    summaries = [PatternSummary.load(lay.activations_dir(s)) for s in cfg.seeds]
    patterns = [
        (p.seed, layer, name, numbers)
        for p in summaries
        for layer, by_name in p.common.items()
        for name, numbers in by_name.items()
    ]
    return {
        "seed": seed,
        "groups": table(tables.GROUPS, groups),
        "threshold": f"{c.threshold:g}",
        "grids": [
            (
                folder / ActivationsFiles.grid(g.name, g.indices[0], layer),
                f"seed {seed}: {g.name} (test image {g.indices[0]}), {layer}",
            )
            for g in groups
            for layer in GRID_LAYERS
        ],
        "patterns": table(tables.PATTERNS, patterns),
        "common_figures": [
            (
                folder / ActivationsFiles.common_figure(layer, name, other),
                f"seed {seed}, {layer}: {name} against {other}",
            )
            for layer in c.layers
            for name, other in c.comparisons
        ],
    }


def oip(cfg: Config, lay: Layout) -> dict[str, Any]:
    first = cfg.seeds[0]
    return {
        "cfg": cfg.oip,
        "table": table(tables.SURVEY, [SurveyMetrics.load(lay.oip_dir(s)) for s in cfg.seeds]),
        "galleries": [
            (
                lay.oip_dir(s) / OipFiles.gallery_contrast,
                f"seed {s}: OIP per map of {cfg.oip.layer} (contrast-enhanced)",
            )
            for s in cfg.seeds
        ],
        "evolution": [
            (p, f"seed {first}: {p.stem.replace('_', ' ')}")
            for p in sorted(lay.oip_dir(first).glob(OipFiles.evolution_glob))[:2]
        ],
    }


def silent(cfg: Config, lay: Layout, census_figure: Path) -> dict[str, Any]:
    p, seeds, folder = cfg.precursor, cfg.seeds, lay.precursor_dir(cfg.seeds[0])
    return {
        "cfg": p,
        "n_candidates": len(p.values) ** (p.grid * p.grid),
        "seed": cfg.seeds[0],
        "table": table(tables.CENSUS, [CensusMetrics.load(lay.precursor_dir(s)) for s in seeds]),
        "census": census_figure,
        "gallery": folder / PrecursorFiles.gallery,
        "variants": folder / PrecursorFiles.variants,
        "rescue": folder / PrecursorFiles.rescue,
    }


def compare(cfg: Config, lay: Layout) -> dict[str, Any]:
    folder, (a, b) = lay.compare_dir(), cfg.seeds[:2]
    answer = Answer.load(folder)
    layers = [answer.layers[layer] for layer in cfg.compare.layers]
    return {
        "verdicts": [x.verdict for x in layers],
        "answer": table(tables.ANSWER, layers),
        "firmness": table(tables.FIRMNESS, layers),
        "barriers": table(tables.BARRIERS, answer.barriers.rows()),
        "answers": [(folder / CompareFiles.answer(x.layer), x.layer) for x in layers],
        "n_pairs": len(MatchedPairs.load(folder).pairs),
        "rules": cfg.compare,
        "figures": {
            "correlations": folder / CompareFiles.correlations(a, b),
            "aligned_filters": folder / CompareFiles.aligned_filters(a, b),
            "interpolation": folder / CompareFiles.interpolation,
        },
    }


def oip_compare(cfg: Config, lay: Layout) -> dict[str, Any]:
    summary, (a, b) = ResponseSummary.load(lay.oip_compare_dir()), cfg.seeds[:2]
    groups = [(n, r) for n, r in (("all", summary.all), ("partnered", summary.partnered)) if r]
    return {
        "layer": cfg.oip.layer,
        "pixels": summary.pixels,
        "pair": (a, b),
        "table": table(tables.RATES, groups),
        "galleries": lay.oip_compare_dir() / OipCompareFiles.galleries(a, b),
    }


def split_answers(cfg: Config, lay: Layout) -> dict[str, Answer]:
    """The seed-split design's answers (`compare_split`), one per design of `conf/split/`."""
    return {
        d: Answer.load(lay.split_compare_dir(d), Stage.COMPARE_SPLIT) for d in cfg.split.designs
    }


def answers(cfg: Config, lay: Layout, splits: dict[str, Answer]) -> list[ShortAnswer]:
    """The first screen: three questions, each answered in a sentence with its numbers."""
    return first_screen(
        Answer.load(lay.compare_dir()), splits, cfg.compare.alpha, cfg.compare.most_fraction
    )


def decides(cfg: Config, lay: Layout, splits: dict[str, Answer], links: Links) -> dict[str, Any]:
    """Which shared seed keeps the order: each design's same-index test per layer."""
    designs = [
        {
            "name": d,
            "what": DESIGNS[d],
            "kept": kept_layers(a, cfg.compare.alpha),
            "order": table(
                tables.SPLIT_ORDER,
                [(a.layers[n], layer_p_holm(a)[n]) for n in cfg.compare.layers],
            ),
            "url": links.url("compare_split", design=d),
        }
        for d, a in splits.items()
    ]
    return {
        "decider": decider(splits, cfg.compare.alpha),
        "sentence": what_decides(splits, cfg.compare.alpha),
        "designs": designs,
        "shared": cfg.seeds[0],
        "members": cfg.split.members,
        "alpha": cfg.compare.alpha,
    }


def over_training(cfg: Config, lay: Layout) -> dict[str, Any]:
    """Each seed against its own final network over training, with chance and the exact test."""
    records = AlignmentRecords.load(lay.alignment_dir()).records
    epoch_of = {r.step: r.epoch for r in records}
    steps = sorted(epoch_of)
    shown = {steps[0], steps[-1]} | {s for s in steps if abs(epoch_of[s] - 1.0) < 1e-6}
    return {
        "table": table(tables.OVER_TRAINING, [r for r in records if r.step in shown]),
        "probe_images": cfg.alignment.probe_images,
        "figures": [
            (lay.alignment_dir() / AlignmentFiles.figure(n), n) for n in cfg.alignment.layers
        ],
        "answer_images": cfg.compare.probe_images,
    }


def context(
    cfg: Config,
    lay: Layout,
    links: Links,
    provenance: tuple[str, str],
    curves: Path,
    census: Path,
) -> dict[str, Any]:
    """Everything the template shows, read from the stages' typed results."""
    splits = split_answers(cfg, lay)
    return {
        "answers": answers(cfg, lay, splits),
        "title": "oiplab: do two trainings learn the same filters, in the same order?",
        "subtitle": f"{cfg.data.name}, seeds {', '.join(map(str, cfg.seeds))} ({cfg.study})",
        "seeds": list(cfg.seeds),
        "sections": SECTIONS,
        "links": links,
        "setup": setup(cfg, read_meta(lay.prepared), *provenance),
        "training": training(cfg, lay, curves),
        "activations": activations(cfg, lay),
        "oip": oip(cfg, lay),
        "silent": silent(cfg, lay, census),
        "compare": compare(cfg, lay),
        "oip_compare": oip_compare(cfg, lay),
        "decides": decides(cfg, lay, splits, links),
        "over_training": over_training(cfg, lay),
        # the report stage adds the figures, which it draws itself (`width_study`)
        "width": width_study(lay, {}),
    }


# The width study's sweep (`oiplab.stages.width`): the page gives it where it has not run.
WIDTH_COMMAND = "oiplab run width -m experiment=width_cpu"


def width_study(lay: Layout, figures: dict[str, Path]) -> dict[str, Any]:
    """The width study's section: its tables, figures (`figures`: statistic -> PNG) and trend,
    when the sweep has written its summary (`metrics/width_records.json`); else the command."""
    if not lay.width_records().is_file():
        return {"ran": False, "command": WIDTH_COMMAND}
    rows = WidthRecords.load(lay.metrics).data()
    cells = by_layer_and_width(rows)
    return {
        "ran": True,
        "command": WIDTH_COMMAND,
        "layers": table(tables.WIDTH_LAYERS, [c for c in cells if c["layer"] != "network"]),
        "network": table(tables.WIDTH_NETWORK, [c for c in cells if c["layer"] == "network"]),
        "figures": [(path, LABELS.get(s, s)) for s, path in figures.items()],
        "trend": trend_note(rows),
        "widths": sorted({r["width"] for r in rows}),
    }
