"""Stanford Research Systems SR830 DSP lock-in amplifier (GPIB, RS-232, or a TCP bridge).

Tables (index → value): ``SENS i`` = [2, 5, 10][i % 3] × 10^(i // 3) nV, i = 0…26 (2 nV…1 V;
current input 2 fA…1 µA); ``OFLT i`` = [1, 3][i % 2] × 10^(i // 2) × 10 µs, i = 0…19
(10 µs…30 ks). Detection frequency harmonic × f ≤ 102 kHz, harmonic 1…19999, phase
−360…729.99°, sine output 4 mV…5 V rms in 2 mV steps. Replies go only to the interface
``OUTX`` selects, so the driver sends ``OUTX`` before anything else.
"""

from __future__ import annotations

from typing import ClassVar

from drivers.srs.base import INPUT_MODES, InputMode, LockinStatus, SRSLockin
from drivers.srs.common import IndexTable, choose, decade_table

SR830_SENSITIVITIES_V = IndexTable("sensitivity", "V", decade_table(("2", "5", "10"), 27, -9))
"""``SENS`` index → full scale (V rms)."""

SR830_TIME_CONSTANTS_S = IndexTable("time constant", "s", decade_table(("1", "3"), 20, -5))
"""``OFLT`` index → time constant (s)."""

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
    MAX_FREQUENCY_HZ: ClassVar[float] = 102e3
    MAX_HARMONIC: ClassVar[int] = 19999
    PHASE_RANGE_DEG: ClassVar[tuple[float, float]] = (-360.0, 729.99)
    SINE_RANGE_V_RMS: ClassVar[tuple[float, float]] = (0.004, 5.0)
    SINE_STEP_V_RMS: ClassVar[float] = 0.002
    OUTPUT_CODES: ClassVar[dict[str, int]] = {"X": 1, "Y": 2, "R": 3, "theta": 4, "frequency": 9}
    SNAP_MAX: ClassVar[int] = 6
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
    def reference_source(self) -> str:
        """``internal`` or ``external`` (``FMOD``)."""
        index = self._io.query_int("FMOD?")
        if not 0 <= index < len(SR830_REFERENCE_SOURCES):
            raise self._io.bad_reply("FMOD?", str(index), "0 or 1")
        return SR830_REFERENCE_SOURCES[index]

    @reference_source.setter
    def reference_source(self, source: str) -> None:
        self._io.write(f"FMOD {choose('reference source', source, SR830_REFERENCE_SOURCES)}")

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

    def error_status(self) -> tuple[str, ...]:
        """Hardware errors in the error status byte (``ERRS?``, clears it); empty if none."""
        raw = self._io.query_int("ERRS?")
        return tuple(name for bit, name in _ERROR_BITS.items() if raw >> bit & 1)
