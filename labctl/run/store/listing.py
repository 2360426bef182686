"""Listing the runs under a directory, one :class:`RunSummary` per run (``labctl runs``)."""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from labctl.run.store.errors import RunStoreError
from labctl.run.store.lock import is_live
from labctl.run.store.runstore import RunStore
from labctl.run.store.schema import DATABASE_FILE

logger = logging.getLogger(__name__)


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
