"""The per-run writer lock: one executing process per run, and whether a run is live.

The lock is an operating-system file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on
``writer.lock`` in the run directory; the system drops it when the holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labctl.run.store.errors import RunStoreError

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]  # None marks "no fcntl": the msvcrt path below
    import msvcrt

LOCK_FILE = "writer.lock"
"""Held (``flock``) by the process that executes a run; absent holder = run not live."""


class RunBusyError(RunStoreError):
    """Another process is executing this run."""


@contextlib.contextmanager
def writer_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the run's writer lock while a process executes it.

    The operating system releases the lock when the process dies, however it dies, so
    :func:`~labctl.run.store.listing.list_runs` can tell a live run from one that was killed,
    and two processes can never resume the same run at once.

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
