"""What the SR830 and the SR86x have in common, written once against per-model tables.

:class:`SRSLockin` is the standalone driver's base: it connects by any VISA resource string
(or takes an open pyvisa-like resource), identifies the instrument with ``*IDN?`` and refuses
another model, and offers validated properties in SI units. Values are checked before any
command is sent; a value that is not a table entry is refused (``*_at_least`` helpers pick the
smallest entry at or above a value, and say so). ``*RST`` is never sent.

Units: V, A, s, Hz; phase in degrees; the sine output in V rms (tone specs carry V peak).
Current-input sensitivities and readings are in A: the instruments label their current
sensitivities as the voltage table × 1e-6 A/V ("2 nV/fA" … "1 V/µA") and report X/Y in A.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, Self

import numpy as np

from drivers.srs.common import (
    Identity,
    IndexTable,
    LockinAutoRangeError,
    LockinCommandError,
    LockinError,
    LockinIdentityError,
    LockinValueError,
    ResourceLike,
    Transport,
    check_range,
    choose,
    format_number,
    format_si,
    open_visa_resource,
)
from labctl.device.tones import ToneSpec

log = logging.getLogger(__name__)

InputMode = Literal["voltage", "voltage_diff", "current_1M", "current_100M"]
"""Signal input: ``voltage`` (A), ``voltage_diff`` (A−B), ``current_1M`` (10⁶ V/A current
input), ``current_100M`` (10⁸ V/A current input)."""

INPUT_MODES: tuple[InputMode, ...] = ("voltage", "voltage_diff", "current_1M", "current_100M")

SLOPES_DB_PER_OCT = (6, 12, 18, 24)
"""Output filter roll-offs (dB/octave), in ``OFSL`` index order."""

SETTLING_TIME_CONSTANTS = {6: 5.0, 12: 7.0, 18: 9.0, 24: 10.0}
"""Time constants to wait after a step, per slope (dB/oct), to settle within about 0.1 %."""

CURRENT_A_PER_V = 1e-6
"""Current-input sensitivity labels: the voltage table × this (A/V)."""

OUTPUT_NAMES = ("X", "Y", "R", "theta", "frequency")
"""Quantities :meth:`SRSLockin.snap` reads: X, Y, R (V or A rms), θ (degrees), frequency (Hz)."""


@dataclass(frozen=True)
class LockinStatus:
    """The lock-in status register (``LIAS?``), decoded. Bits latch until read.

    Attributes:
        raw: The register value.
        input_overload: The signal input (or its amplifier) overloaded.
        filter_overload: A time-constant filter overloaded.
        output_overload: An output (X, Y, R or a display channel) exceeded full scale.
        reference_unlock: The reference PLL lost lock (external reference).
        names: Names of every bit that is set.
    """

    raw: int
    input_overload: bool
    filter_overload: bool
    output_overload: bool
    reference_unlock: bool
    names: tuple[str, ...]

    @property
    def overload(self) -> bool:
        """Whether any overload bit is set."""
        return self.input_overload or self.filter_overload or self.output_overload


@dataclass(frozen=True)
class XYReading:
    """X and Y taken together (``SNAP?``), with the status right after.

    Attributes:
        x: In-phase component (V or A rms, by input mode).
        y: Quadrature component (V or A rms).
        status: The status register read right after the snapshot.
    """

    x: float
    y: float
    status: LockinStatus


class SRSLockin(ABC):
    """An SRS lock-in amplifier over VISA; subclasses give the model's tables and commands.

    Use as a context manager, or call :meth:`close` (which puts the sine output at its
    minimum first). Thread-safe: compound operations hold the connection's lock.
    """

    MODELS: ClassVar[tuple[str, ...]]
    """Models (``*IDN?`` field 2) this driver accepts."""
    VOLTAGE_SENSITIVITIES: ClassVar[IndexTable]
    """Full-scale sensitivities (V rms) by instrument index."""
    TIME_CONSTANTS: ClassVar[IndexTable]
    """Time constants (s) by instrument index."""
    SENSITIVITY_COMMAND: ClassVar[str]
    REFERENCE_COMMAND: ClassVar[str]
    """Selects the reference source (``FMOD`` on the SR830, ``RSRC`` on the SR86x)."""
    REFERENCE_SOURCES: ClassVar[tuple[str, ...]]
    """Reference source names in the instrument's index order."""
    """``SENS`` or ``SCAL``."""
    MIN_FREQUENCY_HZ: ClassVar[float] = 1e-3
    MAX_HARMONIC: ClassVar[int]
    PHASE_RANGE_DEG: ClassVar[tuple[float, float]]
    SINE_RANGE_V_RMS: ClassVar[tuple[float, float]]
    """Lowest and highest sine output (V rms); the lowest is the safe state."""
    SINE_STEP_V_RMS: ClassVar[float]
    """Resolution of the sine output (V rms); programmed levels are rounded down to it."""
    OUTPUT_CODES: ClassVar[dict[str, int]]
    """``OUTP?``/``SNAP?`` parameter of each of :data:`OUTPUT_NAMES`."""
    SNAP_MAX: ClassVar[int]
    """Most quantities one ``SNAP?`` takes."""
    ESR_ERRORS: ClassVar[dict[int, tuple[str, str]]]
    STATUS_BITS: ClassVar[dict[int, str]]
    """Lock-in status register (``LIAS?``) bit → name; bits 0–3 are input, filter and output
    overload and reference unlock on both models."""
    """Standard event status bits that mean an error: bit -> (name, what it means)."""
    STEPPING_CLEARS_INPUT_OVERLOAD: ClassVar[bool] = True
    """Whether a less sensitive setting relieves an input overload (not on the SR86x, whose
    input range is separate)."""

    def __init__(
        self,
        resource: str | ResourceLike,
        *,
        visa_library: str = "@py",
        timeout_s: float = 2.0,
        expect_model: str | None = None,
        read_termination: str | None = None,
        clear_status: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Connect and identify; changes no output.

        Args:
            resource: A VISA resource string (``GPIB0::8::INSTR``, ``ASRL/dev/ttyUSB0::INSTR``,
                ``TCPIP::host::port::SOCKET``), or an open pyvisa-like resource.
            visa_library: pyvisa library spec (``"@py"`` for pyvisa-py; "" for the system
                VISA) used for a resource string.
            timeout_s: Read timeout (s).
            expect_model: Refuse any other model (e.g. ``"SR865A"``).
            read_termination: Reply terminator; default per model and interface.
            clear_status: Send ``*CLS`` after identifying, so that later status and error
                bits refer to this session's commands.
            sleep: How to wait (s); tests pass a recorder.

        Raises:
            LockinConnectionError: Nothing reachable at ``resource``.
            LockinTimeout: No reply to ``*IDN?``.
            LockinIdentityError: Another instrument or model answers.
        """
        check_range("timeout_s", timeout_s, 1e-3, 600.0, "s")
        if isinstance(resource, str):
            name = resource
            termination = read_termination or self._read_termination_for(resource)
            opened = open_visa_resource(
                resource,
                visa_library=visa_library,
                timeout_s=timeout_s,
                read_termination=termination,
            )
        else:
            name = str(getattr(resource, "resource_name", type(resource).__name__))
            opened = resource
        self._io = Transport(opened, name, timeout_s)
        self._sleep = sleep
        self._input_mode: InputMode | None = None
        try:
            self._identity = self._identify(expect_model)
            if clear_status:
                self._io.write("*CLS")
                self._io.take_commands()
        except BaseException:
            self._io.close()
            raise

    # -- connection --------------------------------------------------------------------------
    @classmethod
    def _read_termination_for(cls, resource: str) -> str:
        """Reply terminator for ``resource`` (LF; the SR830 ends RS-232 replies with CR)."""
        return "\n"

    def _prepare_interface(self) -> None:  # noqa: B027 - a hook, empty by default
        """Anything to send before ``*IDN?`` (the SR830 must be told which port answers)."""

    def _identify(self, expect_model: str | None) -> Identity:
        self._prepare_interface()
        reply = self._io.query("*IDN?")
        identity = Identity.parse(reply)
        driver = type(self).__name__
        if identity is None or "STANFORD" not in identity.manufacturer.upper():
            raise LockinIdentityError(
                f"{self._io.name} answered *IDN? with {reply!r}: that is not a Stanford "
                f"Research Systems lock-in, so the {driver} driver will not use it; check the "
                "address",
                self._io.name,
            )
        if identity.model not in self.MODELS:
            if identity.model.startswith("SR86"):
                other = "the sr860 backend (SR860 driver)"
            elif identity.model == "SR830":
                other = "the sr830 backend (SR830 driver)"
            else:
                other = "a driver for that model"
            raise LockinIdentityError(
                f"{self._io.name} is an {identity.model} ({identity.raw!r}), not one of "
                f"{', '.join(self.MODELS)}: use {other}, or check the address",
                self._io.name,
            )
        if expect_model is not None and identity.model != expect_model.upper():
            raise LockinIdentityError(
                f"{self._io.name} is an {identity.model}, but expect_model is {expect_model!r}: "
                "check the address, or correct expect_model",
                self._io.name,
            )
        log.info("connected to %s at %s", identity.raw, self._io.name)
        return identity

    @property
    def identity(self) -> Identity:
        """What ``*IDN?`` said at connect."""
        return self._identity

    @property
    def model(self) -> str:
        """The model, e.g. ``SR830`` or ``SR865A``."""
        return self._identity.model

    @property
    def resource_name(self) -> str:
        """The VISA resource string (or the resource's name)."""
        return self._io.name

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._io.closed

    def close(self, *, safe_state: bool = True) -> None:
        """Put the sine output at its minimum (unless ``safe_state`` is False), then close.

        Idempotent. The connection is closed even when the safe state fails; the failure
        is raised afterwards.
        """
        if self._io.closed:
            return
        failure: LockinError | None = None
        if safe_state:
            try:
                self.safe_state()
            except LockinError as exc:
                log.error("%s: sine output not brought to its minimum: %s", self._io.name, exc)
                failure = exc
        self._io.close()
        if failure is not None:
            raise failure

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def lock(self) -> threading.RLock:
        """Held by every compound operation; hold it to send several commands in a row."""
        return self._io.lock

    def write(self, command: str) -> None:
        """Send a raw command (``*RST`` is refused). Prefer the validated properties."""
        self._io.write(command)

    def query(self, command: str) -> str:
        """Send a raw query and return the reply."""
        return self._io.query(command)

    # -- index helpers -----------------------------------------------------------------------
    def _query_index(self, command: str, table: IndexTable) -> int:
        index = self._io.query_int(command)
        table.value(index)  # refuses an index outside the table
        return index

    @staticmethod
    def _check_index(name: str, index: int, table: IndexTable) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise LockinValueError(f"{name} index {index!r}: give an integer")
        if not 0 <= index < len(table.values):
            raise LockinValueError(f"{name} index {index} is outside 0…{len(table.values) - 1}")

    # -- errors ------------------------------------------------------------------------------
    def check_errors(self) -> None:
        """Read the standard event status (``*ESR?``, clears it); raise if it flags an error.

        Raises:
            LockinCommandError: Which bits were set, what they mean, and the commands sent
                since the previous check.
        """
        with self._io.lock:
            value = self._io.query_int("*ESR?")
            commands = self._io.take_commands()[:-1]  # without the *ESR? itself
        bits = [
            (name, meaning) for bit, (name, meaning) in self.ESR_ERRORS.items() if value >> bit & 1
        ]
        if not bits:
            return
        sent = ", ".join(repr(c) for c in commands[-8:]) or "none"
        detail = "; ".join(f"{name}: {meaning}" for name, meaning in bits)
        raise LockinCommandError(
            f"{self.model} at {self._io.name} flagged an error (*ESR? = {value}: {detail}) after "
            f"the commands {sent}; check those values against the {self.model}'s ranges",
            self._io.name,
            tuple(name for name, _ in bits),
            commands,
        )

    # -- reference ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def max_frequency_hz(self) -> float:
        """Highest detection frequency, harmonic × reference (Hz), of this model."""

    @property
    def reference_source(self) -> str:
        """``internal`` or ``external`` (SR86x also ``dual``, ``chop``)."""
        query = f"{self.REFERENCE_COMMAND}?"
        index = self._io.query_int(query)
        sources = self.REFERENCE_SOURCES
        if not 0 <= index < len(sources):
            raise self._io.bad_reply(query, str(index), f"0…{len(sources) - 1}")
        return sources[index]

    @reference_source.setter
    def reference_source(self, source: str) -> None:
        choice = choose("reference source", source, self.REFERENCE_SOURCES)
        self._io.write(f"{self.REFERENCE_COMMAND} {choice}")

    def check_reference(self, frequency_hz: float, harmonic: int) -> None:
        """Raise :class:`LockinValueError` unless the harmonic, the frequency (Hz) and their
        product fit this model (sends nothing)."""
        if not (isinstance(harmonic, int) and not isinstance(harmonic, bool)):
            raise LockinValueError(f"harmonic {harmonic!r}: give an integer 1…{self.MAX_HARMONIC}")
        if not 1 <= harmonic <= self.MAX_HARMONIC:
            raise LockinValueError(
                f"harmonic {harmonic} is outside 1…{self.MAX_HARMONIC} ({self.model})"
            )
        check_range(
            "reference frequency",
            frequency_hz,
            self.MIN_FREQUENCY_HZ,
            self.max_frequency_hz,
            "Hz",
            f"the {self.model}'s limit",
        )
        if harmonic * frequency_hz > self.max_frequency_hz * (1 + 1e-9):
            raise LockinValueError(
                f"harmonic {harmonic} × {format_si(frequency_hz, 'Hz')} = "
                f"{format_si(harmonic * frequency_hz, 'Hz')} is above the {self.model}'s "
                f"{format_si(self.max_frequency_hz, 'Hz')} detection limit; lower the "
                "frequency or the harmonic"
            )

    @property
    def frequency_hz(self) -> float:
        """Reference frequency (Hz). Setting it checks harmonic × frequency against the limit.

        The sine output runs at the reference frequency: changing it moves a running tone
        (the seam adapter refuses that; standalone, lower the sine first with safe_state()).
        """
        return self._io.query_float("FREQ?")

    @frequency_hz.setter
    def frequency_hz(self, frequency_hz: float) -> None:
        check_range(
            "reference frequency",
            frequency_hz,
            self.MIN_FREQUENCY_HZ,
            self.max_frequency_hz,
            "Hz",
            f"the {self.model}'s limit",
        )
        with self._io.lock:
            self.check_reference(frequency_hz, self.harmonic)
            self._io.write(f"FREQ {format_number(frequency_hz)}")

    @property
    def harmonic(self) -> int:
        """Detection harmonic (1…19999 on the SR830, 1…99 on the SR86x)."""
        return self._io.query_int("HARM?")

    @harmonic.setter
    def harmonic(self, harmonic: int) -> None:
        self.check_reference(self.MIN_FREQUENCY_HZ, harmonic)
        with self._io.lock:
            self.check_reference(self.frequency_hz, harmonic)
            self._io.write(f"HARM {harmonic}")

    def set_reference(self, frequency_hz: float, harmonic: int = 1) -> None:
        """Set frequency (Hz) and harmonic together, in an order every step of which is valid
        (``HARM 1``, ``FREQ``, then ``HARM``)."""
        self.check_reference(frequency_hz, harmonic)
        with self._io.lock:
            self._io.write("HARM 1")
            self._io.write(f"FREQ {format_number(frequency_hz)}")
            if harmonic != 1:
                self._io.write(f"HARM {harmonic}")

    def use_external_reference(self, expected_hz: float, harmonic: int = 1) -> None:
        """Lock to REF IN and detect at ``harmonic`` × its frequency.

        ``expected_hz`` (Hz) is the frequency that will be on REF IN: the harmonic and the
        product are checked against this model's limits with it (nothing is sent if they do
        not fit). ``FREQ?`` reads the measured reference only once it is there, so the harmonic
        is written without reading it back.
        """
        self.check_reference(expected_hz, harmonic)
        with self._io.lock:
            self.reference_source = "external"
            self._io.write(f"HARM {harmonic}")

    @property
    def phase_deg(self) -> float:
        """Reference phase shift (degrees)."""
        return self._io.query_float("PHAS?")

    @phase_deg.setter
    def phase_deg(self, phase_deg: float) -> None:
        low, high = self.PHASE_RANGE_DEG
        check_range("phase", phase_deg, low, high, "°")
        self._io.write(f"PHAS {format_number(phase_deg)}")

    # -- sine output -------------------------------------------------------------------------
    @property
    def sine_amplitude_v_rms(self) -> float:
        """Sine output level (V rms). Read-only: program it with :meth:`apply_tone`."""
        return self._io.query_float("SLVL?")

    @property
    def safe_sine_v_rms(self) -> float:
        """The sine output of the safe state (V rms): the lowest the instrument offers."""
        return self.SINE_RANGE_V_RMS[0]

    def sine_level_for(self, amplitude_v_peak: float) -> float:
        """The ``SLVL`` (V rms) for a peak amplitude: ``amplitude/√2`` rounded down to the
        instrument's resolution (never above what was checked).

        Raises:
            LockinValueError: Outside the instrument's sine output range.
        """
        low, high = self.SINE_RANGE_V_RMS
        if not (isinstance(amplitude_v_peak, int | float) and math.isfinite(amplitude_v_peak)):
            raise LockinValueError(f"sine amplitude {amplitude_v_peak!r}: give a number of V")
        rms = amplitude_v_peak / math.sqrt(2.0)
        steps = math.floor(rms / self.SINE_STEP_V_RMS * (1 + 1e-12))
        level = round(steps * self.SINE_STEP_V_RMS, 12)
        if level < low * (1 - 1e-9) or rms > high * (1 + 1e-9):
            raise LockinValueError(
                f"sine amplitude {format_si(amplitude_v_peak, 'V')} peak "
                f"({format_si(rms, 'V')} rms) is outside the {self.model}'s sine output, "
                f"{format_si(low, 'V')} … {format_si(high, 'V')} rms "
                f"({format_si(low * math.sqrt(2), 'V')} … {format_si(high * math.sqrt(2), 'V')} "
                "peak); for no tone, switch it off (tone_off / safe_state)"
            )
        return max(level, low)

    def safe_state(self, *, verify: bool = True, require_verified: bool = False) -> None:
        """Sine output at its minimum (the only output the driver programs).

        With ``verify`` the level is read back (``SLVL?``), which also makes the call return
        only once the instrument has taken the command; skipped (with a warning) when the
        connection is out of step after a timeout, where no reply can be trusted — unless
        ``require_verified``, which makes that an error.

        Raises:
            LockinError: The read-back level is above the minimum, or (``require_verified``)
                it could not be read back.
        """
        minimum = self.safe_sine_v_rms
        with self._io.lock:
            self._io.write(f"SLVL {format_number(minimum)}")
            if not verify:
                return
            if not self._io.in_step:
                if require_verified:
                    raise LockinError(
                        f"{self.model} at {self._io.name}: its sine minimum was sent but could "
                        "not be verified (the instrument stopped answering in time); check at "
                        "the front panel that the sine output is at its minimum",
                        self._io.name,
                    )
                log.warning("%s: sine minimum sent but not verified (out of step)", self._io.name)
                return
            level = self._io.query_float("SLVL?")
        if level > minimum * (1 + 1e-6):
            raise LockinError(
                f"{self.model} at {self._io.name}: the sine output reads {format_si(level, 'V')} "
                f"rms after setting its minimum {format_si(minimum, 'V')}; switch it off at the "
                "front panel and check the instrument",
                self._io.name,
            )

    def apply_tone(self, spec: ToneSpec) -> float:
        """Generate the tone ``spec`` describes on the sine output; returns the level (V rms).

        Call it only with specs the safety layer checked
        (:meth:`labctl.device.safety.SafeDevice.program_tones`). Order: sine to its minimum,
        internal reference, frequency, phase (``spec.phase_rad`` as the reference phase
        shift), then the level, so no intermediate state has a larger 2πfA than before or
        after; then the error bits are checked. On any failure the sine is put back at its
        minimum.

        Raises:
            LockinValueError: Frequency or amplitude outside the instrument's range (nothing
                sent).
            LockinCommandError: The instrument flagged an error (sine at its minimum).
        """
        check_range(
            f"tone frequency on {spec.electrode}",
            spec.frequency_hz,
            self.MIN_FREQUENCY_HZ,
            self.max_frequency_hz,
            "Hz",
            f"the {self.model}'s limit",
        )
        level = self.sine_level_for(spec.amplitude_v)
        phase = math.degrees(spec.phase_rad)
        phase = (phase + 180.0) % 360.0 - 180.0
        with self._io.lock:
            try:
                self.safe_state(verify=False)
                self.reference_source = "internal"
                self.check_reference(spec.frequency_hz, self.harmonic)
                self._io.write(f"FREQ {format_number(spec.frequency_hz)}")
                self._io.write(f"PHAS {format_number(round(phase, 6))}")
                self._io.write(f"SLVL {format_number(level)}")
                self.check_errors()
            except BaseException:
                try:
                    self.safe_state()
                except LockinError as exc:
                    log.error("%s: sine not brought back to its minimum: %s", self._io.name, exc)
                raise
        log.info(
            "%s: tone on %s: %s, %s rms",
            self._io.name,
            spec.electrode,
            format_si(spec.frequency_hz, "Hz"),
            format_si(level, "V"),
        )
        return level

    # -- input -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def input_mode(self) -> InputMode:
        """Signal input (one of :data:`INPUT_MODES`)."""

    @input_mode.setter
    @abstractmethod
    def input_mode(self, mode: InputMode) -> None: ...

    def _known_input_mode(self) -> InputMode:
        return self._input_mode if self._input_mode is not None else self.input_mode

    def sensitivity_table(self, mode: InputMode | None = None) -> IndexTable:
        """Full-scale sensitivities for ``mode`` (default: the present input): V, or A for a
        current input."""
        mode = mode or self._known_input_mode()
        if mode.startswith("current"):
            return self.VOLTAGE_SENSITIVITIES.scaled(CURRENT_A_PER_V, "A")
        return self.VOLTAGE_SENSITIVITIES

    # -- gain and filters --------------------------------------------------------------------
    @property
    def sensitivity(self) -> float:
        """Full-scale sensitivity (V rms, or A rms on a current input). Setting it takes only
        a table value (see :meth:`sensitivity_at_least`)."""
        table = self.sensitivity_table()
        return table.value(self._query_index(f"{self.SENSITIVITY_COMMAND}?", table))

    @sensitivity.setter
    def sensitivity(self, value: float) -> None:
        index = self.sensitivity_table().index_of(value)
        self._io.write(f"{self.SENSITIVITY_COMMAND} {index}")

    @property
    def sensitivity_index(self) -> int:
        """The raw ``SENS``/``SCAL`` index."""
        return self._query_index(f"{self.SENSITIVITY_COMMAND}?", self.VOLTAGE_SENSITIVITIES)

    @sensitivity_index.setter
    def sensitivity_index(self, index: int) -> None:
        self._check_index("sensitivity", index, self.VOLTAGE_SENSITIVITIES)
        self._io.write(f"{self.SENSITIVITY_COMMAND} {index}")

    def sensitivity_at_least(self, value: float) -> float:
        """Set the smallest full scale ≥ ``value`` (V or A); return it."""
        return self._set_at_least(
            "sensitivity", self.sensitivity_table(), value, self.SENSITIVITY_COMMAND
        )

    @property
    def time_constant_s(self) -> float:
        """Output filter time constant (s). Setting it takes only a table value (see
        :meth:`time_constant_at_least`)."""
        return self.TIME_CONSTANTS.value(self._query_index("OFLT?", self.TIME_CONSTANTS))

    @time_constant_s.setter
    def time_constant_s(self, value: float) -> None:
        self._io.write(f"OFLT {self.TIME_CONSTANTS.index_of(value)}")

    @property
    def time_constant_index(self) -> int:
        """The raw ``OFLT`` index."""
        return self._query_index("OFLT?", self.TIME_CONSTANTS)

    @time_constant_index.setter
    def time_constant_index(self, index: int) -> None:
        self._check_index("time constant", index, self.TIME_CONSTANTS)
        self._io.write(f"OFLT {index}")

    def time_constant_at_least(self, value: float) -> float:
        """Set the smallest time constant ≥ ``value`` (s); return it."""
        return self._set_at_least("time constant", self.TIME_CONSTANTS, value, "OFLT")

    def _set_at_least(self, what: str, table: IndexTable, value: float, command: str) -> float:
        """Send ``command`` with the smallest entry of ``table`` ≥ ``value``; log a rounding."""
        index = table.index_at_least(value)
        chosen = table.value(index)
        if abs(chosen - value) > table.rel_tol * chosen:
            log.info(
                "%s: %s %s is not a setting: using %s",
                self._io.name,
                what,
                table.describe(value),
                table.describe(chosen),
            )
        self._io.write(f"{command} {index}")
        return chosen

    @property
    def filter_slope_db_per_oct(self) -> int:
        """Output filter roll-off: 6, 12, 18 or 24 dB/octave."""
        index = self._io.query_int("OFSL?")
        if not 0 <= index < len(SLOPES_DB_PER_OCT):
            raise self._io.bad_reply("OFSL?", str(index), "0…3")
        return SLOPES_DB_PER_OCT[index]

    @filter_slope_db_per_oct.setter
    def filter_slope_db_per_oct(self, slope: int) -> None:
        self._io.write(f"OFSL {choose('filter slope (dB/oct)', slope, SLOPES_DB_PER_OCT)}")

    @property
    def sync_filter(self) -> bool:
        """Synchronous filter (averages whole periods; the SR830 applies it below 200 Hz)."""
        return self._io.query_int("SYNC?") == 1

    @sync_filter.setter
    def sync_filter(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise LockinValueError(f"sync_filter {on!r}: give True or False")
        self._io.write(f"SYNC {int(on)}")

    def settling_time_s(self) -> float:
        """How long (s) to wait after a change: 5/7/9/10 τ for 6/12/18/24 dB/oct, from the
        present time constant and slope."""
        with self._io.lock:
            tau = self.time_constant_s
            slope = self.filter_slope_db_per_oct
        return SETTLING_TIME_CONSTANTS[slope] * tau

    # -- outputs -----------------------------------------------------------------------------
    def output(self, name: str) -> float:
        """One output (``OUTP?``): X, Y, R (V or A rms), θ (degrees) or frequency (Hz)."""
        choose("output", name, OUTPUT_NAMES)
        if name == "frequency":
            return self.frequency_hz
        return self._io.query_float(f"OUTP? {self.OUTPUT_CODES[name]}")

    @property
    def x(self) -> float:
        """In-phase output X (V or A rms)."""
        return self.output("X")

    @property
    def y(self) -> float:
        """Quadrature output Y (V or A rms)."""
        return self.output("Y")

    @property
    def r(self) -> float:
        """Magnitude R (V or A rms)."""
        return self.output("R")

    @property
    def theta_deg(self) -> float:
        """Phase θ (degrees)."""
        return self.output("theta")

    def snap(self, *names: str) -> tuple[float, ...]:
        """Several of :data:`OUTPUT_NAMES` taken at the same instant (``SNAP?``)."""
        if not 2 <= len(names) <= self.SNAP_MAX:
            raise LockinValueError(
                f"snap takes 2…{self.SNAP_MAX} quantities on the {self.model}, not {len(names)}"
            )
        for name in names:
            choose("snap quantity", name, OUTPUT_NAMES)
        codes = ",".join(str(self.OUTPUT_CODES[n]) for n in names)
        return self._io.query_floats(f"SNAP? {codes}", len(names))

    # -- X/Y traces during a record ---------------------------------------------------------
    @abstractmethod
    def start_xy_trace(self, duration_s: float, max_rate_hz: float) -> float:
        """Arm one-shot storage of X/Y, started by the next trigger, that holds at least
        ``duration_s`` (s) at the highest rate the instrument offers up to ``max_rate_hz``
        (Hz); return that rate (Hz).

        Raises:
            LockinValueError: The instrument cannot store that long at any rate up to
                ``max_rate_hz`` (nothing sent).
        """

    @abstractmethod
    def read_xy_trace(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The points the armed trace stored so far: ``(x, y, rate_hz)``, oldest first."""

    # -- status ------------------------------------------------------------------------------
    def _decode_status(self, raw: int) -> LockinStatus:
        names = tuple(name for bit, name in self.STATUS_BITS.items() if raw >> bit & 1)
        return LockinStatus(
            raw=raw,
            input_overload=bool(raw & 1),
            filter_overload=bool(raw & 2),
            output_overload=bool(raw & 4),
            reference_unlock=bool(raw & 8),
            names=names,
        )

    def status(self) -> LockinStatus:
        """The lock-in status register (``LIAS?``); reading it clears the latched bits."""
        return self._decode_status(self._io.query_int("LIAS?"))

    @property
    def overloaded(self) -> bool:
        """Whether an overload bit is set now (clears the latched bits first)."""
        with self._io.lock:
            self.status()
            return self.status().overload

    def read_xy(self) -> XYReading:
        """X and Y together with the overload state at the time of the reading.

        Clears the latched status (overloads during settling do not count), takes ``SNAP?``
        of X and Y, then reads the status again: a persisting overload has set its bit anew.
        """
        with self._io.lock:
            stale = self.status()
            if stale.names:
                log.debug("%s: status before reading: %s", self._io.name, ", ".join(stale.names))
            x, y = self.snap("X", "Y")
            status = self.status()
        if status.reference_unlock:
            log.warning("%s: reference unlocked during the reading", self._io.name)
        return XYReading(x, y, status)

    # -- auto range --------------------------------------------------------------------------
    def auto_sensitivity(
        self, *, min_fraction: float = 0.1, headroom: float = 0.5, max_steps: int = 30
    ) -> float:
        """Step the sensitivity until nothing overloads and R uses > ``min_fraction`` of full
        scale; return the full scale (V or A). Waits the settling time before each look.

        Overloaded: one step less sensitive (and never back). R below ``min_fraction``: to
        the most sensitive setting at which R stays under ``headroom`` of full scale. At the
        most sensitive setting (or just above one that overloaded) a small R is accepted.

        Raises:
            LockinAutoRangeError: Overloaded at the largest full scale, an input overload the
                sensitivity cannot relieve, or no stable setting within ``max_steps``.
        """
        check_range("min_fraction", min_fraction, 1e-6, 0.9, "")
        check_range("headroom", headroom, min_fraction, 1.0, "")
        table = self.sensitivity_table()
        order = table.sorted_indices()
        with self._io.lock:
            index = self._query_index(f"{self.SENSITIVITY_COMMAND}?", table)
            position = order.index(index)
            floor = 0
            wait = self.settling_time_s()
            for _ in range(max_steps):
                self._sleep(wait)
                self.status()
                magnitude = abs(self.r)
                status = self.status()
                full = table.values[order[position]]
                if status.input_overload and not self.STEPPING_CLEARS_INPUT_OVERLOAD:
                    raise LockinAutoRangeError(
                        f"{self.model} at {self._io.name}: the signal input overloads, which "
                        "the sensitivity cannot relieve; raise the input range "
                        "(input_range_v) or lower the signal",
                        self._io.name,
                    )
                if status.overload or magnitude > full:
                    if position == len(order) - 1:
                        raise LockinAutoRangeError(
                            f"{self.model} at {self._io.name} overloads even at the largest "
                            f"full scale, {table.describe(full)}; lower the signal (or the "
                            "amplifier gain)",
                            self._io.name,
                        )
                    position += 1
                    floor = position
                    self._io.write(f"{self.SENSITIVITY_COMMAND} {order[position]}")
                    continue
                if magnitude >= min_fraction * full or position == floor:
                    if magnitude < min_fraction * full:
                        log.info(
                            "%s: R = %s is below %g of the most sensitive usable full scale %s",
                            self._io.name,
                            table.describe(magnitude),
                            min_fraction,
                            table.describe(full),
                        )
                    return full
                target = position - 1
                while target > floor and magnitude <= headroom * table.values[order[target - 1]]:
                    target -= 1
                position = target
                self._io.write(f"{self.SENSITIVITY_COMMAND} {order[position]}")
        raise LockinAutoRangeError(
            f"{self.model} at {self._io.name}: no stable sensitivity after {max_steps} steps "
            "(the signal changes faster than the settling time?); raise max_steps or the time "
            "constant",
            self._io.name,
        )
