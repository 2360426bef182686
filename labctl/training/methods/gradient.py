"""Gradient descent on the controls with a pluggable dI/dV estimator: HGE, central FD, SPSA.

All three share everything but the measurement: per iteration the estimator measures, at one
operating point per case, the output current and dI/dV (A/V); the loss's dL/dI is chained
through it (dL/dV = Σ_c dL/dI_c · ∂I_c/∂V), the configured optimiser steps, the controls are
projected into their ranges, and stalls or output saturation restart from fresh random controls
(``run.stall_patience``, ``run.max_restarts``). HGE is the trainer labctl always had, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from labctl.device import FloatArray
from labctl.run.store import IterationRecord
from labctl.training.baselines import measure_plateaus
from labctl.training.methods.base import MethodContext, Observation
from labctl.training.methods.params import FiniteDifferenceParams, SpsaParams
from labctl.training.metrics import separation, threshold_accuracy
from labctl.training.optimisers import (
    BestTracker,
    Optimiser,
    RestartPolicy,
    StallDetector,
    generator_state,
    make_optimiser,
    project_to_box,
    set_generator_state,
    trust_region_step,
)


def descent_step(
    optimiser: Optimiser,
    controls_v: FloatArray,
    gradient: FloatArray,
    lower_v: FloatArray,
    upper_v: FloatArray,
    max_step_v: float | None = None,
) -> FloatArray:
    """The optimiser's step from ``controls_v`` along dL/dV ``gradient``, shortened to at most
    ``max_step_v`` (V, a trust region; None: no limit) and projected into ``[lower_v, upper_v]``."""
    proposed = optimiser.step(controls_v, gradient)
    if max_step_v is not None:
        proposed = trust_region_step(controls_v, proposed, max_step_v)
    return project_to_box(proposed, lower_v, upper_v)


@dataclass
class Estimate:
    """Outputs and dI/dV per case from one estimator call."""

    outputs_a: FloatArray
    gradients_a_per_v: FloatArray
    stderr_a_per_v: FloatArray
    saturated: bool
    extra: dict[str, Any] = field(default_factory=dict)
    record_a: FloatArray | None = None


class GradientEstimator(Protocol):
    """Measures the output and dI/dV at one operating point per case."""

    def bounds(self) -> tuple[FloatArray, FloatArray]:
        """DC range (V) of each control that leaves room for the estimator's perturbations."""
        ...

    def estimate(self, points_v: FloatArray) -> Estimate:
        """Measure at ``points_v``, shape ``(n_cases, n_electrodes)`` (V)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Random state etc. (JSON-ready)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s value."""
        ...


class HgeEstimator:
    """Homodyne gradient extraction: every partial from one toned record (the engine)."""

    def __init__(self, context: MethodContext) -> None:
        self._engine = context.engine

    def bounds(self) -> tuple[FloatArray, FloatArray]:
        return self._engine.control_bounds()

    def estimate(self, points_v: FloatArray) -> Estimate:
        batch = self._engine.measure(points_v)
        return Estimate(
            outputs_a=batch.dc_currents_a,
            gradients_a_per_v=batch.gradients_a_per_v,
            stderr_a_per_v=batch.stderr_a_per_v,
            saturated=batch.saturated,
            extra={"phase_method": batch.results[0].phase_method},
            record_a=batch.records[0],
        )

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """No state."""


class FiniteDifferenceEstimator:
    """Central differences: per case the centre and ``V ± h·e_k`` for every control, in one
    DC record (2N + 1 settled plateaus per case); ``∂I/∂V_k = (I₊ − I₋) / 2h``."""

    def __init__(self, context: MethodContext, params: FiniteDifferenceParams) -> None:
        self._context = context
        self._step = params.step_v
        self._window_s, self._settle_s = context.dc_timing(params.window_s, params.settle_s)
        self._rows = list(context.engine.electrode_indices)

    def bounds(self) -> tuple[FloatArray, FloatArray]:
        return self._context.control_bounds(self._step)

    def estimate(self, points_v: FloatArray) -> Estimate:
        n = len(self._rows)
        h = self._step
        plateaus = []
        for point in points_v:
            plateaus.append(point)
            for row in self._rows:
                for sign in (1.0, -1.0):
                    shifted = point.copy()
                    shifted[row] += sign * h
                    plateaus.append(shifted)
        m = measure_plateaus(
            self._context.device,
            np.array(plateaus),
            window_s=self._window_s,
            settle_s=self._settle_s,
        )
        per = 2 * n + 1
        means = m.means_a.reshape(len(points_v), per)
        sems = m.sems_a.reshape(len(points_v), per)
        gradients = (means[:, 1::2] - means[:, 2::2]) / (2 * h)
        stderr = np.hypot(sems[:, 1::2], sems[:, 2::2]) / (2 * h)
        return Estimate(
            outputs_a=means[:, 0].copy(),
            gradients_a_per_v=gradients,
            stderr_a_per_v=stderr,
            saturated=m.saturated,
            extra={"plateaus": len(plateaus)},
            record_a=m.record_a,
        )

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """No state."""


class SpsaEstimator:
    """SPSA (Spall 1992): per pair one Rademacher vector Δ shared by all cases; per case the
    centre, ``V + c_kΔ`` and ``V − c_kΔ`` in one DC record; ``∂I/∂V ≈ (I₊ − I₋)/(2c_k)·Δ``
    averaged over pairs, then chained through the loss like any gradient. ``c_k = c/(k+1)^γ``.
    """

    def __init__(self, context: MethodContext, params: SpsaParams) -> None:
        self._context = context
        self._params = params
        self._window_s, self._settle_s = context.dc_timing(params.window_s, params.settle_s)
        self._rows = list(context.engine.electrode_indices)
        self._rng = np.random.default_rng([context.seed, 0x5B5A])
        self._calls = 0

    def bounds(self) -> tuple[FloatArray, FloatArray]:
        return self._context.control_bounds(self._params.perturbation_v)

    def estimate(self, points_v: FloatArray) -> Estimate:
        p = self._params
        c = p.perturbation_v / (self._calls + 1) ** p.decay_exponent
        n = len(self._rows)
        deltas = (2 * self._rng.integers(0, 2, size=(p.n_pairs, n)) - 1).astype(np.float64)
        self._calls += 1
        plateaus = []
        for point in points_v:
            plateaus.append(point)
            for delta in deltas:
                for sign in (1.0, -1.0):
                    shifted = point.copy()
                    shifted[self._rows] += sign * c * delta
                    plateaus.append(shifted)
        m = measure_plateaus(
            self._context.device,
            np.array(plateaus),
            window_s=self._window_s,
            settle_s=self._settle_s,
        )
        per = 2 * p.n_pairs + 1
        means = m.means_a.reshape(len(points_v), per)
        differences = (means[:, 1::2] - means[:, 2::2]) / (2 * c)  # (cases, pairs)
        pair_gradients = differences[:, :, None] * deltas[None, :, :]  # (cases, pairs, n)
        gradients = pair_gradients.mean(axis=1)
        if p.n_pairs > 1:
            stderr = pair_gradients.std(axis=1, ddof=1) / math.sqrt(p.n_pairs)
        else:
            stderr = np.full_like(gradients, np.nan)
        return Estimate(
            outputs_a=means[:, 0].copy(),
            gradients_a_per_v=gradients,
            stderr_a_per_v=stderr,
            saturated=m.saturated,
            extra={"perturbation_v": c, "deltas": deltas.astype(int).tolist()},
            record_a=m.record_a,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rng": generator_state(self._rng), "calls": self._calls}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        set_generator_state(self._rng, state["rng"])
        self._calls = int(state["calls"])


class GradientDescentMethod:
    """Gradient descent with restarts around a :class:`GradientEstimator` (see module doc)."""

    def __init__(self, context: MethodContext, estimator: GradientEstimator) -> None:
        self._context = context
        self._estimator = estimator
        config = context.loaded.config
        run = config.run
        self._optimiser: Optimiser = make_optimiser(
            config.optimiser.name,
            learning_rate=config.optimiser.learning_rate,
            **config.optimiser.params,
        )
        self._lower, self._upper = estimator.bounds()
        self._policy = RestartPolicy(
            self._lower,
            self._upper,
            StallDetector(run.stall_patience, run.stall_min_improvement, mode="relative"),
            seed=run.seed + context.first_iteration,
            max_restarts=run.max_restarts,
        )
        self._controls = np.zeros(len(self._lower))
        self._restart_index = 0
        self._dloss_dx: FloatArray | None = None

    @property
    def best(self) -> BestTracker:
        return self._policy.best

    @property
    def restarts(self) -> list[tuple[int, str]]:
        return self._policy.restarts

    def start(self) -> None:
        self._controls = self._policy.initial_controls()

    def fallback_controls(self) -> FloatArray:
        return self._policy.initial_controls()

    def observe(self, input_volts: FloatArray, targets: FloatArray, cases: Any) -> Observation:
        controls = self._controls
        points = self._context.operating_points(controls, input_volts)
        estimate = self._estimator.estimate(points)
        outputs = estimate.outputs_a
        loss, dloss_dx = self._context.loss(outputs, targets)
        self._dloss_dx = dloss_dx
        accuracy = threshold_accuracy(outputs, targets, direction=1).accuracy
        sep = separation(outputs, targets)
        raw = None
        if self._context.store_raw and estimate.record_a is not None:
            raw = {"record_a": estimate.record_a}
        return Observation(
            controls_v=controls.copy(),
            outputs_a=outputs,
            gradients_a_per_v=estimate.gradients_a_per_v,
            stderr_a_per_v=estimate.stderr_a_per_v,
            loss=float(loss),
            accuracy=float(accuracy),
            separation_a=float(sep),
            saturated=estimate.saturated,
            restart_index=self._restart_index,
            extra={
                "saturated": estimate.saturated,
                "cases": [int(c) for c in cases],
                **estimate.extra,
            },
            raw=raw,
        )

    def advance(self, observation: Observation, iteration: int, stopping: bool) -> dict[str, Any]:
        controls, loss = self._controls, observation.loss
        policy = self._policy
        next_controls, next_restart = controls, self._restart_index
        if stopping:
            policy.best.update(loss, controls, iteration)
        elif observation.saturated and policy.restarts_left:
            self._context.message(f"output saturated at iteration {iteration}: restarting")
            next_controls = policy.restart(iteration + 1, "saturation")
            self._optimiser.reset()
            next_restart += 1
        else:
            fresh = policy.observe(iteration, loss, controls)
            if fresh is not None:
                self._context.message(f"stalled at iteration {iteration}: restarting")
                next_controls = fresh
                self._optimiser.reset()
                next_restart += 1
            else:
                assert self._dloss_dx is not None
                next_controls = descent_step(
                    self._optimiser,
                    controls,
                    self._dloss_dx @ observation.gradients_a_per_v,
                    self._lower,
                    self._upper,
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
            "policy": self._policy.state_dict(),
            "estimator": self._estimator.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._controls = np.asarray(state["controls_v"], dtype=np.float64)
        self._restart_index = int(state["restart_index"])
        self._optimiser.load_state_dict(state["optimiser"])
        self._policy.load_state_dict(state["policy"])
        self._estimator.load_state_dict(state["estimator"])

    def resume_from_record(self, record: IterationRecord) -> None:
        extra = dict(record.extra)
        if "next_controls_v" in extra:  # continue exactly where the last iteration led
            controls = np.asarray(extra["next_controls_v"], dtype=np.float64)
            self._restart_index = int(extra["next_restart_index"])
            self._optimiser.load_state_dict(extra["optimiser_state"])
        else:
            controls = np.asarray(record.controls_v, dtype=np.float64)
            self._restart_index = record.restart_index
        self._controls = project_to_box(controls, self._lower, self._upper)
