"""Every output path and file name of every stage, spelled once.

The folders come from `conf/paths/` (through `Layout.of(cfg)`); the names of the files inside a
stage's folder are the `*Files` classes below. A stage writes `tmp / OipFiles.arrays` into the
temporary folder it swaps in; the report and later stages read `layout.oip_dir(seed) /
OipFiles.arrays`. `Layout.stage_io` lists what each DVC stage reads and writes, and a test checks
`dvc.yaml` against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oiplab.config import Config


class Stage(StrEnum):
    """The pipeline's stages in pipeline order, each the module `oiplab.stages.<value>` and the
    DVC stage of that name (a str: `Stage.TRAIN == "train"`, and it keys dicts as the string)."""

    PREPARE = "prepare"
    TRAIN = "train"
    TRAIN_SPLIT = "train_split"
    SELECT_IMAGES = "select_images"
    ACTIVATIONS = "activations"
    OIP = "oip"
    PRECURSOR = "precursor"
    COMPARE = "compare"
    COMPARE_SPLIT = "compare_split"
    ALIGNMENT = "alignment"
    OIP_COMPARE = "oip_compare"
    REPORT = "report"


STAGES: tuple[Stage, ...] = tuple(Stage)

METRICS = "metrics.json"  # a stage's numbers, in its output folder (the headline is DVC's metric)
RUN = "run.json"  # the MLflow run that produced a stage's output folder
SELECTION = "selection.json"  # the image selection, in the artifacts folder


class PreparedFiles:
    meta = "meta.json"
    splits = {"train": "train.npz", "test": "test.npz"}


class TrainFiles:
    model = "model.keras"
    trajectory = "trajectory.npz"
    history = "history.json"
    confusion = "confusion.png"
    curves = "history.png"


class ActivationsFiles:
    dump = "activations.npz"

    @staticmethod
    def grid(group: str, index: int, layer: str) -> str:
        return f"grids/{group}_{index}_{layer}.png"

    @staticmethod
    def common_figure(layer: str, group: str, other: str) -> str:
        return f"common/{layer}_{group}_vs_{other}.png"


class OipFiles:
    arrays = "oip.npz"
    gallery_plain = "gallery_plain.png"
    gallery_contrast = "gallery_contrast.png"
    loss_curves = "loss_curves.png"
    evolution_glob = "evolution_map_*.png"

    @staticmethod
    def evolution(map_index: int) -> str:
        return f"evolution_map_{map_index:03d}.png"


class PrecursorFiles:
    arrays = "precursor.npz"
    gallery = "gallery.png"
    variants = "variants.png"
    rescue = "rescue.png"


class CompareFiles:
    details = "compare.json"
    headline = "headline.json"  # the answer per layer (MLflow keeps it, the report reads it)
    interpolation = "interpolation.png"

    @staticmethod
    def answer(layer: str) -> str:
        return f"answer_{layer}.png"

    @staticmethod
    def correlations(a: int, b: int) -> str:
        return f"correlations_{a}_{b}.png"

    @staticmethod
    def aligned_filters(a: int, b: int) -> str:
        return f"aligned_filters_{a}_{b}.png"


class OipCompareFiles:
    pairs = "pairs.json"  # response rates and pixel similarity per pair and direction

    @staticmethod
    def galleries(a: int, b: int) -> str:
        return f"galleries_{a}_{b}.png"


class AlignmentFiles:
    records = "alignment.json"

    @staticmethod
    def figure(layer: str) -> str:
        return f"alignment_{layer}.png"


class WidthFiles:
    result = "width.json"  # `WidthResult`: also the width's completion record
    summary = "width.json"  # the aggregate, in the metrics folder (DVC's metrics file)
    records = "width_records.json"  # the aggregate's rows (`dvc plots`, the report)

    @staticmethod
    def folder(width: float) -> str:
        """A width's folder name: `w0.25`, `w1`, `w2`."""
        return f"w{width:g}"

    @staticmethod
    def figure(statistic: str) -> str:
        return f"width_{statistic}.png"


@dataclass(frozen=True)
class Layout:
    """The study's folders (relative to the project root, where stages run)."""

    prepared: Path
    models: Path
    metrics: Path
    artifacts: Path
    reports: Path
    checkpoints: Path
    split_models: Path
    widths: Path

    @classmethod
    def of(cls, cfg: Config) -> Layout:
        p = cfg.paths
        return cls(*(Path(getattr(p, f)) for f in cls.__dataclass_fields__))

    def prepared_file(self, name: str) -> Path:
        return self.prepared / name

    def model_dir(self, seed: int) -> Path:
        return self.models / f"seed_{seed}"

    def model_file(self, seed: int) -> Path:
        return self.model_dir(seed) / TrainFiles.model

    def split_model_dir(self, design: str, member: int) -> Path:
        """A network of the seed-split design (`conf/split/`): seed `member` with one of the shared
        seed's two seeds; the shared seed's own network is `model_dir(seeds[0])`."""
        return self.split_models / design / f"seed_{member}"

    def checkpoint(self, seed: int, fingerprint: str) -> Path:
        """The folder of seed `seed`'s training checkpoint (one per settings fingerprint)."""
        return self.checkpoints / f"train_seed_{seed}_{fingerprint}"

    def selection(self) -> Path:
        return self.artifacts / SELECTION

    def seeds_dir(self, stage: str) -> Path:
        """The folder of a per-seed analysis stage (activations, oip, precursor): one `seed_<n>`
        folder in it per seed, all written by the stage's one `--each-seed` run."""
        return self.artifacts / stage

    def activations_dir(self, seed: int) -> Path:
        return self.seeds_dir(Stage.ACTIVATIONS) / f"seed_{seed}"

    def oip_dir(self, seed: int) -> Path:
        return self.seeds_dir(Stage.OIP) / f"seed_{seed}"

    def precursor_dir(self, seed: int) -> Path:
        return self.seeds_dir(Stage.PRECURSOR) / f"seed_{seed}"

    def compare_dir(self) -> Path:
        return self.artifacts / "compare"

    def split_compare_dir(self, design: str) -> Path:
        """The comparison of one seed-split design (its `Answer`, with `design` set)."""
        return self.split_compares() / design

    def split_compares(self) -> Path:
        """The seed-split designs' comparisons, one folder per design (`split_compare_dir`), all
        written by the stage's one `--each-design` run."""
        return self.artifacts / "compare_split"

    def alignment_dir(self) -> Path:
        return self.artifacts / "alignment"

    def oip_compare_dir(self) -> Path:
        return self.artifacts / "oip_compare"

    def headline(self) -> Path:
        """The few numbers a user compares between experiments (DVC's metrics file)."""
        return self.metrics / "headline.json"

    def plot_data(self, name: str) -> Path:
        """A data series for `dvc plots` (learning_curves, answer)."""
        return self.metrics / f"{name}.json"

    def figures_dir(self, stage: str) -> Path:
        """Copies of a stage's key figures for `dvc plots`, kept in git beside the plot data: a
        fresh clone has no DVC cache, and `dvc plots diff` drops all of a revision's plots when
        one of them is missing."""
        return self.metrics / "figures" / stage

    def output_dir(self, stage: str, seed: int | None = None, design: str | None = None) -> Path:
        """The folder a stage writes its `METRICS` and `RUN` records into."""
        folders: dict[str, Callable[[], Path]] = {
            Stage.TRAIN: lambda: self.model_dir(_seed(stage, seed)),
            Stage.TRAIN_SPLIT: lambda: self.split_model_dir(
                _design(stage, design), _seed(stage, seed)
            ),
            Stage.COMPARE_SPLIT: lambda: self.split_compare_dir(_design(stage, design)),
            Stage.ACTIVATIONS: lambda: self.activations_dir(_seed(stage, seed)),
            Stage.OIP: lambda: self.oip_dir(_seed(stage, seed)),
            Stage.PRECURSOR: lambda: self.precursor_dir(_seed(stage, seed)),
            Stage.COMPARE: self.compare_dir,
            Stage.ALIGNMENT: self.alignment_dir,
            Stage.OIP_COMPARE: self.oip_compare_dir,
        }
        return folders[stage]()

    def report(self) -> Path:
        return self.reports / "index.html"

    def width_study_dir(self, study: str) -> Path:
        """The width study's folder for study `study` (a preset): one folder per width in it."""
        return self.widths / study

    def width_dir(self, study: str, width: float) -> Path:
        """One width's trained seeds, comparison and `WidthResult` (`w0.5`, `w1`, `w2`)."""
        return self.width_study_dir(study) / WidthFiles.folder(width)

    def width_summary_dir(self) -> Path:
        """The aggregate's figures (also logged to the sweep's MLflow parent run): the latest
        summarized width study's."""
        return self.artifacts / "width"

    def width_metrics(self) -> Path:
        """The width study's aggregate (DVC's metrics file; the report's section reads it)."""
        return self.metrics / WidthFiles.summary

    def width_records(self) -> Path:
        return self.metrics / WidthFiles.records

    def stage_io(
        self, stage: str, seed: int | None = None, design: str | None = None
    ) -> dict[str, list[Path]]:
        """What DVC stage `stage` (for `seed`, and `design` for the seed-split trainings) reads
        (data, not code) and writes."""
        pm = self.prepared_file(PreparedFiles.meta)
        io: dict[str, Callable[[], tuple[list[Path], list[Path]]]] = {
            Stage.PREPARE: lambda: ([], [self.prepared]),
            Stage.TRAIN: lambda: ([self.prepared], [self.model_dir(_seed(stage, seed))]),
            Stage.TRAIN_SPLIT: lambda: (
                [self.prepared],
                [self.split_model_dir(_design(stage, design), _seed(stage, seed))],
            ),
            Stage.COMPARE_SPLIT: lambda: (
                [self.prepared, self.models, self.split_models],
                [self.split_compares()],
            ),
            Stage.SELECT_IMAGES: lambda: ([self.prepared, self.models], [self.selection()]),
            Stage.ACTIVATIONS: lambda: (
                [self.prepared, self.models, self.selection()],
                [self.seeds_dir(Stage.ACTIVATIONS)],
            ),
            Stage.OIP: lambda: ([self.prepared, self.models], [self.seeds_dir(Stage.OIP)]),
            Stage.PRECURSOR: lambda: (
                [self.prepared, self.models, self.seeds_dir(Stage.OIP)],
                [self.seeds_dir(Stage.PRECURSOR)],
            ),
            Stage.COMPARE: lambda: ([self.prepared, self.models], [self.compare_dir()]),
            Stage.ALIGNMENT: lambda: ([self.prepared, self.models], [self.alignment_dir()]),
            Stage.OIP_COMPARE: lambda: (
                [self.prepared, self.models, self.seeds_dir(Stage.OIP), self.compare_dir()],
                [self.oip_compare_dir()],
            ),
            Stage.REPORT: lambda: (
                [pm, self.models, self.artifacts, self.metrics],
                [self.report()],
            ),
        }
        deps, outs = io[stage]()
        # Git-tracked outputs (`cache: false`) that dvc.yaml's top-level `plots:` draw: each plot
        # is declared there once (a stage's `plots:` entry would draw it a second time).
        kept: dict[str, list[Path]] = {
            Stage.COMPARE: [
                self.plot_data("learning_curves"),
                self.plot_data("answer"),
                self.figures_dir(Stage.COMPARE),
            ],
            Stage.ALIGNMENT: [self.figures_dir(Stage.ALIGNMENT)],
        }
        metrics = [self.headline()] if stage == Stage.COMPARE else []
        return {"deps": deps, "outs": outs + kept.get(stage, []), "metrics": metrics, "plots": []}


def _seed(stage: str, seed: int | None) -> int:
    """The seed of a stage that runs once per seed (its folder is named after it)."""
    if seed is None:
        raise ValueError(f"stage {stage!r} writes one folder per seed: give the seed")
    return seed


def _design(stage: str, design: str | None) -> str:
    """The design of a seed-split stage (its folder is named after it)."""
    if design is None:
        raise ValueError(f"stage {stage!r} writes one folder per split design: give the design")
    return design


def project_root() -> Path:
    """The folder holding `conf/` and `dvc.yaml`: the working directory stages are run from."""
    return Path.cwd()
