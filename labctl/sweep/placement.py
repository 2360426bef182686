"""Which runs may share a machine, and where each run keeps its own files.

A run on a simulated device is independent of every other run, so a sweep runs as many at once
as it has workers. A run on real hardware is not: one chip serves one run, so a sweep that names
any non-simulated backend runs its points one at a time. A backend counts as simulated when its
registry spec comes from the ``simulated_hw`` package (the in-process simulator); everything
else (the NI DAQ and lock-in drivers, also when they talk to a simulated server, and any
third-party backend) counts as hardware.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from labctl.config import SetupConfig
from labctl.device.registry import UnknownBackendError, get_backend

SIMULATED_PACKAGE = "simulated_hw"
CALIBRATION_NAME = "chain.calibration.json"
"""The point's own chain calibration (in the point directory, never next to a config)."""
VOLTAGES_NAME = "voltages.json"
"""A simulated point's own persisted electrode voltages."""


def is_simulated_backend(name: str) -> bool:
    """Whether the backend registered as ``name`` is an in-process simulator (False when no
    backend of that name is installed: validation reports that)."""
    try:
        spec = get_backend(name)
    except UnknownBackendError:
        return False
    module = getattr(spec.factory, "__module__", "") or ""
    return module.split(".")[0] == SIMULATED_PACKAGE


def backend_names(data: Mapping[str, Any]) -> list[str]:
    """The backend names a configuration mapping names (``setup.backend`` or every
    ``setup.instruments.*.backend``); malformed sections yield nothing (validation reports them)."""
    setup = data.get("setup")
    if not isinstance(setup, Mapping):
        return []
    backend = setup.get("backend")
    if isinstance(backend, Mapping) and isinstance(backend.get("name"), str):
        return [backend["name"]]
    instruments = setup.get("instruments")
    if isinstance(instruments, Mapping):
        return [
            str(i["backend"])
            for i in instruments.values()
            if isinstance(i, Mapping) and isinstance(i.get("backend"), str)
        ]
    return []


def setup_is_simulated(setup: SetupConfig) -> bool:
    """Whether every instrument of a validated setup is simulated."""
    return all(is_simulated_backend(c.backend) for c in setup.instrument_configs().values())


def max_concurrent_runs(all_simulated: Iterable[bool], workers: int) -> int:
    """How many of a sweep's runs may execute at once: ``workers`` when every point runs on
    simulated devices only, else 1 (one chip serves one run)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers if all(all_simulated) else 1


def simulated_instruments(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The settings mappings of the simulated instruments in configuration data (to seed them);
    each is the very mapping inside ``data`` (created when missing)."""
    setup = data.get("setup")
    if not isinstance(setup, dict):
        return []
    sections: list[dict[str, Any]] = []
    backend = setup.get("backend")
    if isinstance(backend, dict):
        sections.append(backend)
    instruments = setup.get("instruments")
    if isinstance(instruments, dict):
        sections.extend(i for i in instruments.values() if isinstance(i, dict))
    out = []
    for section in sections:
        name = section.get("name", section.get("backend"))
        if isinstance(name, str) and is_simulated_backend(name):
            settings = section.setdefault("settings", {})
            if isinstance(settings, dict):
                out.append(settings)
    return out


def place_run_files(data: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """A copy of configuration data whose run writes only inside ``run_dir``.

    - ``run.directory`` is ``run_dir`` (the run store is created inside it);
    - a stored chain calibration is looked up only as ``run_dir``'s own
      :data:`CALIBRATION_NAME`, so parallel runs never share one file; a run without one
      calibrates at start and keeps that calibration in its run store, never next to the
      configuration (a real setup may name a file instead, e.g. one made by ``labctl
      calibrate``: its runs are one at a time);
    - on simulated devices only, the persisted electrode voltages, unless named, are
      ``run_dir``'s own :data:`VOLTAGES_NAME` (parallel simulated runs of one setup would
      otherwise share one file). A real setup keeps its state file: it describes the chip.
    """
    out: dict[str, Any] = copy.deepcopy(dict(data))
    run = out.setdefault("run", {})
    if isinstance(run, dict):
        run["directory"] = str(run_dir)
    names = backend_names(out)
    simulated = bool(names) and all(is_simulated_backend(n) for n in names)
    homodyne = out.setdefault("homodyne", {})
    if isinstance(homodyne, dict):
        calibration = homodyne.setdefault("calibration", {})
        if isinstance(calibration, dict) and (simulated or calibration.get("file") is None):
            calibration["file"] = str(run_dir / CALIBRATION_NAME)
    setup = out.get("setup")
    if simulated and isinstance(setup, dict):
        safety = setup.setdefault("safety", {})
        if isinstance(safety, dict) and safety.get("state_file") is None:
            safety["state_file"] = str(run_dir / VOLTAGES_NAME)
    return out
