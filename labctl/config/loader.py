"""Loading YAML into validated objects, with every problem reported by field path."""

from __future__ import annotations

import copy
import json
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
    except (OSError, UnicodeDecodeError) as exc:
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


def _depth(node: yaml.Node, limit: int) -> int:
    """Nesting depth of a YAML node tree, stopping (and returning) once past ``limit``."""
    deepest = 0
    stack: list[tuple[yaml.Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
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
            too_deep = node is not None and _depth(node, MAX_NESTING_DEPTH) > MAX_NESTING_DEPTH
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
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(label, [ConfigIssue("", f"not valid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(label, [ConfigIssue("", "the top level must be a mapping")])
    try:
        return model.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError(label, _issues_from_validation(exc)) from None


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
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
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
    return LoadedConfig(config=config, instrument_settings=settings, source=source, text=text)


def _validate_instruments(setup: SetupConfig, label: str, base_dir: Path) -> dict[str, BaseModel]:
    """Each instrument's settings validated by its backend; every problem collected."""
    from labctl.device.registry import UnknownBackendError, get_backend

    issues: list[ConfigIssue] = []
    out: dict[str, BaseModel] = {}
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
            issues.extend(ConfigIssue("setup", p) for p in spec.check_setup(setup, settings))
        out[name] = settings
    if issues:
        raise ConfigError(label, issues)
    return out


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
