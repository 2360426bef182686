"""What the simulated SR830 and SR860 share: status model, bench input, reference, sine output.

A :class:`SimLockin` subscribes to a :class:`~simulated_hw.bench.SimBench`. For every record the
bench plays it takes its input (the amplifier output ``tia_v`` in voltage mode, the measured
current in current mode), runs it through :class:`~simulated_hw.lockin_server.demod.Demodulator`
at its reference and keeps the filter state, so readings settle over simulated time exactly like
the instrument's and hold between records (the bench plays nothing then, so no time passes).

Its own sine output, when wired to an electrode, is a
:class:`~simulated_hw.bench.ExternalSine` on the bench (summed onto the DAQ's DC at the
breakout), kept phase-continuous with the reference it demodulates at.

Threading: the bench delivers records from the thread that plays them, with the bench's play
lock held; commands arrive on the server thread. Both take the instrument's lock; the sine is
pushed to the bench only *after* that lock is released (pushing takes the bench's play lock),
so the two threads can never wait for each other.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from simulated_hw.bench import BenchRecord, ExternalSine, SimBench
from simulated_hw.lockin_server.demod import ComplexArray, Demodulator, FloatArray, PhaseTrack
from simulated_hw.lockin_server.protocol import (
    Command,
    CommandError,
    ExecutionError,
    expect_args,
    parse_command,
    parse_int_in,
    split_commands,
)

logger = logging.getLogger(__name__)

# Standard event status register (IEEE 488.2, both manuals).
ESR_INP = 1 << 0
"""Input queue overflow."""
ESR_QRY = 1 << 2
"""Output queue overflow."""
ESR_EXE = 1 << 4
"""Execution error: parameter out of range or command not allowed now."""
ESR_CME = 1 << 5
"""Command error: unknown command, bad syntax."""
ESR_PON = 1 << 7
"""Power on."""

# Serial poll status byte.
STB_SCN = 1 << 0
"""No data acquisition (scan/capture) in progress."""
STB_IFC = 1 << 1
"""No command execution in progress."""
STB_ERR = 1 << 2
"""An enabled bit of the error status register is set."""
STB_LIA = 1 << 3
"""An enabled bit of the lock-in status register is set."""
STB_MAV = 1 << 4
"""Message available (output queue not empty)."""
STB_ESB = 1 << 5
"""An enabled bit of the standard event status register is set."""
STB_MSS = 1 << 6
"""Master summary: an enabled bit of the status byte is set."""

# Lock-in status register (SR830 layout; the simulated SR860 uses the same bits, see sr860.py).
LIA_INPUT = 1 << 0
"""Input (or amplifier) overload."""
LIA_FILTER = 1 << 1
"""Time-constant filter overload (never set by the simulation)."""
LIA_OUTPUT = 1 << 2
"""Output overload: |X| or |Y| above the sensitivity (full scale)."""
LIA_UNLOCK = 1 << 3
"""Reference unlock (external reference absent or out of range)."""
LIA_RANGE = 1 << 4
"""Detection frequency crossed 200 Hz (SR830)."""
LIA_TC = 1 << 5
"""Time constant changed indirectly (SR830)."""
LIA_TRIG = 1 << 6
"""Data storage triggered (triggered storage modes only)."""

INPUT_SIGNALS = ("tia", "adc")
"""Bench quantities the voltage input can read (``electrode:N`` reads an electrode)."""

Reply = str | bytes | None
Handler = Callable[[Command], Reply]
Sampler = Callable[[FloatArray], ComplexArray]

_EPS_S = 1e-12
"""Slack (s) when comparing simulated times."""


class SimLockin:
    """Base of the simulated SRS lock-ins. Subclasses supply the model's settings and commands.

    Args:
        bench: The bench whose records are the input, and that the sine output drives.
        sine_electrode: Electrode index the sine output is wired to (None: not wired).
        input_signal: ``"tia"`` (amplifier output, V), ``"adc"`` (ADC reading, V) or
            ``"electrode:N"`` (electrode N's voltage, V) for the voltage input; current mode
            always reads the bench's measured current (A).
        sine_key: Key of the sine on the bench (unique per instrument).
    """

    model: ClassVar[str] = ""
    """Model name as in ``*IDN?``, e.g. ``"SR830"``."""
    idn: ClassVar[str] = ""
    """The ``*IDN?`` reply."""
    lias_mask: ClassVar[int] = 0xFF
    """Width of the lock-in status and enable registers."""

    def __init__(
        self,
        bench: SimBench,
        *,
        sine_electrode: int | None = None,
        input_signal: str = "tia",
        sine_key: str = "lockin",
    ) -> None:
        if sine_electrode is not None and not 0 <= sine_electrode < bench.n_electrodes:
            raise ValueError(f"sine_electrode {sine_electrode} outside 0..{bench.n_electrodes - 1}")
        self._electrode_input: int | None = None
        if input_signal.startswith("electrode:"):
            index = int(input_signal.split(":", 1)[1])
            if not 0 <= index < bench.n_electrodes:
                raise ValueError(f"input_signal {input_signal!r}: no such electrode")
            self._electrode_input = index
        elif input_signal not in INPUT_SIGNALS:
            raise ValueError(
                f"input_signal must be one of {INPUT_SIGNALS} or 'electrode:N', "
                f"got {input_signal!r}"
            )
        self.bench = bench
        self.sine_electrode = sine_electrode
        self.input_signal = input_signal
        self.sine_key = sine_key
        self.trigger_on_record = True
        """Whether every bench record start is a pulse on TRIG IN (DAQ start trigger wired)."""
        self.aux_inputs_v = [0.0, 0.0, 0.0, 0.0]
        """Voltages (V) on the four rear-panel aux inputs (nothing wired: 0 V)."""
        self.binary_terminator = b"\n"
        """Bytes sent after a binary reply (``b""`` to emulate a unit that sends none)."""
        self._lock = threading.RLock()
        self._sine_lock = threading.Lock()
        self._applied_sines: dict[str, ExternalSine | None] = {}
        self._closed = False
        self._demod = Demodulator()
        self._esr = ESR_PON
        self._ese = 0
        self._sre = 0
        self._psc = 1
        self._lias = 0
        self._liae = 0
        self._errs = 0
        self._erre = 0
        self._external_hz: float | None = None
        self._external_phase_rad = 0.0
        self._processed_end_s = bench.timebase.now_s
        self._pending_triggers: list[float] = []
        self._last_input_peak_v = 0.0
        self._handlers: dict[str, Handler] = {}
        self._register_common()
        self._register()
        self.reset_settings()
        self._power_on()
        self._track = PhaseTrack(self._internal_frequency_hz())
        self._update_reference(self._processed_end_s)
        self._unsubscribe = bench.subscribe(self._on_record)
        self.sync_outputs()

    # --- what a model provides ----------------------------------------------------------------

    def _register(self) -> None:
        """Add the model's command handlers (``self._handlers[MNEMONIC] = method``)."""
        raise NotImplementedError

    def reset_settings(self) -> None:
        """Restore the manual's default settings (``*RST``)."""
        raise NotImplementedError

    def _power_on(self) -> None:
        """Adjust the defaults to the state the simulated unit powers up in."""

    def _internal_frequency_hz(self) -> float:
        """Internal oscillator frequency (Hz)."""
        raise NotImplementedError

    def _external_mode(self) -> bool:
        """Whether the reference comes from the REF IN connector."""
        raise NotImplementedError

    def _harmonic(self) -> int:
        """Detection harmonic."""
        raise NotImplementedError

    def _phase_deg(self) -> float:
        """Reference phase shift (deg)."""
        raise NotImplementedError

    def _max_detection_hz(self) -> float:
        """Highest harmonic × frequency (Hz)."""
        raise NotImplementedError

    def _time_constant_s(self) -> float:
        """Filter time constant τ (s)."""
        raise NotImplementedError

    def _n_stages(self) -> int:
        """Filter stages (1…4 for 6…24 dB/oct)."""
        raise NotImplementedError

    def _current_mode(self) -> bool:
        """Whether the current input is selected."""
        raise NotImplementedError

    def _current_gain_v_per_a(self) -> float:
        """Current-input transimpedance (V/A)."""
        raise NotImplementedError

    def _ac_coupled(self) -> bool:
        """Whether the input is AC coupled."""
        raise NotImplementedError

    def _coupling_corner_hz(self) -> float:
        """AC-coupling corner frequency (Hz)."""
        return 0.16

    def _full_scale(self) -> float:
        """Sensitivity: full scale of X, Y, R in reading units (V, or A in current mode)."""
        raise NotImplementedError

    def _input_overload_v(self) -> float:
        """Front-end voltage (V, peak) above which the input overloads."""
        raise NotImplementedError

    def _input_clip_v(self) -> float:
        """Front-end voltage (V, peak) at which the input ADC clips."""
        raise NotImplementedError

    def _sine_rms_v(self) -> float:
        """Sine output amplitude (V rms)."""
        raise NotImplementedError

    def _sine_offset_v(self) -> float:
        """Sine output DC offset (V)."""
        return 0.0

    def _acquiring(self) -> bool:
        """Whether the buffer or capture is taking data."""
        return False

    def _on_trigger(self, time_s: float, sampler: Sampler, from_record: bool = False) -> None:
        """A pulse on TRIG IN at ``time_s`` (s): starts an armed acquisition or stores a point.

        ``from_record``: the pulse is a bench record's start. The DAQ plays one task as
        several records (chunks), so such a pulse only starts an acquisition that is armed and
        waiting; it never stores a point per trigger.
        """

    def _store_due(self, sampler: Sampler, until_s: float) -> None:
        """Store the buffer/capture points due up to ``until_s`` (s), from ``sampler``."""

    # --- connection-facing API ----------------------------------------------------------------

    def handle_line(self, line: str) -> list[bytes]:
        """Execute one received line; return the replies to send, each terminated by ``\\n``."""
        replies: list[bytes] = []
        with self._lock:
            for text in split_commands(line):
                try:
                    command = parse_command(text)
                    handler = self._handlers.get(command.mnemonic)
                    if handler is None:
                        raise CommandError(f"unknown command {command.mnemonic}")
                    reply = handler(command)
                except CommandError as exc:
                    self._esr |= ESR_CME
                    logger.info("%s: command error in %r: %s", self.model, text, exc)
                    continue
                except ExecutionError as exc:
                    self._esr |= ESR_EXE
                    logger.info("%s: execution error in %r: %s", self.model, text, exc)
                    continue
                if reply is None:
                    continue
                if not self._replies_enabled():
                    logger.info("%s: reply to %r goes to the other interface", self.model, text)
                    continue
                if isinstance(reply, bytes):
                    replies.append(reply + self.binary_terminator)
                else:
                    replies.append(reply.encode("ascii") + b"\n")
        self.sync_outputs()
        return replies

    def _replies_enabled(self) -> bool:
        """Whether replies go to the interface the server represents."""
        return True

    def trigger(self) -> None:
        """A pulse on the rear-panel TRIG IN now (in simulated time)."""
        with self._lock:
            t = self.bench.timebase.now_s
            if t <= self._processed_end_s + _EPS_S:
                self._on_trigger(t, self._state_sampler)
            else:  # a record is being played right now: handled when it is delivered
                self._pending_triggers.append(t)

    @property
    def external_reference_hz(self) -> float | None:
        """Frequency (Hz) of the signal on REF IN (None: nothing connected)."""
        return self._external_hz

    @external_reference_hz.setter
    def external_reference_hz(self, frequency_hz: float | None) -> None:
        self.set_external_reference(frequency_hz, self._external_phase_rad)

    def set_external_reference(self, frequency_hz: float | None, phase_rad: float = 0.0) -> None:
        """Connect ``sin(2π f t + phase_rad)`` (t: simulated time, s) to REF IN, or nothing."""
        if frequency_hz is not None and not (math.isfinite(frequency_hz) and frequency_hz > 0):
            raise ValueError(f"frequency_hz must be positive (Hz), got {frequency_hz}")
        with self._lock:
            self._external_hz = None if frequency_hz is None else float(frequency_hz)
            self._external_phase_rad = float(phase_rad)
            self._update_reference(self.bench.timebase.now_s)
        self.sync_outputs()

    def close(self) -> None:
        """Stop reading the bench and switch the sine output off (the unit is powered down)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._unsubscribe()
        with self._sine_lock:
            for key, sine in self._applied_sines.items():
                if sine is not None:
                    self.bench.set_external_sine(key, None)
            self._applied_sines.clear()

    def readings(self) -> tuple[float, float, float, float]:
        """Present X, Y, R (reading units, rms) and θ (deg)."""
        with self._lock:
            x, y = self._xy(np.array([self._demod.output(self._n_stages())]))
            return _xyrt(float(x[0]), float(y[0]))

    # --- reference, sine output -----------------------------------------------------------------

    def _reference_locked(self) -> bool:
        """Whether the detection reference is valid (always, with the internal oscillator)."""
        if not self._external_mode():
            return True
        f = self._external_hz
        return f is not None and f >= 1e-3 and f * self._harmonic() <= self._max_detection_hz()

    def _reference_hz(self) -> float:
        """Reference frequency (Hz): internal oscillator or measured REF IN (0 when unlocked)."""
        if not self._external_mode():
            return self._internal_frequency_hz()
        return self._external_hz if self._reference_locked() and self._external_hz else 0.0

    def _update_reference(self, time_s: float) -> None:
        """Make the oscillator follow the settings from ``time_s`` (s) on."""
        if not self._external_mode():
            self._track.set_frequency(time_s, self._internal_frequency_hz())
        elif self._reference_locked() and self._external_hz is not None:
            self._track.lock_to(time_s, self._external_hz, self._external_phase_rad)
        # unlocked: the oscillator keeps running where it was

    def _desired_sines(self) -> dict[str, ExternalSine | None]:
        if self.sine_electrode is None or self._closed:
            return {}
        amplitude = math.sqrt(2.0) * self._sine_rms_v()
        sine = ExternalSine(
            self.sine_electrode, self._track.frequency_hz, amplitude, self._track.phase_rad
        )
        offset = self._sine_offset_v()
        dc = None
        if offset != 0.0:  # a constant: sin(0·t + π/2) = 1
            dc = ExternalSine(self.sine_electrode, 0.0, offset, math.pi / 2)
        return {self.sine_key: sine, f"{self.sine_key}:dc": dc}

    def sync_outputs(self) -> None:
        """Push the sine output to the bench if it changed (call without holding the lock)."""
        with self._sine_lock:
            with self._lock:
                desired = self._desired_sines()
            for key, sine in desired.items():
                if self._applied_sines.get(key) != sine:
                    self.bench.set_external_sine(key, sine)
                    self._applied_sines[key] = sine

    # --- signal path ----------------------------------------------------------------------------

    def _input(self, record: BenchRecord) -> FloatArray:
        if self._current_mode():
            return np.asarray(record.measured_current_a, dtype=np.float64)
        if self._electrode_input is not None:
            return np.asarray(record.voltages_v[self._electrode_input], dtype=np.float64)
        if self.input_signal == "adc":
            return np.asarray(record.adc_v, dtype=np.float64)
        return np.asarray(record.tia_v, dtype=np.float64)

    def _held_input(self) -> bool:
        """Whether the input samples are a staircase (held) or values at sample instants.

        Electrode voltages are the DAC's staircase, and so is the amplifier output when the
        bench simulates no amplifier bandwidth; with bandwidth the amplifier output is a
        continuous signal the record knows only at the sample instants.
        """
        if self._electrode_input is not None:
            return True
        return not self.bench.chain.settings.filter_active

    def _xy(self, z: ComplexArray) -> tuple[FloatArray, FloatArray]:
        """X and Y (reading units) from filter outputs ``z`` (reference frame, no phase shift)."""
        v = 1j * math.sqrt(2.0) * z * np.exp(-1j * math.radians(self._phase_deg()))
        return np.asarray(v.real), np.asarray(v.imag)

    def _state_sampler(self, times_s: FloatArray) -> ComplexArray:
        """Filter output at ``times_s`` when no record is being processed: the held state."""
        value = self._demod.output(self._n_stages())
        return np.full(np.shape(times_s), value, dtype=np.complex128)

    def _on_record(self, record: BenchRecord) -> None:
        with self._lock:
            if self._closed:
                return
            self._process(record)

    def _process(self, record: BenchRecord) -> None:
        fs = record.sample_rate_hz
        n = record.n_samples
        t0 = record.t0_s
        t_end = t0 + n / fs
        times = t0 + np.arange(n, dtype=np.float64) / fs
        u = self._input(record)
        gain = self._current_gain_v_per_a() if self._current_mode() else 1.0
        coupled = self._demod.couple(u, fs, self._ac_coupled(), self._coupling_corner_hz())
        front_v = coupled * gain
        peak = float(np.max(np.abs(front_v))) if n else 0.0
        self._last_input_peak_v = peak
        if peak > self._input_overload_v():
            self._lias |= LIA_INPUT
        clip = self._input_clip_v()
        if peak > clip:
            coupled = np.clip(front_v, -clip, clip) / gain
        if not self._reference_locked():
            self._lias |= LIA_UNLOCK
        harmonic = self._harmonic()
        theta = harmonic * self._track.phases_rad(times)
        omega = 2.0 * math.pi * harmonic * self._track.frequencies_hz(times)
        n_stages = self._n_stages()
        block = self._demod.process(
            coupled, fs, theta, omega, self._time_constant_s(), held=self._held_input(), t0_s=t0
        )

        def sampler(at_s: FloatArray) -> ComplexArray:
            return block.at(np.asarray(at_s, dtype=np.float64), n_stages)

        if self.trigger_on_record:  # the DAQ's start trigger: starts an armed acquisition
            self._on_trigger(t0, sampler, from_record=True)
        due = sorted(t for t in self._pending_triggers if t <= t_end + _EPS_S)
        self._pending_triggers = [t for t in self._pending_triggers if t > t_end + _EPS_S]
        for t in due:
            self._store_due(sampler, t)
            self._on_trigger(t, sampler)
        self._store_due(sampler, t_end)
        self._check_output_overload(block.output(n_stages))
        self._processed_end_s = t_end
        self._track.prune(t_end)

    def _check_output_overload(self, z: ComplexArray | None = None) -> None:
        if z is None:
            z = np.array([self._demod.output(self._n_stages())])
        x, y = self._xy(z)
        if max(float(np.max(np.abs(x))), float(np.max(np.abs(y)))) > self._full_scale():
            self._lias |= LIA_OUTPUT

    # --- status model ---------------------------------------------------------------------------

    def _status_byte(self) -> int:
        self._check_output_overload()
        stb = STB_IFC
        if not self._acquiring():
            stb |= STB_SCN
        if self._errs & self._erre:
            stb |= STB_ERR
        if self._lias & self._liae:
            stb |= STB_LIA
        if self._esr & self._ese:
            stb |= STB_ESB
        if stb & self._sre & ~STB_MSS:
            stb |= STB_MSS
        return stb

    def _register_common(self) -> None:
        h = self._handlers
        h["*IDN"] = self._cmd_idn
        h["*CLS"] = self._cmd_cls
        h["*RST"] = self._cmd_rst
        h["*ESE"] = self._enable_register("_ese", 0xFF)
        h["*SRE"] = self._enable_register("_sre", 0xFF)
        h["*ESR"] = self._event_register("_esr")
        h["*STB"] = self._cmd_stb
        h["*PSC"] = self._cmd_psc
        h["LIAE"] = self._enable_register("_liae", self.lias_mask)
        h["LIAS"] = self._cmd_lias
        h["ERRE"] = self._enable_register("_erre", 0xFF)
        h["ERRS"] = self._event_register("_errs")

    def _cmd_idn(self, command: Command) -> Reply:
        if not command.query:
            raise CommandError("*IDN is a query")
        expect_args(command, 0)
        return self.idn

    def _cmd_cls(self, command: Command) -> Reply:
        if command.query:
            raise CommandError("*CLS is not a query")
        expect_args(command, 0)
        self._esr = 0
        self._lias = 0
        self._errs = 0
        return None

    def _cmd_rst(self, command: Command) -> Reply:
        if command.query:
            raise CommandError("*RST is not a query")
        expect_args(command, 0)
        self.reset_settings()
        self._update_reference(self.bench.timebase.now_s)
        return None

    def _cmd_stb(self, command: Command) -> Reply:
        if not command.query:
            raise CommandError("*STB is a query")
        args = expect_args(command, 0, 1)
        stb = self._status_byte()
        if args:
            return str((stb >> parse_int_in(args[0], 0, 7)) & 1)
        return str(stb)

    def _cmd_psc(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self._psc)
        self._psc = parse_int_in(expect_args(command, 1)[0], 0, 1)
        return None

    def _cmd_lias(self, command: Command) -> Reply:
        self._check_output_overload()
        return self._event_register("_lias")(command)

    def _enable_register(self, attr: str, mask: int) -> Handler:
        """``NAME {i,} j`` sets the register (or bit i) to j; ``NAME? {i}`` reads it (or bit i)."""
        bits = mask.bit_length()

        def handler(command: Command) -> Reply:
            value = int(getattr(self, attr))
            if command.query:
                args = expect_args(command, 0, 1)
                if args:
                    return str((value >> parse_int_in(args[0], 0, bits - 1)) & 1)
                return str(value)
            args = expect_args(command, 1, 2)
            if len(args) == 1:
                setattr(self, attr, parse_int_in(args[0], 0, mask))
            else:
                bit = parse_int_in(args[0], 0, bits - 1)
                on = parse_int_in(args[1], 0, 1)
                setattr(self, attr, (value | (1 << bit)) if on else (value & ~(1 << bit)))
            return None

        return handler

    def _event_register(self, attr: str) -> Handler:
        """``NAME?`` reads and clears the register; ``NAME? i`` reads and clears bit i."""

        def handler(command: Command) -> Reply:
            if not command.query:
                raise CommandError(f"{command.mnemonic} is a query")
            args = expect_args(command, 0, 1)
            value = int(getattr(self, attr))
            if args:
                bit = parse_int_in(args[0], 0, 15)
                setattr(self, attr, value & ~(1 << bit))
                return str((value >> bit) & 1)
            setattr(self, attr, 0)
            return str(value)

        return handler


def _xyrt(x: float, y: float) -> tuple[float, float, float, float]:
    """X, Y, R and θ (deg) from X and Y."""
    return x, y, math.hypot(x, y), math.degrees(math.atan2(y, x))


def xyrt_arrays(
    x: FloatArray, y: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """X, Y, R and θ (deg) arrays from X and Y arrays."""
    return x, y, np.hypot(x, y), np.degrees(np.arctan2(y, x))
