"""Parameter updates, box projection, stall detection, stopping rules and random restarts.

Parameters are the control voltages (V); gradients are dL/dV (loss units per V). Optimisers keep
their own state (moments) and are reset on a restart. ``project_to_box`` keeps controls inside their
ranges; callers pass ranges already shrunk by the tone amplitudes so that DC + tones stay inside.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labctl.rng import generator_state, set_generator_state

FloatArray = NDArray[np.float64]

logger = logging.getLogger(__name__)


class Optimiser(Protocol):
    """A first-order optimiser: returns updated parameters, keeping any state between steps."""

    def step(self, params: FloatArray, grad: FloatArray) -> FloatArray:
        """New parameters after one step against ``grad`` (``params`` is not modified)."""
        ...

    def reset(self) -> None:
        """Forget all state (moments, step count)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Internal state as JSON-ready values (stored with every iteration)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state :meth:`state_dict` returned."""
        ...


def _check_step(params: ArrayLike, grad: ArrayLike) -> tuple[FloatArray, FloatArray]:
    p = np.asarray(params, dtype=np.float64)
    g = np.asarray(grad, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"params and grad must have the same shape, got {p.shape} and {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("gradient contains NaN or infinite values; refusing to step")
    return p, g


def _check_lr(learning_rate: float) -> float:
    if not (math.isfinite(learning_rate) and learning_rate > 0.0):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
    return float(learning_rate)


class _StatefulShape:
    """Remembers the parameter shape so a changed shape is reported rather than broadcast."""

    _shape: tuple[int, ...] | None

    def _check_shape(self, p: FloatArray) -> bool:
        """True if state exists for this shape; raises if the shape changed."""
        if self._shape is None:
            self._shape = p.shape
            return False
        if self._shape != p.shape:
            raise ValueError(
                f"parameter shape changed from {self._shape} to {p.shape}; call reset() first"
            )
        return True


class GradientDescent:
    """Plain gradient descent ``p ← p − η·g`` (the lab's ``basic_GD``)."""

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _check_lr(learning_rate)

    def step(self, params: FloatArray, grad: FloatArray) -> FloatArray:
        """``params − learning_rate·grad``."""
        p, g = _check_step(params, grad)
        return p - self.learning_rate * g

    def reset(self) -> None:
        """Nothing to forget."""

    def state_dict(self) -> dict[str, Any]:
        """No state (JSON-ready)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore."""


class Momentum(_StatefulShape):
    """Heavy-ball momentum: ``v ← β·v + g``; ``p ← p − η·v`` (Nesterov: ``p ← p − η·(g + β·v)``)."""

    def __init__(self, learning_rate: float, beta: float = 0.9, nesterov: bool = False) -> None:
        self.learning_rate = _check_lr(learning_rate)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        self.beta = float(beta)
        self.nesterov = bool(nesterov)
        self._shape = None
        self._velocity: FloatArray | None = None

    def step(self, params: FloatArray, grad: FloatArray) -> FloatArray:
        """One momentum step."""
        p, g = _check_step(params, grad)
        if self._check_shape(p) and self._velocity is not None:
            self._velocity = self.beta * self._velocity + g
        else:
            self._velocity = g.copy()
        direction = g + self.beta * self._velocity if self.nesterov else self._velocity
        return p - self.learning_rate * direction

    def reset(self) -> None:
        """Zero the velocity."""
        self._shape = None
        self._velocity = None

    def state_dict(self) -> dict[str, Any]:
        """The velocity (JSON-ready), to continue exactly after a resume."""
        return {"velocity": _as_list(self._velocity)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._velocity = _as_array(state.get("velocity"))
        self._shape = None if self._velocity is None else self._velocity.shape


class Adam(_StatefulShape):
    """Adam (Kingma & Ba) with bias correction.

    ``m ← β₁m + (1−β₁)g``, ``v ← β₂v + (1−β₂)g²``, ``p ← p − η·m̂/(√v̂ + ε)`` with
    ``m̂ = m/(1−β₁ᵗ)``, ``v̂ = v/(1−β₂ᵗ)``. The first step is ``η·g/(|g| + ε) ≈ η·sign(g)``: each
    control moves by about η volts regardless of the gradient's scale.
    """

    def __init__(
        self,
        learning_rate: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        self.learning_rate = _check_lr(learning_rate)
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"beta1 and beta2 must lie in [0, 1), got {beta1}, {beta2}")
        if eps <= 0.0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self._shape = None
        self._m: FloatArray | None = None
        self._v: FloatArray | None = None
        self._t = 0

    def step(self, params: FloatArray, grad: FloatArray) -> FloatArray:
        """One Adam step."""
        p, g = _check_step(params, grad)
        if not self._check_shape(p) or self._m is None or self._v is None:
            self._m = np.zeros_like(p)
            self._v = np.zeros_like(p)
            self._t = 0
        self._t += 1
        self._m = self.beta1 * self._m + (1.0 - self.beta1) * g
        self._v = self.beta2 * self._v + (1.0 - self.beta2) * g * g
        m_hat = self._m / (1.0 - self.beta1**self._t)
        v_hat = self._v / (1.0 - self.beta2**self._t)
        return p - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)

    def reset(self) -> None:
        """Zero the moments and the step count."""
        self._shape = None
        self._m = None
        self._v = None
        self._t = 0

    def state_dict(self) -> dict[str, Any]:
        """Moments and step count (JSON-ready), to continue exactly after a resume."""
        return {"m": _as_list(self._m), "v": _as_list(self._v), "t": self._t}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._m = _as_array(state.get("m"))
        self._v = _as_array(state.get("v"))
        self._t = int(state.get("t", 0))
        self._shape = None if self._m is None else self._m.shape


def _as_list(array: FloatArray | None) -> list[float] | None:
    return None if array is None else [float(x) for x in array]


def _as_array(values: Any) -> FloatArray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


# Constructors taking keyword parameters that make_optimiser checks against their signatures.
_OPTIMISERS: Mapping[str, Callable[..., Optimiser]] = MappingProxyType(
    {"gd": GradientDescent, "momentum": Momentum, "adam": Adam}
)
OPTIMISER_NAMES: tuple[str, ...] = tuple(_OPTIMISERS)
"""Names accepted by :func:`make_optimiser`."""


def make_optimiser(name: str, **params: float | bool) -> Optimiser:
    """Build an optimiser by name (``"gd"``, ``"momentum"``, ``"adam"``) with keyword parameters.

    Raises:
        ValueError: For an unknown name or parameter (the message lists the valid ones) or an
            invalid value.
    """
    key = name.strip().lower()
    if key not in _OPTIMISERS:
        raise ValueError(f"unknown optimiser {name!r}; choose one of {list(OPTIMISER_NAMES)}")
    cls = _OPTIMISERS[key]
    accepted = [a for a in inspect.signature(cls).parameters]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"optimiser {key!r} has no parameter(s) {unknown}; it takes {accepted}")
    if "learning_rate" not in params:
        raise ValueError(f"optimiser {key!r} needs a learning_rate")
    return cls(**params)


def trust_region_step(
    current_v: FloatArray, proposed_v: FloatArray, max_step_v: float
) -> FloatArray:
    """``proposed_v`` pulled back along the step so that ``|step| ≤ max_step_v`` (V)."""
    step = np.asarray(proposed_v, dtype=np.float64) - current_v
    norm = float(np.linalg.norm(step))
    if norm <= max_step_v or norm == 0.0:
        return np.asarray(proposed_v, dtype=np.float64)
    return current_v + step * (max_step_v / norm)


def project_to_box(params: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> FloatArray:
    """Clip ``params`` element-wise into ``[lower, upper]`` (V); returns a new array.

    Raises:
        ValueError: If a lower bound exceeds its upper bound or the shapes do not broadcast.
    """
    p = np.asarray(params, dtype=np.float64)
    lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), p.shape)
    hi = np.broadcast_to(np.asarray(upper, dtype=np.float64), p.shape)
    if np.any(lo > hi):
        raise ValueError(
            f"lower bound above upper bound: lower={lo.tolist()}, upper={hi.tolist()} (were the "
            "ranges shrunk by more than their width?)"
        )
    return np.clip(p, lo, hi)


class StallDetector:
    """Detects that the loss has stopped improving.

    An update *improves* if ``loss < best − min_improvement`` (``mode="absolute"``, loss units)
    or ``loss < best − min_improvement·|best|`` (``mode="relative"``), where ``best`` is the
    lowest loss seen since the last reset. :meth:`update` returns True once ``patience``
    consecutive updates have not improved, and keeps returning True until an update improves or
    :meth:`reset` is called.
    """

    def __init__(
        self,
        patience: int,
        min_improvement: float = 0.0,
        mode: Literal["absolute", "relative"] = "absolute",
    ) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if min_improvement < 0.0:
            raise ValueError(f"min_improvement must be ≥ 0, got {min_improvement}")
        if mode not in ("absolute", "relative"):
            raise ValueError(f"mode must be 'absolute' or 'relative', got {mode!r}")
        self.patience = int(patience)
        self.min_improvement = float(min_improvement)
        self.mode = mode
        self.best = math.inf
        self.since_improvement = 0

    def update(self, loss: float) -> bool:
        """Record ``loss``; True if the last ``patience`` updates brought no improvement."""
        if math.isinf(self.best):
            improved = loss < self.best
        else:
            step = self.min_improvement * (abs(self.best) if self.mode == "relative" else 1.0)
            improved = loss < self.best - step
        if improved:
            self.best = float(loss)
            self.since_improvement = 0
        else:
            self.since_improvement += 1
        return self.since_improvement >= self.patience

    def reset(self) -> None:
        """Forget the best loss and the count."""
        self.best = math.inf
        self.since_improvement = 0

    def state_dict(self) -> dict[str, Any]:
        """Best loss (None while none) and count, JSON-ready, to continue after a resume."""
        return {
            "best": None if math.isinf(self.best) else self.best,
            "since_improvement": self.since_improvement,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        best = state.get("best")
        self.best = math.inf if best is None else float(best)
        self.since_improvement = int(state["since_improvement"])


class StopReason(StrEnum):
    """Why a training run stopped."""

    LOSS_THRESHOLD = "loss_threshold"
    ACCURACY_HOLD = "accuracy_hold"
    MAX_DEVICE_SECONDS = "max_device_seconds"
    MAX_ITERATIONS = "max_iterations"
    SOLVED_WITH_MARGIN = "solved_with_margin"


@dataclass
class StopCriteria:
    """When to stop training. Call :meth:`check` exactly once per completed iteration.

    Attributes:
        max_iterations: Stop after this many iterations (≥ 1).
        loss_threshold: Stop when the loss falls below this value (the lab's ``stop_threshold``,
            e.g. 0.1 for ``cor_sigmoid``). ``None`` disables it.
        accuracy_hold_iterations: Stop when the accuracy has been 1.0 for this many consecutive
            iterations. ``None`` disables it.
        max_device_seconds: Stop when the device time used (s) reaches this. ``None`` disables it.
        separation_noise_multiple: Stop when the accuracy is 1.0 and the separation is at least
            this many times its noise (both passed to :meth:`check`). ``None`` disables it.

    Reasons are checked in the order: loss threshold, solved with margin, accuracy hold, device
    time, iterations.
    """

    max_iterations: int
    loss_threshold: float | None = None
    accuracy_hold_iterations: int | None = None
    max_device_seconds: float | None = None
    separation_noise_multiple: float | None = None
    _perfect_streak: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {self.max_iterations}")
        if self.accuracy_hold_iterations is not None and self.accuracy_hold_iterations < 1:
            raise ValueError(
                f"accuracy_hold_iterations must be at least 1 or None, got "
                f"{self.accuracy_hold_iterations}"
            )
        if self.separation_noise_multiple is not None and self.separation_noise_multiple <= 0.0:
            raise ValueError(
                f"separation_noise_multiple must be positive or None, got "
                f"{self.separation_noise_multiple}"
            )
        if self.max_device_seconds is not None and self.max_device_seconds <= 0.0:
            raise ValueError(
                f"max_device_seconds must be positive or None, got {self.max_device_seconds}"
            )

    def check(
        self,
        iteration: int,
        loss: float,
        accuracy: float | None,
        device_seconds: float,
        separation_a: float | None = None,
        separation_noise_a: float | None = None,
    ) -> StopReason | None:
        """The reason to stop after this iteration, or None to continue.

        Args:
            iteration: Number of iterations completed so far (1 after the first).
            loss: Loss of this iteration.
            accuracy: Accuracy of this iteration in [0, 1], or None if not measured (breaks an
                accuracy streak).
            device_seconds: Total device time used so far (s).
            separation_a: Separation of this iteration (A), for the margin rule.
            separation_noise_a: Noise of that separation (A); None: the margin rule is off.
        """
        if accuracy is not None and accuracy >= 1.0:
            self._perfect_streak += 1
        else:
            self._perfect_streak = 0
        if self.loss_threshold is not None and loss < self.loss_threshold:
            return StopReason.LOSS_THRESHOLD
        if (
            self.separation_noise_multiple is not None
            and accuracy is not None
            and accuracy >= 1.0
            and separation_a is not None
            and separation_noise_a is not None
            and math.isfinite(separation_noise_a)
            and separation_noise_a > 0
            and separation_a >= self.separation_noise_multiple * separation_noise_a
        ):
            return StopReason.SOLVED_WITH_MARGIN
        if (
            self.accuracy_hold_iterations is not None
            and self._perfect_streak >= self.accuracy_hold_iterations
        ):
            return StopReason.ACCURACY_HOLD
        if self.max_device_seconds is not None and device_seconds >= self.max_device_seconds:
            return StopReason.MAX_DEVICE_SECONDS
        if iteration >= self.max_iterations:
            return StopReason.MAX_ITERATIONS
        return None

    def reset(self) -> None:
        """Forget the accuracy streak."""
        self._perfect_streak = 0


class BestTracker:
    """Keeps the lowest loss seen, the controls (V) that gave it and the iteration."""

    def __init__(self) -> None:
        self.best_loss = math.inf
        self.best_controls: FloatArray | None = None
        self.best_iteration: int | None = None

    def update(self, loss: float, controls: ArrayLike, iteration: int) -> bool:
        """Record a result; True if it is a new best (strictly lower loss). Controls are copied."""
        if not math.isfinite(loss):
            return False
        if loss < self.best_loss:
            self.best_loss = float(loss)
            self.best_controls = np.array(controls, dtype=np.float64, copy=True)
            self.best_iteration = int(iteration)
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """The best so far (JSON-ready; None entries before any finite loss)."""
        return {
            "best_loss": None if math.isinf(self.best_loss) else self.best_loss,
            "best_controls_v": _as_list(self.best_controls),
            "best_iteration": self.best_iteration,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        loss = state.get("best_loss")
        self.best_loss = math.inf if loss is None else float(loss)
        self.best_controls = _as_array(state.get("best_controls_v"))
        iteration = state.get("best_iteration")
        self.best_iteration = None if iteration is None else int(iteration)


def sample_controls(rng: np.random.Generator, lower: ArrayLike, upper: ArrayLike) -> FloatArray:
    """Controls drawn uniformly in ``[lower, upper]`` (V) element-wise with ``rng``.

    Raises:
        ValueError: If a lower bound exceeds its upper bound.
    """
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    if lo.shape != hi.shape or np.any(lo > hi):
        raise ValueError(f"need lower ≤ upper of equal shape, got {lo.tolist()} and {hi.tolist()}")
    return rng.uniform(lo, hi)


class RestartPolicy:
    """Random initialisation, restart on stall, and the best result across restarts.

    Controls are drawn uniformly inside ``[lower, upper]`` (V; pass ranges shrunk by the tone
    amplitudes) with a Generator seeded by ``seed``. Feed every iteration to :meth:`observe`: it
    updates :attr:`best` and :attr:`stall`, and when the stall detector fires (and restarts
    remain) returns fresh controls; the caller must then reset its optimiser. :meth:`restart`
    forces a restart for another reason (e.g. output clipping); every restart is counted in
    :attr:`restarts` with its reason so none go unreported.
    """

    def __init__(
        self,
        lower: ArrayLike,
        upper: ArrayLike,
        stall: StallDetector,
        seed: int,
        max_restarts: int | None = None,
    ) -> None:
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        if self.lower.shape != self.upper.shape or np.any(self.lower > self.upper):
            raise ValueError(
                f"need lower ≤ upper of equal shape, got {self.lower.tolist()} and "
                f"{self.upper.tolist()}"
            )
        if max_restarts is not None and max_restarts < 0:
            raise ValueError(f"max_restarts must be ≥ 0 or None, got {max_restarts}")
        self.stall = stall
        self.max_restarts = max_restarts
        self.best = BestTracker()
        self.restarts: list[tuple[int, str]] = []
        self._rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        """Generator, stall detector, restarts and best (JSON-ready), for an exact resume."""
        return {
            "rng": generator_state(self._rng),
            "stall": self.stall.state_dict(),
            "restarts": [[i, r] for i, r in self.restarts],
            "best": self.best.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (``max_restarts`` keeps counting)."""
        set_generator_state(self._rng, state["rng"])
        self.stall.load_state_dict(state["stall"])
        self.restarts = [(int(i), str(r)) for i, r in state["restarts"]]
        self.best.load_state_dict(state["best"])

    def initial_controls(self) -> FloatArray:
        """Random starting controls (V)."""
        return sample_controls(self._rng, self.lower, self.upper)

    @property
    def restarts_left(self) -> bool:
        """Whether another restart is allowed."""
        return self.max_restarts is None or len(self.restarts) < self.max_restarts

    def observe(self, iteration: int, loss: float, controls: ArrayLike) -> FloatArray | None:
        """Record an iteration; fresh controls (V) if it is time to restart, else None."""
        self.best.update(loss, controls, iteration)
        if self.stall.update(loss) and self.restarts_left:
            return self.restart(iteration, "stall")
        return None

    def restart(self, iteration: int, reason: str) -> FloatArray:
        """Count a restart at ``iteration`` for ``reason`` and return fresh random controls (V).

        Raises:
            RuntimeError: If ``max_restarts`` restarts have been used.
        """
        if not self.restarts_left:
            raise RuntimeError(
                f"all {self.max_restarts} restarts used; cannot restart for {reason}"
            )
        self.restarts.append((int(iteration), reason))
        self.stall.reset()
        logger.info("restart %d at iteration %d: %s", len(self.restarts), iteration, reason)
        return sample_controls(self._rng, self.lower, self.upper)
