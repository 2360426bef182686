"""The configuration form's model: YAML data edited by field path, validated by the schema.

- :func:`path_text`, :func:`parse_path`, :func:`get_in`, :func:`set_in`: field paths as the
  schema's issues write them (``setup.electrodes[2].max_v``) and nested access by them.
- :func:`resolve_issue`: which form field shows a :class:`~labctl.config.ConfigIssue`.
- :class:`ConfigFormModel` and :class:`Validation`: the data being edited, validated by
  :func:`~labctl.config.parse_config` (the CLI's schema), then planned (:func:`plan_for`).
- :func:`schema_defaults`: the defaults the form shows as placeholders.

Qt-free: tested without a window.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.config import ConfigError, ConfigIssue, LabConfig, LoadedConfig, parse_config
from labctl.homodyne.engine import plan_from_settings
from labctl.homodyne.plan import FrequencyPlan, PlanError

PathPart = str | int
FieldPath = tuple[PathPart, ...]


def path_text(path: Sequence[PathPart]) -> str:
    """``("setup", "electrodes", 2, "max_v")`` → ``"setup.electrodes[2].max_v"`` (as issues)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def parse_path(text: str) -> FieldPath:
    """Inverse of :func:`path_text`."""
    parts: list[PathPart] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


_MISSING = object()


def get_in(data: Any, path: Sequence[PathPart], default: Any = None) -> Any:
    """The value at ``path`` inside nested dicts/lists, or ``default``."""
    node = data
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                return default
            node = node[part]
        else:
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
    return node


def set_in(data: dict[str, Any], path: Sequence[PathPart], value: Any) -> None:
    """Set ``path`` inside nested dicts (created as needed); ``None`` removes the key.

    Removing lets the schema's default apply, as a key left out of the YAML does. List
    indices must exist.
    """
    if not path:
        raise ValueError("empty field path")
    node: Any = data
    for part, nxt in itertools.pairwise(path):
        if isinstance(part, int):
            node = node[part]
            continue
        child = node.get(part)
        if not isinstance(child, dict | list):
            if value is None:
                return
            child = [] if isinstance(nxt, int) else {}
            node[part] = child
        node = child
    last = path[-1]
    if isinstance(last, int):
        node[last] = value
    elif value is None:
        node.pop(last, None)
    else:
        node[last] = value


# ---------------------------------------------------------------------------------- issues
_LEADING_PATH = re.compile(r"^([A-Za-z_][\w]*(?:(?:\.[A-Za-z_]\w*)|(?:\[\d+\]))+)\s*:")
_ELECTRODE_NAME = re.compile(r"electrode '([A-Za-z_]\w*)'")


def resolve_issue(
    issue: ConfigIssue, known: Collection[str], electrode_names: Sequence[str] = ()
) -> str | None:
    """The form field (a path in ``known``) that should show ``issue``, or None.

    Rules, first match wins: the issue's own path; a field path the message starts with
    (cross-section checks report at the root, e.g. ``"homodyne.amplitude_v: ..."``); an
    electrode the message names (``electrode 'e2': ...`` under ``setup``), at its row; a field
    under the issue's path whose name the message mentions (``band_hz`` under ``homodyne``);
    otherwise the longest known prefix of the path.
    """
    path = issue.path
    if path in known:
        return path
    match = _LEADING_PATH.match(issue.message)
    if match is not None:
        lead = match.group(1)
        found = _longest_prefix(lead, known)
        if found is not None:
            return found
    if path.startswith("setup") or path == "":
        named = _ELECTRODE_NAME.search(issue.message)
        if named is not None and named.group(1) in electrode_names:
            row = f"setup.electrodes[{list(electrode_names).index(named.group(1))}]"
            found = _longest_prefix(row, known) or next(
                (k for k in known if k.startswith(row)), None
            )
            if found is not None:
                return found
    prefix = f"{path}." if path else ""
    mentioned = [
        k
        for k in known
        if k.startswith(prefix)
        and re.search(rf"\b{re.escape(_leaf(k))}\b", issue.message) is not None
    ]
    if mentioned:
        # the most specific mention: a path named in full beats a bare field name
        mentioned.sort(key=lambda k: (k not in issue.message, -len(k)))
        return mentioned[0]
    return _longest_prefix(path, known) if path else None


def _leaf(path: str) -> str:
    parts = parse_path(path)
    for part in reversed(parts):
        if isinstance(part, str):
            return part
    return path


def _longest_prefix(path: str, known: Collection[str]) -> str | None:
    best: str | None = None
    for key in known:
        if (path == key or path.startswith(key + ".") or path.startswith(key + "[")) and (
            best is None or len(key) > len(best)
        ):
            best = key
    return best


# ---------------------------------------------------------------------------------- form model
@dataclass(frozen=True)
class Validation:
    """The outcome of validating the edited configuration.

    Attributes:
        loaded: The validated configuration (None when it has issues).
        issues: Every schema problem (empty when valid).
        plan: The frequency plan at the configured (or connected) sample rate.
        plan_error: Why no plan could be made (a valid schema can still fail to plan).
    """

    loaded: LoadedConfig | None
    issues: tuple[ConfigIssue, ...] = ()
    plan: FrequencyPlan | None = None
    plan_error: str | None = None

    @property
    def ok(self) -> bool:
        """Valid schema and a plan: a run may start."""
        return self.loaded is not None and self.plan_error is None

    @property
    def has_task(self) -> bool:
        """The configuration has a ``task`` section (something to train)."""
        return self.loaded is not None and self.loaded.config.task is not None


class ConfigFormModel:
    """The configuration being edited: YAML data plus where it came from.

    The form reads and writes values by field path; :meth:`validate` dumps the data and runs
    :func:`~labctl.config.parse_config` on it, so the GUI and the CLI apply the same schema.
    Keys the form does not show are kept as they are.
    """

    def __init__(self, data: Mapping[str, Any], source: Path | None = None) -> None:
        self._data: dict[str, Any] = copy.deepcopy(dict(data))
        self._source = source
        self._original_text: str | None = None
        self._dirty = False

    @classmethod
    def from_text(cls, text: str, source: Path | None = None) -> ConfigFormModel:
        """Parse YAML text into a model (schema problems are reported by :meth:`validate`).

        Raises:
            ConfigError: The text is not YAML or not a mapping.
        """
        label = str(source) if source is not None else "<config>"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(label, [ConfigIssue("", f"not valid YAML: {exc}")]) from None
        if not isinstance(data, dict):
            raise ConfigError(label, [ConfigIssue("", "the top level must be a mapping")])
        model = cls(data, source)
        model._original_text = text
        return model

    @property
    def data(self) -> dict[str, Any]:
        """A copy of the current data."""
        return copy.deepcopy(self._data)

    @property
    def source(self) -> Path | None:
        """The file the configuration was opened from or last saved to."""
        return self._source

    @property
    def dirty(self) -> bool:
        """Edited since it was opened or saved."""
        return self._dirty

    def get(self, path: Sequence[PathPart], default: Any = None) -> Any:
        """The value at ``path`` as written in the data (``default`` when absent)."""
        return copy.deepcopy(get_in(self._data, path, default))

    def set(self, path: Sequence[PathPart], value: Any) -> bool:
        """Set ``path`` (None removes it); returns whether anything changed."""
        if get_in(self._data, path, _MISSING) == value and value is not None:
            return False
        if value is None and get_in(self._data, path, _MISSING) is _MISSING:
            return False
        set_in(self._data, path, copy.deepcopy(value))
        self._dirty = True
        return True

    def electrode_names(self) -> list[str]:
        """Names of the electrodes in the data (in order; unnamed ones as empty strings)."""
        electrodes = get_in(self._data, ("setup", "electrodes"), [])
        if not isinstance(electrodes, list):
            return []
        return [str(e.get("name", "")) if isinstance(e, dict) else "" for e in electrodes]

    def to_yaml(self) -> str:
        """The YAML text to save (the original text while nothing was edited)."""
        if not self._dirty and self._original_text is not None:
            return self._original_text
        return yaml.safe_dump(self._data, sort_keys=False, default_flow_style=None)

    def saved_as(self, path: Path) -> None:
        """Record a save to ``path``: it becomes the source; the model is clean."""
        self._source = path
        self._original_text = self.to_yaml()
        self._dirty = False

    def validate(self, sample_rate_hz: float | None = None) -> Validation:
        """Validate the data with the schema, then plan the tones (at ``sample_rate_hz``).

        ``sample_rate_hz`` is the rate a connected device runs at; default the configured one.
        """
        try:
            loaded = parse_config(self.to_yaml(), source=self._source)
        except ConfigError as exc:
            return Validation(loaded=None, issues=tuple(exc.issues))
        try:
            plan = plan_for(loaded.config, sample_rate_hz)
        except (PlanError, ValueError) as exc:
            return Validation(loaded=loaded, plan_error=str(exc))
        return Validation(loaded=loaded, plan=plan)


# ---------------------------------------------------------------------------------- plan
def plan_for(config: LabConfig, sample_rate_hz: float | None = None) -> FrequencyPlan:
    """The frequency plan the gradient engine will use for ``config``.

    The same rules as the engine: explicit ``homodyne.frequencies_hz`` are validated, otherwise
    tones are planned in ``band_hz`` for every perturbed electrode. ``sample_rate_hz`` defaults
    to the configured rate (a device may coerce it: plan with the connected device's rate).

    Raises:
        PlanError: No plan satisfies the settings; the message says what to relax.
    """
    rate = float(sample_rate_hz if sample_rate_hz is not None else config.setup.sample_rate_hz)
    return plan_from_settings(config.homodyne, rate, len(config.perturbed_electrodes()))


# ---------------------------------------------------------------------------------- defaults
def schema_defaults() -> dict[str, Any]:
    """Default values of the form's fields, as the schema fills them (for placeholders)."""
    from labctl.config import (
        HomodyneConfig,
        LossConfig,
        MeasureConfig,
        OptimiserConfig,
        RunConfig,
        SafetyConfig,
    )

    return {
        "setup": {
            "name": "setup",
            "safety": SafetyConfig().model_dump(mode="json"),
            "amplifier": {"output_swing_v": 4.0},
        },
        "measure": MeasureConfig().model_dump(mode="json"),
        "homodyne": HomodyneConfig().model_dump(mode="json"),
        "task": {"kind": "gate", "margin_v": 0.0, "target_column": "target"},
        "loss": LossConfig().model_dump(mode="json"),
        "optimiser": OptimiserConfig().model_dump(mode="json"),
        "run": RunConfig().model_dump(mode="json"),
    }
