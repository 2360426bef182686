"""Stanford Research Systems SR830 DSP lock-in amplifier (GPIB, RS-232, or a TCP bridge).

Tables (index → value): ``SENS i`` = [2, 5, 10][i % 3] × 10^(i // 3) nV, i = 0…26 (2 nV…1 V;
current input 2 fA…1 µA); ``OFLT i`` = [1, 3][i % 2] × 10^(i // 2) × 10 µs, i = 0…19
(10 µs…30 ks). Detection frequency harmonic × f ≤ 102 kHz, harmonic 1…19999, phase
−360…729.99°, sine output 4 mV…5 V rms in 2 mV steps. Replies go only to the interface
``OUTX`` selects, so the driver sends ``OUTX`` before anything else. Data storage: ``SRAT i``
= 62.5 mHz × 2^i, i = 0…13 (62.5 mHz…512 Hz), 16383 points per channel
(:meth:`SR830.start_buffered_xy`, :meth:`SR830.read_buffered_xy`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from drivers.srs.base import INPUT_MODES, InputMode, SRSLockin
from drivers.srs.common import (
    IndexTable,
    LockinValueError,
    check_trace_request,
    choose,
    decade_table,
    format_number,
    format_si,
)

SR830_SENSITIVITIES_V = IndexTable("sensitivity", "V", decade_table(("2", "5", "10"), 27, -9))
"""``SENS`` index → full scale (V rms)."""

SR830_TIME_CONSTANTS_S = IndexTable("time constant", "s", decade_table(("1", "3"), 20, -5))
"""``OFLT`` index → time constant (s)."""

SR830_STORAGE_RATES_HZ = IndexTable("storage rate", "Hz", tuple(0.0625 * 2.0**i for i in range(14)))
"""``SRAT`` index → storage rate (Hz): 62.5 mHz × 2^i (``SRAT 14``, one point per trigger, is
not offered by the driver)."""

SR830_BUFFER_POINTS = 16383
"""Points each data-storage channel holds."""

SR830_REFERENCE_SOURCES = ("external", "internal")
"""``FMOD`` index → reference source."""

_STATUS_BITS = {
    0: "INPUT/RESRV overload",
    1: "FILTR overload",
    2: "OUTPT overload",
    3: "UNLK reference unlock",
    4: "RANGE detection frequency changed range",
    5: "TC time constant changed indirectly",
    6: "TRIG data storage triggered",
}

_ERROR_BITS = {
    1: "battery backup failed",
    2: "RAM test error",
    4: "ROM test error",
    5: "GPIB fast data transfer aborted",
    6: "DSP test error",
    7: "internal math error",
}


class SR830(SRSLockin):
    """The SR830. See :class:`~drivers.srs.base.SRSLockin` for the shared API.

    Example::

        with SR830("GPIB0::8::INSTR", visa_library="") as lockin:
            lockin.input_mode = "current_1M"
            lockin.sensitivity = 1e-9          # 1 nA full scale
            lockin.time_constant_s = 0.1
            x, y = lockin.snap("X", "Y")
    """

    MODELS: ClassVar[tuple[str, ...]] = ("SR830",)
    VOLTAGE_SENSITIVITIES: ClassVar[IndexTable] = SR830_SENSITIVITIES_V
    TIME_CONSTANTS: ClassVar[IndexTable] = SR830_TIME_CONSTANTS_S
    SENSITIVITY_COMMAND: ClassVar[str] = "SENS"
    REFERENCE_COMMAND: ClassVar[str] = "FMOD"
    REFERENCE_SOURCES: ClassVar[tuple[str, ...]] = SR830_REFERENCE_SOURCES
    MAX_FREQUENCY_HZ: ClassVar[float] = 102e3
    MAX_HARMONIC: ClassVar[int] = 19999
    PHASE_RANGE_DEG: ClassVar[tuple[float, float]] = (-360.0, 729.99)
    SINE_RANGE_V_RMS: ClassVar[tuple[float, float]] = (0.004, 5.0)
    SINE_STEP_V_RMS: ClassVar[float] = 0.002
    OUTPUT_CODES: ClassVar[dict[str, int]] = {"X": 1, "Y": 2, "R": 3, "theta": 4, "frequency": 9}
    SNAP_MAX: ClassVar[int] = 6
    STATUS_BITS: ClassVar[dict[int, str]] = _STATUS_BITS
    ESR_ERRORS: ClassVar[dict[int, tuple[str, str]]] = {
        0: ("INP", "input queue overflow: commands came faster than it takes them"),
        2: ("QRY", "output queue overflow: replies were not read"),
        4: ("EXE", "execution error: a parameter out of range or not allowed now"),
        5: ("CMD", "command error: a command it does not know, or bad syntax"),
    }

    @classmethod
    def _read_termination_for(cls, resource: str) -> str:
        """LF on GPIB and network bridges; CR on RS-232."""
        return "\r" if resource.strip().upper().startswith("ASRL") else "\n"

    def _prepare_interface(self) -> None:
        """``OUTX 0`` on RS-232, ``OUTX 1`` otherwise (GPIB, GPIB-Ethernet bridges)."""
        serial = self._io.name.strip().upper().startswith("ASRL")
        self._io.write(f"OUTX {0 if serial else 1}")

    @property
    def max_frequency_hz(self) -> float:
        """102 kHz: the SR830's highest detection frequency."""
        return self.MAX_FREQUENCY_HZ

    @property
    def input_mode(self) -> InputMode:
        """``ISRC``: 0 A (voltage), 1 A−B (voltage_diff), 2 I 1 MΩ, 3 I 100 MΩ."""
        index = self._io.query_int("ISRC?")
        if not 0 <= index < len(INPUT_MODES):
            raise self._io.bad_reply("ISRC?", str(index), "0…3")
        self._input_mode = INPUT_MODES[index]
        return self._input_mode

    @input_mode.setter
    def input_mode(self, mode: InputMode) -> None:
        index = choose("input mode", mode, INPUT_MODES)
        self._io.write(f"ISRC {index}")
        self._input_mode = INPUT_MODES[index]

    def error_status(self) -> tuple[str, ...]:
        """Hardware errors in the error status byte (``ERRS?``, clears it); empty if none."""
        raw = self._io.query_int("ERRS?")
        return tuple(name for bit, name in _ERROR_BITS.items() if raw >> bit & 1)

    # -- data storage: X/Y during a record ---------------------------------------------------
    _buffer_rate_hz: float | None = None
    """The storage rate :meth:`start_buffered_xy` programmed (Hz); None: not this session."""

    def start_buffered_xy(self, rate_hz: float, *, on_trigger: bool = True) -> None:
        """Store X (CH1) and Y (CH2) at ``rate_hz`` into the one-shot data buffer.

        Sends ``DDEF 1,0,0`` and ``DDEF 2,0,0`` (CH1 shows X, CH2 shows Y, no ratio),
        ``SRAT i``, ``SEND 0`` (one shot: storage stops when the 16383 points are full, after
        16383 / ``rate_hz`` s), ``TSTR 1`` (or ``TSTR 0``), ``REST`` (clears the buffer; with
        ``TSTR 1`` the next trigger starts the scan), then ``STRT`` unless ``on_trigger``, then
        checks the error bits (``*ESR?``), which also makes the call return only once the
        instrument has taken every command: the buffer is armed when it returns.

        Point k is stored at the scan start + k / ``rate_hz``. With ``on_trigger`` the scan
        starts at a rising edge on the rear-panel TRIG IN (wire the DAQ's start trigger to
        it); the simulated SR830 starts it at the beginning of the next bench record instead,
        taking point 0 at that record's first sample. The trigger latency of a real SR830 is
        not modelled (not verified against hardware).

        The buffer stores the *display* values, so an X/Y offset set with ``OEXP`` is
        subtracted from the stored points (the simulator does so too; the driver does not
        change offsets). Expand (``OEXP`` ×10/×100) is not applied by the simulator; the
        manual's treatment of expand in stored data was not verified.

        Args:
            rate_hz: Storage rate (Hz), exactly one of 62.5 mHz × 2^i, i = 0…13
                (0.0625, 0.125, … 256, 512); others are refused.
            on_trigger: Start at the next trigger (True) or now (False, ``STRT``).

        Raises:
            LockinValueError: ``rate_hz`` not in the table, ``on_trigger`` not a bool (nothing
                sent).
            LockinCommandError: The instrument flagged an error.
        """
        if not isinstance(on_trigger, bool):
            raise LockinValueError(f"on_trigger {on_trigger!r}: give True or False")
        if isinstance(rate_hz, bool):
            raise LockinValueError(f"storage rate {rate_hz!r}: give a number of Hz")
        try:
            index = SR830_STORAGE_RATES_HZ.index_of(rate_hz)
        except LockinValueError:
            listed = ", ".join(format_number(v) for v in SR830_STORAGE_RATES_HZ.values)
            shown = format_si(rate_hz, "Hz") if isinstance(rate_hz, int | float) else repr(rate_hz)
            raise LockinValueError(
                f"storage rate {shown} is not one of the SR830's storage rates, 62.5 mHz × 2^i: "
                f"{listed} Hz"
            ) from None
        with self._io.lock:
            self._io.write("DDEF 1,0,0")
            self._io.write("DDEF 2,0,0")
            self._io.write(f"SRAT {index}")
            self._io.write("SEND 0")
            self._io.write(f"TSTR {int(on_trigger)}")
            self._io.write("REST")
            if not on_trigger:
                self._io.write("STRT")
            self._buffer_rate_hz = None
            self.check_errors()
            self._buffer_rate_hz = SR830_STORAGE_RATES_HZ.values[index]

    def read_buffered_xy(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The points stored so far: ``(x, y, rate_hz)``, oldest first.

        ``SPTS?``, then ``TRCA? 1,0,n`` and ``TRCA? 2,0,n`` (ASCII; the simulator, like the
        manual, ends every value with a comma, which is accepted with or without). X and Y
        are in the display units: V rms, or A rms on a current input. No ``TRCA?`` when no
        point is stored (the instrument refuses a count of 0). The rate is the one
        :meth:`start_buffered_xy` programmed, else ``SRAT?``.

        A full buffer is 16383 points × about 14 characters per channel: on a slow interface
        (RS-232, GPIB) raise ``timeout_s`` to cover the transfer.

        Raises:
            LockinProtocolError: A count or a trace that does not fit (out of step, or
                ``SRAT 14`` trigger mode, which has no rate).
        """
        with self._io.lock:
            n = self._io.query_int("SPTS?")
            if not 0 <= n <= SR830_BUFFER_POINTS:
                raise self._io.bad_reply("SPTS?", str(n), f"0…{SR830_BUFFER_POINTS} points")
            rate = self._buffer_rate_hz
            if rate is None:
                index = self._io.query_int("SRAT?")
                if not 0 <= index < len(SR830_STORAGE_RATES_HZ.values):
                    raise self._io.bad_reply(
                        "SRAT?", str(index), "a storage rate index 0…13 (14: per trigger)"
                    )
                rate = SR830_STORAGE_RATES_HZ.values[index]
            if n == 0:
                return np.zeros(0), np.zeros(0), rate
            x = self._trace(1, n)
            y = self._trace(2, n)
        return x, y, rate

    def _trace(self, channel: int, n: int) -> np.ndarray:
        command = f"TRCA? {channel},0,{n}"
        reply = self._io.query(command)
        parts = reply.split(",")
        if parts and parts[-1].strip() == "":
            parts.pop()
        try:
            values = np.array([float(p) for p in parts], dtype=np.float64)
        except ValueError:
            raise self._io.bad_reply(command, reply[:80], f"{n} numbers") from None
        if values.size != n or not np.all(np.isfinite(values)):
            raise self._io.bad_reply(command, reply[:80], f"{n} numbers")
        return values

    def start_xy_trace(self, duration_s: float, max_rate_hz: float) -> float:
        """:meth:`start_buffered_xy` at the highest storage rate ≤ ``max_rate_hz`` whose
        16383 points last ``duration_s``; the scan starts at the next trigger."""
        check_trace_request(duration_s, max_rate_hz)
        fitting = [
            rate
            for rate in SR830_STORAGE_RATES_HZ.values
            if rate <= max_rate_hz * (1 + 1e-9) and duration_s * rate < SR830_BUFFER_POINTS
        ]
        if not fitting:
            slowest = SR830_STORAGE_RATES_HZ.values[0]
            raise LockinValueError(
                f"the SR830 buffer holds {SR830_BUFFER_POINTS} points: "
                f"{format_si(duration_s, 's')} needs a storage rate below "
                f"{format_si(SR830_BUFFER_POINTS / duration_s, 'Hz')}, and its slowest is "
                f"{format_si(slowest, 'Hz')} (at most {format_si(max_rate_hz, 'Hz')} asked); "
                "shorten the record"
            )
        rate = max(fitting)
        self.start_buffered_xy(rate, on_trigger=True)
        return rate

    def read_xy_trace(self) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`read_buffered_xy`."""
        return self.read_buffered_xy()

    def stop_buffer(self) -> None:
        """Pause data storage (``PAUS``); the stored points stay readable."""
        self._io.write("PAUS")
