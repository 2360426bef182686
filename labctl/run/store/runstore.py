"""The run store handle: create or open one run directory, append iterations, read them back.

Crash safety: every iteration is one SQLite transaction, committed with ``synchronous=FULL`` in
WAL mode, so a process killed at any moment loses at most the iteration it was writing, and a
power cut loses nothing that was reported committed. The directory layout and schema are in
:mod:`labctl.run.store.schema`; value encodings in :mod:`labctl.run.store.codec`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from labctl.run.store.codec import dumps
from labctl.run.store.errors import RunStoreError
from labctl.run.store.files import fsync_dir, write_file_durably
from labctl.run.store.provenance import collect_provenance
from labctl.run.store.records import IterationRecord
from labctl.run.store.schema import (
    CALIBRATION_FILE,
    CHECKPOINT_TABLE,
    CONFIG_FILE,
    DATABASE_FILE,
    ITERATION_COLUMNS,
    ITERATION_COLUMNS_NO_RAW,
    PROVENANCE_FILE,
    SCHEMA,
    SCHEMA_VERSION,
    record_to_row,
    row_to_record,
)

logger = logging.getLogger(__name__)


def _safe_name(name_hint: str) -> str:
    """The directory-name part for ``name_hint``: ``[A-Za-z0-9._-]`` only, ≤ 60 characters."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name_hint).strip("-.")[:60]
    return name or "run"


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
        write_file_durably(run_dir / CONFIG_FILE, text)
        write_file_durably(run_dir / PROVENANCE_FILE, dumps(provenance, indent=2) + "\n")
        conn = cls._connect(run_dir / DATABASE_FILE)
        # Schema and first rows in one transaction: a crash leaves either nothing or all of it.
        # The literals are generated here (an int, an ISO time, a float), never user input.
        conn.executescript(
            "BEGIN IMMEDIATE;"
            + SCHEMA
            + f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
            + f"INSERT INTO meta VALUES ('created_utc', '{start.isoformat()}');"
            + "INSERT INTO events (time_utc_s, status, summary) "
            + f"VALUES ({start.timestamp()!r}, 'created', '{{}}');"
            + "COMMIT;"
        )
        fsync_dir(run_dir)
        fsync_dir(root)
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
        else:
            conn.executescript(CHECKPOINT_TABLE)  # stores written before checkpoints existed
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

    def write_calibration(self, document: Mapping[str, Any]) -> None:
        """Keep the chain calibration the run uses in ``calibration.json`` (atomic, durable)."""
        if self._read_only:
            raise RunStoreError(f"run store {self._dir} was opened read-only; cannot write")
        write_file_durably(self._dir / CALIBRATION_FILE, dumps(dict(document), indent=2) + "\n")
        fsync_dir(self._dir)

    def calibration(self) -> dict[str, Any] | None:
        """The document :meth:`write_calibration` wrote, or None if the run has none."""
        path = self._dir / CALIBRATION_FILE
        if not path.is_file():
            return None
        document = json.loads(path.read_text(encoding="utf-8"))
        return document if isinstance(document, dict) else None

    # .............................................................. writing
    def append(self, record: IterationRecord, checkpoint: Mapping[str, Any] | None = None) -> None:
        """Commit ``record`` durably in its own transaction.

        ``checkpoint`` (JSON-compatible) replaces the run's resume state in the same
        transaction, so the stored state always belongs to the last stored iteration.

        Raises:
            ValueError: if ``record.run_iteration`` is not greater than every stored iteration
                (use :meth:`next_iteration`).
            RunStoreError: if the store is closed or read-only.
        """
        if not isinstance(record, IterationRecord):
            raise TypeError(f"append expects an IterationRecord, got {type(record).__name__}")
        row = record_to_row(record)
        state = None if checkpoint is None else dumps(dict(checkpoint))
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
                    f"INSERT INTO iterations ({ITERATION_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                if state is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO checkpoint (slot, run_iteration, state) "
                        "VALUES (0, ?, ?)",
                        (record.run_iteration, state),
                    )
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback(conn)
                raise RunStoreError(
                    f"the run store {self.path} could not save iteration {record.run_iteration} "
                    f"({exc}: the disk may be full or failing); every earlier iteration is kept: "
                    "free space or fix the disk before resuming"
                ) from exc
            except BaseException:
                self._rollback(conn)
                raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        """Roll back, unless a failed COMMIT (disk full, I/O error) already ended the
        transaction: a ROLLBACK then would replace the real cause with its own error."""
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def set_status(self, status: str, summary: Mapping[str, Any] | None = None) -> None:
        """Append a timestamped status event (e.g. a :class:`~labctl.run.state.RunState`)."""
        if not isinstance(status, str) or not status:
            raise ValueError(f"status must be a non-empty string, got {status!r}")
        text = dumps(dict(summary or {}))
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
                self._rollback(conn)
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
        columns = ITERATION_COLUMNS if include_raw else ITERATION_COLUMNS_NO_RAW
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
            yield row_to_record(row, include_raw)

    def checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """The resume state stored with the last iteration, as ``(run_iteration, state)``.

        None when no iteration stored one (or the store predates checkpoints).
        """
        with self._lock:
            try:
                row = (
                    self._open_conn()
                    .execute("SELECT run_iteration, state FROM checkpoint WHERE slot = 0")
                    .fetchone()
                )
            except sqlite3.OperationalError:  # read-only handle on a store without the table
                return None
        return None if row is None else (int(row[0]), json.loads(row[1]))

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
