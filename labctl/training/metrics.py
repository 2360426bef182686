"""Evaluation metrics on the output of a trained configuration, one output value per input case.

All metrics are unit-agnostic: outputs ``x`` may be in A or nA, and separations, thresholds and
margins come back in the same unit. Targets ``t`` are 0/1 per case.

Accuracy (method reference §10). The lab's measure z-scores the output and trains a 1-input
linear unit with BCE-with-logits and Adam until it classifies every sample; its decision rule
``w·z + b > 0`` is a single threshold on the output with a direction (sign of ``w``).
:func:`threshold_accuracy` searches that same family of classifiers *exactly*: it sorts the
outputs and scans every cut point in both directions. It is deterministic (no seed, no learning
rate, no epoch budget), never misses a separating threshold that exists, and gives the highest
accuracy any threshold can reach. On separable data it reaches 100 % exactly when the perceptron
can; on non-separable data it reports the best achievable threshold accuracy, which the BCE
optimum does not necessarily attain (BCE trades accuracy for likelihood). It is therefore used as
the accuracy in labctl; :func:`perceptron_accuracy` reproduces the lab procedure for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labctl.training.optimisers import Adam

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def check_outputs_targets(x: ArrayLike, t: ArrayLike) -> tuple[FloatArray, BoolArray]:
    """Validate outputs and targets; return ``x`` as float64 and the mask of class-1 cases.

    Raises:
        ValueError: Unless ``x`` and ``t`` are 1-D of equal length ≥ 2, ``x`` is finite, every
            ``t`` is 0 or 1 and both classes occur.
    """
    xa = np.asarray(x, dtype=np.float64)
    ta = np.asarray(t, dtype=np.float64)
    if xa.ndim != 1 or ta.ndim != 1 or xa.shape != ta.shape:
        raise ValueError(
            f"outputs and targets must be 1-D arrays of equal length, got shapes {xa.shape} "
            f"and {ta.shape}"
        )
    if xa.shape[0] < 2:
        raise ValueError(f"need at least 2 cases, got {xa.shape[0]}")
    if not np.all(np.isfinite(xa)):
        raise ValueError("outputs contain NaN or infinite values")
    is_one = ta == 1.0
    if not np.all(is_one | (ta == 0.0)):
        bad = int(np.flatnonzero(~(is_one | (ta == 0.0)))[0])
        raise ValueError(f"targets must be 0 or 1, case {bad} has {ta[bad]!r}")
    if is_one.all() or not is_one.any():
        raise ValueError("targets contain only one class; both 0 and 1 are needed")
    return xa, is_one


def separation_indices(x: FloatArray, high: BoolArray) -> tuple[int, int]:
    """Indices ``(i_high_min, i_low_max)``: the lowest class-1 output and the highest class-0 one.

    Ties go to the first such case, which fixes the subgradient of the separation.
    """
    idx_high = np.flatnonzero(high)
    idx_low = np.flatnonzero(~high)
    return int(idx_high[np.argmin(x[idx_high])]), int(idx_low[np.argmax(x[idx_low])])


def separation_noise(x: ArrayLike, t: ArrayLike, stderr: ArrayLike | None) -> float:
    """Standard error of the separation: ``√(σ_i² + σ_j²)`` of the two cases that set it
    (:func:`separation_indices`), from per-case standard errors ``stderr`` (unit of ``x``).

    NaN when ``stderr`` is None.
    """
    if stderr is None:
        return float("nan")
    xa, high = check_outputs_targets(x, t)
    se = np.asarray(stderr, dtype=np.float64)
    i_hi, i_lo = separation_indices(xa, high)
    return float(np.hypot(se[i_hi], se[i_lo]))


def separation(x: ArrayLike, t: ArrayLike) -> float:
    """Separation Δ = min(x | t = 1) − max(x | t = 0), in the unit of ``x``.

    Positive when the classes are separable by a threshold with class 1 above it.
    """
    xa, high = check_outputs_targets(x, t)
    i_hi, i_lo = separation_indices(xa, high)
    return float(xa[i_hi] - xa[i_lo])


class PearsonTerms(NamedTuple):
    """The Pearson correlation and the centred quantities it is made of.

    Attributes:
        rho: ρ = mean(dx · dt) / (σ_x σ_t), dimensionless; 0.0 when σ_x = 0.
        dx: ``x − mean(x)``, unit of ``x``.
        dt: ``t − mean(t)``, unit of ``t``.
        sx: σ_x = √(mean(dx²) + ε²), unit of ``x`` (ε = 0: the population standard deviation).
        st: σ_t = √(mean(dt²)), unit of ``t``.
    """

    rho: float
    dx: FloatArray
    dt: FloatArray
    sx: float
    st: float


def pearson_terms(x: FloatArray, t: FloatArray, eps: float = 0.0) -> PearsonTerms:
    """Pearson correlation of ``x`` and ``t`` with population statistics, and its pieces.

    The one implementation of the correlation in labctl: :func:`correlation` reports it and the
    correlation losses (:mod:`labctl.training.losses`) differentiate it from these pieces.

    Args:
        x: Outputs, 1-D float64 (already validated, e.g. by :func:`check_outputs_targets`).
        t: Targets, 1-D float64 of the same length, not constant.
        eps: Regulariser ε of σ_x, unit of ``x`` (≥ 0): σ_x = √(var(x) + ε²), so that a constant
            ``x`` gives ρ = 0 rather than 0/0 when ε > 0.

    Returns:
        ρ with ``dx``, ``dt``, σ_x and σ_t; ρ = 0.0 when σ_x = 0 (only with ε = 0 and constant x).
    """
    dx = x - x.mean()
    dt = t - t.mean()
    sx = float(np.sqrt(np.mean(dx * dx) + eps * eps))
    st = float(np.sqrt(np.mean(dt * dt)))
    rho = 0.0 if sx == 0.0 else float(np.mean(dx * dt)) / (sx * st)
    return PearsonTerms(rho, dx, dt, sx, st)


def correlation(x: ArrayLike, t: ArrayLike) -> float:
    """Pearson correlation between outputs and targets (population statistics).

    Returns 0.0 when ``x`` is constant (the correlation is undefined there).
    """
    xa, high = check_outputs_targets(x, t)
    return pearson_terms(xa, high.astype(np.float64)).rho


@dataclass(frozen=True)
class ThresholdResult:
    """A single-threshold classifier on a 1-D output and its accuracy.

    Attributes:
        accuracy: Fraction of cases classified correctly, in [0, 1].
        threshold: Decision threshold, unit of the outputs. ``±inf`` when the best rule puts every
            case in one class.
        direction: ``+1``: class 1 is predicted for outputs above the threshold; ``-1``: below.
        margin: Distance from the threshold to the nearest output (unit of the outputs); 0.0 when
            the threshold is infinite.
    """

    accuracy: float
    threshold: float
    direction: int
    margin: float

    def predict(self, x: ArrayLike) -> BoolArray:
        """Predicted class-1 mask for outputs ``x``."""
        xa = np.asarray(x, dtype=np.float64)
        return xa > self.threshold if self.direction > 0 else xa < self.threshold


def threshold_accuracy(x: ArrayLike, t: ArrayLike, direction: int | None = None) -> ThresholdResult:
    """The best single threshold on the outputs, found exactly (see the module docstring).

    Every cut between two neighbouring distinct sorted outputs is tried in both directions (or
    only in ``direction`` when given: +1 means class 1 must lie above the threshold, as for a
    gate whose "high" is the larger current), plus the two cuts that put every case in one
    class. The highest accuracy wins; ties go to the widest gap between the neighbours, then to
    direction +1, then to the lowest threshold. The threshold lies at the mid-point of its two
    neighbours. O(n log n).
    """
    if direction not in (None, 1, -1):
        raise ValueError(f"direction must be None, +1 or -1, got {direction!r}")
    xa, high = check_outputs_targets(x, t)
    n = xa.shape[0]
    order = np.argsort(xa, kind="stable")
    xs = xa[order]
    hs = high[order]
    # Cut k puts the k lowest outputs below the threshold (k = 0 … n).
    low_below = np.concatenate(([0], np.cumsum(~hs)))
    high_below = np.concatenate(([0], np.cumsum(hs)))
    correct_up = low_below + (int(hs.sum()) - high_below)
    correct_down = n - correct_up
    gaps = np.zeros(n + 1)
    gaps[1:n] = xs[1:] - xs[:-1]
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = gaps[1:n] > 0.0
    ks = np.flatnonzero(valid)
    cand_correct = np.concatenate((correct_up[ks], correct_down[ks]))
    cand_gap = np.concatenate((gaps[ks], gaps[ks]))
    cand_dir = np.concatenate((np.ones(ks.size, int), -np.ones(ks.size, int)))
    cand_k = np.concatenate((ks, ks))
    if direction is not None:
        keep = cand_dir == direction
        cand_correct, cand_gap = cand_correct[keep], cand_gap[keep]
        cand_dir, cand_k = cand_dir[keep], cand_k[keep]
    # lexsort: last key is primary. Maximise correct, then gap; prefer +1, then low k.
    best = np.lexsort((cand_k, -cand_dir, -cand_gap, -cand_correct))[0]
    k = int(cand_k[best])
    if k == 0:
        threshold, margin = -np.inf, 0.0
    elif k == n:
        threshold, margin = np.inf, 0.0
    else:
        threshold = 0.5 * (xs[k - 1] + xs[k])
        margin = 0.5 * float(gaps[k])
    return ThresholdResult(
        accuracy=float(cand_correct[best]) / n,
        threshold=float(threshold),
        direction=int(cand_dir[best]),
        margin=float(margin),
    )


@dataclass(frozen=True)
class PerceptronResult(ThresholdResult):
    """:class:`ThresholdResult` of :func:`perceptron_accuracy` plus the trained unit.

    Attributes:
        weight: Weight on the z-scored output.
        bias: Bias.
        epochs: Epochs run (stops early at 100 % accuracy).
    """

    weight: float = 0.0
    bias: float = 0.0
    epochs: int = 0


def perceptron_accuracy(
    x: ArrayLike,
    t: ArrayLike,
    epochs: int = 25_000,
    lr: float = 0.005,
    seed: int = 0,
    batch_size: int = 512,
) -> PerceptronResult:
    """Accuracy by the lab's perceptron procedure (method reference §10), for comparison only.

    The outputs are z-scored; a unit ``w·z + b`` (``w``, ``b`` initialised uniform in [−1, 1])
    is trained with binary cross-entropy on the logits and Adam (``lr``), in shuffled
    mini-batches of ``batch_size``, for up to ``epochs`` epochs, stopping as soon as every case
    is classified correctly (``w·z + b > 0`` ⇔ class 1). The threshold ``−b/w`` is mapped back to
    the unit of ``x``. The lab used at least 10 samples; fewer are accepted here.

    Raises:
        ValueError: For invalid outputs/targets (see :func:`check_outputs_targets`) or
            non-positive ``epochs``, ``lr`` or ``batch_size``.
    """
    xa, high = check_outputs_targets(x, t)
    if epochs < 1 or lr <= 0.0 or batch_size < 1:
        raise ValueError(
            f"epochs, lr and batch_size must be positive, got {epochs}, {lr}, {batch_size}"
        )
    ta = high.astype(np.float64)
    mu = float(xa.mean())
    sd = float(xa.std()) or 1.0
    z = (xa - mu) / sd
    rng = np.random.default_rng(seed)
    params = rng.uniform(-1.0, 1.0, size=2)  # (w, b)
    adam = Adam(learning_rate=lr)
    n = z.shape[0]

    def n_correct(p: FloatArray) -> int:
        return int(np.count_nonzero((p[0] * z + p[1] > 0.0) == high))

    epoch = 0
    while n_correct(params) < n and epoch < epochs:
        epoch += 1
        perm = rng.permutation(n)
        for start in range(0, n, batch_size):
            batch = perm[start : start + batch_size]
            zb = z[batch]
            logits = params[0] * zb + params[1]
            dlogit = (_sigmoid(logits) - ta[batch]) / batch.size
            grad = np.array([np.dot(dlogit, zb), dlogit.sum()])
            params = adam.step(params, grad)
    w, b = float(params[0]), float(params[1])
    if w != 0.0:
        threshold = mu + sd * (-b / w)
        direction = 1 if w > 0.0 else -1
        margin = float(np.min(np.abs(xa - threshold)))
    else:
        threshold = -np.inf if b > 0.0 else np.inf
        direction = 1
        margin = 0.0
    return PerceptronResult(
        accuracy=n_correct(params) / n,
        threshold=float(threshold),
        direction=direction,
        margin=margin,
        weight=w,
        bias=b,
        epochs=epoch,
    )


def _sigmoid(z: FloatArray) -> FloatArray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))
