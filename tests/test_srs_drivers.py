"""SRS SR830 / SR86x drivers: exact command transcripts, refusals, errors, and the seam adapters.

Part 1 plays every driver method against a scripted pyvisa-like resource that is given the
exact (command, reply) sequence and fails the test on any deviation or leftover (in the
spirit of PyMeasure's ``expected_protocol``, written here). Part 2 runs the same drivers over
real TCP through pyvisa-py: against bare sockets (refused, silent) and against the simulated
instruments of :mod:`simulated_hw.lockin_server`, including a composite setup from YAML
where the safety layer refuses a tone before any command reaches the lock-in.
"""

from __future__ import annotations

import ast
import math
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from pyvisa import constants
from pyvisa.errors import VisaIOError
from pyvisa.util import from_ieee_block

from drivers.srs import (
    SR830,
    SR860,
    LockinAutoRangeError,
    LockinCommandError,
    LockinConnectionError,
    LockinError,
    LockinIdentityError,
    LockinProtocolError,
    LockinTimeout,
    LockinValueError,
    SRSLockin,
)
from drivers.srs.backend import (
    SR830_BACKEND,
    SR860_BACKEND,
    SR830Lockin,
    SR830Settings,
    SR860Lockin,
    SR860Settings,
)
from drivers.srs.common import FORBIDDEN_COMMANDS, format_si
from labctl.config import merge_overrides, parse_config
from labctl.connect import build_device
from labctl.device.protocols import (
    DemodulatedReadout,
    DemodulatorSettings,
    Instrument,
    SineSource,
)
from labctl.device.registry import DeviceDiscoveryError, get_backend
from labctl.device.safety import SafetyViolation
from labctl.device.tones import ToneSpec
from tests.conftest import CONFIGS, NO_EFFECTS

PACKAGE = Path(__file__).resolve().parents[1] / "drivers" / "srs"

SR830_IDN = "Stanford_Research_Systems,SR830,s/n12345,ver1.07"
SR860_IDN = "Stanford_Research_Systems,SR860,003264,v1.47"
SR865A_IDN = "Stanford_Research_Systems,SR865A,004001,v1.51"


# -- the scripted resource ---------------------------------------------------------------------
class OnWrite:
    """A transcript reply that makes the *write* of its command raise ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


Reply = str | None | BaseException | OnWrite
Step = tuple[str, Reply]


class ScriptedResource:
    """A pyvisa-like message resource that plays a transcript of (command, reply) pairs.

    ``reply`` is None for a command without a reply, a string for a query, an exception to
    raise on the read, or :class:`OnWrite` to raise on the write. Any other command, a read
    with no query outstanding, or a write after close fails the test.
    """

    def __init__(self, transcript: Sequence[Step], resource_name: str) -> None:
        self.resource_name = resource_name
        self._script = list(transcript)
        self._position = 0
        self._pending: Reply = None
        self._has_pending = False
        self.closed = False
        self.sent: list[str] = []

    def write(self, message: str) -> int:
        if self.closed:
            pytest.fail(f"{message!r} written after close")
        if self._has_pending:
            pytest.fail(f"{message!r} written while the reply to {self.sent[-1]!r} is unread")
        if self._position >= len(self._script):
            pytest.fail(f"unexpected command {message!r}: the transcript is finished")
        expected, reply = self._script[self._position]
        if message != expected:
            pytest.fail(f"command #{self._position}: expected {expected!r}, got {message!r}")
        self._position += 1
        self.sent.append(message)
        if isinstance(reply, OnWrite):
            raise reply.exc
        if reply is not None:
            self._pending, self._has_pending = reply, True
        return len(message)

    def read(self) -> str:
        if not self._has_pending:
            pytest.fail("read with no query outstanding")
        reply, self._pending, self._has_pending = self._pending, None, False
        if isinstance(reply, BaseException):
            raise reply
        assert isinstance(reply, str)
        return reply

    def query(self, message: str) -> str:
        self.write(message)
        return self.read()

    def close(self) -> None:
        self.closed = True

    def assert_done(self) -> None:
        left = self._script[self._position :]
        assert not left, f"commands expected but never sent: {left}"
        assert not self._has_pending, "a reply was never read"


def preamble(driver: type[SRSLockin], idn: str | None = None, serial: bool = False) -> list[Step]:
    """What connecting sends: OUTX (SR830 only), *IDN?, *CLS."""
    if driver is SR830:
        return [
            (f"OUTX {0 if serial else 1}", None),
            ("*IDN?", SR830_IDN if idn is None else idn),
            ("*CLS", None),
        ]
    return [("*IDN?", SR860_IDN if idn is None else idn), ("*CLS", None)]


@contextmanager
def expected_protocol(
    driver: type[SRSLockin],
    transcript: Sequence[Step],
    *,
    idn: str | None = None,
    resource_name: str = "GPIB0::8::INSTR",
    sleeps: list[float] | None = None,
    **kwargs: Any,
) -> Iterator[Any]:
    """A driver connected to a scripted resource: connect preamble, then ``transcript``."""
    serial = resource_name.upper().startswith("ASRL")
    resource = ScriptedResource([*preamble(driver, idn, serial), *transcript], resource_name)
    recorded = sleeps if sleeps is not None else []
    lockin = driver(resource, sleep=recorded.append, **kwargs)
    yield lockin
    resource.assert_done()


TMO = VisaIOError(constants.VI_ERROR_TMO)


# -- connecting and identifying ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("driver", "resource_name", "idn", "model"),
    [
        (SR830, "GPIB0::8::INSTR", SR830_IDN, "SR830"),
        (SR830, "ASRL/dev/ttyUSB0::INSTR", SR830_IDN, "SR830"),
        (SR860, "TCPIP::10.0.0.5::1865::SOCKET", SR860_IDN, "SR860"),
        (SR860, "USB0::0xB506::0x2000::004001::INSTR", SR865A_IDN, "SR865A"),
    ],
)
def test_connecting_sends_outx_only_to_an_sr830_then_identifies_and_clears_status(
    driver: type[SRSLockin], resource_name: str, idn: str, model: str
) -> None:
    with expected_protocol(driver, [], idn=idn, resource_name=resource_name) as lockin:
        assert lockin.model == model
        assert lockin.identity.manufacturer == "Stanford_Research_Systems"
        assert lockin.identity.serial in ("12345", "003264", "004001")  # without "s/n"
        assert lockin.resource_name == resource_name


@pytest.mark.parametrize(
    ("driver", "idn", "kwargs", "match"),
    [
        (SR830, "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1234,C30", {}, "not a Stanford"),
        (SR830, "", {}, "not a Stanford"),
        (SR830, SR860_IDN, {}, "use the sr860 backend"),
        (SR860, SR830_IDN, {}, "use the sr830 backend"),
        (SR860, SR860_IDN, {"expect_model": "SR865A"}, "expect_model is 'SR865A'"),
    ],
)
def test_a_wrong_instrument_is_refused_and_the_connection_closed(
    driver: type[SRSLockin], idn: str, kwargs: dict[str, Any], match: str
) -> None:
    steps = preamble(driver, idn)[:-1]  # no *CLS after a refused identity
    resource = ScriptedResource(steps, "GPIB0::8::INSTR")
    with pytest.raises(LockinIdentityError, match=match):
        driver(resource, **kwargs)
    resource.assert_done()
    assert resource.closed


def test_nothing_listening_is_reported_at_the_first_write_with_host_and_port() -> None:
    name = "TCPIP::127.0.0.1::5025::SOCKET"
    refused = ConnectionRefusedError(111, "Connection refused")
    resource = ScriptedResource([("OUTX 1", OnWrite(refused))], name)
    with pytest.raises(LockinConnectionError, match=r"nothing listens at 127\.0\.0\.1:5025"):
        SR830(resource)
    assert resource.closed


def test_a_timeout_names_the_resource_and_the_remedy_and_stops_further_queries() -> None:
    with expected_protocol(SR830, [("FREQ?", TMO), ("SLVL 0.004", None)]) as lockin:
        with pytest.raises(LockinTimeout, match=r"no answer within 2 s from GPIB0::8::INSTR") as e:
            lockin.frequency_hz  # noqa: B018 - a property read is the query
        assert "check the cable/address, or raise timeout_s" in str(e.value)
        # the late reply would answer the next query: refused without sending anything
        with pytest.raises(LockinTimeout, match="close and reopen"):
            lockin.harmonic  # noqa: B018
        lockin.close()  # writes still go out: the safe state on close


def test_a_closed_connection_sends_nothing_and_says_so() -> None:
    with expected_protocol(SR830, [("SLVL 0.004", None), ("SLVL?", "0.004")]) as lockin:
        lockin.close()
        lockin.close()  # idempotent
        with pytest.raises(LockinConnectionError, match="is closed"):
            lockin.phase_deg = 10.0
        with pytest.raises(LockinConnectionError, match="is closed"):
            lockin.x  # noqa: B018


def test_a_reset_connection_is_a_connection_error_and_the_transport_stays_failed() -> None:
    reset = ConnectionResetError(104, "Connection reset by peer")
    with expected_protocol(SR830, [("OUTP? 1", reset)]) as lockin:
        with pytest.raises(LockinConnectionError, match="closed by the instrument"):
            lockin.x  # noqa: B018
        with pytest.raises(LockinConnectionError, match="failed earlier"):
            lockin.y  # noqa: B018
        with pytest.raises(LockinConnectionError, match="failed earlier"):
            lockin.close()  # the safe state cannot be sent: raised once the session is closed
        assert lockin.closed


@pytest.mark.parametrize(
    ("command", "reply", "read", "match"),
    [
        ("FREQ?", "abc", lambda li: li.frequency_hz, "not 1 number"),
        ("SENS?", "30", lambda li: li.sensitivity_index, "outside 0…26"),
        ("SNAP? 1,2", "1.0", lambda li: li.snap("X", "Y"), "not 2 number"),
        ("OFSL?", "7", lambda li: li.filter_slope_db_per_oct, "not 0…3"),
    ],
)
def test_replies_that_do_not_fit_are_protocol_errors(
    command: str, reply: str, read: Any, match: str
) -> None:
    with (
        expected_protocol(SR830, [(command, reply)]) as lockin,
        pytest.raises(LockinProtocolError, match=match),
    ):
        read(lockin)


# -- property transcripts ----------------------------------------------------------------------
def _get(name: str) -> Any:
    return lambda lockin: getattr(lockin, name)


def _set(name: str, value: Any) -> Any:
    def apply(lockin: Any) -> None:
        setattr(lockin, name, value)

    return apply


def _call(name: str, *args: Any) -> Any:
    return lambda lockin: getattr(lockin, name)(*args)


SR830_CASES: list[tuple[str, Any, list[Step], Any]] = [
    ("reference get", _get("reference_source"), [("FMOD?", "1")], "internal"),
    (
        "external reference at a harmonic",
        _call("use_external_reference", 200.0, 3),
        [("FMOD 0", None), ("HARM 3", None)],
        None,
    ),
    ("reference set", _set("reference_source", "external"), [("FMOD 0", None)], None),
    ("frequency get", _get("frequency_hz"), [("FREQ?", "1000.000")], 1000.0),
    (
        "frequency set checks the harmonic",
        _set("frequency_hz", 1234.5),
        [("HARM?", "1"), ("FREQ 1234.5", None)],
        None,
    ),
    ("harmonic get", _get("harmonic"), [("HARM?", "3")], 3),
    (
        "harmonic set checks the frequency",
        _set("harmonic", 19999),
        [("FREQ?", "5.0"), ("HARM 19999", None)],
        None,
    ),
    (
        "reference together",
        _call("set_reference", 1000.0, 3),
        [("HARM 1", None), ("FREQ 1000", None), ("HARM 3", None)],
        None,
    ),
    (
        "reference together, harmonic 1",
        _call("set_reference", 102e3),
        [("HARM 1", None), ("FREQ 102000", None)],
        None,
    ),
    ("phase get", _get("phase_deg"), [("PHAS?", "-12.5")], -12.5),
    ("phase set low edge", _set("phase_deg", -360.0), [("PHAS -360", None)], None),
    ("phase set high edge", _set("phase_deg", 729.99), [("PHAS 729.99", None)], None),
    ("sine level get", _get("sine_amplitude_v_rms"), [("SLVL?", "0.004")], 0.004),
    ("safe state", _call("safe_state"), [("SLVL 0.004", None), ("SLVL?", "0.004")], None),
    ("safe state unverified", lambda li: li.safe_state(verify=False), [("SLVL 0.004", None)], None),
    ("input get A", _get("input_mode"), [("ISRC?", "0")], "voltage"),
    ("input get I100M", _get("input_mode"), [("ISRC?", "3")], "current_100M"),
    ("input set A-B", _set("input_mode", "voltage_diff"), [("ISRC 1", None)], None),
    ("input set I1M", _set("input_mode", "current_1M"), [("ISRC 2", None)], None),
    ("sensitivity get", _get("sensitivity"), [("ISRC?", "0"), ("SENS?", "20")], 0.01),
    (
        "sensitivity get, current input",
        _get("sensitivity"),
        [("ISRC?", "2"), ("SENS?", "17")],
        1e-9,
    ),
    ("sensitivity lowest", _set("sensitivity", 2e-9), [("ISRC?", "0"), ("SENS 0", None)], None),
    ("sensitivity highest", _set("sensitivity", 1.0), [("ISRC?", "0"), ("SENS 26", None)], None),
    (
        "sensitivity within 1e-6",
        _set("sensitivity", 2e-9 * (1 + 5e-7)),
        [("ISRC?", "1"), ("SENS 0", None)],
        None,
    ),
    (
        "sensitivity at least",
        _call("sensitivity_at_least", 3e-9),
        [("ISRC?", "0"), ("SENS 1", None)],
        5e-9,
    ),
    (
        "sensitivity at least, exact",
        _call("sensitivity_at_least", 1e-3),
        [("ISRC?", "0"), ("SENS 17", None)],
        1e-3,
    ),
    (
        "current sensitivity 2 fA",
        _set("sensitivity", 2e-15),
        [("ISRC?", "3"), ("SENS 0", None)],
        None,
    ),
    (
        "current sensitivity 1 µA",
        _set("sensitivity", 1e-6),
        [("ISRC?", "2"), ("SENS 26", None)],
        None,
    ),
    ("sensitivity index", _set("sensitivity_index", 26), [("SENS 26", None)], None),
    ("time constant get", _get("time_constant_s"), [("OFLT?", "9")], 0.3),
    ("time constant lowest", _set("time_constant_s", 10e-6), [("OFLT 0", None)], None),
    ("time constant highest", _set("time_constant_s", 30e3), [("OFLT 19", None)], None),
    ("time constant at least", _call("time_constant_at_least", 0.2), [("OFLT 9", None)], 0.3),
    ("time constant index", _get("time_constant_index"), [("OFLT?", "19")], 19),
    ("slope get", _get("filter_slope_db_per_oct"), [("OFSL?", "1")], 12),
    ("slope set", _set("filter_slope_db_per_oct", 24), [("OFSL 3", None)], None),
    ("slope set 6", _set("filter_slope_db_per_oct", 6), [("OFSL 0", None)], None),
    ("sync get", _get("sync_filter"), [("SYNC?", "0")], False),
    ("sync set", _set("sync_filter", True), [("SYNC 1", None)], None),
    ("X", _get("x"), [("OUTP? 1", "1.5e-03")], 1.5e-3),
    ("Y", _get("y"), [("OUTP? 2", "-2.0e-04")], -2e-4),
    ("R", _get("r"), [("OUTP? 3", "1.5e-03")], 1.5e-3),
    ("theta", _get("theta_deg"), [("OUTP? 4", "-7.6")], -7.6),
    ("snap X Y", _call("snap", "X", "Y"), [("SNAP? 1,2", "1.5e-3,-2e-4")], (1.5e-3, -2e-4)),
    (
        "snap six",
        _call("snap", "X", "Y", "R", "theta", "frequency", "X"),
        [("SNAP? 1,2,3,4,9,1", "1,2,3,4,5,6")],
        (1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
    ),
    (
        "settling time 24 dB",
        _call("settling_time_s"),
        [("OFLT?", "9"), ("OFSL?", "3")],
        3.0,
    ),
    (
        "settling time 6 dB",
        _call("settling_time_s"),
        [("OFLT?", "10"), ("OFSL?", "0")],
        5.0,
    ),
    ("errors none", _call("check_errors"), [("*ESR?", "0")], None),
    ("errors ignore URQ/PON", _call("check_errors"), [("*ESR?", "192")], None),
    (
        "hardware errors",
        _call("error_status"),
        [("ERRS?", "68")],
        ("RAM test error", "DSP test error"),
    ),
]

SR860_CASES: list[tuple[str, Any, list[Step], Any]] = [
    (
        "external reference at a harmonic",
        _call("use_external_reference", 200.0, 5),
        [("RSRC 1", None), ("HARM 5", None)],
        None,
    ),
    ("reference get", _get("reference_source"), [("RSRC?", "0")], "internal"),
    ("reference set chop", _set("reference_source", "chop"), [("RSRC 3", None)], None),
    (
        "frequency 500 kHz",
        _set("frequency_hz", 500e3),
        [("HARM?", "1"), ("FREQ 500000", None)],
        None,
    ),
    ("harmonic 99", _set("harmonic", 99), [("FREQ?", "1000"), ("HARM 99", None)], None),
    ("phase far", _set("phase_deg", -360000.0), [("PHAS -360000", None)], None),
    ("safe state", _call("safe_state"), [("SLVL 1e-09", None), ("SLVL?", "1e-09")], None),
    ("input get voltage", _get("input_mode"), [("IVMD?", "0"), ("ISRC?", "0")], "voltage"),
    ("input get A-B", _get("input_mode"), [("IVMD?", "0"), ("ISRC?", "1")], "voltage_diff"),
    ("input get I1M", _get("input_mode"), [("IVMD?", "1"), ("ICUR?", "0")], "current_1M"),
    ("input get I100M", _get("input_mode"), [("IVMD?", "1"), ("ICUR?", "1")], "current_100M"),
    (
        "input set voltage",
        _set("input_mode", "voltage"),
        [("IVMD 0", None), ("ISRC 0", None)],
        None,
    ),
    (
        "input set I100M",
        _set("input_mode", "current_100M"),
        [("IVMD 1", None), ("ICUR 1", None)],
        None,
    ),
    ("input range get", _get("input_range_v"), [("IRNG?", "4")], 0.01),
    ("input range set", _set("input_range_v", 0.1), [("IRNG 2", None)], None),
    (
        "sensitivity largest is index 0",
        _set("sensitivity", 1.0),
        [("IVMD?", "0"), ("ISRC?", "0"), ("SCAL 0", None)],
        None,
    ),
    (
        "sensitivity smallest is index 27",
        _set("sensitivity", 1e-9),
        [("IVMD?", "0"), ("ISRC?", "0"), ("SCAL 27", None)],
        None,
    ),
    (
        "sensitivity 10 mV is index 6",
        _get("sensitivity"),
        [("IVMD?", "0"), ("ISRC?", "0"), ("SCAL?", "6")],
        0.01,
    ),
    (
        "current sensitivity 1 fA",
        _set("sensitivity", 1e-15),
        [("IVMD?", "1"), ("ICUR?", "0"), ("SCAL 27", None)],
        None,
    ),
    (
        "sensitivity at least (reversed table)",
        _call("sensitivity_at_least", 3e-3),
        [("IVMD?", "0"), ("ISRC?", "0"), ("SCAL 7", None)],
        5e-3,
    ),
    ("time constant 1 µs", _set("time_constant_s", 1e-6), [("OFLT 0", None)], None),
    ("time constant 300 ms", _set("time_constant_s", 0.3), [("OFLT 11", None)], None),
    ("time constant 30 ks", _set("time_constant_s", 30e3), [("OFLT 21", None)], None),
    ("X", _get("x"), [("OUTP? 0", "1e-3")], 1e-3),
    ("theta", _get("theta_deg"), [("OUTP? 3", "45")], 45.0),
    ("snap X Y", _call("snap", "X", "Y"), [("SNAP? 0,1", "1e-3,2e-3")], (1e-3, 2e-3)),
    (
        "snap three",
        _call("snap", "R", "theta", "frequency"),
        [("SNAP? 2,3,15", "1,2,3")],
        (1.0, 2.0, 3.0),
    ),
    ("errors ignore OPC", _call("check_errors"), [("*ESR?", "1")], None),
    ("slope get", _get("filter_slope_db_per_oct"), [("OFSL?", "3")], 24),
    ("slope set", _set("filter_slope_db_per_oct", 18), [("OFSL 2", None)], None),
    ("sync get", _get("sync_filter"), [("SYNC?", "1")], True),
    ("sync set", _set("sync_filter", False), [("SYNC 0", None)], None),
    ("sensitivity index", _get("sensitivity_index"), [("SCAL?", "27")], 27),
    ("sine level get", _get("sine_amplitude_v_rms"), [("SLVL?", "0.5")], 0.5),
    (
        "settling time 18 dB",
        _call("settling_time_s"),
        [("OFLT?", "0"), ("OFSL?", "2")],
        9e-6,
    ),
]


@pytest.mark.parametrize(
    ("driver", "case", "act", "transcript", "expected"),
    [(SR830, *case) for case in SR830_CASES] + [(SR860, *case) for case in SR860_CASES],
    ids=[f"SR830 {c[0]}" for c in SR830_CASES] + [f"SR860 {c[0]}" for c in SR860_CASES],
)
def test_every_property_sends_exactly_its_commands(
    driver: type[SRSLockin], case: str, act: Any, transcript: list[Step], expected: Any
) -> None:
    with expected_protocol(driver, transcript) as lockin:
        result = act(lockin)
    if expected is not None:
        assert result == (pytest.approx(expected) if _numeric(expected) else expected)


def _numeric(value: Any) -> bool:
    items = value if isinstance(value, tuple) else (value,)
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in items)


# -- refusals: nothing is sent -----------------------------------------------------------------
REFUSALS: list[tuple[type[SRSLockin], str, Any, str]] = [
    (SR830, "sensitivity below 2 nV", _set("sensitivity_index", 27), "outside 0…26"),
    (SR830, "time constant 1 µs", _set("time_constant_s", 1e-6), "out of range"),
    (SR830, "time constant between entries", _set("time_constant_s", 0.2), "100 ms and 300 ms"),
    (SR830, "time constant above 30 ks", _call("time_constant_at_least", 4e4), "above the largest"),
    (SR830, "time constant negative", _set("time_constant_s", -1.0), "positive number"),
    (SR830, "slope 9 dB", _set("filter_slope_db_per_oct", 9), "is not one of 6, 12, 18, 24"),
    (SR830, "sync not a bool", _set("sync_filter", 1), "True or False"),
    (SR830, "frequency above 102 kHz", _set("frequency_hz", 102.5e3), "102 kHz"),
    (SR830, "frequency zero", _set("frequency_hz", 0.0), "outside"),
    (SR830, "frequency NaN", _set("frequency_hz", math.nan), "finite"),
    (SR830, "harmonic 0", _set("harmonic", 0), r"outside 1…19999"),
    (SR830, "harmonic 20000", _set("harmonic", 20000), r"outside 1…19999"),
    (SR830, "harmonic float", _set("harmonic", 2.0), "integer"),
    (SR830, "harmonic × f", _call("set_reference", 60e3, 2), "detection limit"),
    (SR830, "external × harmonic", _call("use_external_reference", 60e3, 2), "detection limit"),
    (SR860, "external harmonic 100", _call("use_external_reference", 100.0, 100), r"1…99"),
    (SR830, "phase 730", _set("phase_deg", 730.0), "outside"),
    (SR830, "input mode", _set("input_mode", "A"), "is not one of"),
    (SR830, "reference source", _set("reference_source", "dual"), "is not one of"),
    (SR830, "snap 7", _call("snap", "X", "Y", "R", "theta", "X", "Y", "R"), "2…6"),
    (SR830, "snap 1", _call("snap", "X"), "2…6"),
    (SR830, "snap name", _call("snap", "X", "Z"), "is not one of"),
    (SR830, "reset", _call("write", "*RST"), "refusing to send"),
    (SR830, "reset lower case", _call("write", "*rst"), "refusing to send"),
    (SR860, "frequency above 500 kHz", _set("frequency_hz", 500.1e3), "500 kHz"),
    (SR860, "harmonic 100", _set("harmonic", 100), r"outside 1…99"),
    (SR860, "snap 4", _call("snap", "X", "Y", "R", "theta"), "2…3"),
    (SR860, "input range 0.2 V", _set("input_range_v", 0.2), "is not one of"),
    (SR860, "time constant 2 µs", _set("time_constant_s", 2e-6), "1 µs and 3 µs"),
    (SR860, "phase beyond", _set("phase_deg", 360001.0), "outside"),
    (SR860, "reset", _call("write", "*RST;*CLS"), "refusing to send"),
]


@pytest.mark.parametrize(
    ("driver", "case", "act", "match"), REFUSALS, ids=[f"{r[0].__name__} {r[1]}" for r in REFUSALS]
)
def test_a_refused_value_sends_nothing_and_says_why(
    driver: type[SRSLockin], case: str, act: Any, match: str
) -> None:
    with expected_protocol(driver, []) as lockin, pytest.raises(LockinError, match=match):
        act(lockin)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (1e-9, "out of range: the instrument offers 2 nV … 1 V"),
        (1.5, "out of range"),
        (3e-9, "nearest are 2 nV and 5 nV.*sensitivity_at_least"),
        (2e-9 * (1 + 5e-6), "not one of the instrument's settings"),
    ],
)
def test_sensitivity_values_not_in_the_table_are_refused(value: float, match: str) -> None:
    with expected_protocol(SR830, [("ISRC?", "0")]) as lockin:
        with pytest.raises(LockinValueError, match=match):
            lockin.sensitivity = value
        with pytest.raises(LockinValueError):
            lockin.sensitivity_at_least(2.0)  # the input mode is known now: nothing sent


def test_the_harmonic_limit_is_checked_with_the_present_harmonic() -> None:
    with (
        expected_protocol(SR830, [("HARM?", "2")]) as lockin,
        pytest.raises(LockinValueError, match=r"2 × 60 kHz = 120 kHz is above"),
    ):
        lockin.frequency_hz = 60e3


@pytest.mark.parametrize(
    ("idn", "frequency", "ok"),
    [
        (SR860_IDN, 500e3, True),
        (SR860_IDN, 1e6, False),
        ("Stanford_Research_Systems,SR865,1,v1", 2e6, True),
        ("Stanford_Research_Systems,SR865,1,v1", 3e6, False),
        (SR865A_IDN, 4e6, True),
        (SR865A_IDN, 4.1e6, False),
    ],
)
def test_the_sr86x_frequency_limit_comes_from_the_model_it_reports(
    idn: str, frequency: float, ok: bool
) -> None:
    steps: list[Step] = [("HARM 1", None), (f"FREQ {frequency:.10g}", None)] if ok else []
    with expected_protocol(SR860, steps, idn=idn) as lockin:
        if ok:
            lockin.set_reference(frequency)
        else:
            with pytest.raises(LockinValueError, match="limit"):
                lockin.set_reference(frequency)


def test_no_code_path_can_send_a_reset() -> None:
    """No string in the package that could be a command starts with *RST, except the
    transport's refusal list; and the transport refuses it in any spelling (tests above)."""
    assert frozenset({"*RST"}) == FORBIDDEN_COMMANDS
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        allowed = {
            id(node)
            for assign in ast.walk(tree)
            if isinstance(assign, ast.Assign)
            and any(
                isinstance(t, ast.Name) and t.id == "FORBIDDEN_COMMANDS" for t in assign.targets
            )
            for node in ast.walk(assign)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.upper()
                commands = [part.strip() for part in text.split(";")]
                reset = any(c.startswith(("*RST", "RST")) for c in commands)
                if reset and id(node) not in allowed:
                    offenders.append(f"{path.name}:{node.lineno}: {node.value[:60]!r}")
    assert offenders == []
    assert "*RST" not in (PACKAGE / "sr830.py").read_text()
    assert "*RST" not in (PACKAGE / "sr860.py").read_text()


# -- status and errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("driver", "raw", "expected"),
    [
        (SR830, "0", (False, False, False, False)),
        (SR830, "1", (True, False, False, False)),
        (SR830, "2", (False, True, False, False)),
        (SR830, "4", (False, False, True, False)),
        (SR830, "8", (False, False, False, True)),
        (SR830, "48", (False, False, False, False)),  # RANGE, TC: no overload
        (SR860, "1", (True, False, False, False)),
        (SR860, "4", (False, False, True, False)),
        (SR860, "8", (False, False, False, True)),
        (SR860, "64", (False, False, False, False)),
    ],
)
def test_status_bits_are_decoded(driver: type[SRSLockin], raw: str, expected: tuple) -> None:
    with expected_protocol(driver, [("LIAS?", raw)]) as lockin:
        status = lockin.status()
    assert (
        status.input_overload,
        status.filter_overload,
        status.output_overload,
        status.reference_unlock,
    ) == expected
    assert status.overload == any(expected[:3])
    assert status.raw == int(raw)


def test_read_xy_clears_the_latched_status_then_snaps_then_reads_it_again() -> None:
    steps: list[Step] = [("LIAS?", "4"), ("SNAP? 1,2", "1e-3,-1e-4"), ("LIAS?", "0")]
    with expected_protocol(SR830, steps) as lockin:
        reading = lockin.read_xy()
    assert (reading.x, reading.y, reading.status.overload) == (1e-3, -1e-4, False)


def test_an_error_bit_names_the_bit_its_meaning_and_the_commands_before_it() -> None:
    steps: list[Step] = [("PHAS 10", None), ("OFSL 1", None), ("*ESR?", "48")]
    with expected_protocol(SR830, steps) as lockin:
        lockin.phase_deg = 10.0
        lockin.filter_slope_db_per_oct = 12
        with pytest.raises(LockinCommandError) as info:
            lockin.check_errors()
    assert info.value.bits == ("EXE", "CMD")
    assert info.value.commands == ("PHAS 10", "OFSL 1")
    assert "execution error" in str(info.value) and "'OFSL 1'" in str(info.value)


# -- tones and the safe state ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("driver", "spec", "steps", "level"),
    [
        (
            SR830,
            ToneSpec("e3", 1000.0, 0.1),
            [
                ("SLVL 0.004", None),
                ("FMOD 1", None),
                ("HARM?", "1"),
                ("FREQ 1000", None),
                ("PHAS 0", None),
                ("SLVL 0.07", None),  # 0.1/√2 = 0.0707 rounded down to the 2 mV step
                ("*ESR?", "0"),
            ],
            0.07,
        ),
        (
            SR830,
            ToneSpec("e3", 37.5, 0.00566, math.pi / 2),  # 4.002 mV rms: the minimum
            [
                ("SLVL 0.004", None),
                ("FMOD 1", None),
                ("HARM?", "1"),
                ("FREQ 37.5", None),
                ("PHAS 90", None),
                ("SLVL 0.004", None),
                ("*ESR?", "0"),
            ],
            0.004,
        ),
        (
            SR860,
            ToneSpec("e3", 1000.0, 0.1, -3 * math.pi / 2),
            [
                ("SLVL 1e-09", None),
                ("RSRC 0", None),
                ("HARM?", "1"),
                ("FREQ 1000", None),
                ("PHAS 90", None),
                ("SLVL 0.070710678", None),
                ("*ESR?", "0"),
            ],
            0.070710678,
        ),
    ],
)
def test_a_tone_lowers_the_sine_first_then_sets_frequency_phase_and_level(
    driver: type[SRSLockin], spec: ToneSpec, steps: list[Step], level: float
) -> None:
    with expected_protocol(driver, steps) as lockin:
        assert lockin.apply_tone(spec) == pytest.approx(level)


@pytest.mark.parametrize(
    ("driver", "spec", "match"),
    [
        (SR830, ToneSpec("e3", 1000.0, 7.1), r"outside the SR830's sine output, 4 mV … 5 V rms"),
        (SR830, ToneSpec("e3", 1000.0, 0.005), "outside the SR830's sine output"),
        (SR830, ToneSpec("e3", 1000.0, 0.0), "switch it off"),
        (SR830, ToneSpec("e3", 150e3, 0.1), "102 kHz"),
        (SR860, ToneSpec("e3", 1000.0, 2.9), r"1 nV … 2 V rms"),
        (SR860, ToneSpec("e3", 600e3, 0.1), "500 kHz"),
    ],
)
def test_a_tone_the_instrument_cannot_make_is_refused_before_any_command(
    driver: type[SRSLockin], spec: ToneSpec, match: str
) -> None:
    with expected_protocol(driver, []) as lockin, pytest.raises(LockinValueError, match=match):
        lockin.apply_tone(spec)


def test_a_tone_the_instrument_flags_goes_back_to_the_safe_state() -> None:
    steps: list[Step] = [
        ("SLVL 0.004", None),
        ("FMOD 1", None),
        ("HARM?", "1"),
        ("FREQ 1000", None),
        ("PHAS 0", None),
        ("SLVL 0.07", None),
        ("*ESR?", "16"),
        ("SLVL 0.004", None),
        ("SLVL?", "0.004"),
    ]
    with (
        expected_protocol(SR830, steps) as lockin,
        pytest.raises(LockinCommandError, match="EXE"),
    ):
        lockin.apply_tone(ToneSpec("e3", 1000.0, 0.1))


def test_a_tone_whose_frequency_breaks_the_harmonic_limit_leaves_the_sine_at_its_minimum() -> None:
    steps: list[Step] = [
        ("SLVL 0.004", None),
        ("FMOD 1", None),
        ("HARM?", "10"),
        *SR830_SAFE,
    ]
    with (
        expected_protocol(SR830, steps) as lockin,
        pytest.raises(LockinValueError, match="detection limit"),
    ):
        lockin.apply_tone(ToneSpec("e3", 20e3, 0.1))


def test_a_sine_that_stays_up_after_the_safe_state_is_loud() -> None:
    with (
        expected_protocol(SR830, [("SLVL 0.004", None), ("SLVL?", "1.000")]) as lockin,
        pytest.raises(LockinError, match=r"reads 1 V rms after setting its minimum 4 mV"),
    ):
        lockin.safe_state()


@pytest.mark.parametrize(("driver", "minimum"), [(SR830, "0.004"), (SR860, "1e-09")])
def test_close_puts_the_sine_at_its_minimum_first(driver: type[SRSLockin], minimum: str) -> None:
    steps: list[Step] = [(f"SLVL {minimum}", None), ("SLVL?", minimum)]
    with expected_protocol(driver, steps) as lockin, lockin:
        pass  # the driver's context manager closes it
    with expected_protocol(driver, []) as lockin:
        lockin.close(safe_state=False)
        assert lockin.closed


# -- auto sensitivity --------------------------------------------------------------------------
def test_auto_sensitivity_jumps_to_the_setting_that_uses_the_scale_and_waits_each_time() -> None:
    sleeps: list[float] = []
    steps: list[Step] = [
        ("ISRC?", "0"),
        ("SENS?", "20"),  # 10 mV
        ("OFLT?", "6"),  # 10 ms
        ("OFSL?", "1"),  # 12 dB: 7 τ
        ("LIAS?", "0"),
        ("OUTP? 3", "5e-4"),  # 0.5 mV: 5 % of 10 mV
        ("LIAS?", "0"),
        ("SENS 17", None),  # 1 mV: the most sensitive with R ≤ 50 % of full scale
        ("LIAS?", "0"),
        ("OUTP? 3", "5.1e-4"),
        ("LIAS?", "0"),
    ]
    with expected_protocol(SR830, steps, sleeps=sleeps) as lockin:
        assert lockin.auto_sensitivity() == pytest.approx(1e-3)
    assert sleeps == pytest.approx([0.07, 0.07])


def test_auto_sensitivity_steps_out_of_an_overload_and_never_back() -> None:
    steps: list[Step] = [
        ("ISRC?", "2"),  # current input: amperes
        ("SENS?", "2"),  # 10 fA
        ("OFLT?", "0"),
        ("OFSL?", "3"),
        ("LIAS?", "0"),
        ("OUTP? 3", "9e-15"),
        ("LIAS?", "4"),  # output overload
        ("SENS 3", None),  # 20 fA
        ("LIAS?", "0"),
        ("OUTP? 3", "1e-15"),  # 5 % of 20 fA, but 10 fA overloaded: accept
        ("LIAS?", "0"),
    ]
    with expected_protocol(SR830, steps) as lockin:
        assert lockin.auto_sensitivity() == pytest.approx(20e-15)


def test_auto_sensitivity_gives_up_at_the_largest_scale_and_after_its_step_budget() -> None:
    steps: list[Step] = [
        ("ISRC?", "0"),
        ("SENS?", "26"),
        ("OFLT?", "0"),
        ("OFSL?", "0"),
        ("LIAS?", "0"),
        ("OUTP? 3", "1.2"),
        ("LIAS?", "1"),
    ]
    with (
        expected_protocol(SR830, steps) as lockin,
        pytest.raises(LockinAutoRangeError, match="even at the largest full scale, 1 V"),
    ):
        lockin.auto_sensitivity()
    steps = [
        ("IVMD?", "0"),
        ("ISRC?", "0"),
        ("SCAL?", "0"),
        ("OFLT?", "0"),
        ("OFSL?", "0"),
        ("LIAS?", "0"),
        ("OUTP? 2", "1e-6"),
        ("LIAS?", "0"),
        ("SCAL 17", None),  # 2 µV: the most sensitive with R ≤ 50 % of full scale
    ]
    with (
        expected_protocol(SR860, steps) as lockin,
        pytest.raises(LockinAutoRangeError, match="after 1 steps"),
    ):
        lockin.auto_sensitivity(max_steps=1)


def test_auto_sensitivity_on_an_sr86x_refers_an_input_overload_to_the_input_range() -> None:
    steps: list[Step] = [
        ("IVMD?", "0"),
        ("ISRC?", "0"),
        ("SCAL?", "6"),
        ("OFLT?", "0"),
        ("OFSL?", "0"),
        ("LIAS?", "0"),
        ("OUTP? 2", "1e-3"),
        ("LIAS?", "1"),
    ]
    with (
        expected_protocol(SR860, steps) as lockin,
        pytest.raises(LockinAutoRangeError, match="input_range_v"),
    ):
        lockin.auto_sensitivity()


# -- the seam adapters -------------------------------------------------------------------------
GAIN = 2.5e7
"""TIA gain (V/A) of the adapter tests."""


def adapter(
    kind: type[SR830Lockin] | type[SR860Lockin],
    transcript: Sequence[Step],
    *,
    input_choice: str = "voltage_tia",
    gain: float = GAIN,
) -> tuple[Any, ScriptedResource]:
    """A seam adapter whose driver connects to a scripted resource (preamble included)."""
    driver = kind.DRIVER
    resource = ScriptedResource([*preamble(driver), *transcript], "GPIB0::8::INSTR")
    settings_model = SR830Settings if kind is SR830Lockin else SR860Settings
    settings = settings_model(resource="GPIB0::8::INSTR", input=input_choice)
    return kind(settings, tia_gain_v_per_a=gain, connect=lambda: driver(resource)), resource


SR830_SAFE: list[Step] = [("SLVL 0.004", None), ("SLVL?", "0.004")]
SR860_SAFE: list[Step] = [("SLVL 1e-09", None), ("SLVL?", "1e-09")]
SR830_OPEN: list[Step] = [*SR830_SAFE, ("ISRC 0", None), ("*ESR?", "0"), ("FREQ?", "1000")]
"""Opening: safe state, the input, the error check, and the reference frequency (where the
residual 4 mV rms of the safe state runs; the safety layer counts it)."""


def test_the_adapter_implements_the_seam_protocols_and_touches_nothing_until_open() -> None:
    instrument, resource = adapter(SR830Lockin, [])
    for protocol in (Instrument, DemodulatedReadout, SineSource):
        assert isinstance(instrument, protocol)
    assert resource.sent == []
    assert instrument.identity() == {
        "backend": "sr830",
        "resource": "GPIB0::8::INSTR",
        "input": "voltage_tia",
        "tia_gain_v_per_a": GAIN,
    }
    with pytest.raises(LockinConnectionError, match="not open"):
        instrument.read()


@pytest.mark.parametrize(
    ("kind", "input_choice", "opening"),
    [
        (SR830Lockin, "voltage_tia", SR830_OPEN),
        (
            SR830Lockin,
            "current_100M",
            [*SR830_SAFE, ("ISRC 3", None), ("*ESR?", "0"), ("FREQ?", "1000")],
        ),
        (
            SR860Lockin,
            "current_1M",
            [*SR860_SAFE, ("IVMD 1", None), ("ICUR 0", None), ("*ESR?", "0"), ("FREQ?", "1000")],
        ),
    ],
)
def test_open_puts_the_safe_state_and_the_input_and_close_the_safe_state_again(
    kind: Any, input_choice: str, opening: list[Step]
) -> None:
    closing = opening[:2]
    instrument, resource = adapter(kind, [*opening, *closing], input_choice=input_choice)
    instrument.open()
    instrument.open()  # idempotent
    assert instrument.identity()["model"] in ("SR830", "SR860")
    with pytest.raises(LockinError, match="close it first"):
        instrument.resource = "GPIB0::9::INSTR"
    instrument.close()
    instrument.close()
    resource.assert_done()
    assert resource.closed


def test_a_failed_open_closes_the_connection() -> None:
    steps: list[Step] = [*SR830_SAFE, ("ISRC 0", None), ("*ESR?", "32"), *SR830_SAFE]
    instrument, resource = adapter(SR830Lockin, steps)
    with pytest.raises(LockinCommandError, match="CMD"):
        instrument.open()
    resource.assert_done()
    assert resource.closed


def test_configure_maps_the_settings_onto_table_entries_and_returns_what_is_used() -> None:
    steps: list[Step] = [
        *SR830_OPEN,
        ("FMOD 1", None),
        ("HARM 1", None),
        ("FREQ 200", None),
        ("HARM 2", None),
        ("OFSL 3", None),
        ("OFLT 6", None),  # 10 ms
        ("SENS 25", None),  # 10 nA × 2.5e7 V/A = 0.25 V → 0.5 V full scale
        ("*ESR?", "0"),
        ("FREQ?", "200.0"),
        ("OFLT?", "6"),
        ("SENS?", "25"),
    ]
    instrument, resource = adapter(SR830Lockin, steps)
    instrument.open()
    used = instrument.configure(DemodulatorSettings(200.0, 2, 0.008, 24, 1e-8))
    assert used.sensitivity_a == pytest.approx(0.5 / GAIN)
    assert used == DemodulatorSettings(200.0, 2, 0.01, 24, used.sensitivity_a)
    resource.assert_done()


def test_configure_with_an_external_reference_sets_the_harmonic_and_reads_no_frequency() -> None:
    steps: list[Step] = [
        *SR830_OPEN,
        ("FMOD 0", None),
        ("HARM 4", None),
        ("OFSL 3", None),
        ("OFLT 6", None),
        ("SENS 25", None),
        ("*ESR?", "0"),
        ("OFLT?", "6"),
        ("SENS?", "25"),
    ]
    instrument, resource = adapter(SR830Lockin, steps)
    instrument.open()
    asked = DemodulatorSettings(150.0, 4, 0.008, 24, 1e-8, reference="external")
    used = instrument.configure(asked)
    assert used == DemodulatorSettings(150.0, 4, 0.01, 24, used.sensitivity_a, "external")
    resource.assert_done()


def test_configure_on_a_current_input_uses_amperes_directly() -> None:
    steps: list[Step] = [
        *SR860_SAFE,
        ("IVMD 1", None),
        ("ICUR 1", None),
        ("*ESR?", "0"),
        ("FREQ?", "1000"),
        ("RSRC 0", None),
        ("HARM 1", None),
        ("FREQ 1000", None),
        ("OFSL 1", None),
        ("OFLT 11", None),  # 300 ms
        ("SCAL 15", None),  # 10 pA
        ("*ESR?", "0"),
        ("FREQ?", "1000"),
        ("OFLT?", "11"),
        ("SCAL?", "15"),
    ]
    instrument, resource = adapter(SR860Lockin, steps, input_choice="current_100M")
    instrument.open()
    used = instrument.configure(DemodulatorSettings(1000.0, 1, 0.3, 12, 10e-12))
    assert used.sensitivity_a == pytest.approx(10e-12)
    assert used.time_constant_s == pytest.approx(0.3)
    resource.assert_done()


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (DemodulatorSettings(200.0, 1, 0.01, 24, 1e-6), r"1 µA full scale \(25 V"),
        (DemodulatorSettings(200.0, 1, 0.01, 30, 1e-9), "6, 12, 18 or 24"),
        (DemodulatorSettings(200e3, 1, 0.01, 24, 1e-9), "102 kHz"),
        (DemodulatorSettings(200.0, 1, 1e5, 24, 1e-9), "above the largest"),
    ],
)
def test_configure_refuses_what_the_instrument_cannot_do_before_sending(
    settings: DemodulatorSettings, match: str
) -> None:
    instrument, resource = adapter(SR830Lockin, SR830_OPEN)
    instrument.open()
    with pytest.raises(LockinValueError, match=match):
        instrument.configure(settings)
    resource.assert_done()


@pytest.mark.parametrize(
    ("input_choice", "gain", "opening", "snap", "status", "expected"),
    [
        ("voltage_tia", GAIN, SR830_OPEN, "2.5e-2,-2.5e-3", "0", (1e-9, -1e-10, False)),
        ("voltage_tia", -GAIN, SR830_OPEN, "2.5e-2,0", "0", (-1e-9, 0.0, False)),
        (
            "current_1M",
            GAIN,
            [*SR830_SAFE, ("ISRC 2", None), ("*ESR?", "0"), ("FREQ?", "1000")],
            "3e-12,4e-12",
            "4",
            (3e-12, 4e-12, True),
        ),
    ],
)
def test_read_converts_to_amperes_and_reports_the_overload(
    input_choice: str,
    gain: float,
    opening: list[Step],
    snap: str,
    status: str,
    expected: tuple[float, float, bool],
) -> None:
    steps: list[Step] = [*opening, ("LIAS?", "0"), ("SNAP? 1,2", snap), ("LIAS?", status)]
    instrument, resource = adapter(SR830Lockin, steps, input_choice=input_choice, gain=gain)
    instrument.open()
    reading = instrument.read()
    assert (reading.x_a, reading.y_a, reading.overload) == (
        pytest.approx(expected[0]),
        pytest.approx(expected[1]),
        expected[2],
    )
    resource.assert_done()


def test_the_adapter_programs_tones_settles_and_switches_the_tone_off() -> None:
    steps: list[Step] = [
        *SR830_OPEN,
        ("SLVL 0.004", None),
        ("FMOD 1", None),
        ("HARM?", "1"),
        ("FREQ 50", None),
        ("PHAS 0", None),
        ("SLVL 0.07", None),
        ("*ESR?", "0"),
        ("OFLT?", "8"),
        ("OFSL?", "2"),
        *SR830_SAFE,
    ]
    instrument, resource = adapter(SR830Lockin, steps)
    instrument.open()
    instrument.program_tone(ToneSpec("e3", 50.0, 0.1))
    assert instrument.settling_time_s() == pytest.approx(0.9)  # 9 × 100 ms
    instrument.tone_off()
    resource.assert_done()


def test_while_a_tone_runs_configure_keeps_its_frequency() -> None:
    steps: list[Step] = [
        *SR830_OPEN,
        ("SLVL 0.004", None),
        ("FMOD 1", None),
        ("HARM?", "1"),
        ("FREQ 50", None),
        ("PHAS 0", None),
        ("SLVL 0.07", None),
        ("*ESR?", "0"),
        *SR830_SAFE,  # tone off
        ("FMOD 1", None),
        ("HARM 1", None),
        ("FREQ 1000", None),
        ("OFSL 3", None),
        ("OFLT 8", None),
        ("SENS 25", None),
        ("*ESR?", "0"),
        ("FREQ?", "1000"),
        ("OFLT?", "8"),
        ("SENS?", "25"),
    ]
    instrument, resource = adapter(SR830Lockin, steps)
    instrument.open()
    instrument.program_tone(ToneSpec("e3", 50.0, 0.1))
    moved = DemodulatorSettings(1000.0, 1, 0.1, 24, 1e-8)
    with pytest.raises(LockinValueError, match="runs a tone at 50 Hz on e3"):
        instrument.configure(moved)  # nothing sent: the sine would follow to 1 kHz
    instrument.tone_off()
    assert instrument.configure(moved).reference_hz == 1000.0
    resource.assert_done()


# -- registry ----------------------------------------------------------------------------------
def test_the_backends_are_installed_entry_points() -> None:
    assert get_backend("sr830") is SR830_BACKEND
    assert get_backend("sr860") is SR860_BACKEND


@pytest.mark.parametrize(
    ("model", "data", "match"),
    [
        (SR830Settings, {"resource": "GPIB0::8::INSTR", "gain": 1}, "Extra inputs"),
        (SR830Settings, {"resource": "not a resource"}, "not a VISA resource string"),
        (SR830Settings, {"resource": "GPIB0::8::INSTR", "input": "current"}, "input"),
        (SR830Settings, {"resource": "GPIB0::8::INSTR", "timeout_s": 0}, "timeout_s"),
        (SR830Settings, {"resource": "GPIB0::8::INSTR", "expect_model": "SR860"}, "expect_model"),
        (SR860Settings, {"resource": "GPIB0::8::INSTR", "expect_model": "SR830"}, "expect_model"),
    ],
)
def test_settings_are_strict(model: Any, data: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        model.model_validate(data)


def test_list_devices_without_a_configuration_says_how_to_get_one() -> None:
    assert SR830_BACKEND.list_devices is not None
    assert "labctl devices CONFIG" in SR830_BACKEND.list_devices(None)


# -- part 2: real TCP through pyvisa-py --------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def test_over_tcp_a_port_with_nothing_listening_is_refused_with_host_and_port() -> None:
    port = _free_port()
    resource = f"TCPIP::127.0.0.1::{port}::SOCKET"
    with pytest.raises(LockinConnectionError, match=rf"nothing listens at 127\.0\.0\.1:{port}"):
        SR830(resource, timeout_s=0.5)
    with pytest.raises(DeviceDiscoveryError, match="nothing listens"):
        assert SR830_BACKEND.list_devices is not None
        SR830_BACKEND.list_devices(SR830Settings(resource=resource, timeout_s=0.5))


def test_over_tcp_an_instrument_that_never_answers_times_out_clearly() -> None:
    with silent_listener() as port:
        resource = f"TCPIP::127.0.0.1::{port}::SOCKET"
        with pytest.raises(LockinTimeout, match=r"no answer within 0\.2 s from TCPIP") as info:
            SR860(resource, timeout_s=0.2)
        assert f"127.0.0.1:{port}" in str(info.value) and "'*IDN?'" in str(info.value)
        assert SR860_BACKEND.list_devices is not None
        with pytest.raises(DeviceDiscoveryError, match="raise timeout_s"):
            SR860_BACKEND.list_devices(SR860Settings(resource=resource, timeout_s=0.2))


def test_format_si_reads_well() -> None:
    assert format_si(2e-9, "V") == "2 nV"
    assert format_si(30e3, "s") == "30 ks"
    assert format_si(1e-6, "A") == "1 µA"
    assert format_si(102e3, "Hz") == "102 kHz"


# -- part 2b: against the simulated instruments ------------------------------------------------
@pytest.fixture
def serve() -> Any:
    """``serve_lockin`` of the simulated instruments (skips while they are not installed)."""
    try:
        from simulated_hw.lockin_server import serve_lockin
    except ImportError as exc:  # pragma: no cover - the simulated lock-ins ship with labctl
        pytest.skip(f"simulated lock-ins unavailable: {exc}")
    return serve_lockin


DRIVERS = {"sr830": SR830, "sr860": SR860}
RATE_HZ = 10_000.0


def _bench_sleeper(bench: Any) -> Any:
    """A ``sleep`` that lets simulated time pass: the bench plays 0 V for that long."""

    def sleep(duration_s: float) -> None:
        n = max(2, round(duration_s * RATE_HZ))
        bench.play(np.zeros((bench.n_electrodes, n)), RATE_HZ)

    return sleep


@pytest.mark.parametrize("model", ["sr830", "sr860"])
def test_every_operation_works_against_the_simulated_instrument(serve: Any, model: str) -> None:
    driver = DRIVERS[model]
    with serve(model, sine_electrode=3) as server, driver(server.resource) as lockin:
        assert lockin.model == model.upper()
        lockin.reference_source = "internal"
        assert lockin.reference_source == "internal"
        lockin.set_reference(1234.5, 2)
        assert (lockin.frequency_hz, lockin.harmonic) == (pytest.approx(1234.5), 2)
        lockin.harmonic = 1
        lockin.frequency_hz = 100.0
        lockin.phase_deg = 45.0
        assert lockin.phase_deg == pytest.approx(45.0)
        for mode in ("voltage_diff", "current_1M", "current_100M", "voltage"):
            lockin.input_mode = mode
            assert lockin.input_mode == mode  # the getter asks the instrument
        table = lockin.sensitivity_table()
        for value in (table.smallest, 10e-3, table.largest):
            lockin.sensitivity = value
            assert lockin.sensitivity == pytest.approx(value)
        assert lockin.sensitivity_at_least(3e-3) == pytest.approx(5e-3)
        for tau in (lockin.TIME_CONSTANTS.smallest, 0.3, 30.0):
            lockin.time_constant_s = tau
            assert lockin.time_constant_s == pytest.approx(tau)
        for slope in (6, 12, 18, 24):
            lockin.filter_slope_db_per_oct = slope
            assert lockin.filter_slope_db_per_oct == slope
        lockin.sync_filter = True
        assert lockin.sync_filter is True
        lockin.sync_filter = False
        lockin.time_constant_s = 0.01
        assert lockin.settling_time_s() == pytest.approx(0.1)  # 10 τ at 24 dB/oct
        lockin.check_errors()
        level = lockin.apply_tone(ToneSpec("e3", 100.0, 0.1))
        assert lockin.sine_amplitude_v_rms == pytest.approx(level)
        for name in ("x", "y", "r", "theta_deg"):
            assert math.isfinite(getattr(lockin, name))
        assert len(
            lockin.snap(*(["X", "Y", "R", "theta", "frequency", "X"][: lockin.SNAP_MAX]))
        ) == (lockin.SNAP_MAX)
        assert lockin.read_xy().status.raw >= 0
        sent = len(server.commands)
        with pytest.raises(LockinValueError):
            lockin.sensitivity = 3e-3
        with pytest.raises(LockinValueError):
            lockin.frequency_hz = 2 * lockin.max_frequency_hz
        assert len(server.commands) == sent  # refused: nothing reached the instrument
        lockin.check_errors()
    minimum = f"SLVL {'0.004' if model == 'sr830' else '1e-09'}"
    assert server.commands[-2:] == [minimum, "SLVL?"]  # closed at the verified minimum
    assert not any("RST" in command.upper() for command in server.commands)


def test_auto_sensitivity_settles_on_a_real_signal(serve: Any) -> None:
    with serve("sr830", sine_electrode=3) as server:
        sleep = _bench_sleeper(server.bench)
        with SR830(server.resource, sleep=sleep) as lockin:
            lockin.input_mode = "voltage"
            lockin.set_reference(100.0)
            lockin.time_constant_s = 0.03
            lockin.filter_slope_db_per_oct = 12
            lockin.sensitivity = 1.0
            lockin.apply_tone(ToneSpec("e3", 100.0, 0.2))
            full_scale = lockin.auto_sensitivity()
            sleep(lockin.settling_time_s())
            magnitude = lockin.r
            assert 0.1 * full_scale <= magnitude <= full_scale
            assert not lockin.overloaded
            assert full_scale < 1.0


def test_a_stopped_simulated_instrument_is_a_closed_connection(serve: Any) -> None:
    server = serve("sr830")
    lockin = SR830(server.resource, timeout_s=0.5)
    lockin.x  # noqa: B018 - connected and answering
    server.stop()
    with pytest.raises(LockinConnectionError, match="closed by the instrument"):
        lockin.x  # noqa: B018
    with pytest.raises(LockinConnectionError, match="close and reopen"):
        lockin.close()  # the safe state can no longer be sent: said after closing
    assert lockin.closed


def test_a_query_the_simulated_instrument_does_not_answer_times_out_clearly(serve: Any) -> None:
    with serve("sr860") as server:
        lockin = SR860(server.resource, timeout_s=0.3)
        with pytest.raises(LockinTimeout, match=r"no answer within 0\.3 s from TCPIP") as info:
            lockin.query("OUTP? 42")  # out of range: the instrument stays silent
        assert "raise timeout_s" in str(info.value)
        with pytest.raises(LockinTimeout, match="close and reopen"):
            lockin.x  # noqa: B018
        lockin.close()
        with SR860(server.resource, timeout_s=0.3) as again:  # a fresh connection works
            again.check_errors()  # connecting cleared the rejected query's error bit
            assert math.isfinite(again.x)


def test_list_devices_probes_the_simulated_instrument_and_refuses_the_other_model(
    serve: Any,
) -> None:
    assert SR830_BACKEND.list_devices is not None
    with serve("sr830") as server:
        listing = SR830_BACKEND.list_devices(SR830Settings(resource=server.resource))
        assert "SR830 s/n 00000" in listing and "102 kHz" in listing
        assert not any(c.startswith("SLVL") for c in server.commands)  # a probe changes nothing
    with (
        serve("sr860") as server,
        pytest.raises(DeviceDiscoveryError, match="use the sr860 backend"),
    ):
        SR830_BACKEND.list_devices(SR830Settings(resource=server.resource, timeout_s=0.5))


# -- part 2c: a composite setup from YAML --------------------------------------------------------
def composite_config(model: str, input_choice: str = "voltage_tia") -> Any:
    """sim_dnpu.yaml as a composite: the simulated DAQ as source and readout, a lock-in as
    demodulated readout and sine source on e3 (resource filled in once its server runs)."""
    base = yaml.safe_load((CONFIGS / "sim_dnpu.yaml").read_text())
    base["setup"].pop("backend")
    composite = {
        "setup": {
            "name": "srs-composite",
            "instruments": {
                "daq": {"backend": "simulated", "settings": {"effects": NO_EFFECTS}},
                "li": {
                    "backend": model,
                    "settings": {
                        "resource": "TCPIP::127.0.0.1::1::SOCKET",
                        "timeout_s": 2.0,
                        "input": input_choice,
                    },
                },
            },
            "roles": {
                "source": "daq",
                "sampled_readout": "daq",
                "demodulated_readouts": ["li"],
                "sine_sources": {"e3": "li"},
                "oracle": "daq",
            },
        }
    }
    data = merge_overrides(base, composite)
    return parse_config(yaml.safe_dump(data), source=CONFIGS / "srs-composite.yaml")


@pytest.mark.parametrize(
    ("model", "input_choice"), [("sr830", "voltage_tia"), ("sr860", "current_1M")]
)
def test_a_composite_setup_refuses_unsafe_tones_before_the_lock_in_and_reads_the_chip(
    serve: Any, model: str, input_choice: str
) -> None:
    device = build_device(composite_config(model, input_choice))
    bench = device.instruments["daq"].bench  # type: ignore[attr-defined]
    lockin = device.instruments["li"]
    assert isinstance(lockin, SR830Lockin if model == "sr830" else SR860Lockin)
    minimum = "SLVL 0.004" if model == "sr830" else "SLVL 1e-09"
    with serve(model, bench=bench, sine_electrode=3) as server:
        lockin.resource = server.resource
        with device:
            assert device.identity()["li"]["model"] == model.upper()
            sent = len(server.commands)
            for spec, rule in (
                (ToneSpec("e3", 1000.0, 0.05), "slew"),  # 2π f A = 314 V/s > 200 V/s
                (ToneSpec("e3", 10.0, 1.5), "maximum"),  # beyond the electrode's range
            ):
                with pytest.raises(SafetyViolation, match=rule):
                    device.program_tones([spec])
            assert server.commands[sent:] == []  # nothing reached the lock-in
            device.program_tones([ToneSpec("e3", 50.0, 0.1)])
            level = "SLVL 0.07" if model == "sr830" else "SLVL 0.070710678"
            assert server.commands[sent:][-2:] == [level, "*ESR?"]
            sent = len(server.commands)
            with pytest.raises(LockinValueError, match="would move the tone unchecked"):
                lockin.configure(DemodulatorSettings(1000.0, 1, 0.1, 24, 1e-8))
            assert server.commands[sent:] == []
            used = lockin.configure(DemodulatorSettings(50.0, 1, 0.1, 24, 1e-8))
            assert used.time_constant_s == pytest.approx(0.1)
            device.idle(lockin.settling_time_s())  # the DAQ holds 0 V; the sine drives e3
            reading = lockin.read()
            gradient = device.reference_gradient(np.zeros(7))
            assert gradient is not None
            rms = float(level.split()[1])
            assert not reading.overload
            assert reading.x_a == pytest.approx(gradient[3] * rms, rel=0.05)
            assert abs(reading.y_a) < 0.05 * abs(reading.x_a)
        assert server.commands[-2:] == [minimum, "SLVL?"]  # closed at the verified minimum
        assert server.commands.count(minimum) >= 3  # open, tone off at shutdown, close


def test_the_sr830_residual_sine_is_reported_at_the_reference_frequency() -> None:
    """The SR830 cannot output less than 4 mV rms: its safe state still puts a sine on the
    electrode, which the adapter reports (without I/O) so the safety layer counts it."""
    instrument, resource = adapter(SR830Lockin, [*SR830_OPEN, *SR830_SAFE])
    assert instrument.residual_tone("e3") is None  # not open: nothing is driven
    instrument.open()
    residual = instrument.residual_tone("e3")
    assert residual == ToneSpec("e3", 1000.0, math.sqrt(2) * 0.004)
    assert instrument.residual_tone("e3", 250.0).frequency_hz == 250.0
    instrument.close()
    resource.assert_done()


# -- part 3: X/Y during a record (SR830 data buffer, SR86x capture) ---------------------------
def ieee_block(values: Sequence[float] | np.ndarray) -> bytes:
    """An IEEE 488.2 definite-length block of little-endian float32, as CAPTUREGET? sends."""
    data = np.asarray(values, dtype="<f4").tobytes()
    size = str(len(data))
    return b"#" + str(len(size)).encode() + size.encode() + data


class BinaryScriptedResource(ScriptedResource):
    """A :class:`ScriptedResource` that also plays ``query_binary_values`` (reply: bytes)."""

    def query_binary_values(
        self, message: str, datatype: str = "f", is_big_endian: bool = False, **kwargs: Any
    ) -> list[float]:
        assert (datatype, is_big_endian, kwargs) == ("f", False, {})
        self.write(message)
        if not self._has_pending:
            pytest.fail(f"{message!r} is not a query in the transcript")
        reply, self._pending, self._has_pending = self._pending, None, False
        if isinstance(reply, BaseException):
            raise reply
        assert isinstance(reply, bytes)
        return list(from_ieee_block(reply, datatype, is_big_endian))


@contextmanager
def binary_protocol(driver: type[SRSLockin], transcript: Sequence[Any]) -> Iterator[Any]:
    """:func:`expected_protocol` over a resource that reads binary blocks too."""
    resource = BinaryScriptedResource([*preamble(driver), *transcript], "TCPIP::h::1865::SOCKET")
    yield driver(resource)
    resource.assert_done()


SR830_ARM_ON_TRIGGER = [
    ("DDEF 1,0,0", None),
    ("DDEF 2,0,0", None),
    ("SRAT 13", None),
    ("SEND 0", None),
    ("TSTR 1", None),
    ("REST", None),
    ("*ESR?", "0"),
]


def test_sr830_buffered_xy_arms_on_the_trigger_reads_both_traces_and_pauses() -> None:
    transcript = [
        *SR830_ARM_ON_TRIGGER,
        ("SPTS?", "3"),
        ("TRCA? 1,0,3", "+1.000000e-03,+2.000000e-03,+3.000000e-03,"),  # the trailing comma
        ("TRCA? 2,0,3", "-1e-06,-2e-06,-3e-06"),  # and without it
        ("PAUS", None),
    ]
    with expected_protocol(SR830, transcript) as lockin:
        lockin.start_buffered_xy(512.0)
        x, y, rate = lockin.read_buffered_xy()
        lockin.stop_buffer()
    np.testing.assert_array_equal(x, [1e-3, 2e-3, 3e-3])
    np.testing.assert_array_equal(y, [-1e-6, -2e-6, -3e-6])
    assert rate == 512.0


def test_sr830_buffered_xy_starts_now_without_the_trigger() -> None:
    transcript = [
        ("DDEF 1,0,0", None),
        ("DDEF 2,0,0", None),
        ("SRAT 0", None),
        ("SEND 0", None),
        ("TSTR 0", None),
        ("REST", None),
        ("STRT", None),
        ("*ESR?", "0"),
        ("SPTS?", "0"),  # nothing stored yet: no TRCA? (it refuses a count of 0)
    ]
    with expected_protocol(SR830, transcript) as lockin:
        lockin.start_buffered_xy(0.0625, on_trigger=False)
        x, y, rate = lockin.read_buffered_xy()
    assert (x.size, y.size, rate) == (0, 0, 0.0625)


def test_sr830_buffer_started_elsewhere_takes_its_rate_from_srat() -> None:
    transcript = [("SPTS?", "1"), ("SRAT?", "4"), ("TRCA? 1,0,1", "+5e-3,"), ("TRCA? 2,0,1", "0,")]
    with expected_protocol(SR830, transcript) as lockin:
        x, y, rate = lockin.read_buffered_xy()
    assert (list(x), list(y), rate) == ([5e-3], [0.0], 1.0)


@pytest.mark.parametrize(
    ("rate", "kwargs", "match"),
    [
        (1000.0, {}, "not one of the SR830's storage rates"),
        (3.0, {}, "62.5 mHz × 2"),
        (0.03125, {}, "storage rate"),
        (0.0, {}, "storage rate"),
        (-512.0, {}, "storage rate"),
        (math.nan, {}, "storage rate"),
        ("512", {}, "storage rate"),
        (True, {}, "storage rate"),
        (512.0, {"on_trigger": 1}, "on_trigger"),
    ],
)
def test_sr830_buffered_xy_refusals_send_nothing(
    rate: Any, kwargs: dict[str, Any], match: str
) -> None:
    with expected_protocol(SR830, []) as lockin, pytest.raises(LockinValueError, match=match):
        lockin.start_buffered_xy(rate, **kwargs)


@pytest.mark.parametrize(
    ("transcript", "match"),
    [
        ([("SPTS?", "16384")], "SPTS"),
        ([("SPTS?", "2"), ("SRAT?", "14")], "SRAT"),
        ([("SPTS?", "2"), ("SRAT?", "3"), ("TRCA? 1,0,2", "+1e-3,")], "2 numbers"),
        ([("SPTS?", "1"), ("SRAT?", "3"), ("TRCA? 1,0,1", "junk,")], "1 numbers"),
    ],
)
def test_sr830_buffer_replies_that_do_not_fit_are_protocol_errors(
    transcript: list[Step], match: str
) -> None:
    with (
        expected_protocol(SR830, transcript) as lockin,
        pytest.raises(LockinProtocolError, match=match),
    ):
        lockin.read_buffered_xy()


def test_sr830_buffered_xy_flagged_by_the_instrument_is_a_command_error() -> None:
    transcript = [*SR830_ARM_ON_TRIGGER[:-1], ("*ESR?", "16"), ("SPTS?", "0"), ("SRAT?", "13")]
    with expected_protocol(SR830, transcript) as lockin:
        with pytest.raises(LockinCommandError, match="EXE"):
            lockin.start_buffered_xy(512.0)
        assert lockin.read_buffered_xy()[2] == 512.0  # the rate is asked, not assumed


SR860_MAX = "1220.703125"  # 1.25 MHz / 1024


def test_sr860_capture_xy_arms_on_the_trigger_reads_the_block_and_stops() -> None:
    captured = [1e-3, -1e-6, 2e-3, -2e-6, 3e-3, -3e-6]
    transcript = [
        ("CAPTURERATEMAX?", SR860_MAX),
        ("CAPTURESTOP", None),
        ("CAPTURECFG XY", None),
        ("CAPTURERATE 2", None),
        ("CAPTURELEN 2", None),
        ("CAPTURESTART ONE, TRIG", None),
        ("*ESR?", "0"),
        ("CAPTUREBYTES?", "24"),
        ("CAPTUREGET? 0,1", ieee_block([*captured, *[0.0] * 250])),  # 1 kB, zeros after
        ("CAPTURESTOP", None),
    ]
    with binary_protocol(SR860, transcript) as lockin:
        lockin.start_capture_xy(1220.703125 / 4, length_kb=2)
        x, y, rate = lockin.read_capture_xy()
        lockin.stop_capture()
    np.testing.assert_allclose(x, [1e-3, 2e-3, 3e-3], rtol=1e-7)
    np.testing.assert_allclose(y, [-1e-6, -2e-6, -3e-6], rtol=1e-7)
    assert rate == 1220.703125 / 4


def test_sr860_capture_xy_starts_now_and_reads_in_blocks_of_64_kb() -> None:
    n_bytes = 70 * 1024 - 8
    values = np.arange(n_bytes // 4, dtype=np.float64)
    transcript = [
        ("CAPTURERATEMAX?", SR860_MAX),
        ("CAPTURESTOP", None),
        ("CAPTURECFG XY", None),
        ("CAPTURERATE 0", None),
        ("CAPTURELEN 4096", None),
        ("CAPTURESTART ONE, IMM", None),
        ("*ESR?", "0"),
        ("CAPTUREBYTES?", str(n_bytes)),
        ("CAPTUREGET? 0,64", ieee_block(values[: 64 * 256])),
        ("CAPTUREGET? 64,6", ieee_block([*values[64 * 256 :], 0.0, 0.0])),
    ]
    with binary_protocol(SR860, transcript) as lockin:
        lockin.start_capture_xy(1220.703125, length_kb=4096, on_trigger=False)
        x, y, rate = lockin.read_capture_xy()
    np.testing.assert_array_equal(x, values[0::2])
    np.testing.assert_array_equal(y, values[1::2])
    assert rate == 1220.703125


@pytest.mark.parametrize(
    ("rate", "kwargs", "match"),
    [
        (300.0, {"length_kb": 2, "on_trigger": "yes"}, "on_trigger"),
        (300.0, {"length_kb": 3}, "even number"),
        (300.0, {"length_kb": 0}, "even number"),
        (300.0, {"length_kb": 4098}, "even number"),
        (300.0, {"length_kb": 2.0}, "even number"),
        (300.0, {"length_kb": True}, "even number"),
        (0.0, {"length_kb": 2}, "positive number"),
        (-1.0, {"length_kb": 2}, "positive number"),
        (math.inf, {"length_kb": 2}, "positive number"),
        (True, {"length_kb": 2}, "positive number"),
    ],
)
def test_sr860_capture_xy_refusals_send_nothing(
    rate: Any, kwargs: dict[str, Any], match: str
) -> None:
    with binary_protocol(SR860, []) as lockin, pytest.raises(LockinValueError, match=match):
        lockin.start_capture_xy(rate, **kwargs)


@pytest.mark.parametrize(
    ("rate", "match"),
    [
        (300.0, "nearest are 152.6 Hz and 305.2 Hz"),  # not max / 2^n
        (1220.703125 * (1 + 1e-5), "outside"),  # above the maximum
        (1220.703125 / 2**21, "outside"),  # below max / 2^20
        (1220.703125 / 8 * (1 + 2e-6), "nearest are 152.6 Hz and 305.2 Hz"),
    ],
)
def test_sr860_a_capture_rate_not_of_the_form_is_refused_after_asking_the_maximum(
    rate: float, match: str
) -> None:
    with (
        binary_protocol(SR860, [("CAPTURERATEMAX?", SR860_MAX)]) as lockin,
        pytest.raises(LockinValueError, match=match),
    ):
        lockin.start_capture_xy(rate, length_kb=2)


def test_sr860_a_rate_within_1e_6_of_the_form_is_taken() -> None:
    transcript = [
        ("CAPTURERATEMAX?", SR860_MAX),
        ("CAPTURESTOP", None),
        ("CAPTURECFG XY", None),
        ("CAPTURERATE 20", None),
        ("CAPTURELEN 2", None),
        ("CAPTURESTART ONE, TRIG", None),
        ("*ESR?", "0"),
    ]
    with binary_protocol(SR860, transcript) as lockin:
        lockin.start_capture_xy(1220.703125 / 2**20 * (1 + 5e-7), length_kb=2)


def test_sr860_reading_a_capture_it_did_not_start_or_that_failed_is_refused() -> None:
    transcript = [
        ("CAPTURERATEMAX?", SR860_MAX),
        ("CAPTURESTOP", None),
        ("CAPTURECFG XY", None),
        ("CAPTURERATE 0", None),
        ("CAPTURELEN 2", None),
        ("CAPTURESTART ONE, TRIG", None),
        ("*ESR?", "16"),
    ]
    with binary_protocol(SR860, transcript) as lockin:
        with pytest.raises(LockinValueError, match="start_capture_xy first"):
            lockin.read_capture_xy()
        with pytest.raises(LockinCommandError, match="EXE"):
            lockin.start_capture_xy(1220.703125, length_kb=2)
        with pytest.raises(LockinValueError, match="start_capture_xy first"):
            lockin.read_capture_xy()


ARMED_SR860 = [
    ("CAPTURERATEMAX?", SR860_MAX),
    ("CAPTURESTOP", None),
    ("CAPTURECFG XY", None),
    ("CAPTURERATE 0", None),
    ("CAPTURELEN 2", None),
    ("CAPTURESTART ONE, TRIG", None),
    ("*ESR?", "0"),
]


@pytest.mark.parametrize(
    ("tail", "error", "match"),
    [
        ([("CAPTUREBYTES?", "12")], LockinProtocolError, "multiple of 8"),
        ([("CAPTUREBYTES?", "4096")], LockinProtocolError, "up to 2048"),
        (
            [("CAPTUREBYTES?", "8"), ("CAPTUREGET? 0,1", ieee_block([1.0, 2.0]))],
            LockinProtocolError,
            "256 float32",
        ),
        (
            [("CAPTUREBYTES?", "8"), ("CAPTUREGET? 0,1", b"1.0,2.0")],
            LockinProtocolError,
            "IEEE 488.2",
        ),
        ([("CAPTUREBYTES?", "8"), ("CAPTUREGET? 0,1", TMO)], LockinTimeout, "CAPTUREGET"),
    ],
)
def test_sr860_capture_replies_that_do_not_fit_are_errors(
    tail: list[Any], error: type[Exception], match: str
) -> None:
    with binary_protocol(SR860, [*ARMED_SR860, *tail]) as lockin:
        lockin.start_capture_xy(1220.703125, length_kb=2)
        with pytest.raises(error, match=match):
            lockin.read_capture_xy()
        if error is not LockinProtocolError or "IEEE" in match:
            with pytest.raises(LockinTimeout, match="earlier query"):  # out of step now
                lockin.read_capture_xy()


def test_sr860_capture_needs_a_resource_that_reads_binary_blocks() -> None:
    transcript = [*ARMED_SR860, ("CAPTUREBYTES?", "8")]
    with expected_protocol(SR860, transcript) as lockin:
        lockin.start_capture_xy(1220.703125, length_kb=2)
        with pytest.raises(LockinError, match="cannot read binary blocks"):
            lockin.read_capture_xy()


def _play_137_hz(bench: Any, duration_s: float, electrode: int = 1) -> None:
    """One bench record: 137 Hz, 0.1 V peak on ``electrode`` (the others at 0 V)."""
    n = round(duration_s * RATE_HZ)
    t = bench.timebase.now_s + np.arange(n) / RATE_HZ
    waveform = np.zeros((bench.n_electrodes, n))
    waveform[electrode] = 0.1 * np.sin(2 * np.pi * 137.0 * t)
    bench.play(waveform, RATE_HZ)


def _assert_settles_to(
    x: np.ndarray, y: np.ndarray, settled: int, steady: complex, last_rel: float
) -> None:
    """From point ``settled`` on, X + iY is within 2 % of the lock-in's ``steady`` reading
    taken after the record, and the last point within ``last_rel`` of it."""
    z = x + 1j * y
    assert abs(steady) > 1e-4  # a real signal, not zeros
    assert abs(z[-1] - steady) <= last_rel * abs(steady)
    np.testing.assert_allclose(np.abs(z[settled:] - steady), 0.0, atol=0.02 * abs(steady))
    assert abs(z[0] - steady) > 0.1 * abs(steady)  # and the start of the record is not


def test_sr830_buffers_x_and_y_during_a_simulated_record(serve: Any) -> None:
    with serve("sr830", port=0) as server, SR830(server.resource) as lockin:
        lockin.input_mode = "voltage"
        lockin.set_reference(137.0)
        lockin.time_constant_s = 0.03
        lockin.filter_slope_db_per_oct = 24
        lockin.start_buffered_xy(512.0)
        assert lockin.read_buffered_xy()[0].size == 0  # armed, waiting for the record
        _play_137_hz(server.bench, 1.0)
        x, y, rate = lockin.read_buffered_xy()
        lockin.stop_buffer()
        reading = lockin.read_xy()
        assert not reading.status.overload
    assert rate == 512.0
    assert x.size == y.size == 513  # record start + k / 512 s, k = 0…512
    steady = complex(reading.x, reading.y)
    _assert_settles_to(x, y, round(10 * 0.03 * rate), steady, 1e-4)  # the last point is now
    assert "TSTR 1" in server.commands and "STRT" not in server.commands


def test_sr860_captures_x_and_y_during_a_simulated_record(serve: Any) -> None:
    with serve("sr860", port=0) as server, SR860(server.resource) as lockin:
        lockin.input_mode = "voltage"
        lockin.set_reference(137.0)
        lockin.time_constant_s = 0.01
        lockin.filter_slope_db_per_oct = 24
        maximum = float(lockin.query("CAPTURERATEMAX?"))
        lockin.start_capture_xy(maximum, length_kb=2)
        assert lockin.read_capture_xy()[0].size == 0
        _play_137_hz(server.bench, 1.0)
        x, y, rate = lockin.read_capture_xy()
        lockin.stop_capture()
        reading = lockin.read_xy()
        assert not reading.status.overload
    assert rate == pytest.approx(1.25e6 / 2**13)  # the largest 1.25 MHz / 2^k ≤ 2/τ
    assert x.size == y.size == math.floor(1.0 * rate + 1e-9) + 1
    steady = complex(reading.x, reading.y)
    _assert_settles_to(x, y, round(10 * 0.01 * rate), steady, 0.01)  # 4 ms before the end


# -- X/Y traces: the rate picked for a record's length ---------------------------------------------
@pytest.mark.parametrize(
    ("duration_s", "max_rate_hz", "srat"),
    [
        (1.2, 512.0, 13),  # 614 points at 512 Hz fit the 16383-point buffer
        (1.2, 300.0, 12),  # at most 300 Hz: 256 Hz
        (70.0, 512.0, 11),  # 70 s holds neither 512 nor 256 Hz (16383 points): 128 Hz
    ],
)
def test_sr830_trace_arms_the_buffer_at_the_fastest_rate_that_holds_the_record(
    duration_s: float, max_rate_hz: float, srat: int
) -> None:
    transcript = [*SR830_ARM_ON_TRIGGER]
    transcript[2] = (f"SRAT {srat}", None)
    with expected_protocol(SR830, transcript) as lockin:
        rate = lockin.start_xy_trace(duration_s, max_rate_hz)
    assert rate == 0.0625 * 2**srat


@pytest.mark.parametrize(
    ("duration_s", "max_rate_hz", "match"),
    [
        (3e5, 512.0, "shorten the record"),  # > 16383 / 62.5 mHz
        (1.0, 0.01, "shorten the record"),  # no rate at or below 10 mHz
        (0.0, 512.0, "trace duration"),
        (1.0, math.inf, "rate"),
    ],
)
def test_sr830_trace_refusals_send_nothing(
    duration_s: float, max_rate_hz: float, match: str
) -> None:
    with expected_protocol(SR830, []) as lockin, pytest.raises(LockinValueError, match=match):
        lockin.start_xy_trace(duration_s, max_rate_hz)


def test_sr860_trace_asks_the_maximum_then_arms_the_capture_that_holds_the_record() -> None:
    # 1220.7 Hz / 2 = 610.4 Hz <= 1000 Hz asked; 1.2 s = 733 points + 2 = 5.9 kB -> 6 kB
    transcript = [
        ("CAPTURERATEMAX?", SR860_MAX),
        ("CAPTURERATEMAX?", SR860_MAX),
        ("CAPTURESTOP", None),
        ("CAPTURECFG XY", None),
        ("CAPTURERATE 1", None),
        ("CAPTURELEN 6", None),
        ("CAPTURESTART ONE, TRIG", None),
        ("*ESR?", "0"),
    ]
    with binary_protocol(SR860, transcript) as lockin:
        rate = lockin.start_xy_trace(1.2, 1000.0)
    assert rate == pytest.approx(1220.703125 / 2)


def test_sr860_trace_too_long_for_the_capture_is_refused_after_asking_the_maximum() -> None:
    transcript = [("CAPTURERATEMAX?", SR860_MAX)]
    with (
        binary_protocol(SR860, transcript) as lockin,
        pytest.raises(LockinValueError, match="4096 kB"),
    ):
        lockin.start_xy_trace(1e9, 1000.0)
