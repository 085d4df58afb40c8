"""Does width change the answer? The per-width result of the width study and its aggregate.

One job of the width sweep (`oiplab.stages.width`) trains `seeds` at one `model.width` and
compares them with the default study's call (`compare_networks`); it writes a `WidthResult`
(which also marks the width as done, with the digest of the settings it was computed under)
beside the comparison's `Answer`. `width_summary` gathers the results of every width into
per-layer rows (statistic, value, seed interval, untrained value) for the table, the figures and
DVC's metrics file. Nothing here knows of MLflow or figures.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps

from oiplab.compare.summary import Answer, Estimate, LayerAnswer
from oiplab.config import Config
from oiplab.errors import OiplabError
from oiplab.io import Fields, ListRecord, Record
from oiplab.layout import WidthFiles


class WidthStudyError(OiplabError, ValueError):
    """The width study's results are missing or were computed under other settings."""


def settings_digest(cfg: Config) -> str:
    """A digest of the settings a width's result depends on, the width itself aside (it names
    the folder): data, model, training (the seed aside: `seeds` lists them), the comparison.
    Not `tracking.config_digest`: that one covers the output paths, which a Hydra job moves into
    its own folder, and the OIP settings, which the width study does not use."""
    model = cfg.model.model_dump(exclude={"width"})
    train = cfg.train.model_dump(exclude={"seed"})
    tree = {
        "data": cfg.data.model_dump(),
        "model": model,
        "train": train,
        "compare": cfg.compare.model_dump(),
        "seeds": list(cfg.seeds),
    }
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


class WidthResult(Record):
    """One width's trained seeds (`widths/<study>/w<width>/width.json`); written last with the
    width's other files, so its presence with a matching digest means the width is done."""

    FILE: ClassVar[str] = WidthFiles.result
    STAGE: ClassVar[str] = "width"
    WHAT: ClassVar[str] = "width study result"

    width: float
    settings_digest: str  # `settings_digest` of the settings it was computed under
    n_params: int
    seeds: list[int]
    test_accuracy: list[float]  # per seed, in `seeds` order
    run_id: str | None = None  # the width's MLflow run, if tracked


def is_done(folder: Path, width: float, digest: str) -> bool:
    """Whether `folder` holds a finished result of this width under these settings."""
    if not (folder / WidthFiles.result).is_file():
        return False
    try:
        found = WidthResult.load(folder)
    except OiplabError:  # unreadable or of an older format: compute it again
        return False
    return found.width == width and found.settings_digest == digest


@dataclass(frozen=True)
class WidthPoint:
    """One width's completed files, read back."""

    result: WidthResult
    answer: Answer


def load_widths(folder: Path, digest: str) -> tuple[list[WidthPoint], list[str]]:
    """Every finished width under `folder` computed with settings `digest`, narrowest first, and
    the names of the width folders left out (unfinished, or computed under other settings)."""
    points, left_out = [], []
    for sub in sorted(p for p in folder.glob("w*") if p.is_dir()):
        if not (sub / WidthFiles.result).is_file():
            left_out.append(f"{sub.name} (unfinished)")
            continue
        result = WidthResult.load(sub)
        if result.settings_digest != digest:
            left_out.append(f"{sub.name} (other settings: {result.settings_digest})")
            continue
        points.append(WidthPoint(result, Answer.load(sub, "width")))
    if not points:
        raise WidthStudyError(
            f"{folder}: no finished width computed with these settings (digest {digest}); run "
            "the sweep: `oiplab run width -m experiment=width_cpu`"
        )
    return sorted(points, key=lambda p: p.result.width), left_out


# Per layer: the statistic's name -> how to read it from a layer's answer. Intervals are the
# study's seed intervals (leave-one-seed-out jackknife with >= 3 seeds, `SeedEstimates`).
LAYER_STATISTICS: dict[str, Any] = {
    "one_to_one_r2": lambda a: a.one_to_one,
    "many_to_one_r2": lambda a: a.many_to_one,
    "partnered": lambda a: a.partnered,
    "same_index_p": lambda a: Estimate(a.order.p_value, np.nan, np.nan),
}
# The statistics of the whole network: alignment, image set, measure of the interpolation.
BARRIERS = {"loss_barrier_as_trained": "naive", "loss_barrier_reordered": "weights"}
LABELS = {
    "one_to_one_r2": "one-to-one r² (held-out images)",
    "many_to_one_r2": "many-to-one R² (held-out images)",
    "partnered": "partnered fraction (vs rotated units' 95th pct.)",
    "same_index_p": "same-index exact p",
    "loss_barrier_as_trained": "test-loss barrier, as trained",
    "loss_barrier_reordered": "test-loss barrier, re-ordered (weight matching)",
    "test_accuracy": "test accuracy",
}


def _row(statistic: str, layer: str, width: float, e: Estimate, null: float | None) -> dict:
    return {
        "statistic": statistic,
        "layer": layer,
        "width": width,
        "value": e.value,
        "low": e.low,
        "high": e.high,
        "null": null,
    }


def _layer_rows(width: float, a: LayerAnswer) -> list[dict[str, Any]]:
    rows = []
    for name, read in LAYER_STATISTICS.items():
        e = read(a)
        null = a.rotation_null.null_high if name == "partnered" else e.null
        rows.append(_row(name, a.layer, width, e, null))
    return rows


def accuracy_estimate(accuracies: list[float]) -> Estimate:
    """Mean test accuracy over seeds with its t interval (seeds are independent), in [0, 1]."""
    v = np.asarray(accuracies, dtype=float)
    half = np.nan
    if len(v) > 1:
        half = float(sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    low, high = (float(np.clip(end, 0.0, 1.0)) for end in (v.mean() - half, v.mean() + half))
    return Estimate(float(v.mean()), low, high)  # a fraction: its interval kept in [0, 1]


def width_records(points: list[WidthPoint]) -> list[dict[str, Any]]:
    """One row per (statistic, layer, width): value, seed interval and the untrained (for the
    partnered fraction: the rotated units' 95th percentile) reference. Whole-network statistics
    have layer "network". The data of the figures, the table and `dvc plots`."""
    rows: list[dict[str, Any]] = []
    for p in points:
        w = p.result.width
        for a in p.answer.layers.values():
            rows += _layer_rows(w, a)
        for name, alignment in BARRIERS.items():
            rows.append(
                _row(name, "network", w, p.answer.barriers.get(alignment, "test", "loss"), None)
            )
        rows.append(
            _row("test_accuracy", "network", w, accuracy_estimate(p.result.test_accuracy), None)
        )
    return rows


def width_metrics(points: list[WidthPoint]) -> dict[str, Any]:
    """DVC's metrics file (`metrics/width.json`): per width, the values of every statistic
    (per layer, then the network's), so `dvc metrics diff` shows a change per width."""
    out: dict[str, Any] = {}
    for row in width_records(points):
        per_width = out.setdefault(WidthFiles.folder(row["width"]), {})
        per_width.setdefault(row["layer"], {})[row["statistic"]] = row["value"]
    for p in points:
        out[WidthFiles.folder(p.result.width)]["network"]["n_params"] = p.result.n_params
        out[WidthFiles.folder(p.result.width)]["network"]["n_seeds"] = len(p.result.seeds)
    return out


def trend(rows: list[dict[str, Any]], statistic: str, layer: str) -> float:
    """Spearman's rank correlation of a statistic's value with width for one layer (NaN with
    fewer than three finite widths): +1 rises steadily with width, -1 falls."""
    kept = [
        (r["width"], r["value"])
        for r in rows
        if r["statistic"] == statistic
        and r["layer"] == layer
        and r["value"] is not None
        and np.isfinite(r["value"])
    ]
    if len(kept) < 3:
        return float("nan")
    widths, values = zip(*kept, strict=True)
    if len(set(values)) == 1:
        return 0.0
    return float(sps.spearmanr(widths, values).statistic)


def trend_note(rows: list[dict[str, Any]]) -> str:
    """One line: the rank correlation with width of one-to-one r2 per layer and of the
    re-ordered loss barrier (+1: rises at every wider step, -1: falls at every step)."""
    layers = list(dict.fromkeys(r["layer"] for r in rows if r["statistic"] == "one_to_one_r2"))
    r2 = ", ".join(f"{layer} {trend(rows, 'one_to_one_r2', layer):+.2f}" for layer in layers)
    barrier = trend(rows, "loss_barrier_reordered", "network")
    return (
        f"Spearman's rho with width: one-to-one r2 {r2}; re-ordered test-loss barrier "
        f"{barrier:+.2f} (+1: rises with every wider network, -1: falls)"
    )


class WidthRow(Fields):
    """One (statistic, layer, width) of the aggregate (`width_records`)."""

    statistic: str
    layer: str  # a layer, or "network" for the barriers and the accuracy
    width: float
    value: float | None  # None: not a number (JSON has no NaN)
    low: float | None
    high: float | None
    null: float | None  # untrained networks' value; for "partnered" the rotated units' 95th pct.


class WidthRecords(ListRecord):
    """The aggregate's rows (`metrics/width_records.json`, a plain list: `dvc plots` reads it)."""

    FILE: ClassVar[str] = WidthFiles.records
    STAGE: ClassVar[str] = "width"
    WHAT: ClassVar[str] = "width study summary"
    ITEMS: ClassVar[str] = "rows"

    rows: list[WidthRow]


def by_layer_and_width(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows pivoted: one item per (layer, width), in the rows' layer order and by width,
    holding `layer`, `width` and each statistic's row under its name."""
    cells: dict[tuple[str, float], dict[str, Any]] = {}
    for r in rows:
        cell = cells.setdefault(
            (r["layer"], r["width"]), {"layer": r["layer"], "width": r["width"]}
        )
        cell[r["statistic"]] = r
    layers = list(dict.fromkeys(layer for layer, _ in cells))
    return [cells[k] for k in sorted(cells, key=lambda k: (layers.index(k[0]), k[1]))]
