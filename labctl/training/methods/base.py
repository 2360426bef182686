"""What a training method sees of its run, what it returns per iteration, and its protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from labctl.config import LoadedConfig
from labctl.device import FloatArray
from labctl.device.safety import SafeDevice
from labctl.homodyne.engine import GradientEngine
from labctl.run.store import IterationRecord
from labctl.training.losses import LossFunction
from labctl.training.optimisers import BestTracker
from labctl.training.tasks import Task


@dataclass
class MethodContext:
    """Everything of the run a method may use.

    Attributes:
        device: The opened safe device (the only way to the electrodes).
        loaded: The validated configuration.
        engine: The gradient engine (its perturbed electrodes are the trained controls).
        loss: The configured loss: ``loss(outputs_a, targets) -> (loss, dloss/doutputs)``.
        operating_points: ``(controls_v, input_volts) -> points``: one operating point per
            case, shape ``(n_cases, n_electrodes)`` (V).
        first_iteration: The iteration this session starts at (0 for a fresh run).
        message: Publishes a human-readable message to the run's subscribers.
        task: The training cases (for methods that train on a model of the device first).
        input_volts: The training cases' input voltages, shape ``(n_cases, n_inputs)`` (V).
    """

    device: SafeDevice
    loaded: LoadedConfig
    engine: GradientEngine
    loss: LossFunction
    operating_points: Callable[[FloatArray, FloatArray], FloatArray]
    first_iteration: int
    message: Callable[[str], None]
    task: Task
    input_volts: FloatArray

    @property
    def seed(self) -> int:
        """The run's seed (``run.seed``)."""
        return self.loaded.config.run.seed

    @property
    def store_raw(self) -> bool:
        """Whether raw records are stored with every iteration."""
        return self.loaded.config.run.store_raw

    def dc_timing(self, window_s: float | None, settle_s: float | None) -> tuple[float, float]:
        """DC plateau window and settling (s): the given ones, else the homodyne section's."""
        homodyne = self.loaded.config.homodyne
        return (
            homodyne.window_s if window_s is None else window_s,
            homodyne.settle_s if settle_s is None else settle_s,
        )

    def control_bounds(self, margin_v: float = 0.0) -> tuple[FloatArray, FloatArray]:
        """DC range (V) of each control: the engine's (room for its tones), and ``margin_v``
        inside the electrode's range for a method that steps the controls by that much."""
        lower, upper = self.engine.control_bounds()
        if margin_v > 0:
            electrodes = self.device.electrodes
            rows = self.engine.electrode_indices
            lower = np.maximum(lower, np.array([electrodes[i].min_v for i in rows]) + margin_v)
            upper = np.minimum(upper, np.array([electrodes[i].max_v for i in rows]) - margin_v)
            if np.any(lower > upper):
                raise ValueError(
                    f"a {margin_v} V perturbation leaves no room inside the control ranges; "
                    "use a smaller step in method.params"
                )
        return lower, upper


@dataclass
class Observation:
    """One iteration's measurement at the method's present state (the iteration record's data).

    Gradient-free methods report NaN gradients of shape ``(n_cases, n_controls)``.
    """

    controls_v: FloatArray
    outputs_a: FloatArray
    gradients_a_per_v: FloatArray
    stderr_a_per_v: FloatArray
    loss: float
    accuracy: float
    separation_a: float
    saturated: bool
    restart_index: int
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, FloatArray] | None = None


class TrainingMethod(Protocol):
    """A trainer strategy: measure an iteration, then decide the next state.

    The loop calls :meth:`start` (fresh run) or :meth:`load_state_dict` (resume), then per
    iteration :meth:`observe` and :meth:`advance`; :meth:`state_dict` after each iteration is
    stored with it, so a resumed run continues exactly.
    """

    @property
    def best(self) -> BestTracker:
        """Lowest loss so far and its controls (the final evaluation measures those)."""
        ...

    @property
    def restarts(self) -> list[tuple[int, str]]:
        """(iteration, reason) per restart."""
        ...

    def start(self) -> None:
        """Draw the initial state of a fresh run."""
        ...

    def observe(self, input_volts: FloatArray, targets: FloatArray, cases: Any) -> Observation:
        """Measure one iteration on these cases (``cases``: their indices, for the record)."""
        ...

    def advance(self, observation: Observation, iteration: int, stopping: bool) -> dict[str, Any]:
        """Decide the next state after ``observation``; extra values for the record.

        ``stopping``: a stop criterion ended the run with this iteration.
        """
        ...

    def fallback_controls(self) -> FloatArray:
        """Controls (V) to evaluate when no iteration gave a finite loss."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The complete state after the last :meth:`advance` (JSON-ready)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s value."""
        ...

    def resume_from_record(self, record: IterationRecord) -> None:
        """Continue after ``record`` of a run stored without checkpoints (best effort)."""
        ...
