"""The electrode-device interface: the one seam between labctl and any hardware.

A device has named voltage electrodes (each with a role, a range and a resting voltage) and one
or more current outputs. Its core operation takes a multi-channel voltage waveform at a sample
rate and returns the synchronously sampled output current(s) in amperes.

Backends (``drivers`` for real instruments, ``simulated_hw`` for the simulated bench) implement
:class:`ElectrodeBackend`. labctl code never talks to a backend directly: it receives a
:class:`labctl.device.safety.SafeDevice`, which checks every waveform before the backend sees it.

Units: volts, amperes, seconds, hertz throughout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
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
    """A backend failed to carry out an operation (instrument error, lost connection, …)."""


class ElectrodeBackend(ABC):
    """What an instrument backend implements. Used only through :class:`labctl.device.safety.SafeDevice`.

    A backend writes whatever it is given: it is the safety layer's job to make sure that is
    safe. Backends may add their own hardware limits (e.g. DAQmx channel min/max) as a second
    layer. Waveforms are float64 arrays of shape ``(n_electrodes, n_samples)`` in the order of
    :attr:`electrodes`.
    """

    @property
    @abstractmethod
    def electrodes(self) -> tuple[Electrode, ...]:
        """The voltage electrodes, in waveform row order."""

    @property
    @abstractmethod
    def outputs(self) -> tuple[CurrentOutput, ...]:
        """The current outputs, in acquisition row order."""

    @abstractmethod
    def open(self) -> None:
        """Connect to the instruments. Electrodes must be left at (or brought to) 0 V."""

    @abstractmethod
    def close(self) -> None:
        """Release the instruments. Called after the safety layer has ramped to 0 V."""

    @abstractmethod
    def coerce_sample_rate(self, sample_rate_hz: float) -> float:
        """The rate (Hz) the hardware will actually run at when asked for ``sample_rate_hz``."""

    @abstractmethod
    def present_voltages(self) -> FloatArray:
        """The voltage (V) each electrode holds now, shape ``(n_electrodes,)``."""

    @abstractmethod
    def write_read(self, waveform_v: FloatArray, sample_rate_hz: float) -> Acquisition:
        """Apply ``waveform_v`` at ``sample_rate_hz`` and return the synchronous readout.

        The electrodes hold the last sample afterwards. ``sample_rate_hz`` has already been
        coerced with :meth:`coerce_sample_rate`.
        """

    def write(self, waveform_v: FloatArray, sample_rate_hz: float) -> None:
        """Apply a waveform without keeping the readout (ramps, shutdown)."""
        self.write_read(waveform_v, sample_rate_hz)

    def identity(self) -> dict[str, Any]:
        """Instrument identities and settings worth recording with every run."""
        return {"backend": type(self).__name__}

    def reference_gradient(self, voltages_v: FloatArray) -> FloatArray | None:
        """The device's true dI/dV (A/V) per electrode at ``voltages_v``, if the backend knows it.

        Only a simulated device knows the truth; real backends return None. Used to show users
        how accurate a measurement was, never by the measurement itself.
        """
        return None

    def reference_hessian(self, voltages_v: FloatArray) -> FloatArray | None:
        """The device's true d²I/dV² (A/V²), shape ``(n_electrodes, n_electrodes)``, or None."""
        return None

    def reference_resistor(
        self, electrode_index: int, resistance_ohm: float
    ) -> AbstractContextManager[None]:
        """Context in which a known resistor replaces the device (electrode to output).

        Backends with a switch matrix (or a simulated bench) implement it; others raise
        NotImplementedError and the user connects the resistor by hand.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot switch in a reference resistor by itself"
        )

    @property
    def electrode_names(self) -> tuple[str, ...]:
        """Electrode names in waveform row order."""
        return tuple(e.name for e in self.electrodes)
