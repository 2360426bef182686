"""Stanford Research Systems SR860 / SR865 / SR865A lock-in amplifiers (USB, Ethernet, GPIB).

Tables (index → value): ``SCAL i`` = [1, 0.5, 0.2][i % 3] × 10^−(i // 3) V, i = 0…27 (1 V…1 nV,
**reversed** against the SR830; current input 1 µA…1 fA); ``OFLT i`` = [1, 3][i % 2] ×
10^(i // 2) µs, i = 0…21 (1 µs…30 ks). Detection frequency harmonic × f ≤ 500 kHz (SR860),
2 MHz (SR865), 4 MHz (SR865A), chosen from ``*IDN?``; harmonic 1…99; phase ±360000°; sine
output 1 nV…2 V rms. The input range (``IRNG``) is separate from the sensitivity. Capture:
``CAPTURERATE n`` = ``CAPTURERATEMAX?`` / 2^n, n = 0…20; ``CAPTURELEN`` 1…4096 kB
(:meth:`SR860.start_capture_xy`, :meth:`SR860.read_capture_xy`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from drivers.srs.base import InputMode, SRSLockin
from drivers.srs.common import (
    IndexTable,
    LockinValueError,
    check_range,
    check_trace_request,
    choose,
    decade_table,
    format_si,
)

SR86X_SENSITIVITIES_V = IndexTable(
    "sensitivity", "V", decade_table(("1", "0.5", "0.2"), 28, 0, step=-1)
)
"""``SCAL`` index → full scale (V rms); index 0 is the largest."""

SR86X_TIME_CONSTANTS_S = IndexTable("time constant", "s", decade_table(("1", "3"), 22, -6))
"""``OFLT`` index → time constant (s)."""

SR86X_INPUT_RANGES_V = IndexTable("input range", "V", (1.0, 0.3, 0.1, 0.03, 0.01))
"""``IRNG`` index → voltage input range (V peak)."""

SR86X_REFERENCE_SOURCES = ("internal", "external", "dual", "chop")
"""``RSRC`` index → reference source."""

MAX_FREQUENCY_BY_MODEL_HZ = {"SR860": 500e3, "SR865": 2e6, "SR865A": 4e6}
"""Highest detection frequency of each model (Hz)."""

CAPTURE_MAX_RATE_DIVIDER_EXPONENT = 20
"""``CAPTURERATE n``: the capture rate is ``CAPTURERATEMAX?`` / 2^n, n = 0…20."""

CAPTURE_LENGTH_KB = (2, 4096)
"""Capture buffer lengths (kB) the driver takes: even numbers in this range (the instrument
rounds an odd length up to even; the driver refuses it instead of letting it move)."""

CAPTURE_GET_MAX_KB = 64
"""Most kB one ``CAPTUREGET?`` returns."""

_XY_BYTES_PER_POINT = 8
"""``CAPTURECFG XY``: two float32 per point."""

_STATUS_BITS = {
    0: "INPUT overload",
    1: "FILTR overload",
    2: "OUTPT overload",
    3: "UNLK reference unlock",
    6: "TRIG capture triggered",
}
"""``LIAS?`` bits as decoded here: the SR830's layout, which the simulated SR860 uses too. Not
verified against an SR86x manual: check before trusting overload flags on a real SR86x."""


class SR860(SRSLockin):
    """The SR860, SR865 and SR865A (the model comes from ``*IDN?``).

    Example::

        with SR860("TCPIP::192.168.1.20::1865::SOCKET", expect_model="SR865A") as lockin:
            lockin.input_mode = "voltage"
            lockin.input_range_v = 0.1
            lockin.sensitivity = 10e-3
            lockin.time_constant_s = 0.3
    """

    MODELS: ClassVar[tuple[str, ...]] = tuple(MAX_FREQUENCY_BY_MODEL_HZ)
    VOLTAGE_SENSITIVITIES: ClassVar[IndexTable] = SR86X_SENSITIVITIES_V
    TIME_CONSTANTS: ClassVar[IndexTable] = SR86X_TIME_CONSTANTS_S
    SENSITIVITY_COMMAND: ClassVar[str] = "SCAL"
    REFERENCE_COMMAND: ClassVar[str] = "RSRC"
    REFERENCE_SOURCES: ClassVar[tuple[str, ...]] = SR86X_REFERENCE_SOURCES
    MAX_HARMONIC: ClassVar[int] = 99
    PHASE_RANGE_DEG: ClassVar[tuple[float, float]] = (-360000.0, 360000.0)
    SINE_RANGE_V_RMS: ClassVar[tuple[float, float]] = (1e-9, 2.0)
    SINE_STEP_V_RMS: ClassVar[float] = 1e-9
    OUTPUT_CODES: ClassVar[dict[str, int]] = {"X": 0, "Y": 1, "R": 2, "theta": 3, "frequency": 15}
    SNAP_MAX: ClassVar[int] = 3
    STATUS_BITS: ClassVar[dict[int, str]] = _STATUS_BITS
    ESR_ERRORS: ClassVar[dict[int, tuple[str, str]]] = {
        2: ("QYE", "query error: a reply was lost or requested with nothing to say"),
        3: ("DDE", "device-dependent error"),
        4: ("EXE", "execution error: a parameter out of range or not allowed now"),
        5: ("CME", "command error: a command it does not know, or bad syntax"),
    }
    STEPPING_CLEARS_INPUT_OVERLOAD: ClassVar[bool] = False

    @property
    def max_frequency_hz(self) -> float:
        """Highest detection frequency of this model (Hz)."""
        return MAX_FREQUENCY_BY_MODEL_HZ[self.model]

    @property
    def input_mode(self) -> InputMode:
        """``IVMD`` voltage/current, then ``ISRC`` (A / A−B) or ``ICUR`` (1 MΩ / 100 MΩ)."""
        with self._io.lock:
            current = self._io.query_int("IVMD?")
            if current not in (0, 1):
                raise self._io.bad_reply("IVMD?", str(current), "0 or 1")
            if current:
                gain = self._io.query_int("ICUR?")
                if gain not in (0, 1):
                    raise self._io.bad_reply("ICUR?", str(gain), "0 or 1")
                mode: InputMode = "current_100M" if gain else "current_1M"
            else:
                source = self._io.query_int("ISRC?")
                if source not in (0, 1):
                    raise self._io.bad_reply("ISRC?", str(source), "0 or 1")
                mode = "voltage_diff" if source else "voltage"
        self._input_mode = mode
        return mode

    @input_mode.setter
    def input_mode(self, mode: InputMode) -> None:
        commands = {
            "voltage": ("IVMD 0", "ISRC 0"),
            "voltage_diff": ("IVMD 0", "ISRC 1"),
            "current_1M": ("IVMD 1", "ICUR 0"),
            "current_100M": ("IVMD 1", "ICUR 1"),
        }
        choose("input mode", mode, tuple(commands))
        with self._io.lock:
            for command in commands[mode]:
                self._io.write(command)
        self._input_mode = mode

    @property
    def input_range_v(self) -> float:
        """Voltage input range (V): 1, 0.3, 0.1, 0.03 or 0.01 (``IRNG``)."""
        index = self._io.query_int("IRNG?")
        return SR86X_INPUT_RANGES_V.value(index)

    @input_range_v.setter
    def input_range_v(self, range_v: float) -> None:
        try:
            index = SR86X_INPUT_RANGES_V.index_of(range_v)
        except LockinValueError:
            listed = ", ".join(format_si(v, "V") for v in SR86X_INPUT_RANGES_V.values)
            raise LockinValueError(
                f"input range {format_si(range_v, 'V')} is not one of {listed}"
            ) from None
        self._io.write(f"IRNG {index}")

    # -- capture: X/Y during a record --------------------------------------------------------
    _capture_rate_hz: float | None = None
    """The capture rate :meth:`start_capture_xy` programmed (Hz); None: not this session."""
    _capture_length_kb: int | None = None

    def start_capture_xy(self, rate_hz: float, *, length_kb: int, on_trigger: bool = True) -> None:
        """Capture X and Y at ``rate_hz`` into a one-shot buffer of ``length_kb`` kB.

        Reads ``CAPTURERATEMAX?`` (the highest rate for the present time constant) and
        refuses a rate that is not that maximum / 2^n (n = 0…20) within 1e-6; then sends
        ``CAPTURESTOP`` (the instrument refuses to reconfigure an armed or running capture),
        ``CAPTURECFG XY``, ``CAPTURERATE n``, ``CAPTURELEN length_kb``,
        ``CAPTURESTART ONE, TRIG`` (or ``IMM``), and checks the error bits (``*ESR?``), which
        also makes the call return only once the instrument has taken every command: the
        capture is armed when it returns. It holds ``length_kb`` × 128 points (8 bytes each)
        and stops when full.

        Point k is taken at the start + k / ``rate_hz``. With ``on_trigger`` the capture
        starts at a trigger on the rear-panel TRIG IN (wire the DAQ's start trigger to it);
        the simulated SR86x starts it at the beginning of the next bench record, taking point
        0 at that record's first sample. A real unit's trigger latency is not modelled (not
        verified against hardware). The maximum rate follows the time constant (in the
        simulator 1.25 MHz / 2^k, the largest ≤ 2/τ; the real rule was not verified): change
        the time constant before, not after, starting the capture.

        Args:
            rate_hz: Capture rate (Hz): ``CAPTURERATEMAX?`` / 2^n.
            length_kb: Buffer length (kB), an even number 2…4096.
            on_trigger: Start at the next trigger (True, ``TRIG``) or now (False, ``IMM``).

        Raises:
            LockinValueError: A rate, length or flag the instrument cannot take (nothing sent,
                except the ``CAPTURERATEMAX?`` query for a rate not of the form).
            LockinCommandError: The instrument flagged an error.
        """
        if not isinstance(on_trigger, bool):
            raise LockinValueError(f"on_trigger {on_trigger!r}: give True or False")
        low, high = CAPTURE_LENGTH_KB
        if isinstance(length_kb, bool) or not isinstance(length_kb, int):
            raise LockinValueError(f"capture length {length_kb!r}: give an even number of kB")
        if not low <= length_kb <= high or length_kb % 2:
            raise LockinValueError(
                f"capture length {length_kb} kB: give an even number of kB, {low}…{high} (the "
                "instrument rounds an odd length up)"
            )
        if isinstance(rate_hz, bool) or not (
            isinstance(rate_hz, int | float) and math.isfinite(rate_hz) and rate_hz > 0
        ):
            raise LockinValueError(f"capture rate {rate_hz!r}: give a positive number of Hz")
        with self._io.lock:
            maximum = self._io.query_float("CAPTURERATEMAX?")
            if not (math.isfinite(maximum) and maximum > 0):
                raise self._io.bad_reply("CAPTURERATEMAX?", format_si(maximum, "Hz"), "a rate")
            n = round(math.log2(maximum / rate_hz))
            offered = maximum / 2.0**n
            if not 0 <= n <= CAPTURE_MAX_RATE_DIVIDER_EXPONENT or not math.isclose(
                rate_hz, offered, rel_tol=1e-6
            ):
                lowest = maximum / 2.0**CAPTURE_MAX_RATE_DIVIDER_EXPONENT
                check_range(
                    "capture rate",
                    rate_hz,
                    lowest,
                    maximum,
                    "Hz",
                    f"CAPTURERATEMAX? / 2^n, n = 0…{CAPTURE_MAX_RATE_DIVIDER_EXPONENT}, at the "
                    "present time constant",
                )
                if rate_hz < offered:
                    neighbours = sorted(
                        {maximum / 2.0 ** min(n + 1, CAPTURE_MAX_RATE_DIVIDER_EXPONENT), offered}
                    )
                else:
                    neighbours = sorted({offered, maximum / 2.0 ** max(n - 1, 0)})
                shown = " and ".join(format_si(v, "Hz") for v in neighbours)
                raise LockinValueError(
                    f"capture rate {format_si(rate_hz, 'Hz')} is not CAPTURERATEMAX? "
                    f"({format_si(maximum, 'Hz')} at the present time constant) / 2^n; the "
                    f"nearest are {shown}"
                )
            self._io.write("CAPTURESTOP")
            self._io.write("CAPTURECFG XY")
            self._io.write(f"CAPTURERATE {n}")
            self._io.write(f"CAPTURELEN {length_kb}")
            self._io.write(f"CAPTURESTART ONE, {'TRIG' if on_trigger else 'IMM'}")
            self._capture_rate_hz = None
            self._capture_length_kb = None
            self.check_errors()
            self._capture_rate_hz = offered
            self._capture_length_kb = length_kb

    def read_capture_xy(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The points captured so far: ``(x, y, rate_hz)``, oldest first, V rms (A rms on a
        current input).

        ``CAPTUREBYTES?``, then ``CAPTUREGET? offset,length`` (kB, at most 64 kB each) read
        with pyvisa's ``query_binary_values(..., datatype="f", is_big_endian=False)`` over
        the whole kB that hold those bytes; the values past them (zeros) are dropped and the
        rest split into X and Y. Nothing but ``CAPTUREBYTES?`` when none are captured.

        Only a capture this driver started (``CAPTURECFG XY``, one shot, so the memory does
        not wrap) is read; the rate is the one it programmed. Reading while the capture runs
        is fine: the bytes counted first do not change afterwards.

        Raises:
            LockinError: No capture started by this driver.
            LockinProtocolError: A byte count or a block that does not fit.
        """
        rate, length_kb = self._capture_rate_hz, self._capture_length_kb
        if rate is None or length_kb is None:
            raise LockinValueError(
                f"{self.model} at {self._io.name}: no X/Y capture was started by this driver; "
                "call start_capture_xy first"
            )
        with self._io.lock:
            n_bytes = self._io.query_int("CAPTUREBYTES?")
            if not 0 <= n_bytes <= length_kb * 1024 or n_bytes % _XY_BYTES_PER_POINT:
                raise self._io.bad_reply(
                    "CAPTUREBYTES?",
                    str(n_bytes),
                    f"a multiple of {_XY_BYTES_PER_POINT} up to {length_kb * 1024}",
                )
            values: list[float] = []
            total_kb = math.ceil(n_bytes / 1024)
            for offset in range(0, total_kb, CAPTURE_GET_MAX_KB):
                size = min(CAPTURE_GET_MAX_KB, total_kb - offset)
                command = f"CAPTUREGET? {offset},{size}"
                block = self._io.query_binary_floats(command)
                if len(block) != size * 256:
                    raise self._io.bad_reply(
                        command, f"a block of {len(block)} float32", f"{size * 256} float32"
                    )
                values.extend(block)
        data = np.asarray(values[: n_bytes // 4], dtype=np.float64).reshape(-1, 2)
        return data[:, 0].copy(), data[:, 1].copy(), rate

    @property
    def capture_rate_max_hz(self) -> float:
        """Highest capture rate at the present time constant (``CAPTURERATEMAX?``, Hz)."""
        maximum = self._io.query_float("CAPTURERATEMAX?")
        if not (math.isfinite(maximum) and maximum > 0):
            raise self._io.bad_reply("CAPTURERATEMAX?", format_si(maximum, "Hz"), "a rate")
        return maximum

    def start_xy_trace(self, duration_s: float, max_rate_hz: float) -> float:
        """:meth:`start_capture_xy` at the highest rate ``CAPTURERATEMAX?`` / 2^n ≤
        ``max_rate_hz`` whose buffer (at most 4096 kB) holds ``duration_s``; starts at the
        next trigger."""
        check_trace_request(duration_s, max_rate_hz)
        with self._io.lock:
            maximum = self.capture_rate_max_hz
            low_kb, high_kb = CAPTURE_LENGTH_KB
            for n in range(CAPTURE_MAX_RATE_DIVIDER_EXPONENT + 1):
                rate = maximum / 2.0**n
                if rate > max_rate_hz * (1 + 1e-9):
                    continue
                n_bytes = (math.ceil(duration_s * rate) + 2) * _XY_BYTES_PER_POINT
                length_kb = max(low_kb, 2 * math.ceil(n_bytes / 2048))
                if length_kb <= high_kb:
                    self.start_capture_xy(rate, length_kb=length_kb, on_trigger=True)
                    return rate
        raise LockinValueError(
            f"the {self.model} capture holds {high_kb} kB ({high_kb * 128} X/Y points): "
            f"{format_si(duration_s, 's')} does not fit at any rate CAPTURERATEMAX? "
            f"({format_si(maximum, 'Hz')}) / 2^n up to {format_si(max_rate_hz, 'Hz')}; "
            "shorten the record"
        )

    def read_xy_trace(self) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`read_capture_xy`."""
        return self.read_capture_xy()

    def stop_capture(self) -> None:
        """Stop the capture (``CAPTURESTOP``); the captured points stay readable."""
        self._io.write("CAPTURESTOP")
