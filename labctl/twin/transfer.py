"""Train controls on a twin with its exact gradients (the "train on the twin, then transfer" way).

The gradient of a surrogate's output with respect to its electrode voltages is exact (back-
propagation through the MLP: no noise, no device time), so training on a twin is fast and
deterministic. The controls found are then applied to the device; how well they transfer is
what in-materia HGE is compared against.

Units: V, A; gradients in A/V.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from labctl.device import FloatArray
from labctl.training.losses import LossFunction, get_loss
from labctl.training.metrics import separation
from labctl.training.optimisers import Optimiser, make_optimiser, project_to_box
from labctl.training.tasks import InputMapping, Task
from simulated_hw.surrogate import SurrogateModel

log = logging.getLogger(__name__)


def surrogate_gradient(
    model: SurrogateModel, voltages_v: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Current (A) and exact dI/dV (A/V) of a twin at each row of ``voltages_v`` (V).

    See :meth:`SurrogateModel.current_and_gradient_a`.
    """
    return model.current_and_gradient_a(voltages_v)


@dataclass(frozen=True, eq=False)
class TwinTrainingResult:
    """Controls trained on a twin.

    Attributes:
        controls_v: The best controls found (V), in ``control_indices`` order.
        loss: Twin-side loss at those controls.
        outputs_a: Twin outputs per input case at those controls (A).
        separation_a: Twin-side separation (A): > 0 means the twin solves the task.
        iterations: Gradient steps taken in total (all starts).
        starts: Number of starts used.
        losses: Loss per step of the start that gave the result.
    """

    controls_v: FloatArray
    loss: float
    outputs_a: FloatArray
    separation_a: float
    iterations: int
    starts: int
    losses: list[float] = field(default_factory=list)

    @property
    def solved(self) -> bool:
        """Whether the twin's outputs separate the classes."""
        return self.separation_a > 0.0


def case_voltages(
    model: SurrogateModel,
    task: Task,
    input_indices: Sequence[int],
    control_indices: Sequence[int],
    controls_v: FloatArray,
    mapping: InputMapping,
    fixed_v: ArrayLike | None = None,
) -> FloatArray:
    """Electrode voltages per input case, shape ``(n_cases, n_electrodes)`` (V).

    Inputs from ``mapping``, controls from ``controls_v``; any other electrode at ``fixed_v``
    (default 0 V).
    """
    n = model.n_electrodes
    base = np.zeros(n) if fixed_v is None else np.asarray(fixed_v, dtype=np.float64).copy()
    points = np.repeat(base[None, :], task.n_cases, axis=0)
    points[:, list(input_indices)] = mapping.to_volts(task.inputs)
    points[:, list(control_indices)] = controls_v
    return points


def train_on_twin(
    model: SurrogateModel,
    task: Task,
    input_indices: Sequence[int],
    control_indices: Sequence[int],
    *,
    input_ranges_v: ArrayLike | None = None,
    control_ranges_v: ArrayLike | None = None,
    loss: LossFunction | None = None,
    optimiser: Optimiser | None = None,
    max_iterations: int = 500,
    max_starts: int = 10,
    stall_patience: int = 50,
    initial_controls_v: ArrayLike | None = None,
    operating_points: Callable[[FloatArray], FloatArray] | None = None,
    seed: int = 0,
) -> TwinTrainingResult:
    """Train the controls of ``task`` on the twin with exact gradients.

    Each start runs Adam (or ``optimiser``) on the loss for at most ``max_iterations`` steps,
    projecting the controls into their ranges after every step, and ends early once the twin
    solves the task and the loss has stalled for ``stall_patience`` steps. A start that ends
    unsolved is followed by a fresh random one (seeded), up to ``max_starts``.

    Args:
        model: The twin.
        task: The task (e.g. :func:`labctl.training.tasks.boolean_gate`).
        input_indices: Electrodes carrying the task inputs.
        control_indices: Electrodes trained.
        input_ranges_v: ``(n_inputs, 2)`` ranges the inputs span (default: the twin's ranges).
        control_ranges_v: ``(n_controls, 2)`` bounds of the controls (default: the twin's).
        loss: Loss (default ``cor_sigmoid``, labctl's gate loss).
        optimiser: Optimiser (default Adam, step 0.05 V); reset at every start.
        max_iterations: Steps per start.
        max_starts: Random starts at most (the first uses ``initial_controls_v`` if given).
        stall_patience: Steps without 1 % loss improvement that end a solved start.
        initial_controls_v: First start's controls (V); default random in the ranges.
        operating_points: ``controls_v -> (n_cases, n_electrodes)`` voltages per input case, to
            use a trainer's own mapping (e.g. ``MethodContext.operating_points`` with its input
            voltages); default :func:`case_voltages` with the inputs mapped onto their ranges.
        seed: Seed of the random starts.

    Returns:
        The best result over the starts (solved before unsolved, then lowest loss).
    """
    ranges = np.asarray(model.voltage_ranges_v, dtype=np.float64)
    inputs = list(input_indices)
    controls = list(control_indices)
    in_ranges = ranges[inputs] if input_ranges_v is None else np.asarray(input_ranges_v, float)
    c_ranges = ranges[controls] if control_ranges_v is None else np.asarray(control_ranges_v, float)
    mapping = InputMapping.for_task(task, [tuple(r) for r in in_ranges])

    def points_of(controls_v: FloatArray) -> FloatArray:
        if operating_points is not None:
            return np.asarray(operating_points(controls_v), dtype=np.float64)
        return case_voltages(model, task, inputs, controls, controls_v, mapping)

    loss_fn = loss if loss is not None else get_loss("cor_sigmoid")
    opt = optimiser if optimiser is not None else make_optimiser("adam", learning_rate=0.05)
    rng = np.random.default_rng([seed, 20])
    best: TwinTrainingResult | None = None
    total = 0
    for start in range(max_starts):
        if start == 0 and initial_controls_v is not None:
            params = project_to_box(initial_controls_v, c_ranges[:, 0], c_ranges[:, 1])
        else:
            params = rng.uniform(c_ranges[:, 0], c_ranges[:, 1])
        opt.reset()
        history: list[float] = []
        best_loss = math.inf
        since = 0
        start_best = (math.inf, params.copy())
        for _ in range(max_iterations):
            outputs, grads = surrogate_gradient(model, points_of(params))
            value, dloss = loss_fn(outputs, task.targets)
            history.append(value)
            total += 1
            if value < start_best[0]:
                start_best = (value, params.copy())
            solved_now = separation(outputs, task.targets) > 0
            if value < best_loss * (1 - 0.01) or not math.isfinite(best_loss):
                best_loss, since = value, 0
            else:
                since += 1
            if solved_now and since >= stall_patience:
                break
            gradient = dloss @ grads[:, controls]
            params = project_to_box(opt.step(params, gradient), c_ranges[:, 0], c_ranges[:, 1])
        final = start_best[1]
        outputs, _ = surrogate_gradient(model, points_of(final))
        value, _ = loss_fn(outputs, task.targets)
        result = TwinTrainingResult(
            controls_v=final,
            loss=float(value),
            outputs_a=outputs,
            separation_a=separation(outputs, task.targets),
            iterations=total,
            starts=start + 1,
            losses=history,
        )
        if best is None or (result.solved, -result.loss) > (best.solved, -best.loss):
            best = result
        if best.solved:
            break
    assert best is not None
    return TwinTrainingResult(
        controls_v=best.controls_v,
        loss=best.loss,
        outputs_a=best.outputs_a,
        separation_a=best.separation_a,
        iterations=total,
        starts=start + 1,
        losses=best.losses,
    )
