"""Loading YAML into validated objects, with every problem reported by field path."""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from labctl.config.lab import LabConfig
from labctl.config.setup import SetupConfig
from labctl.device.state import default_state_path


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """A configuration did not validate; :attr:`issues` lists every problem."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem(s) in the configuration:\n{lines}")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration, with each instrument's validated settings and its source.

    Attributes:
        config: The validated configuration.
        instrument_settings: Per instrument name (see ``SetupConfig.instrument_configs``), the
            settings validated by its backend.
        source: The file it came from (None for text).
        text: The YAML text.
    """

    config: LabConfig
    instrument_settings: Mapping[str, BaseModel]
    source: Path | None
    text: str

    @property
    def setup(self) -> SetupConfig:
        """The setup section."""
        return self.config.setup

    @property
    def backend_settings(self) -> BaseModel:
        """The settings of the one instrument of a ``setup.backend`` configuration."""
        if self.setup.backend is None:
            raise ValueError("a composite setup has one settings object per instrument")
        return self.instrument_settings[self.setup.backend.name]

    def state_file(self) -> Path:
        """Where the last commanded electrode voltages of this setup are persisted."""
        configured = self.setup.safety.state_file
        if configured is None:
            return default_state_path(self.setup.name)
        if configured.is_absolute():
            return configured
        base = self.source.parent if self.source is not None else Path.cwd()
        return base / configured

    def resolved_dict(self) -> dict[str, Any]:
        """The configuration with defaults filled in (for run stores)."""
        data = self.config.model_dump(mode="json", exclude_none=False)
        setup = data["setup"]
        for name, settings in self.instrument_settings.items():
            dumped = settings.model_dump(mode="json")
            if setup.get("instruments"):
                setup["instruments"][name]["settings"] = dumped
            else:
                setup["backend"]["settings"] = dumped
        for key in ("backend", "instruments", "roles"):
            if setup.get(key) is None:
                setup.pop(key, None)
        return data


def check_run_directory(loaded: LoadedConfig) -> Path:
    """Make sure ``run.directory`` exists and takes files (created if missing), before a run
    touches any device.

    Raises:
        ConfigError: It cannot be created or written (a file in the way, no permission, a
            read-only file system), naming ``run.directory`` and the reason.
    """
    directory = loaded.config.run.directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            str(loaded.source or "<config>"),
            [
                ConfigIssue(
                    "run.directory",
                    f"runs cannot be stored in {directory} ({reason}); give a directory you can "
                    "write to",
                )
            ],
        ) from None
    return directory


def merge_overrides(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of configuration data ``base`` with ``override`` merged in.

    Nested mappings merge key by key; any other value (lists included) replaces the base's.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a YAML configuration file.

    Raises:
        ConfigError: The file is missing, empty, not YAML, or does not validate.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigIssue("", "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path),
            [ConfigIssue("", f"not UTF-8 text ({exc}); save the file as UTF-8 YAML")],
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            str(path), [ConfigIssue("", "is a directory; give the YAML configuration file")]
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue("", f"cannot read the file: {exc}")]) from None
    return parse_config(text, source=path)


MAX_NESTING_DEPTH = 64
"""Deeper mappings or lists than this are refused (no configuration needs more than ~6)."""


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice; the second would silently replace the first."""


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys (at any depth) and absurd nesting."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable keys are reported by the constructor itself
            if first is not None:
                raise DuplicateKeyError(
                    f"key {key!r} appears twice, at line {first.start_mark.line + 1} and at line "
                    f"{key_node.start_mark.line + 1}; the second would silently replace the "
                    "first: merge them into one"
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


MAX_NODES = 100_000
"""More values than this (counting every use of a YAML alias) are refused: an alias bomb."""


class _TooManyNodes(Exception):
    """The document expands to more than :data:`MAX_NODES` values."""


def _depth(node: yaml.Node, limit: int) -> int:
    """Nesting depth of a YAML node tree, stopping (and returning) once past ``limit``.

    Raises:
        _TooManyNodes: The tree, with aliases expanded, has more than :data:`MAX_NODES` nodes.
    """
    deepest = 0
    visited = 0
    stack: list[tuple[yaml.Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise _TooManyNodes
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(current, yaml.MappingNode):
            stack.extend((child, depth + 1) for pair in current.value for child in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in current.value)
    return deepest


def _load_yaml(text: str, label: str) -> Any:
    """Parse YAML strictly (see :class:`_StrictLoader`), refusing deep nesting first."""
    loader = _StrictLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            node = None
            too_deep = True
        else:
            try:
                too_deep = node is not None and _depth(node, MAX_NESTING_DEPTH) > MAX_NESTING_DEPTH
            except _TooManyNodes:
                raise ConfigError(
                    label,
                    [
                        ConfigIssue(
                            "",
                            f"the file expands to more than {MAX_NODES} values (YAML aliases "
                            "repeating aliases: an alias bomb?); write the values out, without "
                            "nested anchors and aliases",
                        )
                    ],
                ) from None
        if too_deep:
            raise ConfigError(
                label,
                [
                    ConfigIssue(
                        "",
                        f"the file is nested more than {MAX_NESTING_DEPTH} levels deep; no "
                        "configuration needs that: see configs/ for the structure",
                    )
                ],
            )
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_model_file(path: Path, model: type[ModelT]) -> ModelT:
    """Read a YAML file into ``model`` with labctl's rules: duplicate keys and absurd nesting
    are refused, every problem names its field, and relative paths resolve from the file
    (``context["base_dir"]``). For the simulated instruments' own configuration files.

    Raises:
        ConfigError: The file is missing, unreadable, not YAML, or does not validate.
    """
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(label, [ConfigIssue("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(label, [ConfigIssue("", f"cannot read the file: {exc}")]) from None
    try:
        data = _load_yaml(text, label)
    except yaml.YAMLError as exc:
        problem = _yaml_problem(exc)
        raise ConfigError(label, [ConfigIssue("", f"not valid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(label, [ConfigIssue("", "the top level must be a mapping")])
    try:
        return model.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError(label, _issues_from_validation(exc)) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong, in words, for a YAML error (tags get a hint: they are never allowed)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if "could not determine a constructor for the tag" in problem:
        found = re.search(r"tag '([^']*)'", problem)
        tag = (found.group(1) if found else "?").replace("tag:yaml.org,2002:", "!!")
        problem = (
            f"the tag {tag!r} is not allowed: configurations are plain YAML data (no "
            "!!python/... or other language tags, no !include); write the value itself"
        )
    return problem


def parse_config(text: str, source: Path | None = None) -> LoadedConfig:
    """Validate configuration text (``source`` anchors relative paths and error messages)."""
    label = str(source) if source is not None else "<config>"
    try:
        data = _load_yaml(text, label)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = _yaml_problem(exc)
        raise ConfigError(label, [ConfigIssue("", f"not valid YAML{where}: {problem}")]) from None
    if data is None:
        raise ConfigError(label, [ConfigIssue("", "the file is empty; see configs/ for examples")])
    if not isinstance(data, dict):
        raise ConfigError(
            label,
            [
                ConfigIssue(
                    "",
                    "the top level must be a mapping with a 'setup' key, "
                    f"not {type(data).__name__}",
                )
            ],
        )
    try:
        config = LabConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(label, _issues_from_validation(exc)) from None
    base_dir = source.parent if source is not None else Path.cwd()
    settings = _validate_instruments(config.setup, label, base_dir)
    task_file, csv_cases = _read_task_file(config, base_dir)
    if task_file is not None:
        raise ConfigError(label, [task_file])
    twin = _twin_file_problem(config, base_dir)
    if twin is not None:
        raise ConfigError(label, [twin])
    records = [ConfigIssue(p, m) for p, m in config.record_problems(csv_cases=csv_cases)]
    if records:
        raise ConfigError(label, records)
    loaded = LoadedConfig(config=config, instrument_settings=settings, source=source, text=text)
    state = _file_location_problem(loaded.state_file())
    if state is not None:
        raise ConfigError(label, [ConfigIssue("setup.safety.state_file", state)])
    return loaded


def _file_location_problem(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (a directory there, a file in the way of its
    folder), or None; creates nothing."""
    if path.is_dir():
        return f"{path} is a directory; give a file name"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{path} cannot be created: {parent} is a file, not a directory"
            return None
    return None


def _twin_file_problem(config: LabConfig, base_dir: Path) -> ConfigIssue | None:
    """Whether a twin method's twin (and sample file) loads: before any device is opened."""
    params = config.method.params
    if config.method.name not in ("twin_transfer", "twin_hge"):
        return None
    from labctl.twin.convert import load_surrogate

    twin = Path(params["twin"])
    path = twin if twin.is_absolute() else base_dir / twin
    try:
        load_surrogate(path)
    except Exception as exc:  # every loader error is a problem of this field
        return ConfigIssue("method.params.twin", f"{path}: {exc}")
    samples = params.get("samples")
    if samples is not None:
        from labctl.twin.sampling import read_samples

        spath = Path(samples) if Path(samples).is_absolute() else base_dir / samples
        try:
            read_samples(spath)
        except ImportError as exc:
            return ConfigIssue(
                "method.params.samples",
                f"reading {spath} needs the twin packages ({exc}); install them with "
                "`pip install -e '.[twin]'`, or give sampling_device_seconds instead",
            )
        except Exception as exc:
            return ConfigIssue("method.params.samples", f"{spath}: {exc}")
    return None


def _read_task_file(config: LabConfig, base_dir: Path) -> tuple[ConfigIssue | None, int | None]:
    """(problem, number of cases) of a CSV task's file: whether it exists and reads as a task
    (columns, rows, targets); (None, None) for other tasks."""
    from labctl.training.tasks import task_from_csv

    task = config.task
    if task is None or task.kind != "csv" or task.csv_path is None:
        return None, None
    path = task.csv_path if task.csv_path.is_absolute() else base_dir / task.csv_path
    try:
        cases = task_from_csv(
            path, input_columns=task.input_columns, target_column=task.target_column
        )
    except FileNotFoundError:
        message = f"file {path} not found; give the CSV of cases (relative to the config)"
        return ConfigIssue("task.csv_path", message), None
    except IsADirectoryError:
        return ConfigIssue("task.csv_path", f"{path} is a directory; give the CSV file"), None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        return ConfigIssue("task.csv_path", f"{path}: {exc}"), None
    return None, len(cases.inputs)


def check_frequency_plan(loaded: LoadedConfig) -> None:
    """Refuse a configuration whose homodyne tones cannot be planned at its (nominal) sample
    rate, before any device is opened (commands that measure gradients call this; a
    configuration for ``labctl measure`` alone needs no plan, and the GUI shows the plan
    itself). The engine plans again at the rate the device coerces it to.

    Raises:
        ConfigError: The plan is impossible; the message says what to relax.
    """
    from labctl.homodyne.engine import plan_from_settings
    from labctl.homodyne.plan import PlanError

    config = loaded.config
    n_tones = len(config.perturbed_electrodes())
    homodyne = config.homodyne
    if n_tones == 0 or (
        homodyne.demodulation == "hardware_lockin" and homodyne.hardware_lockin.tones != "daq"
    ):
        return  # lock-ins' own sines: their own plan, checked by that mode
    try:
        plan_from_settings(config.homodyne, config.setup.sample_rate_hz, n_tones)
    except PlanError as exc:
        label = str(loaded.source) if loaded.source is not None else "<config>"
        raise ConfigError(label, [ConfigIssue("homodyne", f"frequency plan: {exc}")]) from None


def _validate_instruments(setup: SetupConfig, label: str, base_dir: Path) -> dict[str, BaseModel]:
    """Each instrument's settings validated by its backend; every problem collected."""
    from labctl.device.registry import UnknownBackendError, get_backend

    issues: list[ConfigIssue] = []
    out: dict[str, BaseModel] = {}
    clocked = _clocked_instruments(setup)
    for name, instrument in setup.instrument_configs().items():
        prefix = setup.settings_path(name)
        try:
            spec = get_backend(instrument.backend)
        except UnknownBackendError as exc:
            where = prefix[:-1] + (("name",) if setup.backend is not None else ("backend",))
            issues.append(ConfigIssue(_format_loc(where), str(exc)))
            continue
        try:
            settings = spec.settings_model.model_validate(
                instrument.settings, context={"base_dir": base_dir}
            )
        except ValidationError as exc:
            issues.extend(_issues_from_validation(exc, prefix=prefix))
            continue
        if spec.check_setup is not None:
            issues.extend(_setup_issue(p, prefix) for p in spec.check_setup(setup, settings))
        if spec.max_sample_rate_hz is not None and name in clocked:
            ceiling = float(spec.max_sample_rate_hz(settings))
            if setup.sample_rate_hz > ceiling:
                issues.append(
                    ConfigIssue(
                        "setup.sample_rate_hz",
                        f"{setup.sample_rate_hz:g} Hz is above {ceiling:g} Hz, the fastest rate "
                        f"the {instrument.backend!r} instrument {name!r} runs at; lower "
                        "setup.sample_rate_hz (10000 Hz suits the tones of the default plan)",
                    )
                )
        out[name] = settings
    if issues:
        raise ConfigError(label, issues)
    return out


def _setup_issue(problem: str, settings_prefix: tuple[str, ...]) -> ConfigIssue:
    """A backend's setup cross-check as an issue with its full field path: the checks write
    ``backend.settings.FIELD: reason`` or ``electrodes: reason`` (relative to ``setup``)."""
    head, sep, reason = problem.partition(": ")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w.\[\]]*", head):
        return ConfigIssue("setup", problem)
    if head == "backend.settings" or head.startswith("backend.settings."):
        head = _format_loc(settings_prefix) + head[len("backend.settings") :]
        return ConfigIssue(head, reason)
    return ConfigIssue(f"setup.{head}", reason)


def _clocked_instruments(setup: SetupConfig) -> set[str]:
    """Instruments that run on the setup's sample clock (``setup.sample_rate_hz``)."""
    if setup.backend is not None:
        return {setup.backend.name}
    assert setup.roles is not None  # guaranteed by the setup's cross-checks
    return {n for n in (setup.roles.source, setup.roles.sampled_readout) if n is not None}


def _issues_from_validation(
    exc: ValidationError, prefix: tuple[str | int, ...] = ()
) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors():
        loc = prefix + tuple(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}: check the spelling (labctl schema lists the keys)"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        elif "input" in error and error["type"] not in ("model_type", "dict_type"):
            message = f"{message} (got {error['input']!r})"
        issues.append(ConfigIssue(_format_loc(loc), message))
    return issues


def _format_loc(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def json_schema() -> str:
    """The JSON Schema of :class:`LabConfig` (for editor completion)."""
    schema = LabConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "labctl configuration"
    return json.dumps(schema, indent=2)
