"""Simulated Stanford Research SR860 500 kHz DSP lock-in amplifier (SR860 manual, remote chapter).

Settings and ranges (enumerated parameters accept the index or the manual's token, short or
long form, case-insensitive, e.g. ``RSRC EXT``, ``OUTP? THeta``, ``CAPTURESTART ONE, IMM``):

- reference: ``RSRC`` 0 INT / 1 EXT / 2 DUAL / 3 CHOP (dual and chop demodulate at the internal
  oscillator here); ``FREQ`` 1 mHz…500 kHz (internal oscillator; ``FREQ?`` is the reference in
  use), ``FREQINT``, ``FREQEXT?``, ``FREQDET?``; ``PHAS`` −360000…360000°, wrapped to ±180°;
  ``HARM`` 1…99 (harmonic × frequency ≤ 500 kHz), ``HARMDUAL``; ``SLVL`` 1 nV…2 V (rms, as
  the SR830's), ``SOFF`` −5…5 V DC level of the sine output; ``RTRG``, ``REFZ``, ``TBMODE``;
- input: ``IVMD`` 0 VOLTage / 1 CURRent; ``ISRC`` 0 A / 1 A-B (B not connected); ``ICPL``
  0 AC (0.16 Hz high-pass) / 1 DC; ``IGND``; ``IRNG`` 0…4 = 1 V, 300 mV, 100 mV, 30 mV, 10 mV
  (peak, the input ADC's range: overload and clipping); ``ICUR`` 0 = 1 MΩ (10⁶ V/A, 1 µA range)
  / 1 = 100 MΩ (10⁸ V/A, 10 nA range); ``ILVL?`` signal strength 0…4;
- gain and filter: ``SCAL`` i: [1, 0.5, 0.2][i % 3] × 10^−(i // 3) V (0 = 1 V … 27 = 1 nV,
  reversed order; × 10⁻⁶ A/V in current mode); ``OFLT`` i: [1, 3][i % 2] × 10^(i // 2) µs
  (0 = 1 µs … 21 = 30 ks); ``OFSL`` 0…3 = 6…24 dB/oct; ``SYNC``; ``ADVFILT``; ``ENBW?``;
- outputs: ``OUTP?`` 0…3 or X, Y, R, THeta; ``SNAP?`` 2…3 of the 17 parameters (0 X, 1 Y, 2 R,
  3 THeta, 4–7 IN1…IN4, 8 XNOise, 9 YNOise, 10 OUT1, 11 OUT2, 12 PHAse, 13 SAMp, 14 LEVel,
  15 FInt, 16 FExt); ``CDSP``/``SNAPD?`` (data channels); ``COFP``/``CEXP``; ``OAUX?`` 0…3,
  ``AUXV`` 0…3; ``APHS``, ``ARNG``, ``ASCL`` (instant);
- capture: ``CAPTURECFG`` 0 X / 1 XY / 2 RT / 3 XYRT; ``CAPTURELEN`` 1…4096 kB (odd values are
  rounded up to even); ``CAPTURERATEMAX?`` (Hz, from the time constant); ``CAPTURERATE`` n:
  maximum / 2^n (n 0…20; the query returns Hz); ``CAPTURESTART`` ONE|CONT, IMM|TRIG|SAMP;
  ``CAPTURESTOP``; ``CAPTURESTAT?``; ``CAPTUREBYTES?``; ``CAPTUREPROG?``; ``CAPTUREGET?``
  offset_kB, length_kB (≤ 64 kB) → IEEE 488.2 definite-length block of little-endian float32,
  the buffer memory in order, unwritten parts zero, followed by ``\\n``;
- status: ``*CLS``, ``*ESE``, ``*ESR?``, ``*SRE``, ``*STB?``, ``*PSC``, ``*OPC``, ``*OPC?``,
  ``*WAI``, ``*TRG``/``TRIG``, ``*TST?``, ``LIAE``, ``LIAS?`` (bits as the SR830's: 0 input
  overload, 2 output overload, 3 reference unlock, 6 capture triggered).

``*RST`` restores the defaults, including a 1 V rms sine output; the simulated unit powers up in
them except for the sine amplitude, at its minimum (1 nV).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from simulated_hw.lockin_server.buffer import RingStore, SampleClock
from simulated_hw.lockin_server.demod import ComplexArray, enbw_hz
from simulated_hw.lockin_server.instrument import (
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
    parse_choice,
    parse_float,
    parse_int_in,
)

SENSITIVITIES_V = tuple([1.0, 0.5, 0.2][i % 3] * 10.0 ** -(i // 3) for i in range(28))
"""``SCAL i`` full scale (V rms); × 10⁻⁶ A/V in current mode."""
TIME_CONSTANTS_S = tuple([1, 3][i % 2] * 10 ** (i // 2) * 1e-6 for i in range(22))
"""``OFLT i`` time constant (s)."""
INPUT_RANGES_V = (1.0, 0.3, 0.1, 0.03, 0.01)
"""``IRNG i`` voltage input range (V peak)."""
CURRENT_GAINS_V_PER_A = (1e6, 1e8)
"""``ICUR i`` current-input gain (V/A); the range is 1 V at the front end (1 µA / 10 nA)."""
MAX_FREQUENCY_HZ = 500e3
CAPTURE_BASE_RATE_HZ = 1.25e6
"""Highest capture rate (Hz); the maximum for a time constant is this over a power of two."""
CAPTURE_CONFIGS = ("X", "XY", "RT", "XYRT")
MAX_CAPTURE_GET_KB = 64

_OUTPUT_NAMES = ("X", "Y", "R", "THeta")
_PARAMETER_NAMES = (
    "X",
    "Y",
    "R",
    "THeta",
    "IN1",
    "IN2",
    "IN3",
    "IN4",
    "XNOise",
    "YNOise",
    "OUT1",
    "OUT2",
    "PHAse",
    "SAMp",
    "LEVel",
    "FInt",
    "FExt",
)

_IDLE, _ARMED, _RUNNING, _DONE = "idle", "armed", "running", "done"
# CAPTURESTAT? bits (simulation's definition, see the report): in progress, triggered, full.
CAPTURE_IN_PROGRESS = 1 << 0
CAPTURE_TRIGGERED = 1 << 1
CAPTURE_FULL_OR_WRAPPED = 1 << 2


def capture_rate_max_hz(time_constant_s: float) -> float:
    """Maximum capture rate (Hz) for a time constant (s): 1.25 MHz / 2^k, the largest ≤ 2/τ."""
    k = max(0, math.ceil(math.log2(CAPTURE_BASE_RATE_HZ * time_constant_s / 2.0) - 1e-9))
    return CAPTURE_BASE_RATE_HZ / 2**k


class SR860(SimLockin):
    """The simulated SR860 (see the module docstring for the commands)."""

    model: ClassVar[str] = "SR860"
    idn: ClassVar[str] = "Stanford_Research_Systems,SR860,000000,V1.51"
    lias_mask: ClassVar[int] = 0xFFFF

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._cap_state = _IDLE
        self._cap_store = RingStore(1, 1, loop=False)
        self._cap_clock: SampleClock | None = None
        self._cap_continuous = False
        self._cap_trigger_mode = 0
        self.tbmode = 0
        self.ovrm = 0
        super().__init__(*args, **kwargs)

    # --- settings -------------------------------------------------------------------------------

    def reset_settings(self) -> None:
        """The SR860's default settings (``*RST``)."""
        self.rsrc = 0
        self.freq_hz = 1000.0
        self.phase_deg = 0.0
        self.harmonic = 1
        self.harmdual = 1
        self.slvl_v = 1.0
        self.soff_v = 0.0
        self.rtrg = 0
        self.refz = 0
        self.ivmd = 0
        self.isrc = 0
        self.icpl = 0
        self.ignd = 0
        self.irng = 0
        self.icur = 0
        self.scal = 0
        self.oflt = 10
        self.ofsl = 1
        self.sync = 0
        self.advfilt = 0
        self.cdsp = [0, 1, 2, 3]
        self.cofp = [0.0, 0.0, 0.0]
        self.cexp = [0, 0, 0]
        self.auxv_v = [0.0, 0.0, 0.0, 0.0]
        self.capture_cfg = 1
        self.capture_len_kb = 256
        self.capture_rate_n = 0
        self._cap_state = _IDLE
        self._cap_store = RingStore(1, 1, loop=False)
        self._cap_clock = None

    def _power_on(self) -> None:
        self.slvl_v = 1e-9

    def _internal_frequency_hz(self) -> float:
        return self.freq_hz

    def _external_mode(self) -> bool:
        return self.rsrc == 1

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
        return self.ivmd == 1

    def _current_gain_v_per_a(self) -> float:
        return CURRENT_GAINS_V_PER_A[self.icur]

    def _ac_coupled(self) -> bool:
        return self.icpl == 0

    def _full_scale(self) -> float:
        full = SENSITIVITIES_V[self.scal]
        return full * 1e-6 if self._current_mode() else full

    def _input_overload_v(self) -> float:
        return 1.0 if self._current_mode() else INPUT_RANGES_V[self.irng]

    def _input_clip_v(self) -> float:
        return self._input_overload_v()

    def _sine_rms_v(self) -> float:
        return self.slvl_v

    def _sine_offset_v(self) -> float:
        return self.soff_v

    def _acquiring(self) -> bool:
        return self._cap_state in (_ARMED, _RUNNING)

    # --- capture --------------------------------------------------------------------------------

    def _n_capture_values(self) -> int:
        return (1, 2, 2, 4)[self.capture_cfg]

    def _capture_rate_hz(self) -> float:
        return capture_rate_max_hz(self._time_constant_s()) / 2**self.capture_rate_n

    def _capture_values(self, z: ComplexArray) -> np.ndarray[Any, np.dtype[np.float64]]:
        x, y, r, theta = xyrt_arrays(*self._xy(z))
        columns = ((x,), (x, y), (r, theta), (x, y, r, theta))[self.capture_cfg]
        return np.column_stack(columns)

    def _capture_append(self, z: ComplexArray) -> None:
        self._cap_store.append(self._capture_values(z))
        if self._cap_store.full:
            self._cap_state = _DONE

    def _store_due(self, sampler: Sampler, until_s: float) -> None:
        if self._cap_state != _RUNNING or self._cap_clock is None:
            return
        times = self._cap_clock.due(until_s)
        if times.size:
            self._capture_append(sampler(times))

    def _on_trigger(self, time_s: float, sampler: Sampler, from_record: bool = False) -> None:
        if self._cap_state == _ARMED:
            self._cap_state = _RUNNING
            self._cap_clock = SampleClock(time_s, self._capture_rate_hz())
            self._lias |= LIA_TRIG
        elif self._cap_state == _RUNNING and self._cap_trigger_mode == 2 and not from_record:
            self._capture_append(sampler(np.array([time_s])))
            self._lias |= LIA_TRIG

    def _capture_bytes(self) -> int:
        return self._cap_store.count * self._cap_store.n_channels * 4

    def _capture_memory(self) -> bytes:
        size = self.capture_len_kb * 1024
        data = np.asarray(self._cap_store.data, dtype="<f4").tobytes()
        return (data + bytes(size))[:size]

    # --- command table --------------------------------------------------------------------------

    def _register(self) -> None:
        h = self._handlers
        h["*OPC"] = self._cmd_opc
        h["*WAI"] = self._cmd_nothing
        h["*TRG"] = self._cmd_trg
        h["TRIG"] = self._cmd_trg
        h["*TST"] = self._cmd_tst
        h["OVRM"] = self._setting("ovrm", ("OFF", "ON"))
        h["RSRC"] = self._setting("rsrc", ("INTernal", "EXTernal", "DUAL", "CHOP"), reference=True)
        h["FREQ"] = self._cmd_freq
        h["FREQINT"] = self._cmd_freqint
        h["FREQEXT"] = self._cmd_freqext
        h["FREQDET"] = self._cmd_freqdet
        h["PHAS"] = self._cmd_phas
        h["HARM"] = self._cmd_harm
        h["HARMDUAL"] = self._cmd_harmdual
        h["SLVL"] = self._cmd_slvl
        h["SOFF"] = self._cmd_soff
        h["RTRG"] = self._setting("rtrg", ("SINe", "POSttl", "NEGttl"))
        h["REFZ"] = self._setting("refz", ("50OHms", "1MEG"))
        h["TBMODE"] = self._setting("tbmode", ("AUTO", "INTernal"))
        h["TBSTAT"] = self._cmd_tbstat
        h["IVMD"] = self._setting("ivmd", ("VOLTage", "CURRent"))
        h["ISRC"] = self._setting("isrc", ("A", "A-B"))
        h["ICPL"] = self._setting("icpl", ("AC", "DC"))
        h["IGND"] = self._setting("ignd", ("FLOat", "GROund"))
        h["IRNG"] = self._setting("irng", ("1V", "300M", "100M", "30M", "10M"))
        h["ICUR"] = self._setting("icur", ("1MEG", "100MEG"))
        h["ILVL"] = self._cmd_ilvl
        h["SCAL"] = self._setting("scal", (None,) * 28)
        h["OFLT"] = self._setting("oflt", (None,) * 22)
        h["OFSL"] = self._setting("ofsl", ("6DB", "12DB", "18DB", "24DB"))
        h["SYNC"] = self._setting("sync", ("OFF", "ON"))
        h["ADVFILT"] = self._setting("advfilt", ("OFF", "ON"))
        h["ENBW"] = self._cmd_enbw
        h["OUTP"] = self._cmd_outp
        h["SNAP"] = self._cmd_snap
        h["SNAPD"] = self._cmd_snapd
        h["CDSP"] = self._cmd_cdsp
        h["COFP"] = self._cmd_cofp
        h["CEXP"] = self._cmd_cexp
        h["OAUX"] = self._cmd_oaux
        h["AUXV"] = self._cmd_auxv
        h["APHS"] = self._cmd_aphs
        h["ARNG"] = self._cmd_arng
        h["ASCL"] = self._cmd_ascl
        h["CAPTURECFG"] = self._cmd_capturecfg
        h["CAPTURELEN"] = self._cmd_capturelen
        h["CAPTURERATEMAX"] = self._cmd_captureratemax
        h["CAPTURERATE"] = self._cmd_capturerate
        h["CAPTURESTART"] = self._cmd_capturestart
        h["CAPTURESTOP"] = self._cmd_capturestop
        h["CAPTURESTAT"] = self._cmd_capturestat
        h["CAPTUREBYTES"] = self._cmd_capturebytes
        h["CAPTUREPROG"] = self._cmd_captureprog
        h["CAPTUREGET"] = self._cmd_captureget

    def _setting(
        self,
        attr: str,
        names: tuple[str | None, ...],
        *,
        reference: bool = False,
    ) -> Handler:
        def handler(command: Command) -> Reply:
            if command.query:
                expect_args(command, 0)
                return str(getattr(self, attr))
            value = parse_choice(expect_args(command, 1)[0], names)
            setattr(self, attr, value)
            if reference:
                self._update_reference(self.bench.timebase.now_s)
            return None

        return handler

    @staticmethod
    def _query_only(command: Command, minimum: int, maximum: int | None = None) -> tuple[str, ...]:
        if not command.query:
            raise CommandError(f"{command.mnemonic} is a query")
        return expect_args(command, minimum, maximum)

    @staticmethod
    def _set_only(
        command: Command, minimum: int = 0, maximum: int | None = None
    ) -> tuple[str, ...]:
        if command.query:
            raise CommandError(f"{command.mnemonic} has no query form")
        return expect_args(command, minimum, maximum)

    def _cmd_opc(self, command: Command) -> Reply:
        expect_args(command, 0)
        if command.query:
            return "1"
        self._esr |= 1  # operation complete
        return None

    def _cmd_nothing(self, command: Command) -> Reply:
        self._set_only(command)
        return None

    def _cmd_trg(self, command: Command) -> Reply:
        self._set_only(command)
        self.trigger()
        return None

    def _cmd_tst(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return "0"

    def _cmd_tbstat(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return "1"  # running on the internal timebase

    def _set_internal_frequency(self, value: float) -> None:
        if not 1e-3 <= value <= MAX_FREQUENCY_HZ:
            raise ExecutionError(f"frequency {value} Hz outside 0.001..500000")
        if value * self.harmonic > MAX_FREQUENCY_HZ:
            raise ExecutionError("harmonic x frequency above 500 kHz")
        self.freq_hz = value
        self._update_reference(self.bench.timebase.now_s)

    def _cmd_freq(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self._reference_hz())
        value = parse_float(expect_args(command, 1)[0])
        if self._external_mode():
            raise ExecutionError("FREQ can only be set with the internal reference")
        self._set_internal_frequency(value)
        return None

    def _cmd_freqint(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self.freq_hz)
        self._set_internal_frequency(parse_float(expect_args(command, 1)[0]))
        return None

    def _cmd_freqext(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return format_float(self._external_hz or 0.0)

    def _cmd_freqdet(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return format_float(self.harmonic * self._reference_hz())

    def _cmd_phas(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self.phase_deg)
        value = parse_float(expect_args(command, 1)[0])
        if not -360000.0 <= value <= 360000.0:
            raise ExecutionError(f"phase {value} deg outside -360000..360000")
        self.phase_deg = math.remainder(value, 360.0)
        return None

    def _cmd_harm(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.harmonic)
        value = parse_int_in(expect_args(command, 1)[0], 1, 99)
        if value * self._reference_hz() > MAX_FREQUENCY_HZ:
            raise ExecutionError("harmonic x frequency above 500 kHz")
        self.harmonic = value
        return None

    def _cmd_harmdual(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.harmdual)
        self.harmdual = parse_int_in(expect_args(command, 1)[0], 1, 99)
        return None

    def _cmd_slvl(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self.slvl_v)
        value = parse_float(expect_args(command, 1)[0])
        if not 1e-9 <= value <= 2.0:
            raise ExecutionError(f"sine amplitude {value} V rms outside 1e-9..2")
        self.slvl_v = value
        return None

    def _cmd_soff(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self.soff_v)
        value = parse_float(expect_args(command, 1)[0])
        if not -5.0 <= value <= 5.0:
            raise ExecutionError(f"sine DC level {value} V outside -5..5")
        self.soff_v = round(value, 4)
        return None

    def _cmd_ilvl(self, command: Command) -> Reply:
        self._query_only(command, 0)
        level = self._last_input_peak_v / self._input_overload_v()
        strength = sum(level > threshold for threshold in (0.01, 0.1, 0.3, 1.0))
        return str(strength)

    def _cmd_enbw(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return format_float(enbw_hz(self._time_constant_s(), self._n_stages()))

    def _parameter(self, index: int) -> float:
        """SNAP? parameter 0…16 now."""
        if index <= 3:
            return self.readings()[index]
        if index <= 7:
            return self.aux_inputs_v[index - 4]
        if index <= 9:
            return 0.0  # X/Y noise: not simulated
        if index <= 11:
            return self.auxv_v[index - 10]
        return (
            self.phase_deg,
            self.slvl_v,
            self.soff_v,
            self.freq_hz,
            self._external_hz or 0.0,
        )[index - 12]

    def _cmd_outp(self, command: Command) -> Reply:
        index = parse_choice(self._query_only(command, 1)[0], _OUTPUT_NAMES)
        return format_float(self._parameter(index), 9)

    def _cmd_snap(self, command: Command) -> Reply:
        args = self._query_only(command, 2, 3)
        indices = [parse_choice(arg, _PARAMETER_NAMES) for arg in args]
        return ",".join(format_float(self._parameter(i), 9) for i in indices)

    def _cmd_snapd(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return ",".join(format_float(self._parameter(i), 9) for i in self.cdsp)

    def _cmd_cdsp(self, command: Command) -> Reply:
        if command.query:
            channel = parse_choice(expect_args(command, 1)[0], ("DAT1", "DAT2", "DAT3", "DAT4"))
            return str(self.cdsp[channel])
        args = expect_args(command, 2)
        channel = parse_choice(args[0], ("DAT1", "DAT2", "DAT3", "DAT4"))
        self.cdsp[channel] = parse_choice(args[1], _PARAMETER_NAMES)
        return None

    def _cmd_cofp(self, command: Command) -> Reply:
        if command.query:
            return format_float(self.cofp[parse_choice(expect_args(command, 1)[0], "XYR")])
        args = expect_args(command, 2)
        which = parse_choice(args[0], "XYR")
        value = parse_float(args[1])
        if not -999.99 <= value <= 999.99:
            raise ExecutionError(f"offset {value} % outside -999.99..999.99")
        self.cofp[which] = round(value, 2)
        return None

    def _cmd_cexp(self, command: Command) -> Reply:
        if command.query:
            return str(self.cexp[parse_choice(expect_args(command, 1)[0], "XYR")])
        args = expect_args(command, 2)
        which = parse_choice(args[0], "XYR")
        self.cexp[which] = parse_choice(args[1], ("OFF", "X10", "X100"))
        return None

    def _cmd_oaux(self, command: Command) -> Reply:
        index = parse_int_in(self._query_only(command, 1)[0], 0, 3)
        return format_float(self.aux_inputs_v[index])

    def _cmd_auxv(self, command: Command) -> Reply:
        if command.query:
            return format_float(self.auxv_v[parse_int_in(expect_args(command, 1)[0], 0, 3)])
        args = expect_args(command, 2)
        index = parse_int_in(args[0], 0, 3)
        value = parse_float(args[1])
        if not -10.5 <= value <= 10.5:
            raise ExecutionError(f"aux output {value} V outside -10.5..10.5")
        self.auxv_v[index] = round(value, 4)
        return None

    def _cmd_aphs(self, command: Command) -> Reply:
        self._set_only(command)
        self.phase_deg = math.remainder(self.phase_deg + self.readings()[3], 360.0)
        return None

    def _cmd_arng(self, command: Command) -> Reply:
        self._set_only(command)
        if not self._current_mode():
            peak = self._last_input_peak_v
            fitting = [i for i, r in enumerate(INPUT_RANGES_V) if peak < 0.9 * r]
            self.irng = fitting[-1] if fitting else 0
        return None

    def _cmd_ascl(self, command: Command) -> Reply:
        self._set_only(command)
        r = self.readings()[2]
        scale = 1e-6 if self._current_mode() else 1.0
        fitting = [i for i, full in enumerate(SENSITIVITIES_V) if r <= 0.8 * full * scale]
        self.scal = fitting[-1] if fitting else 0
        return None

    def _require_idle(self) -> None:
        if self._cap_state in (_ARMED, _RUNNING):
            raise ExecutionError("stop the capture first")

    def _cmd_capturecfg(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.capture_cfg)
        value = parse_choice(expect_args(command, 1)[0], CAPTURE_CONFIGS)
        self._require_idle()
        self.capture_cfg = value
        return None

    def _cmd_capturelen(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return str(self.capture_len_kb)
        value = parse_int_in(expect_args(command, 1)[0], 1, 4096)
        self._require_idle()
        self.capture_len_kb = value + (value % 2)
        return None

    def _cmd_captureratemax(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return format_float(capture_rate_max_hz(self._time_constant_s()))

    def _cmd_capturerate(self, command: Command) -> Reply:
        if command.query:
            expect_args(command, 0)
            return format_float(self._capture_rate_hz())
        value = parse_int_in(expect_args(command, 1)[0], 0, 20)
        self._require_idle()
        self.capture_rate_n = value
        return None

    def _cmd_capturestart(self, command: Command) -> Reply:
        args = self._set_only(command, 2)
        continuous = parse_choice(args[0], ("ONE", "CONTinuous")) == 1
        mode = parse_choice(args[1], ("IMMediate", "TRIGstart", "SAMPpertrig"))
        n_values = self._n_capture_values()
        capacity = self.capture_len_kb * 1024 // (4 * n_values)
        self._cap_store = RingStore(capacity, n_values, loop=continuous)
        self._cap_continuous = continuous
        self._cap_trigger_mode = mode
        self._cap_clock = None
        if mode == 0:
            self._cap_state = _RUNNING
            self._cap_clock = SampleClock(self.bench.timebase.now_s, self._capture_rate_hz())
            self._store_due(self._state_sampler, self._processed_end_s)
        elif mode == 1:
            self._cap_state = _ARMED
        else:
            self._cap_state = _RUNNING
        return None

    def _cmd_capturestop(self, command: Command) -> Reply:
        self._set_only(command)
        if self._cap_state in (_ARMED, _RUNNING):
            self._cap_state = _IDLE
        return None

    def _cmd_capturestat(self, command: Command) -> Reply:
        self._query_only(command, 0)
        status = 0
        if self._cap_state in (_ARMED, _RUNNING):
            status |= CAPTURE_IN_PROGRESS
        if self._cap_state == _RUNNING or self._cap_store.written:
            status |= CAPTURE_TRIGGERED
        if self._cap_store.written >= self._cap_store.capacity and self._cap_store.written:
            status |= CAPTURE_FULL_OR_WRAPPED
        return str(status)

    def _cmd_capturebytes(self, command: Command) -> Reply:
        self._query_only(command, 0)
        return str(self._capture_bytes())

    def _cmd_captureprog(self, command: Command) -> Reply:
        self._query_only(command, 0)
        if self._cap_store.written > self._cap_store.capacity:
            return str(self.capture_len_kb)
        kb = math.ceil(self._capture_bytes() / 1024)
        return str(min(kb + (kb % 2), self.capture_len_kb))

    def _cmd_captureget(self, command: Command) -> Reply:
        args = self._query_only(command, 2)
        offset = parse_int_in(args[0], 0, self.capture_len_kb - 1)
        length = parse_int_in(args[1], 1, MAX_CAPTURE_GET_KB)
        memory = np.frombuffer(self._capture_memory(), dtype=np.uint8)
        index = np.arange(offset * 1024, (offset + length) * 1024) % memory.size
        data = memory[index].tobytes()  # past the end of the buffer: wrapped
        size = str(len(data))
        return b"#" + str(len(size)).encode() + size.encode() + data
