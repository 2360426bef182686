"""Simulated Stanford Research SR830 DSP lock-in amplifier (commands of the SR830 manual, ch. 5).

Settings and ranges (index formulas as in the manual):

- reference: ``FMOD`` 0 external / 1 internal; ``FREQ`` 1 mHz…102 kHz, rounded to 5 digits or
  0.1 mHz, only settable with the internal reference, harmonic × frequency ≤ 102 kHz;
  ``PHAS`` −360…729.99°, stored rounded to 0.01° and wrapped to ±180°; ``HARM`` 1…19999;
  ``SLVL`` 0.004…5.000 V **rms**, rounded to 2 mV (the SR830 cannot output 0 V: its minimum,
  4 mV rms = 5.7 mV peak, is the safe state); ``RSLP`` 0…2;
- input: ``ISRC`` 0 A, 1 A−B (B is not connected: reads as A), 2 I (1 MΩ = 10⁶ V/A),
  3 I (100 MΩ = 10⁸ V/A); ``IGND``, ``ICPL`` (0 AC: 0.16 Hz high-pass, 1 DC), ``ILIN``;
- gain: ``SENS`` i: [2, 5, 10][i % 3] × 10^(i // 3) nV (0 = 2 nV … 26 = 1 V; in current mode
  the same numbers × 10⁻⁶ A/V: 2 fA … 1 µA); ``RMOD`` 0 high reserve / 1 normal / 2 low noise;
  ``OFLT`` i: [1, 3][i % 2] × 10^(i // 2) × 10 µs (0 = 10 µs … 19 = 30 ks; above 30 s only while
  the detection frequency is below 200 Hz); ``OFSL`` 0…3 = 6/12/18/24 dB/oct; ``SYNC``;
- displays ``DDEF``/``FPOP``/``OEXP``/``AOFF``/``OUTR?`` (CH1: X, R, X noise, Aux 1, Aux 2;
  CH2: Y, θ, Y noise, Aux 3, Aux 4; offsets in % of full scale are subtracted from the display);
- data storage ``SRAT`` 0…13 = 62.5 mHz × 2^i, 14 = one point per trigger; ``SEND`` 0 one shot,
  1 loop; ``TSTR``; ``STRT``/``PAUS``/``REST``/``STRD``/``TRIG``; ``SPTS?``; ``TRCA?``/``TRCB?``/
  ``TRCL?`` i, j, k (16383 points per channel, CH1/CH2 display values);
- ``OUTP?`` 1…4 (X, Y, R, θ), ``SNAP?`` 2…6 of 1 X, 2 Y, 3 R, 4 θ, 5–8 aux in, 9 reference
  frequency, 10/11 CH1/CH2 display; ``OAUX?``, ``AUXV``; ``AGAN``, ``ARSV``, ``APHS`` (instant);
- interface ``OUTX`` (the TCP link stands for the GPIB port: after ``OUTX 0`` replies go to the
  RS-232 port, i.e. nowhere), ``OVRM``, ``LOCL``, ``KCLK``, ``ALRM``, ``SSET``/``RSET``;
- status ``*CLS``, ``*ESE``, ``*ESR?``, ``*SRE``, ``*STB?``, ``*PSC``, ``ERRE``, ``ERRS?``,
  ``LIAE``, ``LIAS?`` (bits 0 input overload, 2 output overload, 3 reference unlock, 4 range
  crossed 200 Hz, 5 time constant changed, 6 storage triggered; they latch until read).

``*RST`` restores the manual's standard settings, including a 1.000 V rms sine output.
The simulated unit powers up in those settings except for the sine amplitude, at its minimum.
"""

from __future__ import annotations

import copy
import math
import struct
from typing import Any, ClassVar

import numpy as np

from simulated_hw.lockin_server.buffer import RingStore, SampleClock
from simulated_hw.lockin_server.demod import ComplexArray, FloatArray
from simulated_hw.lockin_server.instrument import (
    LIA_OUTPUT,
    LIA_RANGE,
    LIA_TC,
    LIA_TRIG,
    Handler,
    Reply,
    Sampler,
    SimLockin,
    xyrt_arrays,
)
from simulated_hw.lockin_server.protocol import (
    Command,
    CommandError,
    ExecutionError,
    expect_args,
    format_float,
    parse_float,
    parse_int,
    parse_int_in,
)

SENSITIVITIES_V = tuple([2, 5, 10][i % 3] * 10 ** (i // 3) * 1e-9 for i in range(27))
"""``SENS i`` full scale (V rms); × 10⁻⁶ A/V in current mode."""
TIME_CONSTANTS_S = tuple([1, 3][i % 2] * 10 ** (i // 2) * 10e-6 for i in range(20))
"""``OFLT i`` time constant (s)."""
SAMPLE_RATES_HZ = tuple(0.0625 * 2**i for i in range(14))
"""``SRAT i`` storage rate (Hz); ``SRAT 14`` stores one point per trigger."""
RESERVE_DB = (60.0, 40.0, 20.0)
"""Dynamic reserve (dB) assumed for ``RMOD`` 0 high / 1 normal / 2 low noise (the real unit's
reserve also depends on the sensitivity; this is a simplification)."""
MAX_INPUT_V = math.sqrt(2.0)
"""Front-end limit (V peak): 1 V rms, the largest full scale; the input ADC clips here."""
BUFFER_POINTS = 16383
"""Points per data-storage channel."""
MAX_FREQUENCY_HZ = 102e3
SYNC_LIMIT_HZ = 200.0
"""Detection frequency below which time constants above 30 s (and SYNC) are available."""
_MAX_OFLT_ABOVE_200_HZ = 13

_SAVED = (
    *("fmod", "freq_hz", "phase_deg", "harmonic", "slvl_v", "rslp", "isrc", "ignd", "icpl"),
    *("ilin", "sens", "rmod", "oflt", "ofsl", "sync", "ddef", "fpop", "oexp", "auxv_v"),
    *("srat", "send", "tstr"),
)
"""Settings SSET saves and RSET recalls."""

_RESET, _RUNNING, _PAUSED, _DONE = "reset", "running", "paused", "done"


def _round_frequency(frequency_hz: float) -> float:
    """The manual's rounding: 5 significant digits or 0.1 mHz, whichever is coarser."""
    decimals = min(4 - math.floor(math.log10(frequency_hz)), 4)
    return round(frequency_hz, decimals)


def _wrap_deg(phase_deg: float) -> float:
    """Phase rounded to 0.01° and wrapped to −180…180°."""
    return round(math.remainder(round(phase_deg, 2), 360.0), 2)


def encode_trcl(values: FloatArray) -> bytes:
    """The SR830's non-normalised format: int16 mantissa m, exponent e; value = m·2^(e−124)."""
    out = bytearray()
    for value in values:
        v = float(value)
        if v == 0.0 or not math.isfinite(v):
            out += struct.pack("<hBB", 0, 0, 0)
            continue
        exponent = math.floor(math.log2(abs(v))) + 110
        mantissa = round(v / 2.0 ** (exponent - 124))
        if abs(mantissa) > 32767:
            exponent += 1
            mantissa = round(v / 2.0 ** (exponent - 124))
        exponent = min(max(exponent, 0), 248)
        mantissa = max(-32768, min(32767, round(v / 2.0 ** (exponent - 124))))
        out += struct.pack("<hBB", mantissa, exponent, 0)
    return bytes(out)


class SR830(SimLockin):
    """The simulated SR830 (see the module docstring for the commands)."""

    model: ClassVar[str] = "SR830"
    idn: ClassVar[str] = "Stanford_Research_Systems,SR830,s/n00000,ver1.07"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._store = RingStore(BUFFER_POINTS, 2, loop=True)
        self._scan = _RESET
        self._clock: SampleClock | None = None
        self._setups: dict[int, dict[str, Any]] = {}
        self.outx = 1
        self.ovrm = 0
        self.locl = 0
        self.kclk = 1
        self.alrm = 1
        self.fast = 0
        super().__init__(*args, **kwargs)

    # --- settings -------------------------------------------------------------------------------

    def reset_settings(self) -> None:
        """The SR830's standard settings (``*RST``)."""
        self.fmod = 1
        self.freq_hz = 1000.0
        self.phase_deg = 0.0
        self.harmonic = 1
        self.slvl_v = 1.0
        self.rslp = 0
        self.isrc = 0
        self.ignd = 0
        self.icpl = 0
        self.ilin = 0
        self.sens = 26
        self.rmod = 2
        self.oflt = 8
        self.ofsl = 1
        self.sync = 0
        self.ddef = [(0, 0), (0, 0)]
        self.fpop = [0, 0]
        self.oexp = [(0.0, 0), (0.0, 0), (0.0, 0)]
        self.auxv_v = [0.0, 0.0, 0.0, 0.0]
        self.srat = 4
        self.send = 1
        self.tstr = 0
        self._reset_buffer()

    def _power_on(self) -> None:
        self.slvl_v = 0.004

    def _internal_frequency_hz(self) -> float:
        return self.freq_hz

    def _external_mode(self) -> bool:
        return self.fmod == 0

    def _harmonic(self) -> int:
        return self.harmonic

    def _phase_deg(self) -> float:
        return self.phase_deg

    def _max_detection_hz(self) -> float:
        return MAX_FREQUENCY_HZ

    def _time_constant_s(self) -> float:
        return TIME_CONSTANTS_S[self.oflt]

    def _n_stages(self) -> int:
        return self.ofsl + 1

    def _current_mode(self) -> bool:
        return self.isrc >= 2

    def _current_gain_v_per_a(self) -> float:
        return 1e8 if self.isrc == 3 else 1e6

    def _ac_coupled(self) -> bool:
        return self.icpl == 0

    def _full_scale(self) -> float:
        full = SENSITIVITIES_V[self.sens]
        return full * 1e-6 if self._current_mode() else full

    def _input_overload_v(self) -> float:
        front = SENSITIVITIES_V[self.sens]
        if self._current_mode():
            front *= self._current_gain_v_per_a() / 1e6
        return min(MAX_INPUT_V, math.sqrt(2.0) * front * 10 ** (RESERVE_DB[self.rmod] / 20))

    def _input_clip_v(self) -> float:
        return MAX_INPUT_V

    def _sine_rms_v(self) -> float:
        return self.slvl_v

    def _replies_enabled(self) -> bool:
        return self.outx == 1

    def _detection_hz(self) -> float:
        return self.harmonic * self._reference_hz()

    def _after_frequency_change(self, old_detection_hz: float) -> None:
        new = self._detection_hz()
        if (old_detection_hz < SYNC_LIMIT_HZ) != (new < SYNC_LIMIT_HZ):
            self._lias |= LIA_RANGE
        if new >= SYNC_LIMIT_HZ and self.oflt > _MAX_OFLT_ABOVE_200_HZ:
            self.oflt = _MAX_OFLT_ABOVE_200_HZ
            self._lias |= LIA_TC
        self._update_reference(self.bench.timebase.now_s)

    # --- data storage ---------------------------------------------------------------------------

    def _reset_buffer(self) -> None:
        self._store = RingStore(BUFFER_POINTS, 2, loop=self.send == 1)
        self._scan = _RESET
        self._clock = None

    def _acquiring(self) -> bool:
        return self._scan == _RUNNING

    def _start_scan(self, time_s: float) -> None:
        self._scan = _RUNNING
        self._clock = None if self.srat == 14 else SampleClock(time_s, SAMPLE_RATES_HZ[self.srat])

    def _displays(self, z: ComplexArray) -> tuple[FloatArray, FloatArray]:
        """CH1 and CH2 display values for filter outputs ``z``."""
        x, y, r, theta = xyrt_arrays(*self._xy(z))
        full = self._full_scale()
        aux = self.aux_inputs_v
        ch1_sources = (
            x - self.oexp[0][0] / 100 * full,
            r - self.oexp[2][0] / 100 * full,
            np.zeros_like(x),
            np.full_like(x, aux[0]),
            np.full_like(x, aux[1]),
        )
        ch2_sources = (
            y - self.oexp[1][0] / 100 * full,
            theta,
            np.zeros_like(x),
            np.full_like(x, aux[2]),
            np.full_like(x, aux[3]),
        )
        out = []
        for channel, sources in ((0, ch1_sources), (1, ch2_sources)):
            which, ratio = self.ddef[channel]
            value = sources[which]
            if ratio:
                divisor = aux[2 * channel + ratio - 1]
                if divisor == 0.0:
                    self._lias |= LIA_OUTPUT
                    value = np.zeros_like(value)
                else:
                    value = value / divisor
            out.append(np.asarray(value, dtype=np.float64))
        return out[0], out[1]

    def _append(self, z: ComplexArray) -> None:
        ch1, ch2 = self._displays(z)
        self._store.append(np.column_stack((ch1, ch2)))
        if self._store.full:
            self._scan = _DONE

    def _store_due(self, sampler: Sampler, until_s: float) -> None:
        if self._scan != _RUNNING or self._clock is None:
            return
        times = self._clock.due(until_s)
        if times.size:
            self._append(sampler(times))

    def _on_trigger(self, time_s: float, sampler: Sampler, from_record: bool = False) -> None:
        triggered = False
        if from_record:
            if self.tstr and self._scan == _RESET:  # armed by REST with TSTR 1
                self._start_scan(time_s)
                self._lias |= LIA_TRIG
            return
        if self.tstr and self._scan in (_RESET, _PAUSED):
            self._start_scan(time_s)
            triggered = True
        if self.srat == 14 and self._scan == _RUNNING:
            self._append(sampler(np.array([time_s])))
            triggered = True
        if triggered:
            self._lias |= LIA_TRIG

    def _points(self, command: Command) -> FloatArray:
        args = expect_args(command, 3)
        channel = parse_int_in(args[0], 1, 2)
        first = parse_int(args[1])
        count = parse_int(args[2])
        stored = self._store.chronological()
        if first < 0 or count < 1 or first + count > stored.shape[0]:
            raise ExecutionError(f"points {first}..{first + count - 1} not stored")
        return np.asarray(stored[first : first + count, channel - 1])

    # --- command table --------------------------------------------------------------------------

    def _register(self) -> None:
        h = self._handlers
        h["OUTX"] = self._int_setting("outx", 0, 1)
        h["OVRM"] = self._int_setting("ovrm", 0, 1)
        h["LOCL"] = self._int_setting("locl", 0, 2)
        h["KCLK"] = self._int_setting("kclk", 0, 1)
        h["ALRM"] = self._int_setting("alrm", 0, 1)
        h["SSET"] = self._cmd_sset
        h["RSET"] = self._cmd_rset
        h["FMOD"] = self._cmd_fmod
        h["FREQ"] = self._cmd_freq
        h["PHAS"] = self._cmd_phas
        h["HARM"] = self._cmd_harm
        h["SLVL"] = self._cmd_slvl
        h["RSLP"] = self._int_setting("rslp", 0, 2)
        h["ISRC"] = self._int_setting("isrc", 0, 3)
        h["IGND"] = self._int_setting("ignd", 0, 1)
        h["ICPL"] = self._int_setting("icpl", 0, 1)
        h["ILIN"] = self._int_setting("ilin", 0, 3)
        h["SENS"] = self._int_setting("sens", 0, 26)
        h["RMOD"] = self._int_setting("rmod", 0, 2)
        h["OFLT"] = self._cmd_oflt
        h["OFSL"] = self._int_setting("ofsl", 0, 3)
        h["SYNC"] = self._int_setting("sync", 0, 1)
        h["DDEF"] = self._cmd_ddef
        h["FPOP"] = self._cmd_fpop
        h["OEXP"] = self._cmd_oexp
        h["AOFF"] = self._cmd_aoff
        h["OAUX"] = self._cmd_oaux
        h["AUXV"] = self._cmd_auxv
        h["AGAN"] = self._cmd_agan
        h["ARSV"] = self._cmd_arsv
        h["APHS"] = self._cmd_aphs
        h["SRAT"] = self._cmd_srat
        h["SEND"] = self._cmd_send
        h["TRIG"] = self._cmd_trig
        h["TSTR"] = self._int_setting("tstr", 0, 1)
        h["STRT"] = self._cmd_strt
        h["PAUS"] = self._cmd_paus
        h["REST"] = self._cmd_rest
        h["STRD"] = self._cmd_strd
        h["FAST"] = self._int_setting("fast", 0, 2)
        h["OUTP"] = self._cmd_outp
        h["OUTR"] = self._cmd_outr
        h["SNAP"] = self._cmd_snap
        h["SPTS"] = self._cmd_spts
        h["TRCA"] = self._cmd_trca
        h["TRCB"] = self._cmd_trcb
        h["TRCL"] = self._cmd_trcl

    def _int_setting(self, attr: str, low: int, high: int) -> Handler:
        def handler(command: Command) -> Reply:
            if command.query:
                expect_args(command, 0)
                return str(getattr(self, attr))
            setattr(self, attr, parse_int_in(expect_args(command, 1)[0], low, high))
            return None

        return handler

    @staticmethod
    def _set_only(command: Command, n_args: int = 0) -> tuple[str, ...]:
        if command.query:
            raise CommandError(f"{command.mnemonic} has no query form")
        return expect_args(command, n_args)

    @staticmethod
    def _query_only(command: Command, minimum: int, maximum: int | None = None) -> tuple[str, ...]:
        if not command.query:
            raise CommandError(f"{command.mnemonic} is a query")
        return expect_args(command, minimum, maximum)

    def _cmd_sset(self, command: Command) -> Reply:
        slot = parse_int_in(self._set_only(command, 1)[0], 1, 9)
        self._setups[slot] = {name: copy.deepcopy(getattr(self, name)) for name in _SAVED}
        return None

    def _cmd_rset(self, command: Command) -> Reply:
        slot = parse_int_in(self._set_only(command, 1)[0], 1, 9)
        if slot not in self._setups:
            raise ExecutionError(f"setup {slot} was never saved")
        old = self._detection_hz()
        for name, value in self._setups[slot].items():
            setattr(self, name, copy.deepcopy(value))
        self._after_frequency_change(old)
        return None

    def _cmd_fmod(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.fmod)
        old = self._detection_hz()
        self.fmod = parse_int_in(expect_args(command, 1)[0], 0, 1)
        self._after_frequency_change(old)
        return None

    def _cmd_freq(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self._reference_hz())
        value = parse_float(expect_args(command, 1)[0])
        if self._external_mode():
            raise ExecutionError("FREQ can only be set with the internal reference")
        if not 1e-3 <= value <= MAX_FREQUENCY_HZ:
            raise ExecutionError(f"frequency {value} Hz outside 0.001..102000")
        value = _round_frequency(value)
        if value * self.harmonic > MAX_FREQUENCY_HZ:
            raise ExecutionError("harmonic x frequency above 102 kHz")
        old = self._detection_hz()
        self.freq_hz = value
        self._after_frequency_change(old)
        return None

    def _cmd_phas(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self.phase_deg)
        value = parse_float(expect_args(command, 1)[0])
        if not -360.0 <= value <= 729.99:
            raise ExecutionError(f"phase {value} deg outside -360..729.99")
        self.phase_deg = _wrap_deg(value)
        return None

    def _cmd_harm(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.harmonic)
        value = parse_int_in(expect_args(command, 1)[0], 1, 19999)
        if value * self._reference_hz() > MAX_FREQUENCY_HZ:
            raise ExecutionError("harmonic x frequency above 102 kHz")
        old = self._detection_hz()
        self.harmonic = value
        self._after_frequency_change(old)
        return None

    def _cmd_slvl(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self.slvl_v)
        value = parse_float(expect_args(command, 1)[0])
        if not 0.004 <= value <= 5.0:
            raise ExecutionError(f"sine amplitude {value} V rms outside 0.004..5.000")
        self.slvl_v = min(max(round(value / 0.002) * 0.002, 0.004), 5.0)
        self.slvl_v = round(self.slvl_v, 3)
        return None

    def _cmd_oflt(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.oflt)
        value = parse_int_in(expect_args(command, 1)[0], 0, 19)
        if value > _MAX_OFLT_ABOVE_200_HZ and self._detection_hz() >= SYNC_LIMIT_HZ:
            raise ExecutionError("time constants above 30 s need a detection frequency < 200 Hz")
        self.oflt = value
        return None

    def _cmd_ddef(self, command: Command) -> Reply:
        if command.query:
            channel = parse_int_in(expect_args(command, 1)[0], 1, 2)
            which, ratio = self.ddef[channel - 1]
            return f"{which},{ratio}"
        args = expect_args(command, 2, 3)
        channel = parse_int_in(args[0], 1, 2)
        which = parse_int_in(args[1], 0, 4)
        ratio = parse_int_in(args[2], 0, 2) if len(args) == 3 else 0
        self.ddef[channel - 1] = (which, ratio)
        return None

    def _cmd_fpop(self, command: Command) -> Reply:
        if command.query:
            channel = parse_int_in(expect_args(command, 1)[0], 1, 2)
            return str(self.fpop[channel - 1])
        args = expect_args(command, 2)
        self.fpop[parse_int_in(args[0], 1, 2) - 1] = parse_int_in(args[1], 0, 1)
        return None

    def _cmd_oexp(self, command: Command) -> Reply:
        if command.query:
            which = parse_int_in(expect_args(command, 1)[0], 1, 3)
            offset, expand = self.oexp[which - 1]
            return f"{format_float(offset)},{expand}"
        args = expect_args(command, 3)
        which = parse_int_in(args[0], 1, 3)
        offset = parse_float(args[1])
        if not -105.0 <= offset <= 105.0:
            raise ExecutionError(f"offset {offset} % outside -105..105")
        self.oexp[which - 1] = (round(offset, 2), parse_int_in(args[2], 0, 2))
        return None

    def _cmd_aoff(self, command: Command) -> Reply:
        which = parse_int_in(self._set_only(command, 1)[0], 1, 3)
        x, y, r, _ = self.readings()
        value = (x, y, r)[which - 1]
        offset = max(-105.0, min(105.0, 100.0 * value / self._full_scale()))
        self.oexp[which - 1] = (round(offset, 2), self.oexp[which - 1][1])
        return None

    def _cmd_oaux(self, command: Command) -> Reply:
        index = parse_int_in(self._query_only(command, 1)[0], 1, 4)
        return format_float(self.aux_inputs_v[index - 1])

    def _cmd_auxv(self, command: Command) -> Reply:
        if command.query:
            index = parse_int_in(expect_args(command, 1)[0], 1, 4)
            return format_float(self.auxv_v[index - 1])
        args = expect_args(command, 2)
        index = parse_int_in(args[0], 1, 4)
        value = parse_float(args[1])
        if not -10.5 <= value <= 10.5:
            raise ExecutionError(f"aux output {value} V outside -10.5..10.5")
        self.auxv_v[index - 1] = round(value, 3)
        return None

    def _cmd_agan(self, command: Command) -> Reply:
        self._set_only(command)
        r = self.readings()[2]
        scale = 1e-6 if self._current_mode() else 1.0
        for index, full in enumerate(SENSITIVITIES_V):
            if r <= 0.8 * full * scale or index == len(SENSITIVITIES_V) - 1:
                self.sens = index
                break
        return None

    def _cmd_arsv(self, command: Command) -> Reply:
        self._set_only(command)
        self.rmod = 2
        return None

    def _cmd_aphs(self, command: Command) -> Reply:
        self._set_only(command)
        self.phase_deg = _wrap_deg(self.phase_deg + self.readings()[3])
        return None

    def _cmd_srat(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.srat)
        self.srat = parse_int_in(expect_args(command, 1)[0], 0, 14)
        if self._scan == _RUNNING:
            self._start_scan(self.bench.timebase.now_s)
        return None

    def _cmd_send(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.send)
        self.send = parse_int_in(expect_args(command, 1)[0], 0, 1)
        self._store.loop = self.send == 1
        return None

    def _cmd_trig(self, command: Command) -> Reply:
        self._set_only(command)
        self.trigger()
        return None

    def _cmd_strt(self, command: Command) -> Reply:
        self._set_only(command)
        if self._scan in (_RESET, _PAUSED):
            self._start_scan(self.bench.timebase.now_s)
            self._store_due(self._state_sampler, self._processed_end_s)
        return None

    def _cmd_paus(self, command: Command) -> Reply:
        self._set_only(command)
        if self._scan == _RUNNING:
            self._scan = _PAUSED
        return None

    def _cmd_rest(self, command: Command) -> Reply:
        self._set_only(command)
        self._reset_buffer()
        return None

    def _cmd_strd(self, command: Command) -> Reply:
        self._set_only(command)
        self._reset_buffer()
        self._start_scan(self.bench.timebase.now_s + 0.5)
        return None

    def _value(self, item: int) -> float:
        """``SNAP?`` item 1…11 now."""
        z = np.array([self._demod.output(self._n_stages())])
        if item <= 4:
            return self.readings()[item - 1]
        if item <= 8:
            return self.aux_inputs_v[item - 5]
        if item == 9:
            return self._reference_hz()
        return float(self._displays(z)[item - 10][0])

    def _cmd_outp(self, command: Command) -> Reply:
        item = parse_int_in(self._query_only(command, 1)[0], 1, 4)
        return format_float(self._value(item), 9)

    def _cmd_outr(self, command: Command) -> Reply:
        channel = parse_int_in(self._query_only(command, 1)[0], 1, 2)
        return format_float(self._value(9 + channel), 9)

    def _cmd_snap(self, command: Command) -> Reply:
        args = self._query_only(command, 2, 6)
        items = [parse_int_in(arg, 1, 11) for arg in args]
        return ",".join(format_float(self._value(item), 9) for item in items)

    def _cmd_spts(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return str(self._store.count)

    def _cmd_trca(self, command: Command) -> Reply:
        if not command.query:
            raise CommandError("TRCA is a query")
        return "".join(f"{v:+.6e}," for v in self._points(command))

    def _cmd_trcb(self, command: Command) -> Reply:
        if not command.query:
            raise CommandError("TRCB is a query")
        return np.asarray(self._points(command), dtype="<f4").tobytes()

    def _cmd_trcl(self, command: Command) -> Reply:
        if not command.query:
            raise CommandError("TRCL is a query")
        return encode_trcl(self._points(command))
