"""Durable writes of small files: temporary file, fsync, atomic rename, directory fsync."""

from __future__ import annotations

import os
from pathlib import Path


def write_file_durably(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file, fsync and atomic rename.

    A crash leaves either the old file (or none) or the complete new one, never a partial one.
    Call :func:`fsync_dir` on the parent afterwards to make the rename itself durable.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Flush the directory entry list of ``path`` to disk; a no-op where that is impossible."""
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
