"""Data sets: offline sources, canonical-content verification, and the prepared on-disk form."""

from oiplab.data.prepared import (
    PreparedData,
    PreparedDataError,
    Standardization,
    load_prepared,
    load_standardization,
    save_prepared,
)
from oiplab.data.registry import SPECS, DataVerificationError, load_verified, verify
from oiplab.data.sources import DataSourceError, RawSplits, make_synthetic

__all__ = [
    "SPECS",
    "DataSourceError",
    "DataVerificationError",
    "PreparedData",
    "PreparedDataError",
    "RawSplits",
    "Standardization",
    "load_prepared",
    "load_standardization",
    "load_verified",
    "make_synthetic",
    "save_prepared",
    "verify",
]
