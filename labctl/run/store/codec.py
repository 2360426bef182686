"""Lossless encodings of record values for storage: arrays as bytes, JSON, NaN as SQL NULL.

Arrays are stored as ``np.save`` bytes (exact dtype, shape and bits); named raw arrays as one
``np.savez`` archive; scalars as SQLite REAL (IEEE double, exact; NaN is stored as NULL and read
back as NaN); mappings as JSON (floats round-trip exactly through ``repr``; tuples come back as
lists).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def array_to_bytes(array: NDArray[Any]) -> bytes:
    """Encode ``array`` as ``np.save`` bytes (no pickling)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(blob: bytes) -> NDArray[Any]:
    """Decode bytes written by :func:`array_to_bytes`."""
    return np.load(io.BytesIO(blob), allow_pickle=False)


def raw_to_bytes(raw: Mapping[str, NDArray[Any]]) -> bytes:
    """Encode named arrays as one uncompressed ``np.savez`` archive (no pickling)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **raw)
    return buffer.getvalue()


def raw_from_bytes(blob: bytes) -> dict[str, NDArray[Any]]:
    """Decode bytes written by :func:`raw_to_bytes`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} as JSON: convert it to a basic type")


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON text of ``value``; NumPy values, paths and datetimes become basic types.

    With ``indent`` the keys are sorted too (for human-readable files).
    """
    return json.dumps(value, default=_json_default, indent=indent, sort_keys=indent is not None)


def real_or_nan(value: float | None) -> float:
    """A stored REAL back to a float: SQL NULL becomes NaN."""
    return math.nan if value is None else float(value)


def nan_to_null(value: float) -> float | None:
    """A float to store as REAL: NaN becomes SQL NULL (SQLite has no NaN)."""
    return None if math.isnan(value) else value
