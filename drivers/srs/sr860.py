"""Stanford Research Systems SR860 / SR865 / SR865A lock-in amplifiers (USB, Ethernet, GPIB).

Tables (index → value): ``SCAL i`` = [1, 0.5, 0.2][i % 3] × 10^−(i // 3) V, i = 0…27 (1 V…1 nV,
**reversed** against the SR830; current input 1 µA…1 fA); ``OFLT i`` = [1, 3][i % 2] ×
10^(i // 2) µs, i = 0…21 (1 µs…30 ks). Detection frequency harmonic × f ≤ 500 kHz (SR860),
2 MHz (SR865), 4 MHz (SR865A), chosen from ``*IDN?``; harmonic 1…99; phase ±360000°; sine
output 1 nV…2 V rms. The input range (``IRNG``) is separate from the sensitivity.
"""

from __future__ import annotations

from typing import ClassVar

from drivers.srs.base import InputMode, LockinStatus, SRSLockin
from drivers.srs.common import IndexTable, LockinValueError, choose, decade_table, format_si

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
    MAX_HARMONIC: ClassVar[int] = 99
    PHASE_RANGE_DEG: ClassVar[tuple[float, float]] = (-360000.0, 360000.0)
    SINE_RANGE_V_RMS: ClassVar[tuple[float, float]] = (1e-9, 2.0)
    SINE_STEP_V_RMS: ClassVar[float] = 1e-9
    OUTPUT_CODES: ClassVar[dict[str, int]] = {"X": 0, "Y": 1, "R": 2, "theta": 3, "frequency": 15}
    SNAP_MAX: ClassVar[int] = 3
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
    def reference_source(self) -> str:
        """``internal``, ``external``, ``dual`` or ``chop`` (``RSRC``)."""
        index = self._io.query_int("RSRC?")
        if not 0 <= index < len(SR86X_REFERENCE_SOURCES):
            raise self._io.bad_reply("RSRC?", str(index), "0…3")
        return SR86X_REFERENCE_SOURCES[index]

    @reference_source.setter
    def reference_source(self, source: str) -> None:
        self._io.write(f"RSRC {choose('reference source', source, SR86X_REFERENCE_SOURCES)}")

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

    def _decode_status(self, raw: int) -> LockinStatus:
        names = tuple(name for bit, name in _STATUS_BITS.items() if raw >> bit & 1)
        return LockinStatus(
            raw=raw,
            input_overload=bool(raw & 1),
            filter_overload=bool(raw & 2),
            output_overload=bool(raw & 4),
            reference_unlock=bool(raw & 8),
            names=names,
        )
