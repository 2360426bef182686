"""Declarative tone specs, checked analytically before any instrument's oscillator is set.

A sine source (a lock-in amplifier's sine output, summed onto an electrode) adds
``A sin(2π f t + φ)`` to whatever the DC source holds. Its samples never pass the sampled
check, so :func:`check_tone_specs` proves the worst case instead: on every electrode, the DC
plus the sum of its tones' amplitudes stays inside the range and the ceiling, and the sum of
``2π f A`` stays under the slew limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labctl.device.checks import ABSOLUTE_TOLERANCE_V, SafetyLimits, SafetyViolation
from labctl.device.types import Electrode


@dataclass(frozen=True)
class ToneSpec:
    """One sine an instrument generates on one electrode.

    Attributes:
        electrode: Electrode name.
        frequency_hz: Frequency (Hz), positive.
        amplitude_v: Peak amplitude (V), non-negative.
        phase_rad: Phase (rad) at the instrument's reference.
    """

    electrode: str
    frequency_hz: float
    amplitude_v: float
    phase_rad: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.frequency_hz) and self.frequency_hz > 0):
            raise ValueError(f"tone on {self.electrode}: frequency must be positive (Hz)")
        if not (math.isfinite(self.amplitude_v) and self.amplitude_v >= 0):
            raise ValueError(f"tone on {self.electrode}: amplitude must be >= 0 (V peak)")
        if not math.isfinite(self.phase_rad):
            raise ValueError(f"tone on {self.electrode}: phase must be finite (rad)")

    @property
    def peak_slew_v_per_s(self) -> float:
        """Largest rate of change of the sine (V/s): 2π f A."""
        return 2 * math.pi * self.frequency_hz * self.amplitude_v


def tone_envelope(
    specs: Sequence[ToneSpec], electrodes: tuple[Electrode, ...]
) -> tuple[list[float], list[float]]:
    """Per electrode row: summed peak amplitude (V) and summed peak slew (V/s) of ``specs``."""
    index = {e.name: row for row, e in enumerate(electrodes)}
    amplitude = [0.0] * len(electrodes)
    slew = [0.0] * len(electrodes)
    for spec in specs:
        if spec.electrode not in index:
            known = ", ".join(index)
            raise ValueError(f"tone on unknown electrode {spec.electrode!r}; known: {known}")
        row = index[spec.electrode]
        amplitude[row] += spec.amplitude_v
        slew[row] += spec.peak_slew_v_per_s
    return amplitude, slew


def check_tone_specs(
    specs: Sequence[ToneSpec],
    electrodes: tuple[Electrode, ...],
    limits: SafetyLimits,
    dc_v: Mapping[str, tuple[float, float]],
) -> None:
    """Raise :class:`SafetyViolation` unless ``specs`` are safe on top of the DC.

    Args:
        specs: Every tone that will run at the same time.
        electrodes: The setup's electrodes.
        limits: The global limits.
        dc_v: Per electrode name, the lowest and highest DC voltage (V) the source will hold
            while the tones run; electrodes not named sit at their resting voltage.
    """
    amplitude, slew = tone_envelope(specs, electrodes)
    for row, electrode in enumerate(electrodes):
        if amplitude[row] == 0.0 and slew[row] == 0.0:
            continue
        low, high = dc_v.get(electrode.name, (electrode.rest_v, electrode.rest_v))
        a = amplitude[row]
        if high + a > electrode.max_v + ABSOLUTE_TOLERANCE_V:
            raise SafetyViolation(
                electrode.name,
                0,
                high + a,
                electrode.max_v,
                "DC plus tone amplitudes above the electrode maximum",
            )
        if low - a < electrode.min_v - ABSOLUTE_TOLERANCE_V:
            raise SafetyViolation(
                electrode.name,
                0,
                low - a,
                electrode.min_v,
                "DC minus tone amplitudes below the electrode minimum",
            )
        peak = max(abs(low), abs(high)) + a
        if peak > limits.max_abs_v + ABSOLUTE_TOLERANCE_V:
            raise SafetyViolation(
                electrode.name,
                0,
                peak,
                limits.max_abs_v,
                "DC plus tone amplitudes above the ceiling",
            )
        if slew[row] > limits.slew_v_per_s:
            raise SafetyViolation(
                electrode.name,
                0,
                slew[row],
                limits.slew_v_per_s,
                "sum of 2*pi*f*A of the tones (V/s) above the slew limit",
            )
