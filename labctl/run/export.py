"""Export a stored run to CSV (one row per iteration) or HDF5 (one dataset per field).

CSV columns, in order: ``run_iteration``, ``restart_index``, ``wall_time_s``,
``device_seconds_s``, ``loss``, ``accuracy``, ``separation_a``, then ``control_<j>_v`` per control
electrode, ``output_case<k>_a`` per input case, ``grad_case<k>_control<j>_a_per_v`` and
``grad_stderr_case<k>_control<j>_a_per_v``, and ``extra_json``. Floats are written with ``repr``
(shortest exact form), so ``pandas.read_csv`` reads them back bit for bit (pandas ≥ 3 by
default; older pandas with ``float_precision="round_trip"``). Raw arrays are not exported to CSV.

HDF5 (needs ``h5py``: ``pip install labctl[export]``): root datasets ``run_iteration``,
``restart_index``, ``wall_time_s``, ``device_seconds``, ``loss``, ``accuracy``, ``separation_a``
(shape (n,)), ``controls_v`` (n, n_controls), ``outputs_a`` (n, n_cases), ``gradients_a_per_v``
and ``gradient_stderr_a_per_v`` (n, n_cases, n_controls), ``extra_json`` (n strings); raw arrays
under ``raw/<run_iteration>/<name>``. Every dataset has a ``units`` attribute; the root attributes
hold ``config_yaml``, ``provenance_json``, ``status``, ``status_history_json`` and ``run_name``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from labctl.run.store import IterationRecord, RunStore

ExportFormat = Literal["csv", "hdf5"]

_DEFAULT_NAMES: dict[str, str] = {"csv": "iterations.csv", "hdf5": "run.h5"}

_SCALARS: tuple[tuple[str, str, str], ...] = (
    # (record attribute, CSV column, units)
    ("run_iteration", "run_iteration", ""),
    ("restart_index", "restart_index", ""),
    ("wall_time_s", "wall_time_s", "s since Unix epoch (UTC)"),
    ("device_seconds", "device_seconds_s", "s"),
    ("loss", "loss", ""),
    ("accuracy", "accuracy", ""),
    ("separation_a", "separation_a", "A"),
)

_ARRAYS: tuple[tuple[str, str], ...] = (
    ("controls_v", "V"),
    ("outputs_a", "A"),
    ("gradients_a_per_v", "A/V"),
    ("gradient_stderr_a_per_v", "A/V"),
)


def export_run(
    run_dir: str | os.PathLike[str],
    format: ExportFormat,
    out_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Export the run in ``run_dir`` to ``format`` and return the written file's path.

    Args:
        run_dir: A run directory created by :class:`~labctl.run.store.RunStore`.
        format: ``"csv"`` or ``"hdf5"``.
        out_path: Output file; defaults to ``iterations.csv`` or ``run.h5`` inside ``run_dir``.

    Raises:
        ValueError: for an unknown format, or (HDF5) iterations whose array shapes differ.
        ImportError: for HDF5 when ``h5py`` is not installed.
    """
    if format not in _DEFAULT_NAMES:
        raise ValueError(f"unknown export format {format!r}; choose 'csv' or 'hdf5'")
    run_path = Path(run_dir)
    out = Path(out_path) if out_path is not None else run_path / _DEFAULT_NAMES[format]
    out.parent.mkdir(parents=True, exist_ok=True)
    with RunStore.open(run_path, read_only=True) as store:
        if format == "csv":
            _write_csv(store.iterations(include_raw=False), out)
        else:
            _write_hdf5(store, out)
    return out


# ---------------------------------------------------------------------- CSV
def _csv_columns(n_cases: int, n_controls: int) -> list[str]:
    columns = [column for _, column, _ in _SCALARS]
    columns += [f"control_{j}_v" for j in range(n_controls)]
    columns += [f"output_case{k}_a" for k in range(n_cases)]
    for prefix in ("grad", "grad_stderr"):
        columns += [
            f"{prefix}_case{k}_control{j}_a_per_v"
            for k in range(n_cases)
            for j in range(n_controls)
        ]
    columns.append("extra_json")
    return columns


def _cell(value: Any) -> str:
    """Exact text for one value: ``repr`` for floats, ``nan``/``inf`` spelled for pandas."""
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return "nan"
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return repr(number)
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def _padded(values: NDArray[Any], width: int) -> list[str]:
    flat = [_cell(v) for v in values.ravel()]
    return flat + [""] * (width - len(flat))


def _write_csv(records: Sequence[IterationRecord], out: Path) -> None:
    n_cases = max((r.n_cases for r in records), default=0)
    n_controls = max((r.n_controls for r in records), default=0)
    columns = _csv_columns(n_cases, n_controls)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for record in records:
            row = [_cell(getattr(record, attr)) for attr, _, _ in _SCALARS]
            row += _padded(record.controls_v, n_controls)
            row += _padded(record.outputs_a, n_cases)
            for name in ("gradients_a_per_v", "gradient_stderr_a_per_v"):
                grid = np.full((n_cases, n_controls), np.nan)
                values = getattr(record, name)
                grid[: values.shape[0], : values.shape[1]] = values
                cells = [_cell(v) for v in grid.ravel()]
                row += cells
            row.append(json.dumps(record.extra, sort_keys=True))
            writer.writerow(row)


# ---------------------------------------------------------------------- HDF5
def _stack(records: Sequence[IterationRecord], name: str) -> NDArray[Any]:
    shapes = {getattr(r, name).shape for r in records}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot export {name} to HDF5: iterations have different shapes {sorted(shapes)}; "
            "export to CSV instead"
        )
    return np.stack([getattr(r, name) for r in records])


def _write_hdf5(store: RunStore, out: Path) -> None:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "HDF5 export needs h5py: install it with `pip install labctl[export]` (or h5py)"
        ) from exc

    records = store.iterations(include_raw=True)
    history = [
        {"time_utc": t.isoformat(), "status": s, "summary": summary}
        for t, s, summary in store.status_history()
    ]
    with h5py.File(out, "w") as h5:
        h5.attrs["run_name"] = store.name
        h5.attrs["config_yaml"] = store.config_text()
        h5.attrs["provenance_json"] = json.dumps(store.provenance(), sort_keys=True)
        h5.attrs["status"] = store.status()
        h5.attrs["status_history_json"] = json.dumps(history)
        for attr, _, units in _SCALARS:
            dtype = np.int64 if attr in ("run_iteration", "restart_index") else np.float64
            data = np.array([getattr(r, attr) for r in records], dtype=dtype)
            h5.create_dataset(attr, data=data).attrs["units"] = units
        for name, units in _ARRAYS:
            if records:
                data = _stack(records, name)
            else:
                data = np.zeros((0, 0, 0) if name.startswith("grad") else (0, 0))
            h5.create_dataset(name, data=data).attrs["units"] = units
        extra = [json.dumps(r.extra, sort_keys=True) for r in records]
        h5.create_dataset("extra_json", data=extra, dtype=h5py.string_dtype())
        raw_group = h5.create_group("raw")
        for record in records:
            if record.raw:
                group = raw_group.create_group(str(record.run_iteration))
                for key, value in record.raw.items():
                    group.create_dataset(key, data=value)
