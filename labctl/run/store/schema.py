"""On-disk layout of a run directory: file names, SQL schema, and the record ↔ row mapping.

Layout of a run directory ``<root>/<YYYYmmdd-HHMMSS>-<name>[-N]`` (timestamp in UTC)::

    config.yaml       the resolved configuration, written once at creation
    provenance.json   software, host, start time, instruments and calibration, written once
    run.sqlite        iterations and status events (SQLite, WAL journal)
    calibration.json  the chain calibration the run uses (written at start; resume reads it)

Rows are never updated or deleted (triggers refuse it); the run status is a separate append-only
``events`` table whose latest row wins. The one exception is the single-row ``checkpoint`` table:
the state a resumed run needs to continue exactly (random generators, optimiser, stall detector,
simulator), replaced in the same transaction as each appended iteration.
"""

from __future__ import annotations

import json
from typing import Any

from labctl.run.store.codec import (
    array_from_bytes,
    array_to_bytes,
    dumps,
    nan_to_null,
    raw_from_bytes,
    raw_to_bytes,
    real_or_nan,
)
from labctl.run.store.records import IterationRecord

CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
CALIBRATION_FILE = "calibration.json"
DATABASE_FILE = "run.sqlite"
SCHEMA_VERSION = 1

CHECKPOINT_TABLE = """
CREATE TABLE IF NOT EXISTS checkpoint (
    slot INTEGER PRIMARY KEY CHECK (slot = 0),
    run_iteration INTEGER NOT NULL,
    state TEXT NOT NULL
);
"""
"""The checkpoint table alone: added when a store written before it existed is opened."""

SCHEMA = (
    CHECKPOINT_TABLE
    + """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS iterations (
    run_iteration INTEGER PRIMARY KEY,
    restart_index INTEGER NOT NULL,
    controls_v BLOB NOT NULL,
    outputs_a BLOB NOT NULL,
    gradients_a_per_v BLOB NOT NULL,
    gradient_stderr_a_per_v BLOB NOT NULL,
    loss REAL,
    accuracy REAL,
    separation_a REAL,
    device_seconds REAL,
    wall_time_s REAL,
    extra TEXT NOT NULL,
    raw BLOB
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc_s REAL NOT NULL,
    status TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS iterations_no_update BEFORE UPDATE ON iterations
BEGIN SELECT RAISE(ABORT, 'iterations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS iterations_no_delete BEFORE DELETE ON iterations
BEGIN SELECT RAISE(ABORT, 'iterations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS meta_no_update BEFORE UPDATE ON meta
BEGIN SELECT RAISE(ABORT, 'meta is append-only'); END;
"""
)

ITERATION_COLUMN_NAMES: tuple[str, ...] = (
    "run_iteration",
    "restart_index",
    "controls_v",
    "outputs_a",
    "gradients_a_per_v",
    "gradient_stderr_a_per_v",
    "loss",
    "accuracy",
    "separation_a",
    "device_seconds",
    "wall_time_s",
    "extra",
    "raw",
)
ITERATION_COLUMNS = ", ".join(ITERATION_COLUMN_NAMES)
ITERATION_COLUMNS_NO_RAW = ", ".join(ITERATION_COLUMN_NAMES[:-1]) + ", NULL"


def record_to_row(record: IterationRecord) -> tuple[Any, ...]:
    """Encode ``record`` as an ``iterations`` row (columns in :data:`ITERATION_COLUMN_NAMES`)."""
    return (
        record.run_iteration,
        record.restart_index,
        array_to_bytes(record.controls_v),
        array_to_bytes(record.outputs_a),
        array_to_bytes(record.gradients_a_per_v),
        array_to_bytes(record.gradient_stderr_a_per_v),
        nan_to_null(record.loss),
        nan_to_null(record.accuracy),
        nan_to_null(record.separation_a),
        nan_to_null(record.device_seconds),
        nan_to_null(record.wall_time_s),
        dumps(record.extra),
        None if record.raw is None else raw_to_bytes(record.raw),
    )


def row_to_record(row: tuple[Any, ...], include_raw: bool) -> IterationRecord:
    """Decode an ``iterations`` row (columns in :data:`ITERATION_COLUMN_NAMES` order).

    Without ``include_raw`` the ``raw`` column is ignored and the record carries no raw arrays.
    """
    (it, restart, controls, outputs, grads, stderr, loss, acc, sep, dev_s, wall, extra, raw) = row
    return IterationRecord(
        run_iteration=it,
        restart_index=restart,
        controls_v=array_from_bytes(controls),
        outputs_a=array_from_bytes(outputs),
        gradients_a_per_v=array_from_bytes(grads),
        gradient_stderr_a_per_v=array_from_bytes(stderr),
        loss=real_or_nan(loss),
        accuracy=real_or_nan(acc),
        separation_a=real_or_nan(sep),
        device_seconds=real_or_nan(dev_s),
        wall_time_s=real_or_nan(wall),
        extra=json.loads(extra),
        raw=raw_from_bytes(raw) if (include_raw and raw is not None) else None,
    )
