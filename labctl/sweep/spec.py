"""The sweep file: a base training configuration and a grid, expanded and validated up front.

```yaml
base: or_sim.yaml              # a training config (path relative to this file) or a mapping
overrides:                     # optional: merged into the base for every point
  run: {max_iterations: 300}
grid:
  tasks: [OR, AND]             # gate names, or whole task sections (mappings)
  seeds: [0, 1, 2]             # run.seed and every simulated instrument's noise_seed
  methods: [hge, spsa]         # method names, or {name: ..., params: {...}}
  params:                      # dotted configuration paths, one list of values each
    optimiser.learning_rate: [0.02, 0.05]
sweep:
  name: or-and-lr              # optional
  directory: runs/sweeps/lr    # optional (relative to this file); default: a new folder
  workers: 2                   # optional: local processes (default: the CPU count)
  scheduler: tcp://host:8786   # optional: a Dask scheduler instead of local processes
```

Every grid point's full configuration is validated (schema, backend settings, frequency plan)
before anything runs; a problem names the point and the field.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labctl.config import ConfigError, LoadedConfig, merge_overrides, parse_config
from labctl.config.loader import check_frequency_plan
from labctl.sweep.placement import place_run_files, setup_is_simulated, simulated_instruments


class SweepSpecError(ValueError):
    """A sweep file or one of its grid points does not validate; exit code 2."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GridSpec(_Strict):
    """The grid: every combination of tasks, methods, parameter values and seeds is a point."""

    tasks: list[str | dict[str, Any]] | None = Field(
        None, min_length=1, description="Gate names or task sections (default: the base's task)."
    )
    seeds: list[int] | None = Field(
        None, min_length=1, description="Seeds (default: the base's run.seed)."
    )
    methods: list[str | dict[str, Any]] | None = Field(
        None, min_length=1, description="Method names or method sections (default: the base's)."
    )
    params: dict[str, list[Any]] = Field(
        default_factory=dict, description="Dotted configuration path -> values to try."
    )

    @field_validator("params")
    @classmethod
    def _dotted_paths(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"{key!r} is not a dotted path such as optimiser.learning_rate")
            if not values:
                raise ValueError(f"{key}: give at least one value")
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("seeds must be distinct")
        return value


class SweepSection(_Strict):
    """How and where the sweep runs."""

    name: str | None = Field(None, description="Name of the sweep (default: the file's stem).")
    directory: Path | None = Field(
        None,
        description="Sweep directory (relative to the sweep file); default: a new folder "
        "sweep-<UTC time>-<name> in the base's run.directory.",
    )
    workers: int | None = Field(None, ge=1, description="Runs at once (default: CPU count).")
    scheduler: str | None = Field(
        None, description="Dask scheduler address, e.g. tcp://host:8786 (needs the cluster extra)."
    )


class SweepFile(_Strict):
    """A sweep file."""

    base: str | dict[str, Any] = Field(description="Training config: a path or a mapping.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Merged into the base for every point."
    )
    grid: GridSpec = Field(default_factory=GridSpec)
    sweep: SweepSection = Field(default_factory=SweepSection)


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its id, what it varies, and its validated, JSON-ready configuration.

    Attributes:
        id: Unique, file-name-safe, ordered (``003-OR-hge-s2-learning_rate=0.05``).
        labels: The point's grid coordinates: ``task``, ``method``, ``seed`` and each dotted
            parameter path.
        config: The resolved configuration with absolute paths and the point's own run files
            (see :func:`~labctl.sweep.placement.place_run_files`).
        simulated: Whether every instrument is simulated (else the sweep runs one at a time).
    """

    id: str
    labels: dict[str, Any]
    config: dict[str, Any]
    simulated: bool


@dataclass
class Sweep:
    """An expanded, validated sweep."""

    name: str
    directory: Path
    points: list[SweepPoint]
    workers: int | None = None
    scheduler: str | None = None
    params: list[str] = field(default_factory=list)


def _issue_text(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        out.append(f"{where}: {error['msg']}" if where else error["msg"])
    return out


def _set_dotted(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested mappings (creating them); a non-mapping on the way is an error."""
    node = data
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise SweepSpecError(f"grid.params.{path}: {where} is not a mapping in the base")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _label(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        text = str(value)
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", str(text).strip()).strip("_")[:24] or "x"


def _task_section(base: Mapping[str, Any], task: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(task, dict):
        return copy.deepcopy(task)
    section = base.get("task")
    if isinstance(section, dict) and section.get("kind", "gate") == "gate":
        return {**copy.deepcopy(section), "kind": "gate", "name": task}
    return {"kind": "gate", "name": task}


def _task_label(task: str | dict[str, Any]) -> str:
    if isinstance(task, str):
        return task
    return str(task.get("name") or task.get("kind") or "task")


def _method_section(base: Mapping[str, Any], method: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(method, dict):
        return copy.deepcopy(method)
    section = base.get("method")
    if isinstance(section, dict) and section.get("name", "hge") == method:
        return copy.deepcopy(section)  # the base's own method keeps its parameters
    return {"name": method, "params": {}}


def _method_label(method: str | dict[str, Any]) -> str:
    return method if isinstance(method, str) else str(method.get("name", "method"))


def read_sweep_file(path: Path) -> SweepFile:
    """Parse and validate a sweep file's own schema (not yet its points)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepSpecError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise SweepSpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SweepSpecError(f"{path}: the top level must be a mapping with 'base' and 'grid'")
    try:
        return SweepFile.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(f"  - {t}" for t in _issue_text(exc))
        raise SweepSpecError(f"{path}: problem(s) in the sweep file:\n{lines}") from None


def _base_data(spec: SweepFile, sweep_path: Path) -> tuple[dict[str, Any], Path]:
    """The base configuration data and the file its relative paths are relative to."""
    if isinstance(spec.base, dict):
        return copy.deepcopy(spec.base), sweep_path
    base_path = Path(spec.base)
    if not base_path.is_absolute():
        base_path = sweep_path.parent / base_path
    try:
        data = yaml.safe_load(base_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepSpecError(f"{sweep_path}: base: {base_path} not found") from None
    except yaml.YAMLError as exc:
        raise SweepSpecError(f"{sweep_path}: base: {base_path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SweepSpecError(f"{sweep_path}: base: {base_path} is not a configuration mapping")
    return data, base_path


def default_directory(spec: SweepFile, sweep_path: Path, base: Mapping[str, Any]) -> Path:
    """The sweep directory: ``sweep.directory`` (relative to the sweep file) or a new
    ``sweep-<UTC time>-<name>`` folder in the base's ``run.directory`` (default ``runs``)."""
    from datetime import UTC, datetime

    if spec.sweep.directory is not None:
        d = spec.sweep.directory
        return d if d.is_absolute() else sweep_path.parent / d
    run = base.get("run") if isinstance(base.get("run"), dict) else {}
    root = Path(str((run or {}).get("directory") or "runs"))
    name = _label(spec.sweep.name or sweep_path.stem)
    return root / f"sweep-{datetime.now(UTC):%Y%m%d-%H%M%S}-{name}"


def expand(spec: SweepFile, sweep_path: Path, directory: Path) -> list[SweepPoint]:
    """Every grid point, its configuration validated, with its run directory in
    ``directory/points/<id>``.

    Raises:
        SweepSpecError: A point does not validate; the message names each bad point and field.
    """
    base, source = _base_data(spec, sweep_path)
    base = merge_overrides(base, spec.overrides)
    grid = spec.grid
    tasks: list[str | dict[str, Any] | None] = list(grid.tasks) if grid.tasks else [None]
    methods: list[str | dict[str, Any] | None] = list(grid.methods) if grid.methods else [None]
    base_run = base.get("run") if isinstance(base.get("run"), dict) else {}
    seeds: list[int | None] = list(grid.seeds) if grid.seeds else [None]
    keys = list(grid.params)
    value_lists = [grid.params[k] for k in keys]
    points: list[SweepPoint] = []
    problems: list[str] = []
    combos = itertools.product(tasks, methods, itertools.product(*value_lists), seeds)
    for index, (task, method, values, seed) in enumerate(combos):
        data = copy.deepcopy(base)
        labels: dict[str, Any] = {}
        parts = [f"{index:03d}"]
        if task is not None:
            data["task"] = _task_section(base, task)
            labels["task"] = _task_label(task)
            parts.append(_label(labels["task"]))
        else:
            task_section = data.get("task") if isinstance(data.get("task"), dict) else {}
            labels["task"] = str(
                (task_section or {}).get("name") or (task_section or {}).get("kind", "task")
            )
        if method is not None:
            data["method"] = _method_section(base, method)
            labels["method"] = _method_label(method)
            parts.append(_label(labels["method"]))
        else:
            method_section = data.get("method") if isinstance(data.get("method"), dict) else {}
            labels["method"] = str((method_section or {}).get("name", "hge"))
        for key, value in zip(keys, values, strict=True):
            _set_dotted(data, key, value)
            labels[key] = value
            parts.append(f"{_label(key.split('.')[-1])}={_label(value)}")
        run = data.setdefault("run", {})
        if not isinstance(run, dict):
            problems.append(f"point {index:03d}: run: must be a mapping")
            continue
        if seed is None:
            seed = int((base_run or {}).get("seed", 0) or 0)
        else:
            parts.append(f"s{seed}")
            run["seed"] = seed
            for settings in simulated_instruments(data):
                settings["noise_seed"] = seed
        labels["seed"] = seed
        point_id = "-".join(parts)
        run["name"] = point_id
        run["report"] = False
        data = place_run_files(data, directory / "points" / point_id)
        try:
            loaded = parse_config(yaml.safe_dump(data, sort_keys=False), source=source)
            check_frequency_plan(loaded)
        except ConfigError as exc:
            problems.extend(f"point {point_id}: {issue}" for issue in exc.issues)
            continue
        if loaded.config.task is None:
            problems.append(f"point {point_id}: task: missing (nothing to train)")
            continue
        points.append(
            SweepPoint(
                id=point_id,
                labels=labels,
                config=_absolute(loaded),
                simulated=setup_is_simulated(loaded.setup),
            )
        )
    if problems:
        shown = problems[:30]
        more = f"\n  … and {len(problems) - 30} more" if len(problems) > 30 else ""
        lines = "\n".join(f"  - {p}" for p in shown)
        raise SweepSpecError(
            f"{sweep_path}: {len(problems)} problem(s) in the grid's points:\n{lines}{more}"
        )
    return points


def _absolute(loaded: LoadedConfig) -> dict[str, Any]:
    from labctl.training.session import absolute_paths

    return absolute_paths(loaded)


def load_sweep(path: str | Path, directory: Path | None = None) -> Sweep:
    """Read a sweep file and expand and validate its grid (``directory`` overrides the
    sweep's directory).

    Raises:
        SweepSpecError: The file or a point does not validate.
    """
    sweep_path = Path(path)
    spec = read_sweep_file(sweep_path)
    base, _ = _base_data(spec, sweep_path)
    base = merge_overrides(base, spec.overrides)
    target = directory if directory is not None else default_directory(spec, sweep_path, base)
    points = expand(spec, sweep_path, target.resolve())
    return Sweep(
        name=spec.sweep.name or sweep_path.stem,
        directory=target.resolve(),
        points=points,
        workers=spec.sweep.workers,
        scheduler=spec.sweep.scheduler,
        params=list(spec.grid.params),
    )


def is_sweep_file(path: Path) -> bool:
    """Whether ``path`` reads as a sweep file (a mapping with ``base`` and no ``setup``)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # unreadable, not YAML, too deep: the configuration loader reports it
        return False
    return isinstance(data, dict) and "base" in data and "setup" not in data


def describe_sweep_file(path: Path) -> str:
    """Validate a sweep file and every grid point (creating nothing); a one-line description.

    Raises:
        SweepSpecError: The file or a point does not validate.
    """
    sweep = load_sweep(path)
    where = (
        "on hardware, one at a time"
        if not all(p.simulated for p in sweep.points)
        else ("simulated")
    )
    return f"{path}: OK (sweep {sweep.name!r}, {len(sweep.points)} point(s), {where})"
