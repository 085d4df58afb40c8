"""Every output path and file name of every stage, spelled once.

The folders come from `conf/paths/` (through `Layout.of(cfg)`); the names of the files inside a
stage's folder are the `*Files` classes below. A stage writes `tmp / OipFiles.arrays` into the
temporary folder it swaps in; the report and later stages read `layout.oip_dir(seed) /
OipFiles.arrays`. `Layout.stage_io` lists what each DVC stage reads and writes, and a test checks
`dvc.yaml` against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Stage(StrEnum):
    """The pipeline's stages in pipeline order, each the module `oiplab.stages.<value>` and the
    DVC stage of that name (a str: `Stage.TRAIN == "train"`, and it keys dicts as the string)."""

    PREPARE = "prepare"
    TRAIN = "train"
    SELECT_IMAGES = "select_images"
    ACTIVATIONS = "activations"
    OIP = "oip"
    PRECURSOR = "precursor"
    COMPARE = "compare"
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


@dataclass(frozen=True)
class Layout:
    """The study's folders (relative to the project root, where stages run)."""

    prepared: Path
    models: Path
    metrics: Path
    artifacts: Path
    reports: Path
    checkpoints: Path

    @classmethod
    def of(cls, cfg) -> Layout:
        p = cfg.paths
        return cls(*(Path(getattr(p, f)) for f in cls.__dataclass_fields__))

    def prepared_file(self, name: str) -> Path:
        return self.prepared / name

    def model_dir(self, seed: int) -> Path:
        return self.models / f"seed_{seed}"

    def model_file(self, seed: int) -> Path:
        return self.model_dir(seed) / TrainFiles.model

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

    def output_dir(self, stage: str, seed: int | None = None) -> Path:
        """The folder a stage writes its `METRICS` and `RUN` records into."""
        return {
            Stage.TRAIN: lambda: self.model_dir(seed),
            Stage.ACTIVATIONS: lambda: self.activations_dir(seed),
            Stage.OIP: lambda: self.oip_dir(seed),
            Stage.PRECURSOR: lambda: self.precursor_dir(seed),
            Stage.COMPARE: self.compare_dir,
            Stage.ALIGNMENT: self.alignment_dir,
            Stage.OIP_COMPARE: self.oip_compare_dir,
        }[stage]()

    def report(self) -> Path:
        return self.reports / "index.html"

    def stage_io(self, stage: str, seed: int | None = None) -> dict[str, list[Path]]:
        """What DVC stage `stage` (for `seed`) reads (data, not code) and writes."""
        pm = self.prepared_file(PreparedFiles.meta)
        io = {
            Stage.PREPARE: ([], [self.prepared]),
            Stage.TRAIN: ([self.prepared], [self.model_dir(seed)]),
            Stage.SELECT_IMAGES: ([self.prepared, self.models], [self.selection()]),
            Stage.ACTIVATIONS: (
                [self.prepared, self.models, self.selection()],
                [self.seeds_dir(Stage.ACTIVATIONS)],
            ),
            Stage.OIP: ([self.prepared, self.models], [self.seeds_dir(Stage.OIP)]),
            Stage.PRECURSOR: (
                [self.prepared, self.models, self.seeds_dir(Stage.OIP)],
                [self.seeds_dir(Stage.PRECURSOR)],
            ),
            Stage.COMPARE: ([self.prepared, self.models], [self.compare_dir()]),
            Stage.ALIGNMENT: ([self.prepared, self.models], [self.alignment_dir()]),
            Stage.OIP_COMPARE: (
                [self.prepared, self.models, self.seeds_dir(Stage.OIP), self.compare_dir()],
                [self.oip_compare_dir()],
            ),
            Stage.REPORT: ([pm, self.models, self.artifacts, self.metrics], [self.report()]),
        }[stage]
        extra = {
            Stage.COMPARE: {
                "metrics": [self.headline()],
                "plots": [self.plot_data("learning_curves"), self.plot_data("answer")],
            }
        }.get(stage, {})
        return {"deps": io[0], "outs": io[1], "metrics": [], "plots": [], **extra}


def project_root() -> Path:
    """The folder holding `conf/` and `dvc.yaml`: the working directory stages are run from."""
    return Path.cwd()
