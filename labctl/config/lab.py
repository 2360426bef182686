"""The whole configuration file: every section and the checks across sections."""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from labctl.config.homodyne import HomodyneConfig, hardware_lockin_problems
from labctl.config.setup import ElectrodeConfig, MeasureConfig, SetupConfig, _Strict
from labctl.config.training import (
    LossConfig,
    MethodConfig,
    OptimiserConfig,
    RunConfig,
    TaskConfig,
)
from labctl.device import ElectrodeRole

MIN_WINDOW_SAMPLES = 10
"""A measurement window (``measure.window_s``, ``homodyne.window_s``) needs this many samples."""


class LabConfig(_Strict):
    """A whole labctl configuration file."""

    setup: SetupConfig
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    homodyne: HomodyneConfig = Field(default_factory=HomodyneConfig)
    task: TaskConfig | None = None
    loss: LossConfig = Field(default_factory=LossConfig)
    optimiser: OptimiserConfig = Field(default_factory=OptimiserConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)

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

    def record_problems(self, csv_cases: int | None = None) -> list[tuple[str, str]]:
        """(field, message) for each window too short to sample and each record beyond
        ``setup.record_budget_mib``; empty when every record fits. Checked by the loader once
        the sample rate is known to be one the instruments can run.

        Record lengths are lower bounds (windows and settling only; ramps and fades add a
        little), so nothing a command could run is refused wrongly. ``csv_cases``: the number
        of cases in a CSV task's file (read by the loader); without it, at least one.
        """
        problems: list[tuple[str, str]] = []
        rate = self.setup.sample_rate_hz
        for field, window_s in (
            ("measure.window_s", self.measure.window_s),
            ("homodyne.window_s", self.homodyne.window_s),
        ):
            if window_s * rate < MIN_WINDOW_SAMPLES:
                problems.append(
                    (
                        field,
                        f"{window_s:g} s at setup.sample_rate_hz = {rate:g} Hz is "
                        f"{window_s * rate:.3g} samples; a window needs at least "
                        f"{MIN_WINDOW_SAMPLES}: lengthen it to at least "
                        f"{MIN_WINDOW_SAMPLES / rate:.3g} s",
                    )
                )
        reported: set[str] = set()
        records = sorted(self._records(csv_cases), key=lambda r: -r[2])
        for what, field, cases, window_s, settle_s in records:
            if field in reported:
                continue
            samples = cases * (window_s + settle_s) * rate
            size = self.setup.record_bytes(samples)
            budget = self.setup.record_budget_mib * 2.0**20
            if size > budget:
                reported.add(field)
                channels = len(self.setup.electrodes) + len(self.setup.outputs)
                problems.append(
                    (
                        field,
                        f"{what} of {cases} window(s) x ({window_s:g} s + {settle_s:g} s "
                        f"settling) at {rate:g} Hz is at least {samples:.3g} samples x {channels} "
                        f"channels ({len(self.setup.electrodes)} electrodes + "
                        f"{len(self.setup.outputs)} output(s)) x 8 bytes = {_bytes(size)}, above "
                        f"the memory budget setup.record_budget_mib = "
                        f"{self.setup.record_budget_mib:g} MiB; shorten {field} (or lower "
                        "setup.sample_rate_hz; raise setup.record_budget_mib only if this computer "
                        "has several times that memory free)",
                    )
                )
        return problems

    def _records(self, csv_cases: int | None) -> list[tuple[str, str, int, float, float]]:
        """(what, field to change, windows, window_s, settle_s) of the longest record of each
        command this configuration can run."""
        measure, homodyne = self.measure, self.homodyne
        sweep_points = measure.sweep.points if measure.sweep is not None else 1
        plateaus = 1 + 2 * len(self.perturbed_electrodes()) if homodyne.mode == "fd" else 1
        records = [
            (
                "a `labctl measure` record",
                "measure.window_s",
                sweep_points,
                measure.window_s,
                measure.settle_s,
            ),
            (
                "a `labctl gradient` record",
                "homodyne.window_s",
                plateaus,
                homodyne.window_s,
                homodyne.settle_s,
            ),
        ]
        cases = self._cases_per_iteration(csv_cases)
        if cases is not None:
            records.append(
                (
                    "a training record",
                    "homodyne.window_s",
                    cases * plateaus,
                    homodyne.window_s,
                    homodyne.settle_s,
                )
            )
        return records

    def _cases_per_iteration(self, csv_cases: int | None) -> int | None:
        """Input cases measured per training iteration (a lower bound; None: no task)."""
        task = self.task
        if task is None:
            return None
        if task.kind == "sphere":
            total = task.n_points - math.floor(task.n_points * task.test_fraction)
        elif task.kind == "csv":
            total = csv_cases or 1
        else:
            total = 4
        return min(total, task.batch_size) if task.batch_size is not None else total

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
        if homodyne.demodulation == "hardware_lockin":
            roles = self.setup.roles
            instruments = self.setup.instruments or {}
            source = instruments.get(roles.source) if roles is not None else None
            problems = hardware_lockin_problems(
                list(names),
                roles,
                homodyne.hardware_lockin,
                source.backend if source is not None else None,
            )
            if problems:
                raise ValueError("homodyne.demodulation 'hardware_lockin': " + "; ".join(problems))
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
        for name, (low_v, high_v) in (task.input_windows_v or {}).items():
            where = f"task.input_windows_v.{name}"
            if name not in inputs:
                raise ValueError(f"{where}: not a task input; task inputs: {', '.join(inputs)}")
            electrode = known[name]
            if not (math.isfinite(low_v) and math.isfinite(high_v) and low_v < high_v):
                raise ValueError(f"{where}: window [{low_v}, {high_v}] V needs low < high")
            if low_v < electrode.min_v or high_v > electrode.max_v:
                raise ValueError(
                    f"{where}: window [{low_v}, {high_v}] V lies outside the electrode's range "
                    f"[{electrode.min_v}, {electrode.max_v}] V"
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


def _bytes(size: float) -> str:
    """``size`` bytes in words (binary units)."""
    for unit, scale in (("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20), ("kiB", 2.0**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def _check_reference(path: str, name: str, value: float, known: dict[str, ElectrodeConfig]) -> None:
    if name not in known:
        raise ValueError(f"{path}: no electrode named {name!r}; known: {', '.join(known)}")
    electrode = known[name]
    if not electrode.min_v <= value <= electrode.max_v:
        raise ValueError(
            f"{path}: {value} V lies outside electrode {name!r} range "
            f"[{electrode.min_v}, {electrode.max_v}] V"
        )
