"""Data sets: offline sources, canonical-content verification, and the prepared on-disk form."""

from oiplab.data.prepared import (
    ImageTarget,
    PreparedData,
    PreparedDataError,
    Standardization,
    load_image_target,
    load_prepared,
    load_standardization,
    save_prepared,
)
from oiplab.data.registry import SPECS, DataVerificationError, load_verified, read_dataset, verify
from oiplab.data.sources import DataSourceError, RawSplits, make_synthetic

__all__ = [
    "SPECS",
    "DataSourceError",
    "DataVerificationError",
    "ImageTarget",
    "PreparedData",
    "PreparedDataError",
    "RawSplits",
    "Standardization",
    "load_image_target",
    "load_prepared",
    "load_standardization",
    "load_verified",
    "make_synthetic",
    "read_dataset",
    "save_prepared",
    "verify",
]
