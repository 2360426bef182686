"""The simulated SR830 and SR860 lock-ins, driven through real pyvisa (pyvisa-py, raw socket).

Every test talks to a server on a free localhost port exactly as a third-party driver would
(``TCPIP::127.0.0.1::PORT::SOCKET``, ``read_termination="\\n"``). Physics checks play waveforms
on a bench and compare the instrument's readings with demodulations computed here with numpy.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

pyvisa = pytest.importorskip("pyvisa")
pytest.importorskip("pyvisa_py")

from labctl.config import load_config  # noqa: E402
from simulated_hw.backend import EffectsSettings, SimulatedSettings, make_bench  # noqa: E402
from simulated_hw.bench import BenchRecord, SimBench  # noqa: E402
from simulated_hw.chain import ChainSettings, MeasurementChain  # noqa: E402
from simulated_hw.lockin_server import LockinServer, serve_lockin  # noqa: E402
from simulated_hw.lockin_server.lab import load_lab_config, start_lab  # noqa: E402
from simulated_hw.models import ResistorModel  # noqa: E402
from simulated_hw.timebase import TimeBase  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIM_DNPU = REPO / "configs" / "sim_dnpu.yaml"
LAB = REPO / "configs" / "sim_lab" / "cdaq_two_lockins.yaml"
FS = 20_000.0
GAIN = 1e7
"""Ideal bench: 10 MΩ from e1 to the output, 10⁷ V/A amplifier: tia_v = V(e1) exactly."""
ESR_EXE, ESR_CME = 16, 32
LIA_INPUT, LIA_OUTPUT, LIA_UNLOCK = 1, 4, 8


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rm() -> Iterator[Any]:
    manager = pyvisa.ResourceManager("@py")
    yield manager
    manager.close()


def open_visa(rm: Any, server: LockinServer, **kwargs: Any) -> Any:
    """Open the server the way a driver does."""
    options: dict[str, Any] = {
        "read_termination": "\n",
        "write_termination": "\n",
        "timeout": 2000,
    }
    options.update(kwargs)
    return rm.open_resource(server.resource, **options)


def ideal_bench() -> SimBench:
    """A resistor (10 MΩ on e1) and an ideal amplifier (10⁷ V/A): tia_v is V(e1), held."""
    chain = MeasurementChain(ChainSettings.ideal(GAIN), seed=0)
    return SimBench(ResistorModel(7, 1, 1e7), chain, TimeBase())


def device_bench() -> SimBench:
    """The simulated DNPU of configs/sim_dnpu.yaml with the amplifier bandwidth, no noise."""
    loaded = load_config(SIM_DNPU)
    settings = loaded.backend_settings
    assert isinstance(settings, SimulatedSettings)
    effects = EffectsSettings(noise=False, flicker=False, drift=False, quantisation=False)
    return make_bench(loaded.setup, settings.model_copy(update={"effects": effects}))


OPERATING_POINT_V = np.array([0.0, 0.2, -0.4, 0.6, -0.2, 0.3, 0.0])


def play_tone(
    bench: SimBench,
    duration_s: float,
    *,
    electrode: int = 1,
    frequency_hz: float = 1000.0,
    amplitude_v: float = 0.1,
    phase_rad: float = 0.0,
    dc_v: np.ndarray | float = 0.0,
    fs: float = FS,
) -> BenchRecord:
    """Play DC plus ``amplitude·sin(2π f t + phase)`` (t: the bench's simulated time)."""
    n = round(duration_s * fs)
    t = bench.timebase.now_s + np.arange(n) / fs
    wf = np.zeros((bench.n_electrodes, n)) + np.reshape(dc_v, (-1, 1))
    wf[electrode] += amplitude_v * np.sin(2 * np.pi * frequency_hz * t + phase_rad)
    return bench.play(wf, fs)


def held_demod(record: BenchRecord, frequency_hz: float, last_s: float) -> complex:
    """X + iY of the record's held (staircase) tia_v over its last ``last_s`` seconds (numpy)."""
    n = round(last_s * record.sample_rate_hz)
    t = record.times_s()[-n:]
    u = record.tia_v[-n:]
    w = 2 * np.pi * frequency_hz
    dt = 1.0 / record.sample_rate_hz
    hold = (1 - np.exp(-1j * w * dt)) / (1j * w * dt)  # mean of exp(-iωs) over one sample
    return complex(np.sqrt(2) * 1j * np.mean(u * np.exp(-1j * w * t)) * hold)


def point_demod(record: BenchRecord, frequency_hz: float, last_s: float) -> complex:
    """X + iY of the record's tia_v samples over its last ``last_s`` seconds (numpy)."""
    n = round(last_s * record.sample_rate_hz)
    t = record.times_s()[-n:]
    u = record.tia_v[-n:]
    return complex(np.sqrt(2) * 1j * np.mean(u * np.exp(-2j * np.pi * frequency_hz * t)))


def xy(visa: Any, sr860: bool = False) -> complex:
    """X + iY read with SNAP?."""
    x, y = visa.query_ascii_values("SNAP? 0,1" if sr860 else "SNAP? 1,2")
    return complex(x, y)


def send(visa: Any, commands: str) -> None:
    """Write set commands and wait until the instrument has executed them (a write returns at
    once; a query's reply comes after everything sent before it)."""
    visa.write(commands)
    visa.query("*STB?")


@pytest.fixture
def sr830() -> Iterator[LockinServer]:
    with serve_lockin("sr830", bench=ideal_bench(), sine_electrode=3) as server:
        yield server


@pytest.fixture
def sr860() -> Iterator[LockinServer]:
    with serve_lockin("sr860", bench=ideal_bench(), sine_electrode=4) as server:
        yield server


# --- identification, syntax, status -----------------------------------------------------------


def test_identification(rm: Any, sr830: LockinServer, sr860: LockinServer) -> None:
    assert open_visa(rm, sr830).query("*IDN?") == (
        "Stanford_Research_Systems,SR830,s/n00000,ver1.07"
    )
    assert open_visa(rm, sr860).query("*IDN?") == "Stanford_Research_Systems,SR860,000000,V1.51"
    assert sr830.resource == f"TCPIP::127.0.0.1::{sr830.port}::SOCKET"
    assert sr830.host == "127.0.0.1" and sr830.model == "sr830"


SR830_SETTINGS = [
    ("FREQ 1234.5", "FREQ?", "1234.5"),
    ("FREQ 137.123456", "FREQ?", "137.12"),  # 5 digits
    ("PHAS 45.5", "PHAS?", "45.5"),
    ("PHAS 700", "PHAS?", "-20"),  # wrapped to ±180°
    ("HARM 3", "HARM?", "3"),
    ("SLVL 0.5", "SLVL?", "0.5"),
    ("SLVL 0.0051", "SLVL?", "0.006"),  # 2 mV steps
    ("RSLP 2", "RSLP?", "2"),
    ("ISRC 1", "ISRC?", "1"),
    ("IGND 1", "IGND?", "1"),
    ("ICPL 1", "ICPL?", "1"),
    ("ILIN 3", "ILIN?", "3"),
    ("SENS 10", "SENS?", "10"),
    ("RMOD 0", "RMOD?", "0"),
    ("OFLT 12", "OFLT?", "12"),
    ("OFSL 2", "OFSL?", "2"),
    ("SYNC 1", "SYNC?", "1"),
    ("DDEF 1,1,0", "DDEF? 1", "1,0"),
    ("DDEF 2,1,2", "DDEF? 2", "1,2"),
    ("FPOP 2,1", "FPOP? 2", "1"),
    ("OEXP 1,10.5,1", "OEXP? 1", "10.5,1"),
    ("AUXV 2,1.25", "AUXV? 2", "1.25"),
    ("SRAT 14", "SRAT?", "14"),
    ("SEND 0", "SEND?", "0"),
    ("TSTR 1", "TSTR?", "1"),
    ("FAST 2", "FAST?", "2"),
    ("OUTX 1", "OUTX?", "1"),
    ("OVRM 1", "OVRM?", "1"),
    ("LOCL 1", "LOCL?", "1"),
    ("KCLK 0", "KCLK?", "0"),
    ("ALRM 0", "ALRM?", "0"),
    ("LIAE 4", "LIAE?", "4"),
    ("LIAE 3,1", "LIAE? 3", "1"),
    ("ERRE 2", "ERRE?", "2"),
    ("*ESE 48", "*ESE?", "48"),
    ("*SRE 8", "*SRE?", "8"),
    ("*PSC 0", "*PSC?", "0"),
    ("FMOD 0", "FMOD?", "0"),
]

SR860_SETTINGS = [
    ("FREQ 12345.678", "FREQ?", "12345.678"),
    ("FREQINT 2000", "FREQINT?", "2000"),
    ("PHAS 400", "PHAS?", "40"),
    ("HARM 7", "HARM?", "7"),
    ("HARMDUAL 3", "HARMDUAL?", "3"),
    ("SLVL 0.25", "SLVL?", "0.25"),
    ("SLVL 1e-9", "SLVL?", "1e-09"),
    ("SOFF -0.5", "SOFF?", "-0.5"),
    ("RTRG POSttl", "RTRG?", "1"),
    ("REFZ 1", "REFZ?", "1"),
    ("IVMD CURR", "IVMD?", "1"),
    ("IVMD 0", "IVMD?", "0"),
    ("ISRC 1", "ISRC?", "1"),
    ("ICPL DC", "ICPL?", "1"),
    ("IGND GROUND", "IGND?", "1"),
    ("IRNG 300M", "IRNG?", "1"),
    ("IRNG 4", "IRNG?", "4"),
    ("ICUR 100MEG", "ICUR?", "1"),
    ("SCAL 6", "SCAL?", "6"),
    ("OFLT 11", "OFLT?", "11"),
    ("OFSL 24DB", "OFSL?", "3"),
    ("SYNC ON", "SYNC?", "1"),
    ("ADVFILT 1", "ADVFILT?", "1"),
    ("CDSP 0, R", "CDSP? 0", "2"),
    ("COFP 1, 12.5", "COFP? 1", "12.5"),
    ("CEXP 2, X10", "CEXP? 2", "1"),
    ("AUXV 3, -2.5", "AUXV? 3", "-2.5"),
    ("CAPTURECFG XYRT", "CAPTURECFG?", "3"),
    ("CAPTURELEN 3", "CAPTURELEN?", "4"),  # rounded up to even
    ("LIAE 4", "LIAE?", "4"),
    ("*ESE 16", "*ESE?", "16"),
    ("*SRE 8", "*SRE?", "8"),
    ("TBMODE 1", "TBMODE?", "1"),
    ("RSRC EXT", "RSRC?", "1"),
    ("RSRC 0", "RSRC?", "0"),
]


@pytest.mark.parametrize(
    ("which", "settings"), [("sr830", SR830_SETTINGS), ("sr860", SR860_SETTINGS)]
)
def test_every_setting_round_trips(
    rm: Any,
    sr830: LockinServer,
    sr860: LockinServer,
    which: str,
    settings: list[tuple[str, str, str]],
) -> None:
    visa = open_visa(rm, sr830 if which == "sr830" else sr860)
    visa.query("*ESR?")  # clear power-on
    for set_command, query, expected in settings:
        visa.write(set_command)
        assert visa.query(query) == expected, set_command
    assert visa.query("*ESR?") == "0"


def test_sr860_capture_rate_follows_the_time_constant(rm: Any, sr860: LockinServer) -> None:
    visa = open_visa(rm, sr860)
    send(visa, "OFLT 0")  # 1 µs
    assert float(visa.query("CAPTURERATEMAX?")) == 1.25e6
    send(visa, "OFLT 10")  # 100 ms
    rate_max = float(visa.query("CAPTURERATEMAX?"))
    assert rate_max < 1.25e6 and math.log2(1.25e6 / rate_max).is_integer()
    send(visa, "CAPTURERATE 3")
    assert float(visa.query("CAPTURERATE?")) == pytest.approx(rate_max / 8)
    assert float(visa.query("ENBW?")) == pytest.approx(1 / (8 * 0.1))  # 12 dB/oct, 100 ms


def test_syntax_case_spaces_semicolons_and_terminations(
    rm: Any, sr830: LockinServer, sr860: LockinServer
) -> None:
    visa = open_visa(rm, sr830)
    send(visa, "freq 137")
    assert visa.query("FrEq?") == "137"
    send(visa, "SENS5")
    assert visa.query("SENS ?") == "5"
    visa.write("SENS 7;OFLT 4;SENS?;OFLT?")  # one reply line per query
    assert visa.read() == "7"
    assert visa.read() == "4"
    assert visa.query("DDEF?1;") == "0,0"  # trailing ';' as PyMeasure sends it
    send(visa, "SRAT4.000000")  # an integer sent as a real
    assert visa.query("SRAT?") == "4"
    assert len(visa.query_ascii_values("SNAP ? 1,2,3,4,9,10")) == 6
    assert visa.query("OUTP?3") == visa.query("OUTP? 3")
    visa.write_raw(b"HARM?\r\n")
    assert visa.read() == "1"
    visa.write_raw(b"OFLT 9\rOFLT?\r")  # bare carriage returns end lines too
    assert visa.read() == "9"
    visa.write_raw(b"OFSL 2\r")
    visa.write_raw(b"\nOFSL?\r\n")  # a CR LF split over two packets: one line end
    assert visa.read() == "2"
    assert visa.query("*ESR?") in ("0", "128")

    visa860 = open_visa(rm, sr860)
    visa860.write("outp? theta")
    theta = float(visa860.read())
    assert theta == pytest.approx(float(visa860.query("OUTP? 3")))
    values = visa860.query_ascii_values("SNAP? X, Y, PHASE")
    assert len(values) == 3 and values[2] == 0.0
    send(visa860, "capturestart one, imm;capturestop")
    assert visa860.query("*ESR?") in ("0", "128")


@pytest.mark.parametrize("which", ["sr830", "sr860"])
def test_errors_set_status_bits_and_never_desynchronise(
    rm: Any, sr830: LockinServer, sr860: LockinServer, which: str
) -> None:
    server = sr830 if which == "sr830" else sr860
    visa = open_visa(rm, server)
    visa.query("*ESR?")
    send(visa, "FOO 1")  # unknown command
    assert int(visa.query("*ESR?")) == ESR_CME
    send(visa, "SLVL 7")  # out of range on both
    assert int(visa.query("*ESR?")) == ESR_EXE
    assert float(visa.query("SLVL?")) < 2.0  # unchanged
    send(visa, "OFLT 99")
    assert int(visa.query("*ESR?")) == ESR_EXE
    visa.write("BAR?")  # a bad query replies nothing ...
    visa.write("OUTP? 9")  # ... nor does a query with a bad parameter
    assert visa.query("*IDN?").split(",")[1] == server.instrument.model  # still in step
    assert int(visa.query("*ESR?")) == ESR_CME | ESR_EXE
    assert int(visa.query("*ESR? 5")) == 0  # read-and-clear
    send(visa, "FREQ abc")
    assert visa.query("*ESR? 5") == "1"
    assert int(visa.query("*STB?")) & 0b10  # IFC: idle
    if which == "sr830":
        assert visa.query("ERRS?") == "0"  # no hardware errors


# --- physics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sr830", "sr860"])
def test_readings_equal_numpy_demodulation_of_the_device_output(rm: Any, which: str) -> None:
    """A 137 Hz tone on e1 of the simulated DNPU: X/Y equal the demodulated amplifier output.

    The SR830 is DC coupled; the SR860's largest input range is 1 V, below the amplifier's
    ~1.1 V DC level, so it is AC coupled (0.16 Hz high-pass) like it would have to be.
    """
    bench = device_bench()
    with serve_lockin(which, bench=bench) as server:
        visa = open_visa(rm, server)
        if which == "sr830":
            send(visa, "FREQ 137;ICPL 1;OFSL 3;OFLT 8")  # 100 ms, 24 dB/oct
        else:
            send(visa, "FREQ 137;ICPL AC;OFSL 3;OFLT 10")
        record = play_tone(
            bench, 3.0, frequency_hz=137.0, amplitude_v=0.05, phase_rad=0.4,
            dc_v=OPERATING_POINT_V, fs=10_000.0,
        )  # fmt: skip
        reading = xy(visa, sr860=which == "sr860")
        expected = point_demod(record, 137.0, 1.0)  # 137 whole periods
        if which == "sr860":
            expected /= 1 - 1j * 0.16 / 137.0  # the coupling high-pass
        # ripple at 137 Hz left by the DC and the harmonics after 4 RC stages of 100 ms
        w_tau = 2 * np.pi * 137.0 * 0.1
        spread = np.abs(np.fft.rfft(record.tia_v[-10_000:])) / 10_000 * 2
        ripple = math.sqrt(2) * float(spread.sum()) / (1 + w_tau**2) ** 2
        assert abs(expected) > 1e-3  # the device responds
        assert abs(reading - expected) < ripple + 2e-4 * abs(expected)
        assert (int(visa.query("LIAS?")) & (LIA_INPUT | LIA_OUTPUT)) == 0


def test_held_staircase_is_demodulated_exactly(rm: Any, sr830: LockinServer) -> None:
    """Without amplifier bandwidth the amplifier output is the DAC staircase: exact integral."""
    visa = open_visa(rm, sr830)
    send(visa, "FREQ 137;ICPL 1;OFSL 3;OFLT 8")
    record = play_tone(sr830.bench, 2.0, frequency_hz=137.0, amplitude_v=0.05, phase_rad=0.7)
    expected = held_demod(record, 137.0, 1.0)
    assert abs(xy(visa) - expected) < 1e-4 * abs(expected)
    r, theta = visa.query_ascii_values("SNAP? 3,4")
    assert r == pytest.approx(abs(expected), rel=1e-4)
    assert theta == pytest.approx(math.degrees(np.angle(expected)), abs=0.01)


@pytest.mark.parametrize(("slope", "settle_tau"), [(0, 5), (1, 7), (2, 9), (3, 10)])
def test_readings_settle_over_the_filter_settling_time(
    rm: Any, sr830: LockinServer, slope: int, settle_tau: int
) -> None:
    """A tone switched on at t0: R reaches 99 % at about 5/7/9/10 τ, and not before."""
    visa = open_visa(rm, sr830)
    send(visa, f"OFLT 8;OFSL {slope}")  # τ = 100 ms, 1 kHz reference
    tau = 0.1
    final = 0.1 / math.sqrt(2) * np.sinc(1000.0 / FS)  # held: amplitude × sinc
    fractions = []
    for duration in (0.5 * settle_tau, 0.5 * settle_tau, 0.5 * settle_tau):
        play_tone(sr830.bench, duration * tau)
        fractions.append(float(visa.query("OUTP? 3")) / final)
    half, full, late = fractions
    assert half < 0.95
    assert abs(full - 1) < 0.015
    assert abs(late - 1) < 2e-3


def test_harmonic_2_reads_the_2f_component_of_the_device(rm: Any) -> None:
    bench = device_bench()
    with serve_lockin("sr830", bench=bench) as server:
        visa = open_visa(rm, server)
        send(visa, "FREQ 137;ICPL 1;OFSL 3;OFLT 8;HARM 2")
        record = play_tone(
            bench, 3.0, electrode=5, frequency_hz=137.0, amplitude_v=0.15,
            dc_v=OPERATING_POINT_V, fs=10_000.0,
        )  # fmt: skip
        second = point_demod(record, 274.0, 1.0)
        first = point_demod(record, 137.0, 1.0)
        assert abs(second) > 0.05 * abs(first)  # the nonlinear device makes a 2f component
        assert abs(xy(visa) - second) < 1e-4 * abs(second)
        assert float(visa.query("SNAP? 9,3").split(",")[0]) == 137.0


def test_overload_bits(rm: Any, sr830: LockinServer, sr860: LockinServer) -> None:
    visa = open_visa(rm, sr830)
    send(visa, "ICPL 1;SENS 26;RMOD 0;OFLT 6")
    play_tone(sr830.bench, 0.2, amplitude_v=0.1)  # R = 70 mV rms
    assert (int(visa.query("LIAS?")) & (LIA_INPUT | LIA_OUTPUT)) == 0
    send(visa, "SENS 20")  # 10 mV full scale: the output overloads
    assert visa.query("LIAS? 2") == "1"
    assert visa.query("LIAS? 2") == "1"  # the condition persists: set again on every check
    x_true = float(visa.query("OUTP? 1"))
    assert abs(x_true) > 0.01  # OUTP returns the true value, above full scale
    send(visa, "RMOD 2;SENS 17")  # 1 mV, low noise: the input overloads too
    play_tone(sr830.bench, 0.05, amplitude_v=0.1)
    status = int(visa.query("LIAS?"))
    assert status & LIA_INPUT and status & LIA_OUTPUT
    send(visa, "*CLS")
    assert visa.query("LIAS? 0") == "0"  # cleared, and no new record has played

    visa860 = open_visa(rm, sr860)
    send(visa860, "ICPL DC;SCAL 0;OFLT 6;IRNG 10M")  # ±10 mV input range, 0.1 V signal
    play_tone(sr860.bench, 0.1, amplitude_v=0.1)
    status = int(visa860.query("LIAS?"))
    assert status & LIA_INPUT
    clipped = float(visa860.query("OUTP? R"))
    assert clipped < 0.012  # the input ADC clipped at 10 mV: the reading is wrong, and flagged
    assert visa860.query("ILVL?") == "4"
    send(visa860, "IRNG 1V;SCAL 9")  # 1 V range, 1 mV full scale
    play_tone(sr860.bench, 0.1, amplitude_v=0.1)
    status = int(visa860.query("LIAS?"))
    assert status & LIA_OUTPUT and not status & LIA_INPUT


def test_current_input_reads_the_measured_current(rm: Any, sr830: LockinServer) -> None:
    visa = open_visa(rm, sr830)
    send(visa, "ISRC 2;ICPL 1;OFSL 3;OFLT 8;SENS 23")  # I (1 MΩ), 100 nA full scale
    record = play_tone(sr830.bench, 2.0, amplitude_v=0.1)  # 10 nA peak through 10 MΩ
    expected = held_demod(record, 1000.0, 1.0) / GAIN  # amps
    assert abs(xy(visa) - expected) < 1e-4 * abs(expected)
    assert (int(visa.query("LIAS?")) & (LIA_INPUT | LIA_OUTPUT)) == 0


def test_external_reference(rm: Any, sr830: LockinServer) -> None:
    visa = open_visa(rm, sr830)
    send(visa, "FMOD 0;ICPL 1;OFSL 3;OFLT 8")
    play_tone(sr830.bench, 0.01)
    assert int(visa.query("LIAS?")) & LIA_UNLOCK  # nothing on REF IN
    assert visa.query("FREQ?") == "0"
    send(visa, "FREQ 100")
    assert int(visa.query("*ESR?")) & ESR_EXE  # only with the internal reference
    sr830.external_reference_hz = 333.0
    assert visa.query("FREQ?") == "333"
    record = play_tone(sr830.bench, 2.0, frequency_hz=333.0)
    expected = held_demod(record, 333.0, 1.0)
    assert abs(xy(visa) - expected) < 1e-4 * abs(expected)
    assert not int(visa.query("LIAS? 3"))


# --- sine output ------------------------------------------------------------------------------


def test_sine_output_drives_the_electrode(rm: Any, sr830: LockinServer) -> None:
    visa = open_visa(rm, sr830)
    bench = sr830.bench
    dc = np.full(7, 0.1)
    record = play_tone(bench, 0.1, amplitude_v=0.0, dc_v=dc)
    at_power_on = record.voltages_v[3] - 0.1  # 4 mV rms: the SR830 cannot output 0 V
    assert np.max(np.abs(at_power_on)) == pytest.approx(0.004 * math.sqrt(2), rel=1e-3)
    send(visa, "FREQ 137;SLVL 0.1")
    record = play_tone(bench, 0.2, amplitude_v=0.0, dc_v=dc)
    sine = record.voltages_v[3] - 0.1
    assert np.max(np.abs(sine)) == pytest.approx(0.1 * math.sqrt(2), rel=1e-3)
    output = bench.external_sines[sr830.instrument.sine_key]
    assert output.amplitude_v == pytest.approx(0.1 * math.sqrt(2))
    assert output.electrode_index == 3 and output.frequency_hz == 137.0
    np.testing.assert_allclose(sine, output.values_v(record.times_s()), atol=1e-12)
    np.testing.assert_allclose(record.voltages_v[[0, 1, 2, 4, 5, 6]], 0.1)  # only e3
    send(visa, "FREQ 200")  # phase-continuous: no step at the next record's first sample
    before = sine[-1]
    record = play_tone(bench, 0.01, amplitude_v=0.0, dc_v=dc)
    after = record.voltages_v[3][0] - 0.1
    assert abs(after - before) < 0.1 * math.sqrt(2) * 2 * np.pi * 200 / FS * 1.01
    send(visa, "SLVL 0")  # below the minimum: refused
    assert int(visa.query("*ESR?")) & ESR_EXE
    send(visa, "SLVL 0.004")  # the safe state drivers set
    record = play_tone(bench, 0.01, amplitude_v=0.0, dc_v=dc)
    assert np.max(np.abs(record.voltages_v[3] - 0.1)) <= 0.004 * math.sqrt(2) + 1e-12


def test_lockin_measures_its_own_sine_through_the_resistor(rm: Any) -> None:
    bench = ideal_bench()
    with serve_lockin("sr860", bench=bench, sine_electrode=1) as server:
        visa = open_visa(rm, server)
        send(visa, "FREQ 137;SLVL 0.05;ICPL DC;OFSL 3;OFLT 10")
        play_tone(bench, 2.0, amplitude_v=0.0)
        r, theta = visa.query_ascii_values("SNAP? R, THETA")
        hold = np.sinc(137.0 / FS)  # the DAC holds each sample
        assert r == pytest.approx(0.05 * hold, rel=1e-4)
        assert theta == pytest.approx(-180 * 137.0 / FS, abs=1e-3)  # half-sample hold delay
        send(visa, "SOFF 0.25")  # SR860 sine DC level adds on the electrode too
        record = play_tone(bench, 0.1, amplitude_v=0.0)
        assert np.mean(record.voltages_v[1]) == pytest.approx(0.25, abs=0.005)


def test_rst_restores_the_manuals_nonzero_sine(rm: Any, sr830: LockinServer) -> None:
    visa = open_visa(rm, sr830)
    send(visa, "SLVL 0.004;SENS 5")
    send(visa, "*RST")
    assert visa.query("SLVL?") == "1"
    assert visa.query("SENS?") == "26" and visa.query("OFLT?") == "8"
    (sine,) = [s for s in sr830.bench.external_sines.values() if s.frequency_hz > 0]
    assert sine.amplitude_v == pytest.approx(math.sqrt(2)) and sine.electrode_index == 3
    assert "*RST" in sr830.commands


def test_stopping_switches_the_sine_off() -> None:
    bench = ideal_bench()
    server = serve_lockin("sr830", bench=bench, sine_electrode=2)
    assert bench.external_sines
    server.stop()
    assert not bench.external_sines
    server.stop()  # idempotent


# --- data storage -----------------------------------------------------------------------------


def convolved(
    record: BenchRecord, frequency_hz: float, tau_s: float, n_stages: int, times_s: np.ndarray
) -> np.ndarray:
    """X + iY at ``times_s`` computed by convolution (numpy, independent of the instrument).

    ``√2·i·∫ h(t − s)·u(s)·exp(−iωs) ds`` over the record (nothing before it), with the held
    tia_v as u and the impulse response ``h(t) = t^(n−1) e^(−t/τ) / ((n−1)! τ^n)`` of ``n``
    RC stages; 16 sub-steps per sample, the phasor integrated exactly over each.
    """
    m = 16
    w = 2 * np.pi * frequency_hz
    delta = 1.0 / (record.sample_rate_hz * m)
    starts = record.t0_s + np.arange(record.n_samples * m) * delta
    u = np.repeat(record.tia_v, m)
    phasor = np.exp(-1j * w * starts) * (1 - np.exp(-1j * w * delta)) / (1j * w)
    mid = starts + delta / 2
    out = []
    for t in times_s:
        lag = t - mid[mid < t]
        h = (
            lag ** (n_stages - 1)
            * np.exp(-lag / tau_s)
            / (math.factorial(n_stages - 1) * tau_s**n_stages)
        )
        out.append(math.sqrt(2) * 1j * np.sum(h * u[: lag.size] * phasor[: lag.size]))
    return np.array(out)


def test_sr830_buffer_holds_the_points_of_a_record(rm: Any, sr830: LockinServer) -> None:
    """TSTR 1 arms the buffer; the next record's start triggers it (DAQ start trigger wired)."""
    visa = open_visa(rm, sr830)
    send(visa, "OFLT 8;OFSL 1;ICPL 1;SRAT 13;SEND 0;TSTR 1;REST")  # 512 Hz, one shot
    t0 = sr830.bench.timebase.now_s
    record = play_tone(sr830.bench, 1.0, amplitude_v=0.1, phase_rad=0.3)
    assert visa.query("SPTS?") == "513"  # t0 + k/512 for k = 0..512
    ch1 = np.array(visa.query_ascii_values("TRCA? 1,0,513"))
    ch2 = np.array(visa.query_ascii_values("TRCA? 2,0,513"))
    expected = convolved(record, 1000.0, 0.1, 2, t0 + np.arange(513) / 512.0)
    scale = 0.1 / math.sqrt(2)
    np.testing.assert_allclose(ch1, expected.real, atol=2e-5 * scale)
    np.testing.assert_allclose(ch2, expected.imag, atol=2e-5 * scale)
    assert ch1[-1] == pytest.approx(float(visa.query("OUTP? 1")), rel=1e-6)  # t0 + 1 s: now
    assert visa.query("TRCA? 1,510,3").endswith(",")  # the manual's trailing comma
    visa.write("TRCB? 1,0,4")
    raw = visa.read_bytes(16)
    assert visa.read_bytes(1) == b"\n"
    np.testing.assert_allclose(np.frombuffer(raw, "<f4"), ch1[:4], rtol=1e-6)
    visa.write("TRCA? 1,500,20")  # beyond the stored points: execution error, no reply
    assert int(visa.query("*ESR?")) & ESR_EXE
    assert int(visa.query("LIAS? 6")) == 1  # storage was triggered


def test_a_record_played_in_chunks_gives_the_same_buffer(rm: Any) -> None:
    """The DAQ plays a task as several bench records: the buffer starts once, on the first."""
    buffers = []
    for chunks in (1, 20):
        with serve_lockin("sr830", bench=ideal_bench()) as server:
            visa = open_visa(rm, server)
            send(visa, "OFLT 6;OFSL 3;SRAT 13;SEND 0;TSTR 1;REST")
            n = round(FS)
            t = np.arange(n) / FS
            wf = np.zeros((7, n))
            wf[1] = 0.1 * np.sin(2 * np.pi * 1000.0 * t)
            for piece in np.array_split(wf, chunks, axis=1):
                server.bench.play(piece, FS)
            assert visa.query("SPTS?") == "513"
            buffers.append(visa.query_ascii_values("TRCA? 1,0,513"))
    np.testing.assert_allclose(buffers[1], buffers[0], rtol=1e-6, atol=1e-9)


def test_sr830_trigger_mode_stores_one_point_per_trigger(rm: Any, sr830: LockinServer) -> None:
    sr830.instrument.trigger_on_record = False
    visa = open_visa(rm, sr830)
    send(visa, "OFLT 6;SRAT 14;REST;STRT")
    assert (int(visa.query("*STB?")) & 1) == 0  # SCN clear: a scan is in progress
    points = []
    for amplitude in (0.05, 0.1, 0.2):
        play_tone(sr830.bench, 0.2, amplitude_v=amplitude)
        sr830.trigger()  # the rear-panel TRIG input
        points.append(float(visa.query("OUTR? 1")))
    send(visa, "TRIG")  # the software trigger stores one more
    assert visa.query("SPTS?") == "4"
    stored = visa.query_ascii_values("TRCA? 1,0,4")
    np.testing.assert_allclose(stored[:3], points, rtol=1e-6)
    send(visa, "PAUS")
    sr830.trigger()
    assert visa.query("SPTS?") == "4"


def test_sr860_capture_holds_the_points_of_a_record(rm: Any, sr860: LockinServer) -> None:
    visa = open_visa(rm, sr860)
    send(visa, "OFLT 6;OFSL 3;ICPL DC;CAPTURECFG XY;CAPTURELEN 2;CAPTURERATE 0")  # τ = 1 ms
    rate = float(visa.query("CAPTURERATE?"))
    assert rate == pytest.approx(1.25e6 / 1024)
    send(visa, "CAPTURESTART ONE, TRIG")
    assert int(visa.query("CAPTURESTAT?")) & 1  # armed
    assert visa.query("CAPTUREBYTES?") == "0"
    t0 = sr860.bench.timebase.now_s
    record = play_tone(sr860.bench, 0.02, amplitude_v=0.1)  # the record's start triggers it
    n = math.floor(0.02 * rate + 1e-9) + 1
    assert int(visa.query("CAPTUREBYTES?")) == n * 8
    values = visa.query_binary_values(
        "CAPTUREGET? 0, 2", datatype="f", is_big_endian=False, header_fmt="ieee"
    )
    assert len(values) == 512  # 2 kB, the rest of the memory reads as zeros
    data = np.array(values[: 2 * n]).reshape(n, 2)
    assert not np.any(values[2 * n :])
    expected = convolved(record, 1000.0, 1e-3, 4, t0 + np.arange(n) / rate)
    scale = 0.1 / math.sqrt(2)
    np.testing.assert_allclose(data[:, 0], expected.real, atol=2e-5 * scale)
    np.testing.assert_allclose(data[:, 1], expected.imag, atol=2e-5 * scale)
    assert visa.query("*ESR?") in ("0", "128")
    send(visa, "CAPTURELEN 8")  # not while capturing
    assert int(visa.query("*ESR?")) & ESR_EXE
    send(visa, "CAPTURESTOP")
    assert (int(visa.query("CAPTURESTAT?")) & 1) == 0
    visa.write("CAPTUREGET? 0, 65")  # at most 64 kB per transfer
    assert int(visa.query("*ESR?")) & ESR_EXE


def test_sr860_capture_immediate_and_per_trigger(rm: Any, sr860: LockinServer) -> None:
    sr860.instrument.trigger_on_record = False
    visa = open_visa(rm, sr860)
    send(visa, "OFLT 6;CAPTURECFG RT;CAPTURELEN 2;CAPTURESTART ONE, IMM")
    play_tone(sr860.bench, 0.05, amplitude_v=0.1)
    captured = int(visa.query("CAPTUREBYTES?"))
    assert captured == (math.floor(0.05 * 1.25e6 / 1024 + 1e-9) + 1) * 8
    send(visa, "CAPTURESTOP;CAPTURECFG X;CAPTURESTART CONT, SAMP")
    for _ in range(3):
        play_tone(sr860.bench, 0.01, amplitude_v=0.1)
        sr860.trigger()
    assert visa.query("CAPTUREBYTES?") == "12"
    block = visa.query_binary_values(
        "CAPTUREGET? 0,1", datatype="f", is_big_endian=False, header_fmt="ieee"
    )
    assert len(block) == 256 and all(abs(v) > 0.05 for v in block[:3])


# --- connection ---------------------------------------------------------------------------------


def test_reconnect_after_a_client_closes(rm: Any, sr830: LockinServer) -> None:
    first = open_visa(rm, sr830)
    send(first, "SENS 12")
    assert first.query("SENS?") == "12"
    first.close()
    second = open_visa(rm, sr830)
    assert second.query("SENS?") == "12"  # same instrument, settings kept
    second.close()
    third = open_visa(rm, sr830)
    assert third.query("*IDN?").startswith("Stanford_Research_Systems,SR830")
    assert sr830.commands[:3] == ["SENS 12", "*STB?", "SENS?"]


def test_no_command_log_until_a_client_talks() -> None:
    with serve_lockin("sr860", bench=ideal_bench()) as server:
        assert server.commands == []


def test_bad_arguments_to_serve_lockin() -> None:
    with pytest.raises(ValueError, match="model"):
        serve_lockin("sr850", bench=ideal_bench())
    with pytest.raises(ValueError, match="sine_electrode"):
        serve_lockin("sr830", bench=ideal_bench(), sine_electrode=7)
    with pytest.raises(ValueError, match="input_signal"):
        serve_lockin("sr830", bench=ideal_bench(), input_signal="voltage")


# --- sim-lab and the command line -----------------------------------------------------------------


def lab_file(tmp_path: Path) -> Path:
    """The shipped lab with every port set to 0 (free ports)."""
    data = yaml.safe_load(LAB.read_text())
    data["bench"]["config"] = str(SIM_DNPU)
    data["daq"]["config"] = str(REPO / "configs" / "sim_daq" / "cdaq9178.yaml")
    data["daq"]["port"] = 0
    for entry in data["lockins"]:
        entry["port"] = 0
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_lab_config() -> None:
    config = load_lab_config(LAB)
    assert config.daq is not None and config.daq.port == 31763
    assert [(e.model, e.port, e.sine_electrode) for e in config.lockins] == [
        ("sr830", 31764, "e3"),
        ("sr860", 31765, None),
    ]


def test_sim_lab_shares_one_bench(rm: Any, tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    with start_lab(lab_file(tmp_path)) as lab:
        sr830, sr860 = lab.lockins
        assert lab.daq is not None and lab.daq.bench is lab.bench
        assert sr830.bench is lab.bench and sr860.bench is lab.bench
        lines = lab.addresses()
        assert lines[0].startswith("NI gRPC Device Server (simulated) listening on 127.0.0.1:")
        assert lines[1] == (
            f"SR830 (simulated) listening on {sr830.resource} (sine output -> electrode e3)"
        )
        assert lines[2] == f"SR860 (simulated) listening on {sr860.resource}"
        a, b = open_visa(rm, sr830), open_visa(rm, sr860)
        send(a, "FREQ 137;SLVL 0.1;ICPL 1;OFLT 8")
        send(b, "FREQ 137;ICPL DC;OFLT 10")
        record = lab.bench.play(np.tile(OPERATING_POINT_V[:, None], (1, 5000)), 10_000.0)
        assert np.ptp(record.voltages_v[3]) == pytest.approx(0.2 * math.sqrt(2), rel=1e-2)
        assert float(a.query("OUTP? 3")) > 0 and float(b.query("OUTP? 2")) > 0
    assert not lab.bench.external_sines


def test_sim_lab_lockin_reads_what_the_daq_drives(rm: Any, tmp_path: Path) -> None:
    """nidaqmx drives a 137 Hz tone through the simulated NI server; the SR830 buffer, armed
    with TSTR 1, starts with the task (its start pulses TRIG IN) and reads the response."""
    grpc = pytest.importorskip("grpc")
    nidaqmx = pytest.importorskip("nidaqmx")
    from nidaqmx.constants import AcquisitionType

    rate, n = 10_000.0, 20_000
    with start_lab(lab_file(tmp_path)) as lab:
        records: list[BenchRecord] = []
        lab.bench.subscribe(records.append)
        visa = open_visa(rm, lab.lockins[0])
        send(visa, "SLVL 0.004;FREQ 137;ICPL 1;RMOD 0;OFLT 8;OFSL 3;SRAT 13;SEND 0;TSTR 1;REST")
        t = np.arange(n) / rate
        waveform = np.tile(OPERATING_POINT_V[:, None], (1, n))
        waveform[1] += 0.05 * np.sin(2 * np.pi * 137.0 * t)
        options = nidaqmx.GrpcSessionOptions(grpc.insecure_channel(lab.daq.address), "")
        with nidaqmx.Task(grpc_options=options) as task:
            task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6", min_val=-1.5, max_val=1.5)
            task.timing.cfg_samp_clk_timing(
                rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n
            )
            task.write(waveform, auto_start=False)
            task.start()
            task.wait_until_done(timeout=20.0)
        assert len(records) > 1  # played in chunks
        assert visa.query("SPTS?") == "1025"  # started once, at the task's first sample
        x_end = visa.query_ascii_values("TRCA? 1,1024,1")[0]
        x_now, y_now = visa.query_ascii_values("SNAP? 1,2")
        assert x_end == pytest.approx(x_now, rel=1e-6)
        tia = np.concatenate([r.tia_v for r in records])[-10_000:]  # 137 whole periods
        times = np.concatenate([r.times_s() for r in records])[-10_000:]
        expected = math.sqrt(2) * 1j * np.mean(tia * np.exp(-2j * np.pi * 137.0 * times))
        assert abs(complex(x_now, y_now) - expected) < 0.03 * abs(expected)  # bench noise on


def _serve_subprocess(args: list[str], n_lines: int) -> list[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(n_lines)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return lines


def test_cli_sim_lockin(rm: Any) -> None:
    (line,) = _serve_subprocess(["sim-lockin", "--model", "sr860", "--port", "0"], 1)
    assert line.startswith("SR860 (simulated) listening on TCPIP::127.0.0.1::")
    assert line.endswith("::SOCKET")


def test_cli_sim_lab(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    lines = _serve_subprocess(["sim-lab", str(lab_file(tmp_path))], 3)
    assert lines[0].startswith("NI gRPC Device Server (simulated) listening on 127.0.0.1:")
    assert lines[1].startswith("SR830 (simulated) listening on TCPIP::127.0.0.1::")
    assert lines[2].startswith("SR860 (simulated) listening on TCPIP::127.0.0.1::")


def test_cli_rejects_a_bad_lab_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lockins:\n  - {model: sr850}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "sim-lab", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "model" in proc.stderr


def test_realtime_bench_readings_follow_records_in_real_time(rm: Any) -> None:
    bench = SimBench(
        ResistorModel(7, 1, 1e7), MeasurementChain(ChainSettings.ideal(GAIN)), TimeBase(True)
    )
    with serve_lockin("sr830", bench=bench) as server:
        visa = open_visa(rm, server)
        send(visa, "OFLT 4;OFSL 3")  # 1 ms
        start = time.monotonic()
        for _ in range(4):
            play_tone(bench, 0.025, amplitude_v=0.1)
        assert time.monotonic() - start >= 0.09  # the bench paced the records
        assert float(visa.query("OUTP? 3")) == pytest.approx(
            0.1 / math.sqrt(2) * np.sinc(1000.0 / FS), rel=1e-3
        )


def test_a_lab_wires_a_daq_counter_to_ref_in_and_checks_the_wiring(tmp_path: Path) -> None:
    """``reference_in``: the counter's pulse train is the lock-in's external reference, phase 0
    at its first rising edge; it needs a DAQ, a counter's name and REF IN free."""
    from labctl.config import ConfigError
    from simulated_hw.lockin_server.lab import on_free_ports

    def lab_file(lockin: dict[str, object], daq: bool = True) -> Path:
        data: dict[str, object] = {"lockins": [{"model": "sr830", **lockin}]}
        if daq:
            data["daq"] = {"config": str(REPO / "configs" / "sim_daq" / "cdaq9178.yaml")}
        path = tmp_path / "lab.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    with pytest.raises(ConfigError, match="needs a daq section"):
        load_lab_config(lab_file({"reference_in": "cDAQ1/ctr0"}, daq=False))
    with pytest.raises(ConfigError, match="not a counter"):
        load_lab_config(lab_file({"reference_in": "cDAQ1Mod1/ao0"}))
    with pytest.raises(ConfigError, match="either reference_in or external_reference_hz"):
        load_lab_config(lab_file({"reference_in": "cDAQ1/ctr0", "external_reference_hz": 5.0}))
    config = on_free_ports(load_lab_config(lab_file({"reference_in": "cDAQ1/_ctr1"})))
    with start_lab(config) as lab:
        assert "REF IN <- DAQ counter cDAQ1/_ctr1" in lab.addresses()[1]
        instrument = lab.lockins[0].instrument
        listener = lab.daq.daq.counter_listeners[0]
        listener("cdaq1/ctr0", 100.0, 0.0)  # another counter: not wired here
        assert instrument.external_reference_hz is None
        listener("cdaq1/ctr1", 250.0, 0.001)
        assert instrument.external_reference_hz == 250.0
        # rising edges at 1 ms + k/250 Hz: the reference sin(2π f t + φ) crosses zero there
        assert math.sin(2 * math.pi * 250.0 * 0.001 + instrument._external_phase_rad) == (
            pytest.approx(0.0, abs=1e-12)
        )
        listener("cdaq1/ctr1", None, 0.0)
        assert instrument.external_reference_hz is None
