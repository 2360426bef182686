"""Crash-safe, append-only run store: one directory per run.

Layout of a run directory ``<root>/<YYYYmmdd-HHMMSS>-<name>[-N]`` (timestamp in UTC)::

    config.yaml       the resolved configuration, written once at creation
    provenance.json   software, host, start time, instruments and calibration, written once
    run.sqlite        iterations and status events (SQLite, WAL journal)

Crash safety: every iteration is one SQLite transaction, committed with ``synchronous=FULL`` in
WAL mode, so a process killed at any moment loses at most the iteration it was writing, and a
power cut loses nothing that was reported committed. Rows are never updated or deleted (triggers
refuse it); the run status is a separate append-only ``events`` table whose latest row wins.

Arrays are stored as ``np.save`` bytes (exact dtype, shape and bits); scalars as SQLite REAL
(IEEE double, exact; NaN is stored as NULL and read back as NaN); ``extra`` as JSON (floats
round-trip exactly through ``repr``; tuples come back as lists).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import yaml
from numpy.typing import NDArray

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
DATABASE_FILE = "run.sqlite"
SCHEMA_VERSION = 1

PROVENANCE_PACKAGES: tuple[str, ...] = (
    "numpy",
    "scipy",
    "pydantic",
    "PyYAML",
    "numba",
    "h5py",
    "pandas",
    "PyQt5",
    "pyqtgraph",
    "nidaqmx",
    "pyvisa",
    "pyvisa-py",
    "grpcio",
)
"""Distributions whose versions go into ``provenance.json`` when installed."""

_ARRAY_KINDS = "biufc"  # bool, signed/unsigned int, float, complex: what np.save stores exactly

_SCHEMA = """
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

_ITERATION_COLUMN_NAMES: tuple[str, ...] = (
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
_ITERATION_COLUMNS = ", ".join(_ITERATION_COLUMN_NAMES)
_ITERATION_COLUMNS_NO_RAW = ", ".join(_ITERATION_COLUMN_NAMES[:-1]) + ", NULL"


class RunStoreError(RuntimeError):
    """A run directory is missing, incomplete or used incorrectly."""


# ---------------------------------------------------------------------- records
def _frozen_array(value: Any, name: str) -> NDArray[Any]:
    array = np.array(value, copy=True)
    if array.dtype.kind not in _ARRAY_KINDS:
        raise TypeError(
            f"{name} must be a numeric array (bool/int/float/complex), got dtype {array.dtype}"
        )
    array.flags.writeable = False
    return array


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _same_array(a: NDArray[Any], b: NDArray[Any]) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    )


@dataclass(frozen=True, eq=False)
class IterationRecord:
    """Everything measured and decided in one training iteration.

    Arrays are copied and made read-only on construction, so a record can be shared between
    threads (worker, store, views) safely. Equality is exact: same dtypes, shapes and values
    (NaN equals NaN).

    Attributes:
        run_iteration: Iteration number within the run, ≥ 0, strictly increasing across appends.
        restart_index: Which restart (random initialisation) this iteration belongs to, ≥ 0.
        controls_v: Control voltages applied during this iteration, shape (n_controls,), V.
        outputs_a: Output current per input case, shape (n_cases,), A.
        gradients_a_per_v: ∂I/∂V per case and control, shape (n_cases, n_controls), A/V.
        gradient_stderr_a_per_v: Standard error of each gradient entry, same shape, A/V.
        loss: Loss value (dimensionless, task-defined).
        accuracy: Task accuracy in [0, 1] (NaN when undefined).
        separation_a: Separation between class outputs, A.
        device_seconds: Cumulative time the device spent driven and recorded in this run, s.
        wall_time_s: UTC time the iteration completed, seconds since the Unix epoch.
        extra: Further JSON-compatible values (e.g. learning rate, optimiser state summary).
        raw: Optional named raw arrays (e.g. recorded output currents), stored losslessly.
    """

    run_iteration: int
    restart_index: int
    controls_v: NDArray[Any]
    outputs_a: NDArray[Any]
    gradients_a_per_v: NDArray[Any]
    gradient_stderr_a_per_v: NDArray[Any]
    loss: float
    accuracy: float
    separation_a: float
    device_seconds: float
    wall_time_s: float
    extra: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, NDArray[Any]] | None = None

    def __post_init__(self) -> None:
        for name in ("run_iteration", "restart_index"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("controls_v", "outputs_a", "gradients_a_per_v", "gradient_stderr_a_per_v"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), name))
        if self.controls_v.ndim != 1 or self.outputs_a.ndim != 1:
            raise ValueError(
                "controls_v and outputs_a must be 1-D (n_controls,) and (n_cases,); got shapes "
                f"{self.controls_v.shape} and {self.outputs_a.shape}"
            )
        expected = (self.outputs_a.shape[0], self.controls_v.shape[0])
        for name in ("gradients_a_per_v", "gradient_stderr_a_per_v"):
            shape = getattr(self, name).shape
            if shape != expected:
                raise ValueError(
                    f"{name} must have shape (n_cases, n_controls) = {expected}, got {shape}"
                )
        for name in ("loss", "accuracy", "separation_a", "device_seconds", "wall_time_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise TypeError(f"{name} must be a real number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.extra, Mapping):
            raise TypeError(f"extra must be a mapping, got {type(self.extra).__name__}")
        object.__setattr__(self, "extra", dict(self.extra))
        if self.raw is not None:
            if not isinstance(self.raw, Mapping):
                raise TypeError(f"raw must be a mapping of name -> array, got {type(self.raw)}")
            raw = {}
            for key, value in self.raw.items():
                if not isinstance(key, str) or not key.isidentifier():
                    raise ValueError(f"raw array names must be identifiers, got {key!r}")
                raw[key] = _frozen_array(value, f"raw[{key!r}]")
            object.__setattr__(self, "raw", raw)

    @property
    def n_controls(self) -> int:
        """Number of control electrodes."""
        return int(self.controls_v.shape[0])

    @property
    def n_cases(self) -> int:
        """Number of input cases."""
        return int(self.outputs_a.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IterationRecord):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if not _same_array(a, b):
                    return False
            elif isinstance(a, float):
                if not _same_float(a, b):
                    return False
            elif f.name == "raw":
                if (a is None) != (b is None):
                    return False
                if a is not None and (
                    a.keys() != b.keys() or not all(_same_array(a[k], b[k]) for k in a)
                ):
                    return False
            elif f.name == "extra":
                if _dumps(a) != _dumps(b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


# ---------------------------------------------------------------------- encoding
def _array_to_bytes(array: NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _array_from_bytes(blob: bytes) -> NDArray[Any]:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def _raw_to_bytes(raw: Mapping[str, NDArray[Any]]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **raw)
    return buffer.getvalue()


def _raw_from_bytes(blob: bytes) -> dict[str, NDArray[Any]]:
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


def _dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, default=_json_default, indent=indent, sort_keys=indent is not None)


def _real_or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _nan_to_null(value: float) -> float | None:
    return None if math.isnan(value) else value


def _row_to_record(row: tuple[Any, ...], include_raw: bool) -> IterationRecord:
    (it, restart, controls, outputs, grads, stderr, loss, acc, sep, dev_s, wall, extra, raw) = row
    return IterationRecord(
        run_iteration=it,
        restart_index=restart,
        controls_v=_array_from_bytes(controls),
        outputs_a=_array_from_bytes(outputs),
        gradients_a_per_v=_array_from_bytes(grads),
        gradient_stderr_a_per_v=_array_from_bytes(stderr),
        loss=_real_or_nan(loss),
        accuracy=_real_or_nan(acc),
        separation_a=_real_or_nan(sep),
        device_seconds=_real_or_nan(dev_s),
        wall_time_s=_real_or_nan(wall),
        extra=json.loads(extra),
        raw=_raw_from_bytes(raw) if (include_raw and raw is not None) else None,
    )


# ---------------------------------------------------------------------- files
def _write_file_durably(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, fsync and atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def git_revision(cwd: Path | None = None) -> dict[str, Any] | None:
    """Return ``{"commit": sha, "dirty": bool}`` for the git repository at ``cwd`` (default CWD).

    Returns ``None`` when git is not installed or ``cwd`` is not inside a repository.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())} if commit else None


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Versions of the installed distributions among ``names`` (missing ones are left out)."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def collect_provenance(
    start_time: datetime, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Build the provenance dictionary for a run started at ``start_time`` (UTC).

    ``extra`` (instrument identities, calibration, …) is merged at the top level; its keys must
    not collide with the automatic ones.
    """
    from labctl import __version__

    provenance: dict[str, Any] = {
        "labctl_version": __version__,
        "git": git_revision(),
        "python": sys.version,
        "python_executable": sys.executable,
        "packages": package_versions(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "start_time_utc": start_time.isoformat(),
    }
    for key, value in (extra or {}).items():
        if key in provenance:
            raise ValueError(
                f"provenance_extra key {key!r} clashes with an automatic provenance field; "
                "rename it (e.g. nest it under 'instruments' or 'calibration')"
            )
        provenance[key] = value
    return provenance


def _safe_name(name_hint: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name_hint).strip("-.")[:60]
    return name or "run"


# ---------------------------------------------------------------------- store
@dataclass(frozen=True)
class RunSummary:
    """One line of ``labctl runs``.

    Attributes:
        name: Directory name of the run.
        path: Run directory.
        status: Latest status (``"created"``, a run state, or ``"unreadable"``).
        iterations: Number of stored iterations.
        best_loss: Lowest non-NaN loss, or ``None`` when there is none.
        start_time: UTC start time from the provenance, or ``None`` if unknown.
    """

    name: str
    path: Path
    status: str
    iterations: int
    best_loss: float | None
    start_time: datetime | None


class RunStore:
    """An open run directory; append iterations and status events, read them back.

    Use :meth:`create` for a new run and :meth:`open` for an existing one; close with
    :meth:`close` or a ``with`` block. One process should write a run at a time; any number of
    readers may open it concurrently (WAL mode). Methods are safe to call from several threads.
    """

    def __init__(self, run_dir: Path, connection: sqlite3.Connection, read_only: bool) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        self._dir = run_dir
        self._conn: sqlite3.Connection | None = connection
        self._read_only = read_only
        self._lock = threading.Lock()

    # .............................................................. construction
    @classmethod
    def create(
        cls,
        root_dir: str | os.PathLike[str],
        name_hint: str,
        config_text: str | Mapping[str, Any],
        provenance_extra: Mapping[str, Any] | None = None,
    ) -> RunStore:
        """Create a new run directory under ``root_dir`` and open it for appending.

        Args:
            root_dir: Directory holding runs (created if missing).
            name_hint: Human-readable part of the directory name; characters outside
                ``[A-Za-z0-9._-]`` become ``-``.
            config_text: The resolved configuration, as YAML text or a mapping (dumped to YAML).
            provenance_extra: Instrument identities, calibration and other caller-provided
                provenance, merged into ``provenance.json``.
        """
        root = Path(root_dir)
        root.mkdir(parents=True, exist_ok=True)
        start = datetime.now(UTC)
        base = f"{start:%Y%m%d-%H%M%S}-{_safe_name(name_hint)}"
        run_dir = root / base
        suffix = 1
        while True:
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                suffix += 1
                run_dir = root / f"{base}-{suffix}"
        if isinstance(config_text, Mapping):
            text = yaml.safe_dump(dict(config_text), sort_keys=False, allow_unicode=True)
        elif isinstance(config_text, str):
            text = config_text
        else:
            raise TypeError(
                f"config_text must be YAML text or a mapping, got {type(config_text).__name__}"
            )
        provenance = collect_provenance(start, provenance_extra)
        _write_file_durably(run_dir / CONFIG_FILE, text)
        _write_file_durably(run_dir / PROVENANCE_FILE, _dumps(provenance, indent=2) + "\n")
        conn = cls._connect(run_dir / DATABASE_FILE)
        # Schema and first rows in one transaction: a crash leaves either nothing or all of it.
        # The literals are generated here (an int, an ISO time, a float), never user input.
        conn.executescript(
            "BEGIN IMMEDIATE;"
            + _SCHEMA
            + f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
            + f"INSERT INTO meta VALUES ('created_utc', '{start.isoformat()}');"
            + "INSERT INTO events (time_utc_s, status, summary) "
            + f"VALUES ({start.timestamp()!r}, 'created', '{{}}');"
            + "COMMIT;"
        )
        _fsync_dir(run_dir)
        _fsync_dir(root)
        logger.info("created run store %s", run_dir)
        return cls(run_dir, conn, read_only=False)

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str], read_only: bool = False) -> RunStore:
        """Open an existing run directory (after a crash too: SQLite recovers the journal).

        With ``read_only`` the store refuses :meth:`append` and :meth:`set_status`.
        """
        path = Path(run_dir)
        db = path / DATABASE_FILE
        if not db.is_file():
            raise RunStoreError(
                f"{path} is not a run directory: {DATABASE_FILE} is missing "
                "(create runs with RunStore.create)"
            )
        conn: sqlite3.Connection | None = None
        try:
            conn = cls._connect(db)
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise RunStoreError(f"{db} is not a readable run database: {exc}") from exc
        if version is None or int(version[0]) != SCHEMA_VERSION:
            conn.close()
            raise RunStoreError(
                f"{db} has schema version {version and version[0]}, this labctl reads "
                f"{SCHEMA_VERSION}; open it with a matching labctl version"
            )
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        return cls(path, conn, read_only=read_only)

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL rather than NORMAL: with WAL, NORMAL already survives a killed process, but may
        # lose the last commits on power loss or an OS crash. FULL fsyncs the WAL at every
        # commit; one fsync per iteration (iterations take seconds on hardware) costs nothing
        # noticeable and makes "reported committed" mean "on disk".
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    # .............................................................. properties
    @property
    def path(self) -> Path:
        """The run directory."""
        return self._dir

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self._dir.name

    @property
    def read_only(self) -> bool:
        """Whether this handle refuses writes."""
        return self._read_only

    def config_text(self) -> str:
        """The resolved configuration as stored (YAML text)."""
        return (self._dir / CONFIG_FILE).read_text(encoding="utf-8")

    def provenance(self) -> dict[str, Any]:
        """The provenance dictionary from ``provenance.json``."""
        return json.loads((self._dir / PROVENANCE_FILE).read_text(encoding="utf-8"))

    # .............................................................. writing
    def append(self, record: IterationRecord) -> None:
        """Commit ``record`` durably in its own transaction.

        Raises:
            ValueError: if ``record.run_iteration`` is not greater than every stored iteration
                (use :meth:`next_iteration`).
            RunStoreError: if the store is closed or read-only.
        """
        if not isinstance(record, IterationRecord):
            raise TypeError(f"append expects an IterationRecord, got {type(record).__name__}")
        row = (
            record.run_iteration,
            record.restart_index,
            _array_to_bytes(record.controls_v),
            _array_to_bytes(record.outputs_a),
            _array_to_bytes(record.gradients_a_per_v),
            _array_to_bytes(record.gradient_stderr_a_per_v),
            _nan_to_null(record.loss),
            _nan_to_null(record.accuracy),
            _nan_to_null(record.separation_a),
            _nan_to_null(record.device_seconds),
            _nan_to_null(record.wall_time_s),
            _dumps(record.extra),
            None if record.raw is None else _raw_to_bytes(record.raw),
        )
        with self._lock:
            conn = self._writable()
            conn.execute("BEGIN IMMEDIATE")
            try:
                (last,) = conn.execute("SELECT MAX(run_iteration) FROM iterations").fetchone()
                if last is not None and record.run_iteration <= last:
                    raise ValueError(
                        f"run_iteration {record.run_iteration} is not after the last stored "
                        f"iteration {last}; number iterations with next_iteration()"
                    )
                conn.execute(
                    f"INSERT INTO iterations ({_ITERATION_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def set_status(self, status: str, summary: Mapping[str, Any] | None = None) -> None:
        """Append a timestamped status event (e.g. a :class:`~labctl.run.control.RunState`)."""
        if not isinstance(status, str) or not status:
            raise ValueError(f"status must be a non-empty string, got {status!r}")
        text = _dumps(dict(summary or {}))
        with self._lock:
            conn = self._writable()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO events (time_utc_s, status, summary) VALUES (?, ?, ?)",
                    (time.time(), str(status), text),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # .............................................................. reading
    def iterations(
        self, since: int | None = None, include_raw: bool = True
    ) -> list[IterationRecord]:
        """All stored iterations in order; with ``since``, only those with a larger number."""
        return list(self.iter_records(since=since, include_raw=include_raw))

    def iter_records(
        self, since: int | None = None, include_raw: bool = True
    ) -> Iterator[IterationRecord]:
        """Iterate over stored iterations in order (see :meth:`iterations`)."""
        columns = _ITERATION_COLUMNS if include_raw else _ITERATION_COLUMNS_NO_RAW
        with self._lock:
            rows = (
                self._open_conn()
                .execute(
                    f"SELECT {columns} FROM iterations WHERE run_iteration > ? "
                    "ORDER BY run_iteration",
                    (-1 if since is None else since,),
                )
                .fetchall()
            )
        for row in rows:
            yield _row_to_record(row, include_raw)

    def last_iteration(self) -> int | None:
        """The highest stored ``run_iteration``, or ``None`` for an empty run."""
        with self._lock:
            (last,) = (
                self._open_conn().execute("SELECT MAX(run_iteration) FROM iterations").fetchone()
            )
        return None if last is None else int(last)

    def next_iteration(self) -> int:
        """The ``run_iteration`` the next appended record should carry."""
        last = self.last_iteration()
        return 0 if last is None else last + 1

    def iteration_count(self) -> int:
        """Number of stored iterations."""
        with self._lock:
            (count,) = self._open_conn().execute("SELECT COUNT(*) FROM iterations").fetchone()
        return int(count)

    def best_loss(self) -> float | None:
        """Lowest stored non-NaN loss, or ``None``."""
        with self._lock:
            (best,) = self._open_conn().execute("SELECT MIN(loss) FROM iterations").fetchone()
        return None if best is None else float(best)

    def status(self) -> str:
        """The latest status (``"created"`` until :meth:`set_status` is first called)."""
        return self.status_history()[-1][1]

    def summary(self) -> dict[str, Any]:
        """The summary stored with the latest status."""
        return self.status_history()[-1][2]

    def status_history(self) -> list[tuple[datetime, str, dict[str, Any]]]:
        """Every status event as ``(UTC time, status, summary)``, oldest first."""
        with self._lock:
            rows = (
                self._open_conn()
                .execute("SELECT time_utc_s, status, summary FROM events ORDER BY id")
                .fetchall()
            )
        return [(datetime.fromtimestamp(t, UTC), s, json.loads(js)) for t, s, js in rows]

    # .............................................................. lifetime
    def close(self) -> None:
        """Close the database; further calls raise :class:`RunStoreError`. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RunStoreError(f"run store {self._dir} is closed; reopen it with RunStore.open")
        return self._conn

    def _writable(self) -> sqlite3.Connection:
        conn = self._open_conn()
        if self._read_only:
            raise RunStoreError(f"run store {self._dir} was opened read-only; cannot write")
        return conn


LOCK_FILE = "writer.lock"
"""Held (``flock``) by the process that executes a run; absent holder = run not live."""


class RunBusyError(RunStoreError):
    """Another process is executing this run."""


@contextlib.contextmanager
def writer_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the run's writer lock while a process executes it.

    The operating system releases the lock when the process dies, however it dies, so
    :func:`list_runs` can tell a live run from one that was killed, and two processes can never
    resume the same run at once.

    Raises:
        RunBusyError: Another live process holds the lock.
    """
    path = Path(run_dir) / LOCK_FILE
    handle = path.open("a+")
    try:
        if not _try_lock(handle):
            raise RunBusyError(
                f"run {run_dir} is being executed by another process; wait for it or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def is_live(run_dir: str | os.PathLike[str]) -> bool:
    """Whether some process holds the run's writer lock right now."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return False
    with path.open("a+") as handle:
        return not _try_lock(handle)


def _try_lock(handle: Any) -> bool:
    """Take an exclusive lock on ``handle`` without waiting; False if another process has it.

    The lock lasts until the handle is closed (or the process ends).
    """
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def list_runs(root_dir: str | os.PathLike[str]) -> list[RunSummary]:
    """Summaries of the runs directly under ``root_dir``, sorted by directory name (start time).

    Directories without a run database are ignored; a damaged one is listed as ``"unreadable"``,
    and one whose last status is ``"running"`` but which no live process executes (killed,
    power cut) as ``"interrupted"``.
    """
    root = Path(root_dir)
    if not root.is_dir():
        return []
    summaries: list[RunSummary] = []
    for run_dir in sorted(p for p in root.iterdir() if (p / DATABASE_FILE).is_file()):
        start: datetime | None = None
        try:
            with RunStore.open(run_dir, read_only=True) as store:
                status = store.status()
                count = store.iteration_count()
                best = store.best_loss()
                try:
                    start = datetime.fromisoformat(store.provenance()["start_time_utc"])
                except (OSError, KeyError, ValueError):
                    start = None
        except (RunStoreError, sqlite3.DatabaseError) as exc:
            logger.warning("cannot read run %s: %s", run_dir, exc)
            status, count, best = "unreadable", 0, None
        if status == "running" and not is_live(run_dir):
            status = "interrupted"
        summaries.append(RunSummary(run_dir.name, run_dir, status, count, best, start))
    return summaries
