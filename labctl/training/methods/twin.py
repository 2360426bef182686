"""Training methods that use a digital twin of the device (``twin_transfer``, ``twin_hge``).

The usual workflow without homodyne gradient extraction: sample the chip, fit a twin, train the
controls on the twin with its exact gradients, and apply them to the chip, hoping they transfer
(``twin_transfer``). ``twin_hge`` starts in-materia HGE from the twin's solution instead of from
random controls. Both charge the device time the twin's data took to sample at the start of the
run (``method.params.samples`` or ``sampling_device_seconds``), so they compare with every other
method in device-seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from labctl.config import LoadedConfig
from labctl.device import FloatArray
from labctl.run.store import IterationRecord
from labctl.training.methods.base import MethodContext, Observation
from labctl.training.methods.gradient import GradientDescentMethod, HgeEstimator
from labctl.training.methods.params import TwinParams
from labctl.training.metrics import separation, threshold_accuracy
from labctl.training.optimisers import BestTracker, project_to_box


def twin_file(loaded: LoadedConfig, path: Path) -> Path:
    """``path`` of ``method.params`` resolved against the configuration's folder."""
    if path.is_absolute():
        return path
    base = loaded.source.parent if loaded.source is not None else Path.cwd()
    return (base / path).resolve()


def sampling_device_seconds(loaded: LoadedConfig, params: TwinParams) -> float:
    """Device time (s) the twin's data took: from the sample file, the figure, or 0."""
    if params.samples is not None:
        from labctl.twin.sampling import read_samples

        return float(read_samples(twin_file(loaded, params.samples)).device_seconds)
    return float(params.sampling_device_seconds or 0.0)


def _twin_controls(
    context: MethodContext, params: TwinParams, lower: FloatArray, upper: FloatArray
) -> tuple[FloatArray, dict[str, Any]]:
    """Controls (V) trained on the twin within ``[lower, upper]``, and a summary for records."""
    from labctl.twin.convert import load_surrogate
    from labctl.twin.transfer import train_on_twin

    loaded = context.loaded
    model = load_surrogate(twin_file(loaded, params.twin))
    electrodes = context.device.electrodes
    if model.n_electrodes != len(electrodes):
        raise ValueError(
            f"method.params.twin: the twin has {model.n_electrodes} inputs, the setup "
            f"{len(electrodes)} electrodes; a twin must model this device"
        )
    setup = loaded.setup
    inputs = [setup.electrode_index(n) for n in loaded.config.task_inputs()]
    controls = list(context.engine.electrode_indices)
    ranges = np.asarray(model.voltage_ranges_v, dtype=np.float64)
    low = np.maximum(lower, ranges[controls, 0])
    high = np.minimum(upper, ranges[controls, 1])
    if np.any(low > high):
        raise ValueError(
            "method.params.twin: the twin's voltage ranges and the controls' ranges do not "
            "overlap; the twin was fitted on other ranges"
        )
    result = train_on_twin(
        model,
        context.task,
        inputs,
        controls,
        control_ranges_v=np.stack([low, high], axis=1),
        loss=context.loss,
        max_iterations=params.twin_iterations,
        max_starts=params.twin_starts,
        operating_points=lambda c: context.operating_points(c, context.input_volts),
        seed=context.seed,
    )
    summary = {
        "twin_loss": float(result.loss),
        "twin_separation_a": float(result.separation_a),
        "twin_steps": int(result.iterations),
        "twin_starts": int(result.starts),
    }
    context.message(
        f"trained on the twin: loss {result.loss:.4g}, separation "
        f"{result.separation_a * 1e9:+.3f} nA after {result.iterations} steps"
    )
    return np.asarray(result.controls_v, dtype=np.float64), summary


class TwinTransferMethod:
    """Controls trained on the twin, applied to the device and measured once (DC, no tones).

    The run has one iteration (the method's iteration limit): the twin's controls on the
    device.
    """

    def __init__(self, context: MethodContext, params: TwinParams) -> None:
        self._context = context
        self._params = params
        self._lower, self._upper = context.control_bounds()
        self._controls = (self._lower + self._upper) / 2
        self._twin: dict[str, Any] = {}
        self._best = BestTracker()
        self.offline_device_seconds = sampling_device_seconds(context.loaded, params)

    @property
    def best(self) -> BestTracker:
        return self._best

    @property
    def restarts(self) -> list[tuple[int, str]]:
        return []

    def start(self) -> None:
        self._controls, self._twin = _twin_controls(
            self._context, self._params, self._lower, self._upper
        )

    def observe(self, input_volts: FloatArray, targets: FloatArray, cases: Any) -> Observation:
        points = self._context.operating_points(self._controls, input_volts)
        outputs, saturated = self._context.engine.measure_dc(points)
        loss, _ = self._context.loss(outputs, targets)
        n = len(self._controls)
        nan = np.full((len(outputs), n), np.nan)
        return Observation(
            controls_v=self._controls.copy(),
            outputs_a=outputs,
            gradients_a_per_v=nan,
            stderr_a_per_v=nan.copy(),
            loss=float(loss),
            accuracy=float(threshold_accuracy(outputs, targets, direction=1).accuracy),
            separation_a=float(separation(outputs, targets)),
            saturated=saturated,
            restart_index=0,
            extra={"cases": [int(c) for c in cases], **self._twin},
        )

    def advance(self, observation: Observation, iteration: int, stopping: bool) -> dict[str, Any]:
        if math.isfinite(observation.loss):
            self._best.update(observation.loss, self._controls, iteration)
        return {}

    def fallback_controls(self) -> FloatArray:
        return self._controls.copy()

    def state_dict(self) -> dict[str, Any]:
        return {
            "controls_v": [float(v) for v in self._controls],
            "twin": dict(self._twin),
            "best": self._best.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._controls = np.asarray(state["controls_v"], dtype=np.float64)
        self._twin = dict(state["twin"])
        self._best.load_state_dict(state["best"])

    def resume_from_record(self, record: IterationRecord) -> None:
        self._controls = np.asarray(record.controls_v, dtype=np.float64)
        self._best.update(record.loss, record.controls_v, record.run_iteration)


class TwinStartedHgeMethod(GradientDescentMethod):
    """In-materia HGE (restarts and all) whose first start is the twin's solution."""

    def __init__(self, context: MethodContext, params: TwinParams) -> None:
        super().__init__(context, HgeEstimator(context))
        self._params = params
        self.offline_device_seconds = sampling_device_seconds(context.loaded, params)

    def start(self) -> None:
        super().start()
        lower, upper = self._lower, self._upper
        controls, _ = _twin_controls(self._context, self._params, lower, upper)
        self._controls = project_to_box(controls, lower, upper)
