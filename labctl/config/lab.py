"""The whole configuration file: every section and the checks across sections."""

from __future__ import annotations

from pydantic import Field, model_validator

from labctl.config.homodyne import HomodyneConfig
from labctl.config.setup import ElectrodeConfig, MeasureConfig, SetupConfig, _Strict
from labctl.config.training import LossConfig, OptimiserConfig, RunConfig, TaskConfig
from labctl.device import ElectrodeRole


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
