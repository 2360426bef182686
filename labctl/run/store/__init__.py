"""Crash-safe, append-only run store: one directory per run.

The public names are re-exported here; each submodule has one job:

* :mod:`~labctl.run.store.records` — :class:`IterationRecord`, one iteration's data;
* :mod:`~labctl.run.store.codec` — lossless value encodings (arrays as bytes, JSON, NaN/NULL);
* :mod:`~labctl.run.store.schema` — file names, SQL schema, record ↔ row mapping;
* :mod:`~labctl.run.store.files` — durable file writes (fsync, atomic rename);
* :mod:`~labctl.run.store.provenance` — git revision, package versions, host, start time;
* :mod:`~labctl.run.store.lock` — the per-run writer lock and :func:`is_live`;
* :mod:`~labctl.run.store.runstore` — :class:`RunStore`: create, open, append, read, status;
* :mod:`~labctl.run.store.listing` — :class:`RunSummary` and :func:`list_runs`.
"""

from __future__ import annotations

from labctl.run.store.errors import RunStoreError
from labctl.run.store.listing import RunSummary, list_runs
from labctl.run.store.lock import LOCK_FILE, RunBusyError, is_live, writer_lock
from labctl.run.store.provenance import (
    PROVENANCE_PACKAGES,
    collect_provenance,
    git_revision,
    package_versions,
)
from labctl.run.store.records import IterationRecord
from labctl.run.store.runstore import RunStore
from labctl.run.store.schema import CONFIG_FILE, DATABASE_FILE, PROVENANCE_FILE, SCHEMA_VERSION

__all__ = [
    "CONFIG_FILE",
    "DATABASE_FILE",
    "LOCK_FILE",
    "PROVENANCE_FILE",
    "PROVENANCE_PACKAGES",
    "SCHEMA_VERSION",
    "IterationRecord",
    "RunBusyError",
    "RunStore",
    "RunStoreError",
    "RunSummary",
    "collect_provenance",
    "git_revision",
    "is_live",
    "list_runs",
    "package_versions",
    "writer_lock",
]
