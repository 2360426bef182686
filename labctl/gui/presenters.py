"""Presenter logic of the GUI that needs no window (and is tested without one).

- :func:`run_controls`: which run and park controls are enabled in a run state, derived from
  the controller's ``allowed_requests()``;
- :class:`EtaEstimator`, :func:`status_text`: the status bar;
- :class:`BrowserRow`, :func:`browse_runs`: the run browser's table;
- :class:`ElectrodeRange` and the slider mapping: the manual panel's bounded inputs.

The configuration form model lives in :mod:`labctl.gui.form_model` and the plot buffers in
:mod:`labctl.gui.plot_data`; their public names are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from labctl.gui.form_model import (
    ConfigFormModel,
    FieldPath,
    PathPart,
    Validation,
    get_in,
    parse_path,
    path_text,
    plan_for,
    resolve_issue,
    schema_defaults,
    set_in,
)
from labctl.gui.plot_data import (
    NANO,
    CaseOutputs,
    ControlInfo,
    PlanMarkers,
    RingBuffer,
    RunHistory,
    amplitude_spectrum,
    case_outputs,
    case_targets,
    mixing_frequencies_hz,
    plan_markers,
)
from labctl.run.state import TERMINAL_STATES, RunRequest, RunState

__all__ = [
    "NANO",
    "BrowserRow",
    "CaseOutputs",
    "ConfigFormModel",
    "ControlInfo",
    "ControlStates",
    "ElectrodeRange",
    "EtaEstimator",
    "FieldPath",
    "PathPart",
    "PlanMarkers",
    "RingBuffer",
    "RunHistory",
    "Validation",
    "amplitude_spectrum",
    "browse_runs",
    "case_outputs",
    "case_targets",
    "format_duration",
    "get_in",
    "mixing_frequencies_hz",
    "parse_path",
    "path_text",
    "plan_for",
    "plan_markers",
    "resolve_issue",
    "run_controls",
    "schema_defaults",
    "set_in",
    "slider_to_volts",
    "status_text",
    "volts_to_slider",
]


# ---------------------------------------------------------------------------------- controls
@dataclass(frozen=True)
class ControlStates:
    """Which run and park controls are enabled, and what the toggles say."""

    start: bool
    pause: bool
    pause_label: str
    stop: bool
    abort: bool
    park: bool
    unpark: bool
    state_text: str


def run_controls(
    state: RunState | None,
    allowed: Iterable[RunRequest],
    *,
    config_ok: bool,
    has_task: bool,
    parked: bool,
    park_busy: bool = False,
    starting: bool = False,
) -> ControlStates:
    """The enabled controls for a run in ``state`` (None: no run yet).

    Pause/Resume, Stop and Abort follow ``allowed`` (the controller's ``allowed_requests()``);
    Start needs no live run, a valid configuration with a task, no run being prepared, and
    the electrodes not parked (a run would only park again as it opened).
    Park is always available (unless a park is under way or done); Unpark once parked.
    """
    allowed = set(allowed)
    live = starting or (state not in (None, RunState.IDLE) and state not in TERMINAL_STATES)
    if RunRequest.RESUME in allowed:
        pause, label = True, "Resume"
    else:
        pause, label = RunRequest.PAUSE in allowed, "Pause"
    text = (
        "starting"
        if starting and state in (None, RunState.IDLE)
        else (state.value if state is not None else "no run")
    )
    return ControlStates(
        start=not live and config_ok and has_task and not parked,
        pause=pause,
        pause_label=label,
        stop=RunRequest.STOP in allowed,
        abort=RunRequest.ABORT in allowed,
        park=not parked and not park_busy,
        unpark=parked and not park_busy,
        state_text=text,
    )


# ---------------------------------------------------------------------------------- status
class EtaEstimator:
    """Estimated time to the end of a run from the pace of its iterations.

    The pace is an exponential moving average of the wall time per iteration; the run ends at
    ``max_iterations`` or, when set, when the device time reaches ``max_device_seconds``,
    whichever comes first.
    """

    def __init__(
        self, max_iterations: int, max_device_seconds: float | None = None, smoothing: float = 0.2
    ) -> None:
        self._max_iterations = max_iterations
        self._max_device = max_device_seconds
        self._alpha = smoothing
        self._last_wall: float | None = None
        self._wall_per_it: float | None = None
        self._device_per_it: float | None = None
        self._last_device: float | None = None
        self.iteration: int | None = None
        self.device_seconds = 0.0

    def update(self, run_iteration: int, wall_time_s: float, device_seconds: float) -> None:
        """Take in one completed iteration."""
        if self._last_wall is not None and self._last_device is not None:
            dt = max(0.0, wall_time_s - self._last_wall)
            dd = max(0.0, device_seconds - self._last_device)
            a = self._alpha
            self._wall_per_it = (
                dt if self._wall_per_it is None else (1 - a) * self._wall_per_it + a * dt
            )
            self._device_per_it = (
                dd if self._device_per_it is None else (1 - a) * self._device_per_it + a * dd
            )
        self._last_wall = wall_time_s
        self._last_device = device_seconds
        self.iteration = run_iteration
        self.device_seconds = device_seconds

    @property
    def eta_s(self) -> float | None:
        """Seconds left (None until two iterations were seen)."""
        if self._wall_per_it is None or self.iteration is None:
            return None
        left = max(0, self._max_iterations - (self.iteration + 1))
        if self._max_device is not None and self._device_per_it:
            by_device = max(0.0, self._max_device - self.device_seconds) / self._device_per_it
            left = min(left, math.ceil(by_device))
        return left * self._wall_per_it


def format_duration(seconds: float | None) -> str:
    """``75`` → ``"1:15"``; ``3700`` → ``"1:01:40"``; None → ``"–"``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def status_text(
    state: RunState | None,
    iteration: int | None,
    max_iterations: int | None,
    device_seconds: float | None,
    eta_s: float | None,
) -> str:
    """The status bar line: state, iteration of budget, device time and ETA."""
    parts = [f"run: {state.value if state is not None else 'none'}"]
    if iteration is not None:
        budget = f"/{max_iterations}" if max_iterations else ""
        parts.append(f"iteration {iteration + 1}{budget}")
    if device_seconds is not None:
        parts.append(f"device time {device_seconds:.1f} s")
    if state is not None and state not in TERMINAL_STATES:
        parts.append(f"ETA {format_duration(eta_s)}")
    return "   ".join(parts)


# ---------------------------------------------------------------------------------- browser
@dataclass(frozen=True)
class BrowserRow:
    """One run in the run browser.

    Attributes:
        name, path, status, iterations, best_loss, start_time: As in ``labctl runs``.
        task: ``"gate XOR"``, ``"vc4 0110"`` …, from the stored configuration.
        solved: From the final summary (None when unknown).
        final_accuracy: From the final summary (None when unknown).
    """

    name: str
    path: Path
    status: str
    iterations: int
    best_loss: float | None
    start_time_text: str
    start_timestamp: float
    task: str
    solved: bool | None
    final_accuracy: float | None

    @property
    def result(self) -> str:
        """What the run achieved, in words."""
        if self.solved:
            return "solved"
        if self.final_accuracy is not None and math.isfinite(self.final_accuracy):
            return f"{self.final_accuracy:.0%}"
        return "–"

    @property
    def result_key(self) -> float:
        """Sort key of :attr:`result` (solved highest, unknown lowest)."""
        if self.solved:
            return 2.0
        if self.final_accuracy is not None and math.isfinite(self.final_accuracy):
            return float(self.final_accuracy)
        return -1.0


def browse_runs(directory: Path) -> list[BrowserRow]:
    """The runs under ``directory`` with their task and result (reads every run's store)."""
    from labctl.run.store import RunStore, list_runs

    rows: list[BrowserRow] = []
    for summary in list_runs(directory):
        task, solved, accuracy = "–", None, None
        try:
            with RunStore.open(summary.path, read_only=True) as store:
                config = yaml.safe_load(store.config_text()) or {}
                final = store.summary()
        except Exception:  # an unreadable run is still listed
            config, final = {}, {}
        task_section = config.get("task") if isinstance(config, dict) else None
        if isinstance(task_section, dict):
            task = " ".join(
                str(task_section[k]) for k in ("kind", "name") if task_section.get(k) is not None
            )
        if isinstance(final, dict):
            solved = final.get("solved") if isinstance(final.get("solved"), bool) else None
            value = final.get("final_accuracy")
            accuracy = float(value) if isinstance(value, int | float) else None
        start = summary.start_time
        rows.append(
            BrowserRow(
                name=summary.name,
                path=summary.path,
                status=summary.status,
                iterations=summary.iterations,
                best_loss=summary.best_loss,
                start_time_text=start.strftime("%Y-%m-%d %H:%M:%S") if start else "–",
                start_timestamp=start.timestamp() if start else 0.0,
                task=task,
                solved=solved,
                final_accuracy=accuracy,
            )
        )
    return rows


# ---------------------------------------------------------------------------------- manual
@dataclass(frozen=True)
class ElectrodeRange:
    """An electrode's name and range (V), for the manual panel's bounded inputs."""

    name: str
    min_v: float
    max_v: float
    rest_v: float = 0.0
    role: str = "control"

    def clamp(self, value_v: float) -> float:
        """``value_v`` clipped into the range."""
        return float(min(self.max_v, max(self.min_v, value_v)))


def volts_to_slider(value_v: float, resolution_v: float = 1e-3) -> int:
    """Slider position (integer steps of ``resolution_v``) for a voltage."""
    return round(value_v / resolution_v)


def slider_to_volts(position: int, resolution_v: float = 1e-3) -> float:
    """Voltage for a slider position (inverse of :func:`volts_to_slider`)."""
    return position * resolution_v
