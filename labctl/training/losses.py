"""Losses over the outputs of all input cases, with analytic gradients (method reference §9).

Unit convention (the same for every loss):

* ``x`` — the output current per input case, shape ``(n_cases,)``, in **amperes** (SI, as
  everywhere in labctl).
* Inside, each loss works in **nanoamperes** (``x_na = x / 1e-9``). Every parameter that has a
  current scale is given in nA and carries ``_na`` in its name (``offset_na``, ``slope_na``,
  ``low_na``, ``high_na``, ``eps_na``), so the published constants (e.g. ``cor_sigmoid``'s 5 nA
  and 3 nA) are used as published. Loss values are dimensionless, except ``mse`` (nA²).
* The returned gradient is ``dL/dx`` per **ampere**, shape ``(n_cases,)``, ready for the chain
  rule ``dL/dV_k = Σ_c dL/dx_c · ∂x_c/∂V_k`` with ``∂x/∂V`` in A/V.
* ``t`` — targets per case, 0 or 1; both classes must occur.

Notation: ρ is the Pearson correlation of ``x`` and ``t`` with population statistics
(:func:`labctl.training.metrics.pearson_terms`, the same function as the reported metric); the
standard deviation of ``x`` is regularised as σ_x = √(var(x) + ε²) with ``eps_na`` = ε (default
1e-3 nA = 1 pA, below the measurement noise of a 0.1 s window), so a constant output gives ρ = 0
and a finite gradient instead of NaN. Δ = min(x | t = 1) − max(x | t = 0) is the separation; its
subgradient is +1 at the lowest class-1 case and −1 at the highest class-0 case (first case on
ties), 0 elsewhere. σ(z) = 1/(1 + e^(−z)).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

from labctl.training.metrics import check_outputs_targets, pearson_terms, separation_indices

FloatArray = NDArray[np.float64]

NANOAMPERE: float = 1e-9
"""The internal current unit of the losses (A)."""

DEFAULT_EPS_NA: float = 1e-3
"""Default regulariser ε of σ_x (nA)."""

_RHO_CEILING = 1.1
"""Constant of the correlation losses: (1.1 − ρ) stays positive at ρ = 1."""

_MIN_EXPONENT = -500.0
"""Lower clip of z = (Δ − c)/s in ``corrsig``: below it, loss and gradient are evaluated at
z = −500 (the gradient still points toward larger Δ) so that neither overflows."""


class LossFunction(Protocol):
    """A loss: outputs ``x`` (A) and targets ``t`` (0/1) to ``(loss, dloss/dx per A)``."""

    def __call__(self, x: ArrayLike, t: ArrayLike) -> tuple[float, FloatArray]: ...


def _to_na(x: ArrayLike, t: ArrayLike) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    xa, high = check_outputs_targets(x, t)
    return xa / NANOAMPERE, high.astype(np.float64), high


def _pearson(x_na: FloatArray, t: FloatArray, eps_na: float) -> tuple[float, FloatArray]:
    """ρ (from :func:`~labctl.training.metrics.pearson_terms`) and ∂ρ/∂x (per nA), σ_x
    regularised by ``eps_na``."""
    if eps_na < 0.0:
        raise ValueError(f"eps_na must be ≥ 0 nA, got {eps_na}")
    n = x_na.shape[0]
    rho, dx, dt, sx, st = pearson_terms(x_na, t, eps_na)
    if sx == 0.0:
        # Only reachable with eps_na = 0 and constant x: ρ is undefined, take 0 and a zero slope.
        return 0.0, np.zeros(n)
    drho = dt / (n * sx * st) - rho * dx / (n * sx * sx)
    return rho, drho


def _separation(x_na: FloatArray, high: NDArray[np.bool_]) -> tuple[float, FloatArray]:
    """Δ (nA) and its subgradient."""
    i_hi, i_lo = separation_indices(x_na, high)
    grad = np.zeros(x_na.shape[0])
    grad[i_hi] += 1.0
    grad[i_lo] -= 1.0
    return float(x_na[i_hi] - x_na[i_lo]), grad


def corrsig(
    x: ArrayLike,
    t: ArrayLike,
    offset_na: float = 0.0,
    slope_na: float = 1.0,
    eps_na: float = DEFAULT_EPS_NA,
) -> tuple[float, FloatArray]:
    """brains-py correlation–sigmoid loss L = (1.1 − ρ) / σ((Δ − c)/s).

    Args:
        x: Outputs (A), shape ``(n_cases,)``.
        t: Targets 0/1.
        offset_na: c (nA).
        slope_na: s (nA), > 0.
        eps_na: Regulariser of σ_x (nA).

    Returns:
        ``(L, dL/dx)`` with ``dL/dx`` per ampere. ``1/σ(z) = 1 + e^(−z)``; z is clipped at −500.
    """
    if slope_na <= 0.0:
        raise ValueError(f"slope_na must be positive, got {slope_na}")
    x_na, tf, high = _to_na(x, t)
    rho, drho = _pearson(x_na, tf, eps_na)
    delta, ddelta = _separation(x_na, high)
    e = float(np.exp(-max((delta - offset_na) / slope_na, _MIN_EXPONENT)))
    loss = (_RHO_CEILING - rho) * (1.0 + e)
    grad_na = -(1.0 + e) * drho - (_RHO_CEILING - rho) * e / slope_na * ddelta
    return float(loss), grad_na / NANOAMPERE


def cor_sigmoid(
    x: ArrayLike,
    t: ArrayLike,
    offset_na: float = 5.0,
    slope_na: float = 3.0,
    floor: float = 0.05,
    eps_na: float = DEFAULT_EPS_NA,
) -> tuple[float, FloatArray]:
    """HGE lab loss L = (1.1 − ρ) / (σ((Δ − 5 nA)/3 nA) + 0.05).

    Ranges from ≈ 0.095 (ρ = 1, Δ ≫ 5 nA) to 42 (ρ = −1, Δ ≪ 0); the lab stopped at L < 0.1.
    The gradient is the full quotient rule: with z = (Δ − offset)/slope and D = σ(z) + floor,
    dL/dx = −(dρ/dx)/D − (1.1 − ρ)·σ(z)(1 − σ(z))/(slope·D²)·dΔ/dx, where dΔ/dx selects the
    lowest class-1 and highest class-0 cases.

    Args:
        x: Outputs (A), shape ``(n_cases,)``.
        t: Targets 0/1.
        offset_na: Separation offset (nA).
        slope_na: Separation slope (nA), > 0.
        floor: Constant added to the sigmoid (dimensionless, > 0).
        eps_na: Regulariser of σ_x (nA).

    Returns:
        ``(L, dL/dx)`` with ``dL/dx`` per ampere.
    """
    if slope_na <= 0.0:
        raise ValueError(f"slope_na must be positive, got {slope_na}")
    if floor <= 0.0:
        raise ValueError(f"floor must be positive, got {floor}")
    x_na, tf, high = _to_na(x, t)
    rho, drho = _pearson(x_na, tf, eps_na)
    delta, ddelta = _separation(x_na, high)
    sig = float(expit((delta - offset_na) / slope_na))
    denom = sig + floor
    loss = (_RHO_CEILING - rho) / denom
    grad_na = (
        -drho / denom
        - (_RHO_CEILING - rho) * sig * (1.0 - sig) / (slope_na * denom * denom) * ddelta
    )
    return float(loss), grad_na / NANOAMPERE


def mse(
    x: ArrayLike,
    t: ArrayLike,
    low_na: float = 0.0,
    high_na: float = 1.0,
) -> tuple[float, FloatArray]:
    """Mean squared error against targets scaled to current levels, L = mean((x − y)²) in nA².

    ``y = low_na`` for class 0 and ``high_na`` for class 1. The gradient is 2(x − y)/n per nA,
    returned per ampere.
    """
    x_na, tf, _ = _to_na(x, t)
    y = low_na + (high_na - low_na) * tf
    r = x_na - y
    n = x_na.shape[0]
    return float(np.mean(r * r)), (2.0 / n) * r / NANOAMPERE


def fisher(
    x: ArrayLike,
    t: ArrayLike,
    eps_na: float = DEFAULT_EPS_NA,
) -> tuple[float, FloatArray]:
    """Fisher criterion loss L = −(m₁ − m₀)² / (v₀ + v₁ + ε²) (dimensionless).

    m₀, m₁ are the class means and v₀, v₁ the class variances (population, i.e. divided by the
    class size; the usual Fisher criterion — the §9 "spreads" are taken as variances). ε =
    ``eps_na`` keeps the loss finite when both classes are constant. Unbounded below (more
    separation or less spread always helps) and blind to the sign of m₁ − m₀: a configuration
    with class 1 below class 0 scores the same, so read the direction off
    :func:`labctl.training.metrics.threshold_accuracy`.
    """
    if eps_na < 0.0:
        raise ValueError(f"eps_na must be ≥ 0 nA, got {eps_na}")
    x_na, _, high = _to_na(x, t)
    x1, x0 = x_na[high], x_na[~high]
    n1, n0 = x1.shape[0], x0.shape[0]
    m1, m0 = float(x1.mean()), float(x0.mean())
    v1, v0 = float(np.mean((x1 - m1) ** 2)), float(np.mean((x0 - m0) ** 2))
    d = m1 - m0
    s = v0 + v1 + eps_na * eps_na
    if s == 0.0:
        raise ValueError("fisher: both classes are constant and eps_na = 0; use eps_na > 0")
    loss = -d * d / s
    grad_na = np.empty_like(x_na)
    grad_na[high] = -2.0 * d / (n1 * s) + d * d * 2.0 * (x1 - m1) / (n1 * s * s)
    grad_na[~high] = 2.0 * d / (n0 * s) + d * d * 2.0 * (x0 - m0) / (n0 * s * s)
    return float(loss), grad_na / NANOAMPERE


def separation_margin(
    x: ArrayLike, t: ArrayLike, margin_na: float = 1.0
) -> tuple[float, FloatArray]:
    """Squared hinge on the separation, L = (max(0, m − Δ) / m)² (dimensionless).

    It pulls the separation Δ up, also after 100 % accuracy (Δ > 0), until it reaches the
    margin m = ``margin_na`` (e.g. a multiple of the measured noise), and is exactly flat
    beyond it. Gradient: −2·max(0, m − Δ)/m² · dΔ/dx (per nA, returned per ampere).
    """
    if margin_na <= 0.0:
        raise ValueError(f"margin_na must be positive, got {margin_na}")
    x_na, _, high = _to_na(x, t)
    delta, ddelta = _separation(x_na, high)
    short = max(0.0, margin_na - delta)
    loss = (short / margin_na) ** 2
    grad_na = -2.0 * short / (margin_na * margin_na) * ddelta
    return float(loss), grad_na / NANOAMPERE


LOSSES: Mapping[str, Callable[..., tuple[float, FloatArray]]] = MappingProxyType(
    {
        "corrsig": corrsig,
        "cor_sigmoid": cor_sigmoid,
        "mse": mse,
        "fisher": fisher,
        "separation_margin": separation_margin,
    }
)
"""Loss name → loss function ``f(x, t, **params)``; every function is a :class:`LossFunction`
with its default parameters."""


def get_loss(name: str, **params: float) -> LossFunction:
    """The loss ``name`` with ``params`` bound, as a :class:`LossFunction`.

    Raises:
        ValueError: For an unknown name (the message lists the valid ones) or a parameter the
            loss does not take (the message lists the ones it does).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    func = LOSSES[name]
    accepted = [p for p in inspect.signature(func).parameters if p not in ("x", "t")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"loss {name!r} has no parameter(s) {unknown}; it takes {accepted}")
    bound = functools.partial(func, **params)
    functools.update_wrapper(bound, func)
    return bound
