"""The prepared data set on disk: raw uint8 arrays plus the standardization every stage applies.

The articles' network was trained on standardized images, and every synthetic input (OIP starts,
precursor candidates) must be standardized the same way. The rule is one global affine map of the
[0, 1] pixel scale, with the training split's pixel mean and standard deviation, stored in
`meta.json` beside the arrays so later stages apply exactly the same numbers.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from oiplab.config import DataConfig
from oiplab.data.sources import RawSplits
from oiplab.errors import OiplabError, missing_input
from oiplab.io import Fields, Record
from oiplab.layout import PreparedFiles


class PreparedDataError(OiplabError, RuntimeError):
    """The prepared folder is missing, incomplete or unreadable."""


@dataclass(frozen=True)
class Standardization:
    mean: float  # of training pixels on the [0, 1] scale
    std: float

    def apply(self, pixels01: np.ndarray) -> np.ndarray:
        """Map images on the [0, 1] scale to the network's input scale (float32)."""
        return ((np.asarray(pixels01, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def invert(self, standardized: np.ndarray) -> np.ndarray:
        """Map network inputs back to the [0, 1] pixel scale (for display)."""
        return np.asarray(standardized, dtype=np.float32) * self.std + self.mean


@dataclass(frozen=True)
class ImageTarget:
    """The brightness and contrast of a typical training image, in network units: the mean over
    training images of each image's own pixel mean, and of its own standard deviation. Every
    synthetic input (OIP starts, precursor candidates) is brought to these (`oip.init`)."""

    mean: float
    std: float


def image_target_of(x_train_uint8: np.ndarray, stats: Standardization) -> ImageTarget:
    pixels = x_train_uint8.reshape(len(x_train_uint8), -1).astype(np.float64) / 255.0
    return ImageTarget(
        mean=float((pixels.mean(axis=1).mean() - stats.mean) / stats.std),
        std=float(pixels.std(axis=1).mean() / stats.std),
    )


class Moments(Fields):
    mean: float
    std: float
    scale: str  # what the numbers are of: "pixels / 255" or "network input"


class PreparedMeta(Record):
    """What a prepared folder holds (`data/prepared/meta.json`)."""

    FILE: ClassVar[str] = PreparedFiles.meta
    STAGE: ClassVar[str] = "prepare"
    WHAT: ClassVar[str] = "prepared data metadata"

    dataset: str
    origin: str  # where the images came from
    n_train: int
    n_test: int
    sha256: dict[str, str]  # per split ("train", "test") of its canonical content
    standardization: Moments  # of the training pixels
    image_target: Moments  # per image, of a standardized training image (synthetic inputs)
    class_names: list[str]


@dataclass
class PreparedData:
    """A prepared folder; each split is read and standardized on first use (most stages only
    need the test split, and the training split is six times larger)."""

    name: str
    folder: Path
    standardization: Standardization
    class_names: tuple[str, ...]
    meta: PreparedMeta
    _splits: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images (n, 28, 28, 1) float32 standardized, labels (n,) int64) of `split`."""
        if split not in self._splits:
            self._splits[split] = _read_split(self.folder, split, self.standardization)
        return self._splits[split]

    @property
    def x_train(self) -> np.ndarray:
        return self.split("train")[0]

    @property
    def y_train(self) -> np.ndarray:
        return self.split("train")[1]

    @property
    def x_test(self) -> np.ndarray:
        return self.split("test")[0]

    @property
    def y_test(self) -> np.ndarray:
        return self.split("test")[1]


def standardization_of(x_train_uint8: np.ndarray) -> Standardization:
    pixels = x_train_uint8.astype(np.float64) / 255.0
    return Standardization(mean=float(pixels.mean()), std=float(pixels.std()))


def save_prepared(
    folder: str | Path,
    name: str,
    raw: RawSplits,
    digests: dict[str, str],
    class_names: tuple[str, ...],
) -> PreparedMeta:
    """Write arrays and metadata into the (empty, staged) `folder`; return the metadata."""
    stats = standardization_of(raw.x_train)
    target = image_target_of(raw.x_train, stats)
    meta = {
        "dataset": name,
        "origin": raw.origin,
        "n_train": int(len(raw.y_train)),
        "n_test": int(len(raw.y_test)),
        "sha256": digests,
        "standardization": {"mean": stats.mean, "std": stats.std, "scale": "pixels / 255"},
        "image_target": {"mean": target.mean, "std": target.std, "scale": "network input"},
        "class_names": list(class_names),
    }
    folder = Path(folder)
    for split, fname in PreparedFiles.splits.items():
        x, y = (raw.x_train, raw.y_train) if split == "train" else (raw.x_test, raw.y_test)
        np.savez_compressed(folder / fname, images=x, labels=y)
    stored = PreparedMeta.model_validate(meta)
    stored.save(folder)
    return stored


def read_meta(folder: str | Path) -> PreparedMeta:
    """The metadata of a prepared folder; an unreadable or older one is an error naming it."""
    path = Path(folder) / PreparedFiles.meta
    if not path.is_file():
        raise missing_input(path, "prepared data", "prepare")
    return PreparedMeta.load(folder)


def load_standardization(folder: str | Path) -> Standardization:
    stats = read_meta(folder).standardization
    return Standardization(mean=stats.mean, std=stats.std)


def load_image_target(folder: str | Path) -> ImageTarget:
    found = read_meta(folder).image_target
    return ImageTarget(mean=found.mean, std=found.std)


def check_prepared_for(meta: PreparedMeta, folder: Path, data: DataConfig) -> None:
    """Stop when a prepared folder holds other data than the config asks for (another data
    set, or another number of images): a stage must never study what it does not record."""
    found = {"name": meta.dataset, "n_train": meta.n_train, "n_test": meta.n_test}
    wanted = {"name": data.name, "n_train": data.n_train or None, "n_test": data.n_test or None}
    differ = [k for k, v in wanted.items() if v is not None and found[k] != v]  # 0: all images
    if differ:
        shown = ", ".join(f"data.{k} is {wanted[k]!r} but it holds {found[k]!r}" for k in differ)
        raise PreparedDataError(
            f"{folder}: prepared data of another config ({shown}); prepare this data into a "
            f"folder of its own: `python -m oiplab.stages.prepare <the same overrides> "
            f"paths.prepared=data/prepared-{data.name}`, and give this stage that paths.prepared"
        )


def load_prepared(folder: str | Path, data: DataConfig | None = None) -> PreparedData:
    """Open a prepared folder: its metadata now, each split (standardized and shaped
    (n, 28, 28, 1) for the network) when first used. With `data` (the stage's config), the
    folder must hold that data (`check_prepared_for`)."""
    folder = Path(folder)
    meta = read_meta(folder)
    if data is not None:
        check_prepared_for(meta, folder, data)
    stats = load_standardization(folder)
    for fname in PreparedFiles.splits.values():
        if not (folder / fname).is_file():
            raise missing_input(folder / fname, "prepared data", "prepare")
    return PreparedData(
        name=meta.dataset,
        folder=folder,
        standardization=stats,
        class_names=tuple(meta.class_names),
        meta=meta,
    )


def _read_split(folder: Path, split: str, stats: Standardization) -> tuple[np.ndarray, np.ndarray]:
    path = folder / PreparedFiles.splits[split]
    try:
        with np.load(path) as npz:
            images, labels = npz["images"], npz["labels"]
    except FileNotFoundError as exc:
        raise missing_input(path, "prepared data", "prepare") from exc
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise PreparedDataError(
            f"{path}: unreadable prepared split ({type(exc).__name__}: {exc}); rerun "
            "`dvc repro prepare`"
        ) from exc
    return stats.apply(images[..., None] / 255.0), labels.astype(np.int64)
