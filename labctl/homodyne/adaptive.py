"""Adaptive tone amplitudes: the smallest amplitude per electrode that reaches a target SNR,
within a bound on the curvature bias, the electrode's range and the slew budget.

The tone amplitude ``A`` trades noise against curvature bias (method.md §2.1, §4):

* **Noise.** The standard error of a gradient component falls as ``σ_k(A) = s_k / A``, with
  ``s_k = sqrt(S_k / T)`` (A) set by the output noise PSD near tone k and the window T.
* **Curvature bias.** The first-harmonic slope is the slope averaged over the excursion,
  ``g_k(A) = g_k + (1/8) T_kkk A_k² + (1/4) Σ_{j≠k} T_kjj A_j² + O(A⁴)``: the other electrodes'
  amplitudes contribute too. If every amplitude is scaled by a *common* factor c between two
  probes (``A_j = c·a_j``), the whole third-order term is ``b_k·A_k²`` with one coefficient
  ``b_k = (1/8) T_kkk + (1/4) Σ_{j≠k} T_kjj (a_j / a_k)²`` (A/V³). So

      g_k(A) ≈ g_k + b_k·A_k²,

  which is the model used here. It is exact for the probe direction only: when the chosen
  amplitudes have other ratios than the probes, the cross terms change with them, and the
  predicted bias is an approximation (on the simulated DNPU the bias is far below the noise).

**Method.** Two parallel-mode probes at the operating point, ``P_low = P_high / r``
(``r`` = ``probe_ratio``, common to all electrodes), where ``P_high,k`` is the largest
amplitude electrode k may carry (see the bounds below); each probe measures ``probe_repeats``
windows in one record. Probing at the top of the allowed range gives the tightest bias
estimate (``σ_b`` falls as ``1/P_high³``), and for a given ``P_high`` the ratio r ≈ 2 minimises
``var(b̂) ∝ (1/P_low² + 1/P_high²) / (P_high² − P_low²)²``. From the window means
``ḡ_1, ḡ_2`` and their errors ``σ_1, σ_2``:

    s_k   = sqrt(mean over probes and windows of (stderr · A)²)          (pooled noise scale)
    b̂_k   = (ḡ_2 − ḡ_1) / (P_high² − P_low²)
    σ_b   = sqrt(σ_1² + σ_2²) / (P_high² − P_low²)

``b̂`` is *significant* when ``|b̂| > z·σ_b`` (``z`` = ``bias_z``). The gradient estimate
``ĝ_k`` is then the extrapolation to zero amplitude, ``(P_high² ḡ_1 − P_low² ḡ_2) /
(P_high² − P_low²)``; otherwise the inverse-variance mean of ``ḡ_1, ḡ_2``. The bias
coefficient used for the bound is ``|b̂|`` when significant and the upper bound
``|b̂| + z·σ_b`` when not.

**Choice per electrode** (ε = ``max_bias_fraction``, SNR* = ``target_snr``):

    A_snr  = SNR* · s_k / |ĝ_k|                (smallest A reaching the target SNR)
    A_bias = sqrt(ε · |ĝ_k| / b_k)             (largest A with b_k·A² ≤ ε·|ĝ_k|)
    A      = A_snr,  or A_bias when A_snr > A_bias (the bias bound wins; SNR shortfall noted)

A gradient not resolved from zero (``|ĝ| < z·σ_ĝ``) can reach no SNR target and has no
meaningful relative bias; it gets the amplitude that minimises the predicted absolute error
``s²/A² + b_k²A⁴``, ``A = (s² / (2 b_k²))^(1/6)`` (where the bias bound is the noise/√2; the
largest allowed amplitude when no curvature is measurable). Then ``A`` is clipped to
``[min_amplitude_v, A_max]`` with

    A_max = min(max_amplitude_v,
                min(V_k − V_min,k, V_max,k − V_k)      (DC ± A inside the electrode's range),
                slew_fraction · slew_v_per_s / (2π f_k))  (tone slew 2πfA within the budget)

One tone per electrode, so the sums ``Σ A`` and ``Σ 2πfA`` on an electrode have one term. The
range and slew limits beat ``min_amplitude_v``. ``slew_fraction`` (default 0.5) keeps the rest
of the slew limit for the DC ramps that run while the tones play.

Predictions: SNR ``|ĝ|·A/s`` and bias fraction ``b_k·A²/|ĝ|`` (an upper bound when ``b̂`` was
not significant). Use a calibrated engine (phase projection): with the sign-by-phase fallback
the magnitude is biased upwards at low SNR, more at the small probe, and that shows up as
spurious curvature.

Units: V, A, A/V (gradients), A/V³ (bias coefficients), s, Hz.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np

from labctl.config import AdaptiveAmplitudeConfig
from labctl.device import BoolArray, FloatArray
from labctl.homodyne.engine import GradientBatch, GradientEngine

log = logging.getLogger(__name__)

_RANGE_GUARD_V = 1e-9
"""Kept between DC ± A and the range edge so round-off never touches the edge (V)."""

BOUND_MAX = "max_amplitude_v"
BOUND_RANGE = "range"
BOUND_SLEW = "slew"


@dataclass(frozen=True)
class AmplitudeLimits:
    """What limits the tone amplitudes of the perturbed electrodes.

    Attributes:
        min_v: Lowest allowed voltage of each perturbed electrode (V), engine order.
        max_v: Highest allowed voltage of each perturbed electrode (V), engine order.
        slew_v_per_s: The setup's slew limit (V/s).
    """

    min_v: FloatArray
    max_v: FloatArray
    slew_v_per_s: float

    def __post_init__(self) -> None:
        low = np.asarray(self.min_v, dtype=np.float64).reshape(-1)
        high = np.asarray(self.max_v, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or np.any(low >= high):
            raise ValueError("min_v and max_v need one value per electrode with min_v < max_v")
        if not (math.isfinite(self.slew_v_per_s) and self.slew_v_per_s > 0):
            raise ValueError(f"slew_v_per_s must be positive, got {self.slew_v_per_s}")
        object.__setattr__(self, "min_v", low)
        object.__setattr__(self, "max_v", high)

    @classmethod
    def from_engine(cls, engine: GradientEngine) -> AmplitudeLimits:
        """The limits of the device behind ``engine``.

        The ranges follow from :meth:`GradientEngine.control_bounds` (which pads them by the
        present amplitudes); the slew limit is the one of the engine's safe device.
        """
        low, high = engine.control_bounds()
        amplitudes = engine.amplitudes_v
        # The engine has no public accessor for its device's limits.
        slew = float(engine.device.limits.slew_v_per_s)
        return cls(min_v=low - amplitudes, max_v=high + amplitudes, slew_v_per_s=slew)


@dataclass(frozen=True, eq=False)
class AmplitudeProbe:
    """What the two probes measured, per perturbed electrode (engine order).

    Attributes:
        electrodes: Names of the perturbed electrodes.
        operating_point_v: The operating point (V), every electrode.
        probe_amplitudes_v: Shape ``(2, n)``: the low and the high probe amplitude (V).
        probe_gradients_a_per_v: Shape ``(2, n)``: window-mean gradient at each probe (A/V).
        probe_stderr_a_per_v: Shape ``(2, n)``: standard error of those means (A/V).
        noise_scale_a: ``s_k`` with ``σ_k(A) = s_k / A`` (A).
        curvature_a_per_v3: ``b̂_k`` in ``g(A) ≈ g + b·A²`` (A/V³).
        curvature_stderr_a_per_v3: Standard error of ``b̂_k`` (A/V³).
        gradient_a_per_v: Best estimate of the gradient at zero amplitude (A/V).
        gradient_stderr_a_per_v: Its standard error (A/V).
        max_amplitude_v: Largest amplitude each electrode may carry (V).
        max_reason: What sets that largest amplitude (``max_amplitude_v``, ``range``, ``slew``).
        frequencies_hz: Tone frequency of each electrode (Hz).
        device_seconds: Device time both probes used (s).
        bias_z: Significance threshold (standard errors) used for ``b̂`` and ``ĝ``.
    """

    electrodes: tuple[str, ...]
    operating_point_v: FloatArray
    probe_amplitudes_v: FloatArray
    probe_gradients_a_per_v: FloatArray
    probe_stderr_a_per_v: FloatArray
    noise_scale_a: FloatArray
    curvature_a_per_v3: FloatArray
    curvature_stderr_a_per_v3: FloatArray
    gradient_a_per_v: FloatArray
    gradient_stderr_a_per_v: FloatArray
    max_amplitude_v: FloatArray
    max_reason: tuple[str, ...]
    frequencies_hz: FloatArray
    device_seconds: float
    bias_z: float

    @property
    def curvature_significant(self) -> BoolArray:
        """Per electrode, whether ``|b̂| > z·σ_b`` (bool array)."""
        return np.abs(self.curvature_a_per_v3) > self.bias_z * self.curvature_stderr_a_per_v3

    @property
    def curvature_bound_a_per_v3(self) -> FloatArray:
        """``|b̂|`` where significant, else the upper bound ``|b̂| + z·σ_b`` (A/V³)."""
        magnitude = np.abs(self.curvature_a_per_v3)
        upper = magnitude + self.bias_z * self.curvature_stderr_a_per_v3
        return np.where(self.curvature_significant, magnitude, upper)

    @property
    def gradient_resolved(self) -> BoolArray:
        """Per electrode, whether ``|ĝ| > z·σ_ĝ`` (bool array)."""
        return np.abs(self.gradient_a_per_v) > self.bias_z * self.gradient_stderr_a_per_v


@dataclass(frozen=True, eq=False)
class AmplitudeChoice:
    """Chosen tone amplitudes and what is expected of them, per perturbed electrode.

    Attributes:
        electrodes: Names of the perturbed electrodes (engine order).
        amplitudes_v: Chosen amplitude per electrode (V).
        predicted_snr: Expected ``|gradient| / stderr`` at the chosen amplitude.
        predicted_bias_fraction: Expected ``|curvature bias| / |gradient|`` (an upper bound
            where the curvature was not resolved; inf where the gradient is zero).
        probe_device_seconds: Device time the probes used (s).
        notes: One line per electrode: what set its amplitude, and any shortfall.
        binding: Per electrode, what set the amplitude: ``snr``, ``bias``, ``noise-bias``
            (unresolved gradient), ``min_amplitude_v``, ``max_amplitude_v``, ``range``, ``slew``.
        probe: The probe measurements the choice is based on.
    """

    electrodes: tuple[str, ...]
    amplitudes_v: FloatArray
    predicted_snr: FloatArray
    predicted_bias_fraction: FloatArray
    probe_device_seconds: float
    notes: tuple[str, ...]
    binding: tuple[str, ...]
    probe: AmplitudeProbe


class ProbeOptions(TypedDict, total=False):
    """Keyword options of :func:`probe_amplitude_response`, forwarded by the choosers."""

    probe_ratio: float
    probe_repeats: int
    slew_fraction: float
    bias_z: float


def probe_amplitude_response(
    engine: GradientEngine,
    point_v: FloatArray,
    settings: AdaptiveAmplitudeConfig,
    limits: AmplitudeLimits | None = None,
    *,
    probe_ratio: float = 2.0,
    probe_repeats: int = 2,
    slew_fraction: float = 0.5,
    bias_z: float = 2.0,
) -> AmplitudeProbe:
    """Measure the gradient at two amplitude levels (parallel mode) and fit noise and bias.

    The engine's amplitudes are restored afterwards.

    Args:
        engine: The gradient engine (calibrated for best results).
        point_v: The operating point, one voltage per electrode (V).
        settings: The adaptive-amplitude settings (``max_amplitude_v`` caps the high probe).
        limits: Electrode ranges and slew limit; default: those of the engine's device.
        probe_ratio: High / low probe amplitude, common to all electrodes (> 1).
        probe_repeats: Windows per probe level (>= 1), measured in one record.
        slew_fraction: Share of the slew limit the tones may use (0 < x < 1).
        bias_z: Standard errors for "significant" and for the upper bounds (> 0).

    Raises:
        ValueError: Bad arguments, or an electrode at the edge of its range (no room for a tone).
        RuntimeError: A probe record saturated.
    """
    if not probe_ratio > 1.0:
        raise ValueError(f"probe_ratio must exceed 1 (e.g. 2), got {probe_ratio}")
    if probe_repeats < 1:
        raise ValueError(f"probe_repeats must be at least 1, got {probe_repeats}")
    if not 0.0 < slew_fraction < 1.0:
        raise ValueError(f"slew_fraction must lie in (0, 1), e.g. 0.5; got {slew_fraction}")
    if not bias_z > 0.0:
        raise ValueError(f"bias_z must be positive (e.g. 2), got {bias_z}")
    point = np.asarray(point_v, dtype=np.float64).reshape(-1)
    limits = AmplitudeLimits.from_engine(engine) if limits is None else limits
    n = len(engine.electrodes)
    if limits.min_v.size != n:
        raise ValueError(f"limits describe {limits.min_v.size} electrodes, the engine perturbs {n}")
    frequencies = np.asarray(engine.plan.frequencies_hz, dtype=np.float64)
    high, reasons = _largest_amplitudes(engine, point, settings, limits, frequencies, slew_fraction)
    low = high / probe_ratio
    points = np.repeat(point[None, :], probe_repeats, axis=0)
    original = engine.amplitudes_v
    batches: list[GradientBatch] = []
    try:
        for amplitudes in (low, high):
            engine.amplitudes_v = amplitudes
            batch = engine.measure(points, mode="parallel")
            if batch.saturated:
                raise RuntimeError(
                    f"the probe at {np.round(amplitudes * 1e3, 2).tolist()} mV saturated the "
                    "output; lower adaptive.max_amplitude_v or move the operating point"
                )
            batches.append(batch)
    finally:
        engine.amplitudes_v = original
    gradients = np.array([b.gradients_a_per_v.mean(axis=0) for b in batches])
    stderr_each = np.array([b.stderr_a_per_v for b in batches])  # (2, repeats, n)
    stderr = np.sqrt((stderr_each**2).mean(axis=1) / probe_repeats)
    probe_amplitudes = np.array([low, high])
    noise_scale = np.sqrt((stderr_each**2 * probe_amplitudes[:, None, :] ** 2).mean(axis=(0, 1)))
    spread = high**2 - low**2
    curvature = (gradients[1] - gradients[0]) / spread
    curvature_se = np.hypot(stderr[0], stderr[1]) / spread
    significant = np.abs(curvature) > bias_z * curvature_se
    extrapolated = (high**2 * gradients[0] - low**2 * gradients[1]) / spread
    extrapolated_se = np.hypot(high**2 * stderr[0], low**2 * stderr[1]) / spread
    weights = 1.0 / np.maximum(stderr**2, 1e-300)
    pooled = (weights * gradients).sum(axis=0) / weights.sum(axis=0)
    pooled_se = 1.0 / np.sqrt(weights.sum(axis=0))
    device_seconds = float(sum(b.device_seconds for b in batches))
    log.info(
        "amplitude probes %s / %s mV: %.3f device-s",
        np.round(low * 1e3, 2).tolist(),
        np.round(high * 1e3, 2).tolist(),
        device_seconds,
    )
    return AmplitudeProbe(
        electrodes=engine.electrodes,
        operating_point_v=point.copy(),
        probe_amplitudes_v=probe_amplitudes,
        probe_gradients_a_per_v=gradients,
        probe_stderr_a_per_v=stderr,
        noise_scale_a=noise_scale,
        curvature_a_per_v3=curvature,
        curvature_stderr_a_per_v3=curvature_se,
        gradient_a_per_v=np.where(significant, extrapolated, pooled),
        gradient_stderr_a_per_v=np.where(significant, extrapolated_se, pooled_se),
        max_amplitude_v=high,
        max_reason=reasons,
        frequencies_hz=frequencies,
        device_seconds=device_seconds,
        bias_z=bias_z,
    )


def plan_amplitudes(probe: AmplitudeProbe, settings: AdaptiveAmplitudeConfig) -> AmplitudeChoice:
    """Choose the amplitudes from a probe (no device access; see the module docstring)."""
    if settings.min_amplitude_v > settings.max_amplitude_v:
        raise ValueError(
            f"adaptive.min_amplitude_v ({settings.min_amplitude_v} V) exceeds max_amplitude_v "
            f"({settings.max_amplitude_v} V)"
        )
    target = settings.target_snr
    fraction = settings.max_bias_fraction
    n = len(probe.electrodes)
    amplitudes = np.zeros(n)
    snr = np.zeros(n)
    bias_fraction = np.zeros(n)
    notes: list[str] = []
    binding: list[str] = []
    curvature = probe.curvature_bound_a_per_v3
    resolved = probe.gradient_resolved
    for k in range(n):
        g = abs(float(probe.gradient_a_per_v[k]))
        s = float(probe.noise_scale_a[k])
        b = float(curvature[k])
        hard_max = float(probe.max_amplitude_v[k])
        a_snr = target * s / g if g > 0 else math.inf
        a_bias = math.sqrt(fraction * g / b) if b > 0 else math.inf
        text: list[str] = []
        if not resolved[k]:
            a = (s**2 / (2.0 * b**2)) ** (1.0 / 6.0) if b > 0 else math.inf
            reason = "noise-bias"
            text.append(
                f"gradient not resolved from zero ({g * 1e9:.3g} nA/V, "
                f"< {probe.bias_z:g} sigma): no amplitude reaches SNR {target:g}; "
                "amplitude minimises noise + curvature bias"
            )
        elif a_snr <= a_bias:
            a, reason = a_snr, "snr"
        else:
            a, reason = a_bias, "bias"
            text.append(
                f"SNR {target:g} needs {a_snr * 1e3:.3g} mV but the bias bound allows "
                f"{a_bias * 1e3:.3g} mV"
            )
        floor = settings.min_amplitude_v
        if a < floor:
            a, reason = floor, "min_amplitude_v"
        if a > hard_max:
            a, reason = hard_max, probe.max_reason[k]
        amplitudes[k] = a
        snr[k] = g * a / s if s > 0 else math.inf
        bias_fraction[k] = b * a**2 / g if g > 0 else math.inf
        if resolved[k] and snr[k] < target * (1 - 1e-9):
            text.append(f"SNR shortfall: predicted {snr[k]:.3g} < target {target:g}")
        if hard_max < floor:
            text.append(
                f"{probe.max_reason[k]} allows only {hard_max * 1e3:.3g} mV, below "
                f"min_amplitude_v {floor * 1e3:.3g} mV"
            )
        if not probe.curvature_significant[k]:
            text.append("curvature not resolved: bias is an upper bound")
        head = f"{probe.electrodes[k]}: {a * 1e3:.3g} mV set by {reason}"
        notes.append("; ".join([head, *text]))
        binding.append(reason)
    for line in notes:
        log.info("adaptive amplitude %s", line)
    return AmplitudeChoice(
        electrodes=probe.electrodes,
        amplitudes_v=amplitudes,
        predicted_snr=snr,
        predicted_bias_fraction=bias_fraction,
        probe_device_seconds=probe.device_seconds,
        notes=tuple(notes),
        binding=tuple(binding),
        probe=probe,
    )


def choose_amplitudes(
    engine: GradientEngine,
    point_v: FloatArray,
    settings: AdaptiveAmplitudeConfig,
    limits: AmplitudeLimits | None = None,
    **probe_options: Unpack[ProbeOptions],
) -> AmplitudeChoice:
    """Probe at ``point_v`` and choose per-electrode amplitudes (engine left unchanged).

    ``probe_options`` (``probe_ratio``, ``probe_repeats``, ``slew_fraction``, ``bias_z``) are
    those of :func:`probe_amplitude_response`.
    """
    probe = probe_amplitude_response(engine, point_v, settings, limits, **probe_options)
    return plan_amplitudes(probe, settings)


def apply_adaptive_amplitudes(
    engine: GradientEngine,
    point_v: FloatArray,
    settings: AdaptiveAmplitudeConfig,
    limits: AmplitudeLimits | None = None,
    **probe_options: Unpack[ProbeOptions],
) -> AmplitudeChoice:
    """:func:`choose_amplitudes`, then set ``engine.amplitudes_v`` to the choice."""
    choice = choose_amplitudes(engine, point_v, settings, limits, **probe_options)
    engine.amplitudes_v = choice.amplitudes_v
    return choice


def _largest_amplitudes(
    engine: GradientEngine,
    point: FloatArray,
    settings: AdaptiveAmplitudeConfig,
    limits: AmplitudeLimits,
    frequencies: FloatArray,
    slew_fraction: float,
) -> tuple[FloatArray, tuple[str, ...]]:
    """Per electrode the largest allowed amplitude (V) and what sets it."""
    dc = point[list(engine.electrode_indices)]
    room = np.minimum(dc - limits.min_v, limits.max_v - dc) - _RANGE_GUARD_V
    for k, name in enumerate(engine.electrodes):
        if room[k] <= 0:
            raise ValueError(
                f"electrode {name!r} sits at {dc[k]:+.4f} V, on the edge of its range "
                f"[{limits.min_v[k]}, {limits.max_v[k]}] V: no room for a tone; move the "
                "operating point inside"
            )
    slew = slew_fraction * limits.slew_v_per_s / (2.0 * math.pi * frequencies)
    candidates = np.stack([np.full(len(dc), settings.max_amplitude_v), room, slew])
    which = np.argmin(candidates, axis=0)
    names = (BOUND_MAX, BOUND_RANGE, BOUND_SLEW)
    return candidates.min(axis=0), tuple(names[i] for i in which)
