"""What an instrument can do: the capability protocols of the device seam.

An instrument implements any combination of these; a setup (:mod:`labctl.device.composite`)
assigns instruments to roles by the protocols they satisfy, and the safety layer
(:class:`labctl.device.safety.SafeDevice`) is the only caller. No protocol method checks safety:
whatever an instrument is given has passed the safety layer's check already.

Units: volts, amperes, seconds, hertz. Waveforms are float64 arrays of shape
``(n_electrodes, n_samples)`` in the order of :attr:`VoltageSource.electrodes`.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from labctl.device.tones import ToneSpec
from labctl.device.types import Acquisition, CurrentOutput, Electrode, FloatArray


@runtime_checkable
class Instrument(Protocol):
    """Anything a setup holds: it connects, disconnects and says what it is."""

    def open(self) -> None:
        """Connect. Must not move any electrode."""

    def close(self) -> None:
        """Release the connection. Called after the safety layer brought the outputs to 0 V."""

    def identity(self) -> dict[str, Any]:
        """Identity and settings worth recording with every run (JSON-compatible)."""


@runtime_checkable
class VoltageSource(Instrument, Protocol):
    """Plays sampled voltage waveforms on the electrodes (a DAQ's analog outputs)."""

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """The electrodes, in waveform row order."""

    def coerce_sample_rate(self, sample_rate_hz: float) -> float:
        """The rate (Hz) the hardware runs at when asked for ``sample_rate_hz`` (after open)."""

    def present_voltages(self) -> FloatArray:
        """What each electrode holds now (V); NaN where the instrument cannot read it back."""

    def play(
        self, waveform_v: FloatArray, sample_rate_hz: float, cancel: threading.Event | None
    ) -> None:
        """Generate ``waveform_v`` at ``sample_rate_hz`` (Hz); return when the last sample is out.

        The electrodes hold the last sample afterwards. When ``cancel`` is set during the
        record, stop within about 50 ms and raise
        :class:`~labctl.device.types.RecordInterrupted` saying how many samples went out. A
        failure mid-record raises ``RecordInterrupted`` too when the instrument knows how far
        it got, any other exception when it does not (the voltages are then unknown).
        """


@runtime_checkable
class SampledReadout(Instrument, Protocol):
    """Samples the output current(s) on the voltage source's clock (a DAQ's analog inputs)."""

    @property
    def outputs(self) -> tuple[CurrentOutput, ...]:
        """The current outputs, in acquisition row order."""

    def arm(self, n_samples: int, sample_rate_hz: float) -> None:
        """Prepare to take ``n_samples`` samples starting with the next record the source plays."""

    def fetch(self) -> Acquisition:
        """The samples taken during the armed record (A), after :meth:`VoltageSource.play`."""


@dataclass(frozen=True)
class DemodulatorSettings:
    """What a demodulated readout is asked to do.

    Attributes:
        reference_hz: Reference frequency (Hz).
        harmonic: Detect at ``harmonic × reference_hz``.
        time_constant_s: Output filter time constant (s).
        slope_db_per_oct: Output filter roll-off (6, 12, 18 or 24 dB/octave).
        sensitivity_a: Full-scale input current (A, rms).
        reference: ``"internal"`` (the instrument's oscillator at ``reference_hz``) or
            ``"external"`` (locked to REF IN, which carries ``reference_hz``).
    """

    reference_hz: float
    harmonic: int
    time_constant_s: float
    slope_db_per_oct: int
    sensitivity_a: float
    reference: Literal["internal", "external"] = "internal"


@dataclass(frozen=True)
class DemodulatedReading:
    """One reading of a demodulated readout: the rms in-phase and quadrature currents.

    Attributes:
        x_a: In-phase component (A, rms).
        y_a: Quadrature component (A, rms).
        overload: Whether the input or the output filter was overloaded.
    """

    x_a: float
    y_a: float
    overload: bool


@runtime_checkable
class DemodulatedReadout(Instrument, Protocol):
    """Reads X/Y at a reference frequency and harmonic after a time constant (a lock-in)."""

    def configure(self, settings: DemodulatorSettings) -> DemodulatorSettings:
        """Apply ``settings``; return what the instrument really uses (its table entries)."""

    def settling_time_s(self) -> float:
        """How long (s) to wait after a change before a reading is valid (e.g. 10 τ at 24 dB)."""

    def read(self) -> DemodulatedReading:
        """The present X/Y reading."""


@dataclass(frozen=True, eq=False)
class DemodulatedTrace:
    """X/Y stored by a demodulated readout at a fixed rate from a trigger.

    Point ``k`` was taken ``k / rate_hz`` seconds after the trigger (the start of the voltage
    source's record, which is wired to the instrument's trigger input).

    Attributes:
        rate_hz: Storage rate (Hz).
        x_a: In-phase component per point (A, rms).
        y_a: Quadrature component per point (A, rms).
        overload: Whether the input or the output filter overloaded while storing.
        time_constant_s: Output filter time constant (s) the points were filtered with.
        slope_db_per_oct: Output filter roll-off (6, 12, 18 or 24 dB/octave).
    """

    rate_hz: float
    x_a: FloatArray
    y_a: FloatArray
    overload: bool
    time_constant_s: float
    slope_db_per_oct: int


@runtime_checkable
class TriggeredDemodulatedReadout(DemodulatedReadout, Protocol):
    """A demodulated readout that stores X/Y from a trigger (a lock-in's data buffer).

    Readings taken this way line up with the voltage source's record sample for sample, so
    operating points visited in one record are read from one trace.
    """

    def arm_trace(self, duration_s: float, max_rate_hz: float) -> float:
        """Arm storage of X/Y to start at the next trigger, for at least ``duration_s`` (s), at
        the highest rate the instrument offers up to ``max_rate_hz`` (Hz); return that rate.
        Raises ValueError when the instrument cannot store that long."""

    def fetch_trace(self) -> DemodulatedTrace:
        """The points stored since the trigger."""


@runtime_checkable
class SineSource(Instrument, Protocol):
    """Generates its own sine on one electrode from a declarative spec (a lock-in's sine out).

    Specs reach it only through :meth:`labctl.device.safety.SafeDevice.program_tones`, which
    checks them analytically first.
    """

    def program_tone(self, spec: ToneSpec) -> None:
        """Generate the tone ``spec`` describes (amplitude in V peak)."""

    def tone_off(self) -> None:
        """Bring the sine output to its minimum: the safe state."""

    def programmed_amplitude_v(self) -> float | None:
        """Amplitude (V peak) of the tone running now, as the instrument realised it (its level
        steps may round the spec's amplitude down); None when no tone runs. No I/O."""

    def residual_tone(self, electrode: str, reference_hz: float | None = None) -> ToneSpec | None:
        """The sine the output still makes on ``electrode`` in its safe state, or None for none.

        An SR830 cannot go below 4 mV rms, at its reference frequency: that residual counts in
        every check. ``reference_hz`` asks for the residual if the reference were moved there
        (default: where it is). Must not talk to the instrument (it is called on every check).
        """


@runtime_checkable
class ReferenceOutput(Protocol):
    """A voltage source that also makes a lock-in's external reference: a pulse train (a DAQ
    counter output) started by each record's start trigger, so its phase is tied to the record.

    Switching it moves no electrode (it drives a lock-in's REF IN, not the device).
    """

    def set_reference_output(self, counter: str, frequency_hz: float | None) -> float | None:
        """From the next record on, generate a pulse train at ``frequency_hz`` (Hz) on
        ``counter`` with every record (None: stop). Returns the frequency (Hz) it really runs
        at (its timebase rounds it), None when stopped."""

    def reference_delay_s(self) -> float:
        """Time (s) from a record's first sample to the reference's first rising edge."""


@runtime_checkable
class ReferenceSwitch(Protocol):
    """Puts a known resistor in place of the device (a switch matrix, or a simulated bench)."""

    def reference_resistor(
        self, electrode_index: int, resistance_ohm: float
    ) -> AbstractContextManager[None]:
        """Context in which ``resistance_ohm`` (Ω) joins electrode ``electrode_index`` to the
        output instead of the device."""


@runtime_checkable
class SimulationOracle(Protocol):
    """The true response of a simulated device; real instruments never have it."""

    def reference_gradient(self, voltages_v: FloatArray) -> FloatArray:
        """True dI/dV (A/V) per electrode at ``voltages_v``."""

    def reference_hessian(self, voltages_v: FloatArray) -> FloatArray:
        """True d²I/dV² (A/V²), shape ``(n_electrodes, n_electrodes)``."""
