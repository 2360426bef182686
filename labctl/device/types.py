"""What the seam speaks of: electrodes, current outputs, acquisitions and instrument errors.

A device has named voltage electrodes (each with a role, a range and a resting voltage) and one
or more current outputs. Its core operation takes a multi-channel voltage waveform at a sample
rate and returns the synchronously sampled output current(s) in amperes.

Instruments (``drivers`` for real ones, ``simulated_hw`` for the simulated bench) implement the
capability protocols of :mod:`labctl.device.protocols`. labctl code never talks to an instrument
directly: it receives a :class:`labctl.device.safety.SafeDevice`, which checks every sample
before any instrument sees it.

Units: volts, amperes, seconds, hertz throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


class ElectrodeRole(StrEnum):
    """What an electrode is used for."""

    INPUT = "input"
    """Carries a data input (held at its case value, never perturbed by the engine)."""
    CONTROL = "control"
    """A trainable control voltage (perturbed by homodyne tones)."""


@dataclass(frozen=True)
class Electrode:
    """One voltage electrode.

    Attributes:
        name: Unique name used in configurations and results (e.g. ``"e0"``).
        role: Input or control.
        min_v: Lowest voltage allowed on this electrode (V).
        max_v: Highest voltage allowed on this electrode (V).
        rest_v: Resting voltage (V): every waveform starts and ends here.
    """

    name: str
    role: ElectrodeRole
    min_v: float
    max_v: float
    rest_v: float = 0.0

    def contains(self, voltage_v: float) -> bool:
        """Whether ``voltage_v`` lies inside ``[min_v, max_v]``."""
        return self.min_v <= voltage_v <= self.max_v


@dataclass(frozen=True)
class CurrentOutput:
    """One current output electrode, read through a transimpedance amplifier.

    Attributes:
        name: Unique name (e.g. ``"out"``).
        gain_v_per_a: Transimpedance gain of the amplifier (V/A); the sign includes inversion.
        saturation_a: Output current (A, magnitude) at which the amplifier or ADC saturates.
    """

    name: str
    gain_v_per_a: float
    saturation_a: float


@dataclass(frozen=True)
class Acquisition:
    """The result of applying one waveform.

    Attributes:
        current_a: Output current(s), shape ``(n_outputs, n_samples)`` (A), sample ``n`` taken
            synchronously with waveform sample ``n``.
        sample_rate_hz: The actual (coerced) sample rate (Hz) used for both drive and readout.
        saturated: Per output, whether any sample hit the amplifier or ADC limit.
        metadata: Instrument identities, amplifier gain, timing and anything else a run store
            should keep with the record.
    """

    current_a: FloatArray
    sample_rate_hz: float
    saturated: BoolArray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Number of samples per output."""
        return int(self.current_a.shape[1])

    @property
    def duration_s(self) -> float:
        """Duration of the record (s)."""
        return self.n_samples / self.sample_rate_hz


class BackendError(RuntimeError):
    """An instrument failed to carry out an operation (instrument error, lost connection, …)."""


class RecordInterrupted(BackendError):
    """A record stopped before its last sample: cancelled on request, or failed mid-way.

    Attributes:
        samples_generated: How many samples of the record reached the electrodes (the
            electrodes hold sample ``samples_generated - 1``, or what they held before when it
            is 0); None when the instrument cannot say, so the voltages are unknown.
        cancelled: Whether the record stopped because its cancel event was set.
    """

    def __init__(self, message: str, samples_generated: int | None, *, cancelled: bool) -> None:
        super().__init__(message)
        self.samples_generated = samples_generated
        self.cancelled = cancelled


class UnknownVoltage(RuntimeError):
    """The layer does not know what an electrode holds, so it refuses to drive it.

    Attributes:
        electrodes: Names of the electrodes whose voltage is unknown.
    """

    def __init__(self, electrodes: list[str], reason: str) -> None:
        self.electrodes = electrodes
        super().__init__(
            f"voltage unknown on {', '.join(electrodes)} ({reason}); refusing to drive. "
            "Park the device (`labctl park CONFIG`), which brings those electrodes to 0 V."
        )


def electrode_names(electrodes: tuple[Electrode, ...]) -> tuple[str, ...]:
    """Electrode names in waveform row order."""
    return tuple(e.name for e in electrodes)
