"""Screened HGE: many cheap DC looks at random control sets, then HGE descent from the best.

A random start of gradient descent on a DNPU lands in a solving basin only sometimes, and a
failing start costs its whole stall patience in homodyne iterations. A DC plateau with no tones
costs a fraction of a homodyne iteration and already tells the loss of a control set, so:

1. **Screen** (:func:`screen`): ``screen_sets`` control sets drawn uniformly inside the control
   ranges; every case of every set is one short DC plateau, all of them in one record played
   through the safe device (ramps and settling charged like any record). Each set gets the
   configured loss, accuracy and separation; the sets are ranked by loss.
2. **Descend**: HGE iterations with the configured optimiser from the best set, optionally with
   a trust region (the longest step of one iteration, ``max_step_v``).
3. **Move on early**: a start whose loss has not improved for ``stall_patience`` iterations gives
   way to the next-best screened set; when the kept ``candidates`` are used up, a fresh screen
   with new random sets follows.
4. **Stop on a safe margin**: the noise σ of one case's output mean is the median block
   standard error of the screening plateaus. It is not scaled down to the longer homodyne
   window: with 1/f noise and drift a longer mean is quieter by less than √T, so the
   screening window's σ is the conservative figure. The noise of a separation (difference of
   two case means) is √2 σ. The
   run stops as solved at the first iteration with 100 % accuracy and a separation of at least
   ``margin_noise_multiple`` times its noise (see
   :class:`~labctl.training.optimisers.StopCriteria`).

Everything random comes from generators seeded by ``run.seed``; every piece of state (candidate
queue, screening noise, generator, optimiser, stall detector, best) is in :meth:`state_dict`, so
a resumed run continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.device import FloatArray
from labctl.run.store import IterationRecord
from labctl.training.baselines import measure_plateaus
from labctl.training.losses import NANOAMPERE, LossFunction, separation_margin
from labctl.training.methods.base import MethodContext, Observation
from labctl.training.methods.gradient import descent_step
from labctl.training.methods.params import ScreenedHgeParams
from labctl.training.metrics import separation, threshold_accuracy
from labctl.training.optimisers import (
    BestTracker,
    Optimiser,
    StallDetector,
    generator_state,
    make_optimiser,
    project_to_box,
    set_generator_state,
)
from labctl.training.resume import SEPARATION_NOISE_KEY


@dataclass(frozen=True)
class Screen:
    """What one screen measured.

    Attributes:
        controls_v: The screened control sets, shape ``(n_sets, n_controls)`` (V).
        outputs_a: Output per set and case, shape ``(n_sets, n_cases)`` (A).
        losses: Configured loss per set (inf where it is undefined).
        accuracies: Threshold accuracy per set.
        separations_a: Separation per set (A).
        case_noise_a: Median standard error of one plateau's mean (A) at the screening window.
        device_seconds: Device time of the screen (s), ramps and settling included.
        saturated: The record hit the amplifier or ADC limit.
    """

    controls_v: FloatArray
    outputs_a: FloatArray
    losses: FloatArray
    accuracies: FloatArray
    separations_a: FloatArray
    case_noise_a: float
    device_seconds: float
    saturated: bool

    def ranking(self) -> list[int]:
        """Set indices from the lowest loss up (ties: lower index first)."""
        return [int(i) for i in np.argsort(self.losses, kind="stable")]


def screen(
    context: MethodContext,
    controls_v: FloatArray,
    input_volts: FloatArray,
    targets: FloatArray,
    loss: LossFunction,
    *,
    window_s: float,
    settle_s: float,
) -> Screen:
    """Measure every case of every control set (rows of ``controls_v``) as one DC plateau,
    all in one record through the safe device, and score each set with ``loss``."""
    sets = np.atleast_2d(np.asarray(controls_v, dtype=np.float64))
    n_sets, n_cases = len(sets), len(input_volts)
    # case by case, the sets in a short tour: the ramps between plateaus stay short
    tour = short_tour(sets)
    plateaus = []
    for case in range(n_cases):
        order = tour if case % 2 == 0 else tour[::-1]
        plateaus += [
            context.operating_points(sets[i], input_volts[case : case + 1])[0] for i in order
        ]
    m = measure_plateaus(context.device, np.array(plateaus), window_s=window_s, settle_s=settle_s)
    outputs = np.empty((n_sets, n_cases))
    block_sems = np.full((n_sets, n_cases), np.nan)
    for case in range(n_cases):
        order = tour if case % 2 == 0 else tour[::-1]
        rows = slice(case * n_sets, (case + 1) * n_sets)
        outputs[order, case] = m.means_a[rows]
        if m.block_sems_a is not None:
            block_sems[order, case] = m.block_sems_a[rows]
    losses = np.full(len(sets), math.inf)
    accuracies = np.zeros(len(sets))
    separations = np.full(len(sets), -math.inf)
    for i, out in enumerate(outputs):
        if not np.all(np.isfinite(out)):
            continue
        value, _ = loss(out, targets)
        losses[i] = value if math.isfinite(value) else math.inf
        accuracies[i] = threshold_accuracy(out, targets, direction=1).accuracy
        separations[i] = separation(out, targets)
    finite = block_sems[np.isfinite(block_sems)]
    noise = float(np.median(finite)) if finite.size else math.nan
    return Screen(
        sets, outputs, losses, accuracies, separations, noise, m.device_seconds, m.saturated
    )


def short_tour(points: FloatArray) -> list[int]:
    """An order visiting every row of ``points`` once, each step to the nearest unvisited row
    by the largest coordinate change (what a ramp's duration depends on), from row 0."""
    n = len(points)
    left = list(range(1, n))
    tour = [0]
    while left:
        here = points[tour[-1]]
        distances = np.max(np.abs(points[left] - here), axis=1)
        tour.append(left.pop(int(np.argmin(distances))))
    return tour


class ScreenedHgeMethod:
    """Screening, then HGE descent with early moves to the next-best set (module doc)."""

    def __init__(self, context: MethodContext, params: ScreenedHgeParams) -> None:
        self._context = context
        self._params = params
        config = context.loaded.config
        self._optimiser: Optimiser = make_optimiser(
            config.optimiser.name,
            learning_rate=config.optimiser.learning_rate,
            **config.optimiser.params,
        )
        self._engine = context.engine
        self._lower, self._upper = context.engine.control_bounds()
        self._window_s = config.homodyne.window_s
        self._screen_window_s, self._screen_settle_s = context.dc_timing(
            params.screen_window_s, params.screen_settle_s
        )
        self._stall = StallDetector(
            params.stall_patience, config.run.stall_min_improvement, mode="relative"
        )
        self._rng = np.random.default_rng([config.run.seed, 0x5C2E])
        self._best = BestTracker()
        self._restarts: list[tuple[int, str]] = []
        self._max_restarts = config.run.max_restarts
        self._queue: list[list[float]] = []
        self._screens = 0
        self._screen_device_s = 0.0
        self._case_noise_a = math.nan
        self._controls = np.zeros(len(self._lower))
        self._restart_index = 0
        self._start_iteration = context.first_iteration
        self._start_solved = False
        self._dloss_dx: FloatArray | None = None
        self.last_screen: Screen | None = None
        """The latest screen of this session (not stored: the queue it left is)."""

    # -- protocol ------------------------------------------------------------------------
    @property
    def best(self) -> BestTracker:
        return self._best

    @property
    def restarts(self) -> list[tuple[int, str]]:
        return self._restarts

    @property
    def separation_noise_a(self) -> float:
        """Noise (A) of a separation measured over the homodyne window (see module doc)."""
        return math.sqrt(2.0) * self._case_noise_a

    def _loss(self, outputs: FloatArray, targets: FloatArray) -> tuple[float, FloatArray]:
        """The configured loss, plus the weighted separation hinge at k times the noise."""
        loss, grad = self._context.loss(outputs, targets)
        p = self._params
        noise = self.separation_noise_a
        if p.margin_weight > 0 and p.margin_noise_multiple is not None and noise > 0:
            margin_na = p.margin_noise_multiple * noise / NANOAMPERE
            hinge, hinge_grad = separation_margin(outputs, targets, margin_na)
            loss, grad = loss + p.margin_weight * hinge, grad + p.margin_weight * hinge_grad
        return float(loss), grad

    def start(self) -> None:
        self._controls = self._next_start()

    def fallback_controls(self) -> FloatArray:
        return self._controls.copy()

    def observe(self, input_volts: FloatArray, targets: FloatArray, cases: Any) -> Observation:
        controls = self._controls
        points = self._context.operating_points(controls, input_volts)
        batch = self._engine.measure(points)
        outputs = batch.dc_currents_a
        loss, dloss_dx = self._loss(outputs, targets)
        self._dloss_dx = dloss_dx
        raw = None
        if self._context.store_raw:
            raw = {"record_a": batch.records[0]}
        noise = self.separation_noise_a
        return Observation(
            controls_v=controls.copy(),
            outputs_a=outputs,
            gradients_a_per_v=batch.gradients_a_per_v,
            stderr_a_per_v=batch.stderr_a_per_v,
            loss=float(loss),
            accuracy=float(threshold_accuracy(outputs, targets, direction=1).accuracy),
            separation_a=float(separation(outputs, targets)),
            saturated=batch.saturated,
            restart_index=self._restart_index,
            extra={
                "saturated": batch.saturated,
                "cases": [int(c) for c in cases],
                "phase_method": batch.results[0].phase_method,
                SEPARATION_NOISE_KEY: noise if math.isfinite(noise) else None,
                "screens": self._screens,
                "screen_device_seconds": self._screen_device_s,
            },
            raw=raw,
        )

    def advance(self, observation: Observation, iteration: int, stopping: bool) -> dict[str, Any]:
        controls, loss = self._controls, observation.loss
        self._best.update(loss, controls, iteration)
        next_controls, next_restart = controls, self._restart_index
        restarts_left = self._max_restarts is None or len(self._restarts) < self._max_restarts
        reason = None
        if stopping:
            pass
        elif observation.saturated and restarts_left:
            reason = "saturation"
        elif self._stall.update(loss) and restarts_left:
            reason = "stall"
        elif observation.accuracy >= 1.0:
            self._start_solved = True
        elif (
            self._params.start_iterations is not None
            and not self._start_solved
            and iteration + 1 - self._start_iteration >= self._params.start_iterations
            and restarts_left
        ):
            reason = "no 100 % accuracy in time"
        if reason is not None:
            self._context.message(f"{reason} at iteration {iteration}: next screened start")
            self._restarts.append((iteration + 1 if reason == "saturation" else iteration, reason))
            self._stall.reset()
            self._optimiser.reset()
            next_controls = self._next_start()
            next_restart += 1
            self._start_iteration = iteration + 1
            self._start_solved = False
        elif not stopping:
            assert self._dloss_dx is not None
            next_controls = descent_step(
                self._optimiser,
                controls,
                self._dloss_dx @ observation.gradients_a_per_v,
                self._lower,
                self._upper,
                self._params.max_step_v,
            )
        self._controls, self._restart_index = next_controls, next_restart
        return {
            "next_controls_v": [float(v) for v in next_controls],
            "next_restart_index": next_restart,
            "optimiser_state": self._optimiser.state_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "controls_v": [float(v) for v in self._controls],
            "restart_index": self._restart_index,
            "optimiser": self._optimiser.state_dict(),
            "stall": self._stall.state_dict(),
            "rng": generator_state(self._rng),
            "best": self._best.state_dict(),
            "restarts": [[i, r] for i, r in self._restarts],
            "queue": [list(c) for c in self._queue],
            "screens": self._screens,
            "screen_device_seconds": self._screen_device_s,
            "start_iteration": self._start_iteration,
            "start_solved": self._start_solved,
            "case_noise_a": None if math.isnan(self._case_noise_a) else self._case_noise_a,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._controls = np.asarray(state["controls_v"], dtype=np.float64)
        self._restart_index = int(state["restart_index"])
        self._optimiser.load_state_dict(state["optimiser"])
        self._stall.load_state_dict(state["stall"])
        set_generator_state(self._rng, state["rng"])
        self._best.load_state_dict(state["best"])
        self._restarts = [(int(i), str(r)) for i, r in state["restarts"]]
        self._queue = [[float(v) for v in c] for c in state["queue"]]
        self._screens = int(state["screens"])
        self._screen_device_s = float(state["screen_device_seconds"])
        self._start_iteration = int(state["start_iteration"])
        self._start_solved = bool(state["start_solved"])
        noise = state.get("case_noise_a")
        self._case_noise_a = math.nan if noise is None else float(noise)

    def resume_from_record(self, record: IterationRecord) -> None:
        """Runs of this method always store checkpoints; continue from the record's controls."""
        extra = dict(record.extra)
        controls = np.asarray(extra.get("next_controls_v", record.controls_v), dtype=np.float64)
        self._restart_index = int(extra.get("next_restart_index", record.restart_index))
        self._controls = project_to_box(controls, self._lower, self._upper)

    # -- screening -----------------------------------------------------------------------
    def _next_start(self) -> FloatArray:
        """The next-best screened set; a fresh screen first when none is left."""
        if not self._queue:
            self._screen()
        return np.asarray(self._queue.pop(0), dtype=np.float64)

    def _screen(self) -> None:
        p = self._params
        context = self._context
        sets = self._rng.uniform(self._lower, self._upper, size=(p.screen_sets, len(self._lower)))
        result = screen(
            context,
            sets,
            context.input_volts,
            context.task.targets,
            context.loss,
            window_s=self._screen_window_s,
            settle_s=self._screen_settle_s,
        )
        self.last_screen = result
        self._screens += 1
        self._screen_device_s += result.device_seconds
        if math.isfinite(result.case_noise_a):
            self._case_noise_a = result.case_noise_a
        order = result.ranking()[: p.candidates]
        self._queue = [[float(v) for v in sets[i]] for i in order]
        best = order[0]
        context.message(
            f"screen {self._screens}: {p.screen_sets} sets in {result.device_seconds:.2f} "
            f"device-s; best loss {result.losses[best]:.3g}, accuracy "
            f"{result.accuracies[best]:.0%}, separation {result.separations_a[best] * 1e9:.3g} nA"
        )
