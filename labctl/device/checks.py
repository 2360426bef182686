"""The one check every sample passes, and the one ramp generator.

:func:`check_waveform` is applied by :class:`~labctl.device.safety.SafeDevice` to everything it
sends: the caller's waveforms, the ramps it prepends, and its park and shutdown ramps. It
enforces, on every sample:

- each electrode's ``[min_v, max_v]`` and the global ceiling ``|V| <= max_abs_v``, widened by
  the peak amplitude of any sine an instrument adds on that electrode by itself;
- the slew limit ``|v[n+1] - v[n]| * f_s + Σ 2πfA <= slew_v_per_s`` between consecutive
  samples, including the step from what the electrode holds to the first sample;
- finite values, and (for callers' waveforms) first and last samples on the resting voltage.

A violation raises :class:`SafetyViolation` naming electrode, sample, value and limit.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from labctl.device.types import Electrode, FloatArray

RELATIVE_TOLERANCE = 1e-9
"""Slack on slew checks for floating-point round-off (fraction of the per-sample step)."""
ABSOLUTE_TOLERANCE_V = 1e-12
"""Slack on voltage comparisons for floating-point round-off (V)."""


class SafetyViolation(ValueError):
    """A waveform would break a safety limit; nothing was sent to the device."""

    def __init__(
        self, electrode: str, sample_index: int, value: float, limit: float, rule: str
    ) -> None:
        self.electrode = electrode
        self.sample_index = sample_index
        self.value = value
        self.limit = limit
        self.rule = rule
        super().__init__(
            f"electrode {electrode!r}, sample {sample_index}: {rule} "
            f"(value {value:.6g}, limit {limit:.6g}); nothing was sent to the device"
        )


class SafetyLimits:
    """Limits that apply to every electrode on top of its own range.

    Args:
        max_abs_v: Global ceiling on |V| for every sample (V).
        slew_v_per_s: Maximum rate of change between consecutive samples (V/s).
        ramp_v_per_s: Rate of the ramps the safety layer generates (V/s); at most
            ``slew_v_per_s``; default ``slew_v_per_s``.
    """

    __slots__ = ("max_abs_v", "ramp_v_per_s", "slew_v_per_s")

    def __init__(
        self, max_abs_v: float, slew_v_per_s: float, ramp_v_per_s: float | None = None
    ) -> None:
        if not (max_abs_v > 0 and math.isfinite(max_abs_v)):
            raise ValueError(f"max_abs_v must be a positive number of volts, got {max_abs_v}")
        if not (slew_v_per_s > 0 and math.isfinite(slew_v_per_s)):
            raise ValueError(f"slew_v_per_s must be positive, got {slew_v_per_s}")
        if ramp_v_per_s is not None and not 0 < ramp_v_per_s <= slew_v_per_s:
            raise ValueError("ramp_v_per_s must be positive and at most slew_v_per_s")
        self.max_abs_v = float(max_abs_v)
        self.slew_v_per_s = float(slew_v_per_s)
        self.ramp_v_per_s = None if ramp_v_per_s is None else float(ramp_v_per_s)

    @property
    def effective_ramp_v_per_s(self) -> float:
        """Rate used for generated ramps (V/s)."""
        return self.ramp_v_per_s if self.ramp_v_per_s is not None else self.slew_v_per_s

    def __repr__(self) -> str:
        return (
            f"SafetyLimits(max_abs_v={self.max_abs_v}, slew_v_per_s={self.slew_v_per_s}, "
            f"ramp_v_per_s={self.ramp_v_per_s})"
        )


def check_electrodes(electrodes: tuple[Electrode, ...], limits: SafetyLimits) -> None:
    """Raise ValueError if an electrode's range or resting voltage cannot be used safely."""
    for electrode in electrodes:
        if not electrode.min_v < electrode.max_v:
            raise ValueError(f"electrode {electrode.name!r}: min_v must be below max_v")
        if max(abs(electrode.min_v), abs(electrode.max_v)) > limits.max_abs_v:
            raise ValueError(
                f"electrode {electrode.name!r}: range [{electrode.min_v}, {electrode.max_v}] V "
                f"exceeds the ceiling |V| <= {limits.max_abs_v} V"
            )
        if not electrode.min_v <= 0.0 <= electrode.max_v:
            raise ValueError(
                f"electrode {electrode.name!r}: range must contain 0 V (the safe state)"
            )
        if not electrode.contains(electrode.rest_v):
            raise ValueError(f"electrode {electrode.name!r}: resting voltage outside its range")


def check_waveform(
    waveform_v: FloatArray,
    sample_rate_hz: float,
    electrodes: tuple[Electrode, ...],
    limits: SafetyLimits,
    *,
    require_rest_ends: bool = True,
    held_v: ArrayLike | None = None,
    tone_amplitude_v: ArrayLike | None = None,
    tone_slew_v_per_s: ArrayLike | None = None,
) -> None:
    """Raise :class:`SafetyViolation` at the first sample that breaks a limit.

    Args:
        waveform_v: Shape ``(n_electrodes, n_samples)`` (V).
        sample_rate_hz: Rate at which the waveform will be played (Hz).
        electrodes: The electrodes, in row order.
        limits: The global limits.
        require_rest_ends: Whether the first and last samples must equal the resting voltages.
        held_v: What each electrode holds before the first sample (V); the step to the first
            sample is checked against the slew limit. A NaN entry skips that one step (only the
            shutdown from an unknown voltage passes NaN: its single step to 0 V is deliberate).
        tone_amplitude_v: Per electrode, the summed peak amplitude (V) of sines that an
            instrument adds by itself; widens every sample's excursion.
        tone_slew_v_per_s: Per electrode, the summed peak slew (V/s, Σ 2πfA) of those sines.
    """
    wave = np.asarray(waveform_v, dtype=np.float64)
    n_el = len(electrodes)
    if wave.ndim != 2 or wave.shape[0] != n_el:
        raise ValueError(
            f"waveform must have shape (n_electrodes={n_el}, n_samples), got {wave.shape}"
        )
    if wave.shape[1] < 1:
        raise ValueError("waveform has no samples")
    if not (sample_rate_hz > 0 and math.isfinite(sample_rate_hz)):
        raise ValueError(f"sample rate must be a positive number of Hz, got {sample_rate_hz}")
    amp = _per_row(tone_amplitude_v, n_el)
    tone_slew = _per_row(tone_slew_v_per_s, n_el)
    held = None if held_v is None else np.asarray(held_v, dtype=np.float64).reshape(n_el)
    for row, electrode in enumerate(electrodes):
        samples = wave[row]
        bad = ~np.isfinite(samples)
        if bad.any():
            index = int(np.argmax(bad))
            raise SafetyViolation(
                electrode.name, index, float(samples[index]), electrode.max_v, "not a finite number"
            )
        a = amp[row]
        _first_outside(samples + a, electrode.name, electrode.max_v, "above the electrode maximum")
        _first_outside(
            -(samples - a), electrode.name, -electrode.min_v, "below the electrode minimum"
        )
        _first_outside(
            np.abs(samples) + a, electrode.name, limits.max_abs_v, "|V| above the ceiling"
        )
        budget = limits.slew_v_per_s - tone_slew[row]
        if budget <= 0:
            raise SafetyViolation(
                electrode.name,
                0,
                float(tone_slew[row]),
                limits.slew_v_per_s,
                "the instrument's own sines alone reach the slew limit (V/s)",
            )
        max_step_v = budget / sample_rate_hz * (1 + RELATIVE_TOLERANCE)
        steps = np.abs(np.diff(samples))
        first_step = 0
        if held is not None and math.isfinite(held[row]):
            steps = np.concatenate([[abs(samples[0] - held[row])], steps])
            first_step = 1
        over = steps > max_step_v
        if over.any():
            index = int(np.argmax(over))
            raise SafetyViolation(
                electrode.name,
                index + 1 - first_step,
                float(steps[index] * sample_rate_hz + tone_slew[row]),
                limits.slew_v_per_s,
                "slew rate (V/s) above the limit",
            )
        if require_rest_ends:
            for index in (0, samples.size - 1):
                if abs(samples[index] - electrode.rest_v) > ABSOLUTE_TOLERANCE_V:
                    raise SafetyViolation(
                        electrode.name,
                        index,
                        float(samples[index]),
                        electrode.rest_v,
                        "waveform must start and end on the resting voltage",
                    )


def _per_row(values: ArrayLike | None, n: int) -> FloatArray:
    if values is None:
        return np.zeros(n)
    out = np.asarray(values, dtype=np.float64).reshape(n)
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise ValueError("tone amplitudes and slews must be finite and non-negative")
    return out


def _first_outside(values: FloatArray, name: str, limit: float, rule: str) -> None:
    over = values > limit + ABSOLUTE_TOLERANCE_V
    if over.any():
        index = int(np.argmax(over))
        raise SafetyViolation(name, index, float(abs(values[index])), abs(limit), rule)


def ramp_length(distance_v: float, sample_rate_hz: float, rate_v_per_s: float) -> int:
    """Samples a linear ramp over ``distance_v`` (V) needs at ``rate_v_per_s`` (V/s)."""
    if distance_v == 0.0:
        return 0
    max_step = rate_v_per_s / sample_rate_hz
    return max(1, math.ceil(abs(distance_v) / max_step * (1 + 1e-12)))


def ramp_samples(
    start_v: ArrayLike, stop_v: ArrayLike, sample_rate_hz: float, rate_v_per_s: float
) -> FloatArray:
    """A linear multi-channel ramp from ``start_v`` (excluded) to ``stop_v`` (included).

    The backend already holds ``start_v``; the ramp ends exactly on ``stop_v``. Every electrode
    moves by at most ``rate_v_per_s / sample_rate_hz`` per sample.

    Returns:
        Shape ``(n_electrodes, n_steps)``; ``n_steps`` is 0 when nothing moves.
    """
    start = np.asarray(start_v, dtype=np.float64)
    stop = np.asarray(stop_v, dtype=np.float64)
    distance = float(np.max(np.abs(stop - start), initial=0.0))
    n_steps = ramp_length(distance, sample_rate_hz, rate_v_per_s)
    if n_steps == 0:
        return np.empty((start.size, 0))
    fractions = np.arange(1, n_steps + 1) / n_steps
    ramp = start[:, None] + (stop - start)[:, None] * fractions[None, :]
    ramp[:, -1] = stop
    return ramp
