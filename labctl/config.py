"""YAML configuration: typed schema, loading and error reporting.

A configuration is validated once, at the edge, into typed objects; nothing deeper re-validates
dicts. Every problem is reported with its field path (``setup.electrodes[2].max_v``) and a
one-line reason. Unknown keys are errors. A configuration never reaches a device before it has
validated: :func:`load_config` also validates the backend's own settings and cross-checks the
setup against the backend, without building or opening anything.

Sections: ``setup`` (required: backend, electrodes, amplifier, rates, safety limits),
``measure`` (``labctl measure``), ``homodyne`` (gradient measurement), ``task``,
``optimiser`` and ``run`` (training).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from labctl.device import CurrentOutput, Electrode, ElectrodeRole

HARD_VOLTAGE_CEILING_V = 10.0
"""No configuration may allow more than this on any electrode (V), whatever it says."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendConfig(_Strict):
    """Which backend drives the electrodes, and its own settings."""

    name: str = Field(description="Registry name of the backend, e.g. 'simulated'.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Backend-specific settings (validated by the backend)."
    )


class ElectrodeConfig(_Strict):
    """One voltage electrode."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Unique name.")
    role: ElectrodeRole = Field(description="'input' (data) or 'control' (trainable).")
    min_v: float = Field(description="Lowest allowed voltage (V).")
    max_v: float = Field(description="Highest allowed voltage (V).")
    rest_v: float = Field(0.0, description="Resting voltage (V); waveforms start and end here.")

    @model_validator(mode="after")
    def _range_is_sane(self) -> ElectrodeConfig:
        for label, value in (("min_v", self.min_v), ("max_v", self.max_v), ("rest_v", self.rest_v)):
            if not math.isfinite(value):
                raise ValueError(f"{label} must be a finite number of volts")
        if self.min_v >= self.max_v:
            raise ValueError(
                f"inverted range: min_v ({self.min_v} V) must be below max_v ({self.max_v} V)"
            )
        if not self.min_v <= 0.0 <= self.max_v:
            raise ValueError(
                f"range [{self.min_v}, {self.max_v}] V must contain 0 V, the safe state"
            )
        if not self.min_v <= self.rest_v <= self.max_v:
            raise ValueError(f"rest_v ({self.rest_v} V) lies outside [{self.min_v}, {self.max_v}]")
        return self

    def to_electrode(self) -> Electrode:
        """The device-level description."""
        return Electrode(self.name, self.role, self.min_v, self.max_v, self.rest_v)


class OutputConfig(_Strict):
    """One current output."""

    name: str = Field("out", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class AmplifierConfig(_Strict):
    """The transimpedance (current-to-voltage) amplifier in front of the ADC."""

    gain_v_per_a: float = Field(
        description="Transimpedance gain (V/A); negative for an inverting amplifier."
    )
    bandwidth_hz: float | None = Field(
        None, gt=0, description="First-order -3 dB bandwidth (Hz); null = much faster than tones."
    )
    output_swing_v: float = Field(4.0, gt=0, description="Output saturates at +/- this (V).")

    @field_validator("gain_v_per_a")
    @classmethod
    def _gain_nonzero(cls, value: float) -> float:
        if value == 0 or not math.isfinite(value):
            raise ValueError("gain must be a non-zero finite number of V/A (e.g. 2.5e7)")
        return value

    @property
    def saturation_a(self) -> float:
        """Output current (A) at which the amplifier saturates."""
        return self.output_swing_v / abs(self.gain_v_per_a)


class SafetyConfig(_Strict):
    """Global safety limits, applied to every sample on top of each electrode's range."""

    max_abs_v: float = Field(1.6, gt=0, le=HARD_VOLTAGE_CEILING_V, description="|V| ceiling (V).")
    slew_v_per_s: float = Field(200.0, gt=0, description="Maximum slew rate (V/s).")
    ramp_v_per_s: float | None = Field(
        None, gt=0, description="Rate of generated ramps (V/s); default the slew limit."
    )

    @model_validator(mode="after")
    def _ramp_below_slew(self) -> SafetyConfig:
        if self.ramp_v_per_s is not None and self.ramp_v_per_s > self.slew_v_per_s:
            raise ValueError("ramp_v_per_s must not exceed slew_v_per_s")
        return self


class SetupConfig(_Strict):
    """The physical (or simulated) setup."""

    name: str = Field("setup", description="Name recorded with every run.")
    backend: BackendConfig
    sample_rate_hz: float = Field(gt=0, description="AO/AI sample rate (Hz).")
    amplifier: AmplifierConfig
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    electrodes: list[ElectrodeConfig] = Field(min_length=1)
    outputs: list[OutputConfig] = Field(default_factory=lambda: [OutputConfig()], min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self) -> SetupConfig:
        names = [e.name for e in self.electrodes] + [o.name for o in self.outputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicated electrode/output names: {', '.join(duplicates)}")
        ceiling = self.safety.max_abs_v
        for e in self.electrodes:
            if max(abs(e.min_v), abs(e.max_v)) > ceiling:
                raise ValueError(
                    f"electrode {e.name!r}: range [{e.min_v}, {e.max_v}] V exceeds the safety "
                    f"ceiling safety.max_abs_v = {ceiling} V; narrow the range or raise the ceiling"
                )
        return self

    def electrode_objects(self) -> tuple[Electrode, ...]:
        """Electrodes as device-level objects, in configuration order."""
        return tuple(e.to_electrode() for e in self.electrodes)

    def output_objects(self) -> tuple[CurrentOutput, ...]:
        """Outputs as device-level objects."""
        return tuple(
            CurrentOutput(o.name, self.amplifier.gain_v_per_a, self.amplifier.saturation_a)
            for o in self.outputs
        )

    def electrode_index(self, name: str) -> int:
        """Row of electrode ``name`` in waveforms."""
        for index, electrode in enumerate(self.electrodes):
            if electrode.name == name:
                return index
        raise KeyError(name)

    def names_with_role(self, role: ElectrodeRole) -> list[str]:
        """Names of the electrodes with ``role``, in configuration order."""
        return [e.name for e in self.electrodes if e.role == role]


class SweepConfig(_Strict):
    """A voltage sweep on one electrode."""

    electrode: str
    start_v: float
    stop_v: float
    points: int = Field(ge=2, le=10_000)


class MeasureConfig(_Strict):
    """What ``labctl measure`` applies."""

    operating_point: dict[str, float] = Field(
        default_factory=dict, description="Electrode name -> DC voltage (V); others rest."
    )
    sweep: SweepConfig | None = None
    window_s: float = Field(0.05, gt=0, description="Averaging window per point (s).")
    settle_s: float = Field(0.01, ge=0, description="Wait after each ramp (s).")


class CalibrationConfig(_Strict):
    """How ``labctl calibrate`` measures the chain response, and where it is kept."""

    method: Literal["resistor"] = Field(
        "resistor", description="'resistor': a known resistor in place of the device."
    )
    electrode: str | None = Field(
        None, description="Electrode wired through the resistor (default: first control)."
    )
    resistance_ohm: float = Field(10e6, gt=0, description="Reference resistance (ohm).")
    amplitude_v: float = Field(0.02, gt=0, description="Tone amplitude during calibration (V).")
    file: Path | None = Field(
        None, description="Calibration file (default: next to the config, *.calibration.json)."
    )


class AdaptiveAmplitudeConfig(_Strict):
    """Choose each tone's amplitude for a target SNR within a curvature-bias bound."""

    target_snr: float = Field(20.0, gt=0, description="Wanted |gradient| / standard error.")
    max_bias_fraction: float = Field(
        0.02, gt=0, description="Largest allowed relative curvature bias of a gradient."
    )
    min_amplitude_v: float = Field(0.002, gt=0, description="Smallest amplitude (V).")
    max_amplitude_v: float = Field(0.05, gt=0, description="Largest amplitude (V).")


class HomodyneConfig(_Strict):
    """Homodyne gradient extraction: tones, plan, demodulation, phase handling."""

    mode: Literal["parallel", "sequential", "fd"] = Field(
        "parallel",
        description="'parallel' (all tones in one record), 'sequential' (one electrode at a "
        "time) or 'fd' (central finite differences).",
    )
    electrodes: list[str] | None = Field(
        None, description="Perturbed electrodes (default: every control)."
    )
    amplitude_v: float | dict[str, float] = Field(
        0.01, description="Tone amplitude (V), one for all or per electrode name."
    )
    frequencies_hz: list[float] | None = Field(
        None, description="Explicit tone frequencies (Hz), in electrode order; default: planned."
    )
    insist: bool = Field(False, description="Accept explicit frequencies that break a rule.")
    window_s: float = Field(0.1, gt=0, description="Measurement window per operating point (s).")
    settle_s: float = Field(0.015, ge=0, description="Settling after each transition (s).")
    band_hz: tuple[float, float] = Field(
        (150.0, 1000.0), description="Usable band (Hz): above 1/f, below the amplifier."
    )
    min_spacing_hz: float | None = Field(20.0, gt=0, description="Minimum tone spacing (Hz).")
    mains_hz: list[float] = Field([50.0, 60.0], description="Mains fundamentals to avoid (Hz).")
    mains_guard_bins: int = Field(2, ge=0, description="Distance from mains harmonics (bins).")
    max_order: Literal[2, 3] = Field(3, description="Intermodulation order kept off the tones.")
    curvature: bool = Field(False, description="Also measure the Hessian from the same record.")
    fade_periods: int = Field(2, ge=1, description="Tone fade in/out (periods of slowest tone).")
    phase: Literal["projection", "sign"] = Field(
        "projection",
        description="'projection' onto the calibrated phase, or the lab's sign-by-phase rule.",
    )
    phase_threshold_deg: float = Field(90.0, gt=0, lt=180, description="Sign-rule threshold.")
    demodulation: Literal["least_squares", "boxcar", "lockin"] = Field(
        "least_squares",
        description="Joint least-squares fit, plain boxcar averages, or a streaming software "
        "lock-in (mix, n-th order RC low-pass, averaged over each window).",
    )
    lockin_order: int = Field(4, ge=1, le=8, description="Lock-in low-pass order (6 dB/oct each).")
    lockin_time_constant_s: float = Field(
        0.01, gt=0, description="Lock-in time constant of each RC section (s)."
    )
    fd_step_v: float = Field(0.01, gt=0, description="Finite-difference half step (V).")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    adaptive: AdaptiveAmplitudeConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> HomodyneConfig:
        if self.band_hz[0] >= self.band_hz[1]:
            raise ValueError(f"band_hz {list(self.band_hz)} must be [low, high] with low < high")
        if isinstance(self.amplitude_v, float) and self.amplitude_v <= 0:
            raise ValueError("amplitude_v must be positive")
        if isinstance(self.amplitude_v, dict):
            for name, value in self.amplitude_v.items():
                if value <= 0:
                    raise ValueError(f"amplitude_v.{name} must be positive")
        return self

    def amplitude(self, electrode: str) -> float:
        """Tone amplitude (V) on ``electrode``."""
        if isinstance(self.amplitude_v, dict):
            return float(self.amplitude_v.get(electrode, 0.01))
        return float(self.amplitude_v)


class TaskConfig(_Strict):
    """What the device is trained to do."""

    kind: Literal["gate", "vc4", "sphere", "csv"] = Field(
        "gate",
        description="'gate' (Boolean gate), 'vc4' (a labeling of 4 points), 'sphere' (3-D "
        "inside/outside) or 'csv' (your own cases).",
    )
    name: str | None = Field(
        None, description="Gate name (AND, OR, NAND, NOR, XOR, XNOR) or VC labeling ('0110')."
    )
    inputs: list[str] | None = Field(
        None, description="Input electrodes in task-input order (default: every input)."
    )
    input_range: tuple[float, float] | None = Field(
        None, description="Task-unit interval mapped onto each input electrode's range."
    )
    margin_v: float = Field(0.0, ge=0, description="Keep inputs this far inside their ranges.")
    csv_path: Path | None = Field(None, description="CSV of cases (kind: csv), relative path ok.")
    input_columns: list[str] | None = Field(None, description="CSV input columns.")
    target_column: str = Field("target", description="CSV target column (0/1).")
    n_points: int = Field(200, ge=10, description="Sphere task: number of points.")
    test_fraction: float = Field(0.25, ge=0, lt=1, description="Sphere: held-out fraction.")
    seed: int = Field(0, ge=0, description="Sphere task: sampling seed.")
    batch_size: int | None = Field(
        None, ge=2, description="Cases per iteration (default: all training cases)."
    )

    @model_validator(mode="after")
    def _named(self) -> TaskConfig:
        gates = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")
        if self.kind == "gate" and (self.name or "").upper() not in gates:
            raise ValueError(f"task.name must be one of {', '.join(gates)} for kind 'gate'")
        if self.kind == "vc4":
            labels = self.name or ""
            if len(labels) != 4 or set(labels) - {"0", "1"} or len(set(labels)) < 2:
                raise ValueError("task.name must be a 4-digit labeling such as '0110' for 'vc4'")
        if self.kind == "csv" and self.csv_path is None:
            raise ValueError("task.csv_path is required for kind 'csv'")
        return self


class LossConfig(_Strict):
    """The loss and its parameters."""

    name: Literal["corrsig", "cor_sigmoid", "mse", "fisher"] = "corrsig"
    params: dict[str, float] = Field(
        default_factory=dict, description="Loss parameters (in nA where they carry a scale)."
    )


class OptimiserConfig(_Strict):
    """The optimiser that turns dL/dV into steps on the control voltages."""

    name: Literal["gd", "momentum", "adam"] = "adam"
    learning_rate: float = Field(0.05, gt=0, description="Step size (V per unit gradient).")
    params: dict[str, float | bool] = Field(
        default_factory=dict, description="Extra parameters (beta, beta1, beta2, eps, nesterov)."
    )


class RunConfig(_Strict):
    """Stopping, restarts and storage of a training run."""

    max_iterations: int = Field(300, ge=1, description="Iteration budget.")
    max_device_seconds: float | None = Field(None, gt=0, description="Device-time budget (s).")
    loss_threshold: float | None = Field(None, description="Stop when the loss is below this.")
    accuracy_hold_iterations: int | None = Field(
        5, ge=1, description="Stop after this many iterations at 100% accuracy."
    )
    stall_patience: int = Field(40, ge=1, description="Iterations without improvement = stall.")
    stall_min_improvement: float = Field(
        0.01, ge=0, description="Relative loss improvement that counts as progress."
    )
    max_restarts: int | None = Field(None, ge=0, description="Restarts allowed on stall.")
    seed: int = Field(0, ge=0, description="Seed of the initial and restart controls.")
    directory: Path = Field(Path("runs"), description="Where run directories are created.")
    name: str | None = Field(None, description="Run name (default: task name).")
    store_raw: bool = Field(False, description="Also store every raw record (large).")
    report: bool = Field(True, description="Write report.png at the end.")


class LabConfig(_Strict):
    """A whole labctl configuration file."""

    setup: SetupConfig
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    homodyne: HomodyneConfig = Field(default_factory=HomodyneConfig)
    task: TaskConfig | None = None
    loss: LossConfig = Field(default_factory=LossConfig)
    optimiser: OptimiserConfig = Field(default_factory=OptimiserConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _references(self) -> LabConfig:
        known = {e.name: e for e in self.setup.electrodes}
        for name, value in self.measure.operating_point.items():
            _check_reference(f"measure.operating_point.{name}", name, value, known)
        self._check_homodyne(known)
        self._check_task(known)
        sweep = self.measure.sweep
        if sweep is not None:
            if sweep.electrode in self.measure.operating_point:
                raise ValueError("measure.sweep.electrode is also fixed in measure.operating_point")
            for label, value in (("start_v", sweep.start_v), ("stop_v", sweep.stop_v)):
                _check_reference(f"measure.sweep.{label}", sweep.electrode, value, known)
        return self

    def _check_homodyne(self, known: dict[str, ElectrodeConfig]) -> None:
        homodyne = self.homodyne
        names = homodyne.electrodes
        if names is None:
            names = self.setup.names_with_role(ElectrodeRole.CONTROL)
        for name in names:
            if name not in known:
                raise ValueError(
                    f"homodyne.electrodes: no electrode named {name!r}; known: {', '.join(known)}"
                )
            if known[name].role != ElectrodeRole.CONTROL:
                raise ValueError(f"homodyne.electrodes: {name!r} is an input, not a control")
        if len(set(names)) != len(names):
            raise ValueError("homodyne.electrodes lists an electrode twice")
        if homodyne.frequencies_hz is not None and len(homodyne.frequencies_hz) != len(names):
            raise ValueError(
                f"homodyne.frequencies_hz has {len(homodyne.frequencies_hz)} values for "
                f"{len(names)} perturbed electrodes; give one per electrode or omit it"
            )
        if isinstance(homodyne.amplitude_v, dict):
            for name in homodyne.amplitude_v:
                if name not in names:
                    raise ValueError(f"homodyne.amplitude_v.{name}: not a perturbed electrode")
        for name in names:
            amplitude = homodyne.amplitude(name)
            span = known[name].max_v - known[name].min_v
            if 2 * amplitude >= span:
                raise ValueError(
                    f"homodyne.amplitude_v: {amplitude} V tone on {name!r} does not fit its "
                    f"{span:g} V range; use a smaller amplitude"
                )
        calibration = homodyne.calibration
        if calibration.electrode is not None and calibration.electrode not in known:
            raise ValueError(
                f"homodyne.calibration.electrode: no electrode {calibration.electrode!r}"
            )

    def _check_task(self, known: dict[str, ElectrodeConfig]) -> None:
        task = self.task
        if task is None:
            return
        inputs = self.task_inputs()
        for name in inputs:
            if name not in known:
                raise ValueError(f"task.inputs: no electrode named {name!r}")
            if known[name].role != ElectrodeRole.INPUT:
                raise ValueError(f"task.inputs: {name!r} is a control; give it role 'input'")
        needed = {"gate": 2, "vc4": 2, "sphere": 3}.get(task.kind)
        if needed is not None and len(inputs) != needed:
            raise ValueError(
                f"task {task.kind!r} needs {needed} input electrodes, {len(inputs)} configured"
            )
        overlap = set(inputs) & set(self.perturbed_electrodes())
        if overlap:
            raise ValueError(f"task inputs {sorted(overlap)} are also perturbed controls")

    def task_inputs(self) -> list[str]:
        """Input electrode names of the task, in task-input order."""
        if self.task is not None and self.task.inputs is not None:
            return list(self.task.inputs)
        return self.setup.names_with_role(ElectrodeRole.INPUT)

    def perturbed_electrodes(self) -> list[str]:
        """Names of the electrodes the engine perturbs, in configuration order."""
        if self.homodyne.electrodes is not None:
            return list(self.homodyne.electrodes)
        return self.setup.names_with_role(ElectrodeRole.CONTROL)


def _check_reference(path: str, name: str, value: float, known: dict[str, ElectrodeConfig]) -> None:
    if name not in known:
        raise ValueError(f"{path}: no electrode named {name!r}; known: {', '.join(known)}")
    electrode = known[name]
    if not electrode.min_v <= value <= electrode.max_v:
        raise ValueError(
            f"{path}: {value} V lies outside electrode {name!r} range "
            f"[{electrode.min_v}, {electrode.max_v}] V"
        )


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
    """A validated configuration, with the backend's validated settings and its source."""

    config: LabConfig
    backend_settings: BaseModel
    source: Path | None
    text: str

    @property
    def setup(self) -> SetupConfig:
        """The setup section."""
        return self.config.setup

    def resolved_dict(self) -> dict[str, Any]:
        """The configuration with defaults filled in (for run stores)."""
        data = self.config.model_dump(mode="json")
        data["setup"]["backend"]["settings"] = self.backend_settings.model_dump(mode="json")
        return data


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


def parse_config(text: str, source: Path | None = None) -> LoadedConfig:
    """Validate configuration text (``source`` anchors relative paths and error messages)."""
    label = str(source) if source is not None else "<config>"
    try:
        data = yaml.safe_load(text)
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
    settings = _validate_backend(config.setup, label, base_dir)
    return LoadedConfig(config=config, backend_settings=settings, source=source, text=text)


def _validate_backend(setup: SetupConfig, label: str, base_dir: Path) -> BaseModel:
    from labctl.registry import UnknownBackendError, get_backend

    try:
        spec = get_backend(setup.backend.name)
    except UnknownBackendError as exc:
        raise ConfigError(label, [ConfigIssue("setup.backend.name", str(exc))]) from None
    try:
        settings = spec.settings_model.model_validate(
            setup.backend.settings, context={"base_dir": base_dir}
        )
    except ValidationError as exc:
        raise ConfigError(
            label, _issues_from_validation(exc, prefix=("setup", "backend", "settings"))
        ) from None
    if spec.check_setup is not None:
        problems = spec.check_setup(setup, settings)
        if problems:
            raise ConfigError(label, [ConfigIssue("setup", p) for p in problems])
    return settings


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
