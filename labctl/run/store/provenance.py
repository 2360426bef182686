"""Provenance of a run: software versions, git revision, host and start time.

Written once to ``provenance.json`` when a run is created, so every stored number can be traced to
the code and machine that produced it.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

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
