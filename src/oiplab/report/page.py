"""Fill the report template from the stages' outputs (read through the layout).

Every section reads its stage's output folder: the numbers from `metrics.json`, the figures by
the names `oiplab.layout` gives, the MLflow run from `run.json`. A missing or unreadable input is
an error naming the file: the page never leaves a seed out silently.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from oiplab.backend import versions
from oiplab.config import Config
from oiplab.io import read_json
from oiplab.layout import (
    METRICS,
    RUN,
    ActivationsFiles,
    AlignmentFiles,
    CompareFiles,
    Layout,
    OipCompareFiles,
    OipFiles,
    PrecursorFiles,
    PreparedFiles,
    TrainFiles,
)
from oiplab.oip.census import CAUSES

SECTIONS = (
    ("setup", "Data and setup"),
    ("training", "Training"),
    ("activations", "Activation maps"),
    ("oip", "OIPs"),
    ("silent", "Silent maps"),
    ("compare", "Same filters, same order?"),
    ("oip_compare", "Matched maps, by their OIPs"),
    ("why", "Why is the order lost?"),
    ("reproduce", "Reproduce"),
)
GRID_LAYERS = ("Conv2D_1", "Conv2D_3", "Dense_1")  # one early, one late conv layer, one dense
SPLIT_STUDIES = {
    "same_init": "one initialization for every seed, each its own image order",
    "same_order": "one image order for every seed, each its own initialization",
}
LOCAL_UI = "http://127.0.0.1:5000"  # where `make mlflow-ui` / `oiplab ui` serves the store


def fmt(value: Any) -> str:
    """How the page prints a table cell."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def pct(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


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
    style = env.loader.get_source(env, "style.css")[0]
    return env.get_template("report.html.j2").render(style=style, sections=SECTIONS, **context)


class Links:
    """Links into the MLflow UI: the runs that produced each output (their `run.json`)."""

    def __init__(self, base: str | None, lay: Layout):
        self.base, self.lay = base, lay

    def url(self, stage: str, seed: int | None = None) -> str | None:
        if self.base is None:
            return None
        path = self.lay.output_dir(stage, seed) / RUN
        return self.run(json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None)

    def run(self, found: dict | None) -> str | None:
        """The UI page of a run record ({"experiment_id", "run_id"})."""
        if self.base is None or not found or not found.get("run_id"):
            return None
        return f"{self.base}/#/experiments/{found['experiment_id']}/runs/{found['run_id']}"


def ui_base(uri: str | None) -> str | None:
    """Where the runs of store `uri` are browsed: the server itself, or the local UI."""
    if uri is None:
        return None
    return uri.rstrip("/") if uri.startswith("http") else LOCAL_UI


def _stage(lay: Layout, stage: str, seed: int | None = None) -> dict:
    return read_json(lay.output_dir(stage, seed) / METRICS, f"{stage} metrics")


def setup(cfg: Config, meta: dict, commit: str, digest: str) -> dict:
    st, target = meta["standardization"], meta["image_target"]
    rows = [
        ("study", cfg.study),
        ("data set", cfg.data.name),
        ("seeds", ", ".join(map(str, cfg.seeds))),
        ("git commit", commit),
        ("config digest", digest),
        ("source", meta["origin"]),
        ("train / test images", f"{meta['n_train']} / {meta['n_test']}"),
        ("sha256 train", meta["sha256"]["train"]),
        ("sha256 test", meta["sha256"]["test"]),
        ("standardization", f"(x/255 - {st['mean']:.4f}) / {st['std']:.4f}"),
        ("synthetic inputs", f"per image: mean {target['mean']:.3f}, std {target['std']:.3f}"),
        *versions().items(),
    ]
    t = cfg.train
    training = [
        ("epochs", t.epochs),
        ("batch size", t.batch_size),
        ("optimizer", f"SGD, momentum {t.momentum}" + (", Nesterov" if t.nesterov else "")),
        ("learning rate", f"{t.learning_rate} ({t.lr_schedule} schedule)"),
        ("L2 on kernels", t.l2),
        ("initialization seed", "the run's seed" if t.init_seed is None else t.init_seed),
        ("image-order seed", "the run's seed" if t.data_seed is None else t.data_seed),
    ]
    return {
        "rows": rows,
        "training": training,
        "config_json": json.dumps(cfg.model_dump(), indent=1),
    }


def training(cfg: Config, lay: Layout, curves: Path) -> dict:
    keys = ("test_accuracy", "test_loss", "train_seconds", "images_per_second")
    rows = [(s, *(_stage(lay, "train", s)[k] for k in keys)) for s in cfg.seeds]
    accs = [r[1] for r in rows]
    return {
        "rows": rows,
        "acc_min": min(accs),
        "acc_max": max(accs),
        "curves": curves,
        "first_seed": cfg.seeds[0],
        "confusion": lay.model_dir(cfg.seeds[0]) / TrainFiles.confusion,
    }


def activations(cfg: Config, lay: Layout) -> dict:
    selection = read_json(lay.selection(), "image selection")
    seed, folder = cfg.seeds[0], lay.activations_dir(cfg.seeds[0])
    groups = [
        (
            g["name"],
            g["kind"],
            ", ".join(map(str, g["indices"])),
            ", ".join(f"{v:.3f}" for v in g["scores"]),
        )
        for g in selection["groups"]
    ]
    grids = [
        (
            folder / ActivationsFiles.grid(g["name"], g["indices"][0], layer),
            f"seed {seed}: {g['name']} (test image {g['indices'][0]}), {layer}",
        )
        for g in selection["groups"]
        for layer in GRID_LAYERS
    ]
    patterns = [
        (s, layer, cmp, r["n_common"], r["n_distinct"], r["jaccard_within"], r["jaccard_across"])
        for s in cfg.seeds
        for layer, by_cmp in _stage(lay, "activations", s)["common"].items()
        for cmp, r in by_cmp.items()
    ]
    c = cfg.activations.common
    common_figures = [
        (
            folder / ActivationsFiles.common_figure(layer, name, other),
            f"seed {seed}, {layer}: {name} against {other}",
        )
        for layer in c.layers
        for name, other in c.comparisons
    ]
    return {
        "seed": seed,
        "groups": groups,
        "grids": grids,
        "threshold": f"{c.threshold:g}",
        "patterns": patterns,
        "common_figures": common_figures,
    }


def oip(cfg: Config, lay: Layout) -> dict:
    rows = []
    for s in cfg.seeds:
        m = _stage(lay, "oip", s)
        mean = f"{m['start_mean']:.2f}".replace("-0.00", "0.00")  # a mean of ~0 may print as -0
        rows.append(
            (s, m["n_maps"], m["n_with_oip"], m["n_silent"], pct(m["converged_fraction"]),
             m["median_steps_moving"], mean, f"{m['start_std_spread']:.1e}", m["seconds"])
        )  # fmt: skip
    galleries = [
        (
            lay.oip_dir(s) / OipFiles.gallery_contrast,
            f"seed {s}: OIP per map of {cfg.oip.layer} (contrast-enhanced)",
        )
        for s in cfg.seeds
    ]
    first = cfg.seeds[0]
    evolution = [
        (p, f"seed {first}: {p.stem.replace('_', ' ')}")
        for p in sorted(lay.oip_dir(first).glob(OipFiles.evolution_glob))[:2]
    ]
    return {"cfg": cfg.oip, "rows": rows, "galleries": galleries, "evolution": evolution}


def silent(cfg: Config, lay: Layout, census_figure: Path) -> dict:
    rows = []
    for s in cfg.seeds:
        m = _stage(lay, "precursor", s)
        rows.append(
            (s, *(m[c] for c in CAUSES), m["screen_seconds"] + m["full_seconds"],
             m["rescue_seconds"])
        )  # fmt: skip
    p, folder = cfg.precursor, lay.precursor_dir(cfg.seeds[0])
    return {
        "cfg": p,
        "n_candidates": len(p.values) ** (p.grid * p.grid),
        "causes": CAUSES,
        "rows": rows,
        "seed": cfg.seeds[0],
        "census": census_figure,
        "gallery": folder / PrecursorFiles.gallery,
        "variants": folder / PrecursorFiles.variants,
        "rescue": folder / PrecursorFiles.rescue,
    }


def _ci(e: dict, as_pct: bool = True) -> str:
    """An estimate with its interval: '62% (55-70%)' or '0.83 (0.80-0.85)'."""
    if e["value"] is None:
        return "n/a"
    if as_pct:
        return f"{pct(e['value'])} ({pct(e['low'])}-{pct(e['high'])})"
    return f"{e['value']:.2f} ({e['low']:.2f}-{e['high']:.2f})"


def _null(e: dict, as_pct: bool = True) -> str:
    if e.get("null") is None:
        return "n/a"
    return pct(e["null"]) if as_pct else f"{e['null']:.2f}"


def _three(d: dict) -> str:
    """'all / stable (chance)' of a consistency or agreement record."""
    if not d:
        return "-"
    return f"{pct(d.get('all'))} / {pct(d.get('stable'))} (chance {pct(d.get('chance'), 1)})"


def answer_rows(answers: list[dict]) -> list[tuple]:
    """The answer table: one row per layer (also used for the seed-split studies)."""
    return [
        (
            a["layer"],
            _ci(a["partnered"]),
            _null(a["partnered"]),
            _ci(a["matched_r"], as_pct=False),
            _null(a["matched_r"], as_pct=False),
            f"{a['order']['observed']} / {a['order']['expected']:.1f}",
            f"{a['order']['p_value']:.2g}",
            f"{a['order_null']['p_value']:.2g}",
            _ci(a["cka"], as_pct=False),
            _null(a["cka"], as_pct=False),
        )
        for a in answers
    ]


def compare(cfg: Config, lay: Layout) -> dict:
    head = read_json(lay.compare_dir() / CompareFiles.headline, "answer")
    details = read_json(lay.compare_dir() / CompareFiles.details, "comparison details")
    layers = [head[layer] for layer in cfg.compare.layers]
    detail_rows = [
        (
            a["layer"],
            f"{a['threshold']:.2f}",
            _ci(a["stable"]),
            ", ".join(f"{s}: {n}" for s, n in a["dead"].items()),
            _three(a["consistency"]),
            _three(a["weight_agreement"]),
        )
        for a in layers
    ]
    alignments = {"naive": "as trained", "activations": "activation matching",
                  "weights": "weight matching"}  # fmt: skip
    barrier_rows = []
    for key, est in head["interpolation"].items():
        how, images, measure = key.split(".")
        measure = measure.removesuffix("_barrier")
        barrier_rows.append((alignments.get(how, how), f"{images} images, {measure}",
                             _ci(est, as_pct=False)))  # fmt: skip
    a, b = cfg.seeds[0], cfg.seeds[1]
    folder = lay.compare_dir()
    return {
        "verdicts": [x["verdict"] for x in layers],
        "answer_rows": answer_rows(layers),
        "detail_rows": detail_rows,
        "barrier_rows": barrier_rows,
        "answers": [(folder / CompareFiles.answer(x["layer"]), x["layer"]) for x in layers],
        "n_pairs": len(details["pairs"]),
        "rules": cfg.compare,
        "figures": {
            "correlations": folder / CompareFiles.correlations(a, b),
            "aligned_filters": folder / CompareFiles.aligned_filters(a, b),
            "interpolation": folder / CompareFiles.interpolation,
        },
    }


def oip_compare(cfg: Config, lay: Layout) -> dict:
    summary = _stage(lay, "oip_compare")
    rows = [
        (
            group,
            summary[group]["n"],
            pct(summary[group]["top1"]),
            pct(summary[group]["top1_random"]),
            pct(summary[group]["top1_chance"], 1),
            pct(summary[group]["top5"]),
            pct(summary[group]["top5_random"]),
            pct(summary[group]["top5_chance"], 1),
        )
        for group in ("all", "partnered")
        if group in summary
    ]
    a, b = cfg.seeds[0], cfg.seeds[1]
    return {
        "layer": cfg.oip.layer,
        "rows": rows,
        "pixels": summary.get("pixels"),
        "galleries": lay.oip_compare_dir() / OipCompareFiles.galleries(a, b),
        "pair": (a, b),
    }


def why(cfg: Config, lay: Layout, splits: dict[str, dict | None], links: Links) -> dict:
    records = read_json(lay.alignment_dir() / AlignmentFiles.records, "alignment over training")
    epoch_of = {r["step"]: r["epoch"] for r in records}
    steps = sorted(epoch_of)
    shown = {steps[0], steps[-1]} | {s for s in steps if abs(epoch_of[s] - 1.0) < 1e-6}
    rows = [
        (
            r["layer"],
            f"{r['epoch']:.2f}",
            pct(r["partnered"]),
            pct(r["partnered_null"]),
            f"{r['same_index_observed']} / {r['same_index_expected']:.1f}, "
            f"p = {r['same_index_p']:.2g}",
            pct(r["final_partnered"]),
            pct(r["final_same_index"]),
        )
        for r in records
        if r["step"] in shown
    ]
    studies = []
    for study, what in SPLIT_STUDIES.items():
        found = splits.get(study)
        answers = [found["headline"][n] for n in cfg.compare.layers] if found else []
        studies.append(
            {
                "name": study,
                "what": what,
                "found": found is not None,
                "verdicts": [x["verdict"] for x in answers],
                "rows": answer_rows(answers),
                "url": links.run(found),
            }
        )
    figures = [(lay.alignment_dir() / AlignmentFiles.figure(n), n) for n in cfg.alignment.layers]
    return {
        "rows": rows,
        "studies": studies,
        "figures": figures,
        "probe_images": cfg.alignment.probe_images,
        "answer_images": cfg.compare.probe_images,
    }


def context(
    cfg: Config,
    lay: Layout,
    links: Links,
    provenance: tuple[str, str],
    figures: dict[str, Path],
    splits: dict[str, dict | None],
) -> dict:
    """Everything the template shows, read from the stages' outputs."""
    meta = read_json(lay.prepared_file(PreparedFiles.meta), "prepared data metadata")
    return {
        "title": "oiplab: do two trainings learn the same filters, in the same order?",
        "subtitle": f"{cfg.data.name}, seeds {', '.join(map(str, cfg.seeds))} ({cfg.study})",
        "seeds": list(cfg.seeds),
        "links": links,
        "setup": setup(cfg, meta, *provenance),
        "training": training(cfg, lay, figures["curves"]),
        "activations": activations(cfg, lay),
        "oip": oip(cfg, lay),
        "silent": silent(cfg, lay, figures["census"]),
        "compare": compare(cfg, lay),
        "oip_compare": oip_compare(cfg, lay),
        "why": why(cfg, lay, splits, links),
    }
