"""Property tests of the safety layer against lying and failing instruments.

Hypothesis generates valid multi-tone records (non-zero resting voltages, operating points and
tones reaching the limits) and sequences of them, starting from electrodes that already hold a
voltage, on instruments that lie about their voltages (readback in millivolts, NaN, raising) or
fail (mid-record, counted or not; before anything goes out; for good). Whatever happens:

- no sample outside an electrode's range or the ceiling ever reaches the bench's independent
  audit, and no step above the slew limit, except the one documented move: the single step to
  0 V of an electrode whose voltage the layer could not know, which the report names;
- a report that says ``ok`` means the electrodes are at 0 V (never a silent success), and a
  report that does not is raised as :class:`ShutdownFailed`.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.config import LoadedConfig
from labctl.device import FloatArray, RecordInterrupted, UnknownVoltage
from labctl.device.safety import (
    DeviceShutDown,
    SafeDevice,
    SafetyLimits,
    SafetyViolation,
    ShutdownFailed,
    ShutdownReport,
)
from labctl.device.state import VoltageStateFile
from labctl.homodyne.drive import ToneSet, synthesise_drive
from simulated_hw.backend import SimulatedBackend
from tests.conftest import NO_EFFECTS, config_from

RATE = 10_000.0
RANGE_V = 1.2
FREQUENCIES_HZ = (130.0, 170.0, 270.0, 330.0, 520.0)
CONTROLS = (1, 2, 3, 4, 5)


class InjectedFault(RuntimeError):
    """The failure a faulty instrument raises."""


class FaultyBackend(SimulatedBackend):
    """A simulated instrument with one configurable lie or fault.

    ``readback``: ``honest``, ``millivolts`` (reports mV as V), ``nan`` (cannot read back) or
    ``raises``. ``fault``: ``none``, ``counted`` (stops half-way and says how far),
    ``uncounted`` (stops half-way without saying), ``before`` (raises before anything goes
    out) or ``dead`` (every play from the ``fail_at``-th on raises before anything goes out).
    """

    readback = "honest"
    fault = "none"
    fail_at = 10**9
    plays = 0
    faults = 0

    def present_voltages(self) -> FloatArray:
        true = np.array(self.bench.applied_v, dtype=np.float64)
        if self.readback == "millivolts":
            return true * 1e3
        if self.readback == "nan":
            return np.full(true.size, np.nan)
        if self.readback == "raises":
            raise InjectedFault("readback: instrument does not answer")
        return true

    def play(self, waveform_v: FloatArray, sample_rate_hz: float, cancel: Any = None) -> None:
        self.plays += 1
        failing = self.plays >= self.fail_at and self.fault != "none"
        if failing and (self.fault != "dead" and self.faults > 0):
            failing = False  # transient faults happen once
        if not failing:
            super().play(waveform_v, sample_rate_hz, cancel)
            return
        self.faults += 1
        if self.fault in ("before", "dead"):
            raise InjectedFault("device absent or unavailable")
        half = max(1, waveform_v.shape[1] // 2)
        super().play(waveform_v[:, :half], sample_rate_hz, cancel)
        if self.fault == "counted":
            raise RecordInterrupted("output buffer underflow", half, cancelled=False)
        raise InjectedFault("connection lost mid-record")


def loaded_with_rest(rest_v: list[float]) -> LoadedConfig:
    electrodes = [
        {
            "name": f"e{k}",
            "role": "input" if k in (0, 6) else "control",
            "min_v": -RANGE_V,
            "max_v": RANGE_V,
            "rest_v": rest_v[k],
        }
        for k in range(7)
    ]
    return config_from(
        "sim_dnpu.yaml",
        {"setup": {"electrodes": electrodes, "backend": {"settings": {"effects": NO_EFFECTS}}}},
    )


def record(device: SafeDevice, points: FloatArray, amplitude_v: float) -> FloatArray:
    """A valid multi-tone record through ``points`` (tones on the controls)."""
    tones = ToneSet(CONTROLS, FREQUENCIES_HZ, (amplitude_v,) * len(CONTROLS))
    drive = synthesise_drive(
        rest_v=device.rest_voltages(),
        operating_points_v=points,
        tones=tones,
        sample_rate_hz=RATE,
        window_s=0.01,
        settle_s=0.002,
        slew_v_per_s=device.limits.slew_v_per_s,
        fade_periods=1,
    )
    return drive.waveform_v


def check_audit(device: SafeDevice, backend: FaultyBackend, report: ShutdownReport) -> None:
    audit = backend.bench.audit
    if audit.total_samples == 0:
        return
    stepped = set(report.stepped_electrodes)
    for row, electrode in enumerate(device.electrodes):
        low, high = audit.min_v[row], audit.max_v[row]
        assert low >= electrode.min_v - 1e-12, (electrode.name, low)
        assert high <= electrode.max_v + 1e-12, (electrode.name, high)
        assert max(abs(low), abs(high)) <= device.limits.max_abs_v + 1e-12
        if electrode.name not in stepped:
            assert audit.max_slew_v_per_s[row] <= device.limits.slew_v_per_s * (1 + 1e-6), (
                electrode.name,
                audit.max_slew_v_per_s[row],
            )


_rest = st.lists(st.floats(-0.6, 0.6), min_size=7, max_size=7)
_start = st.one_of(st.none(), st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7))
_records = st.lists(
    st.tuples(
        st.integers(1, 3),  # cases in the record
        st.floats(0.001, 0.03),  # tone amplitude (V)
        st.integers(0, 2**31 - 1),  # seed of the operating points
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    readback=st.sampled_from(["honest", "millivolts", "nan", "raises"]),
    fault=st.sampled_from(["none", "counted", "uncounted", "before", "dead"]),
    fail_at=st.integers(1, 6),
    rest=_rest,
    start=_start,
    persisted=st.booleans(),
    records=_records,
)
def test_lying_and_failing_instruments_never_get_an_unsafe_sample(
    readback: str,
    fault: str,
    fail_at: int,
    rest: list[float],
    start: list[float] | None,
    persisted: bool,
    records: list[tuple[int, float, int]],
) -> None:
    if start is not None and readback == "millivolts" and not persisted:
        # A readback that lies inside the plausible range (1 mV read as 1 V) cannot be told
        # from the truth when nothing else is known; the lie must be implausible to be caught.
        start = [0.0 if abs(v) < 0.002 else v for v in start]
    loaded = loaded_with_rest(rest)
    backend = FaultyBackend(loaded.setup, loaded.backend_settings)
    backend.readback, backend.fault, backend.fail_at = readback, fault, fail_at
    with tempfile.TemporaryDirectory() as tmp:
        state = None
        if persisted:
            state = VoltageStateFile(Path(tmp) / "v.json", tuple(f"e{k}" for k in range(7)))
        if start is not None:
            # The electrodes already hold a voltage, left by an earlier process that recorded
            # it (when ``persisted``) before it ended.
            backend.bench.restore_held(start)
            if state is not None:
                state.record_held(np.array(start))
        limits = SafetyLimits(1.6, 200.0)
        device = SafeDevice(backend, limits, RATE, state_file=state)
        raised: ShutdownFailed | None = None
        try:
            with device:
                for n_cases, amplitude, seed in records:
                    rng = np.random.default_rng(seed)
                    margin = RANGE_V - 5 * amplitude - 1e-3
                    points = rng.uniform(-margin, margin, size=(n_cases, 7))
                    points[:, [0, 6]] = rng.choice([-margin, margin], size=(n_cases, 2))
                    with contextlib.suppress(
                        InjectedFault, RecordInterrupted, UnknownVoltage, DeviceShutDown
                    ):
                        device.apply(record(device, points, amplitude))
        except ShutdownFailed as exc:
            raised = exc
        except (InjectedFault, RecordInterrupted) as exc:  # pragma: no cover - must not happen
            pytest.fail(f"an instrument error escaped the device context: {exc!r}")
    report = device.last_shutdown_report
    assert report is not None
    check_audit(device, backend, report)
    final = backend.bench.applied_v
    if report.ok:
        assert raised is None
        np.testing.assert_array_equal(final, 0.0)  # never a silent success
    else:
        assert raised is not None and raised.report is report
        assert report.summary() in str(raised)
        for row, electrode in enumerate(device.electrodes):
            if final[row] != 0.0:
                assert electrode.name in report.failed_electrodes
    if fault != "dead":  # an instrument that still moves always ends at 0 V
        np.testing.assert_array_equal(final, 0.0)
    unknown_start = (
        start is not None
        and any(start)
        and readback != "honest"
        and (readback == "millivolts" or not persisted)
    )
    if unknown_start:
        assert not report.ok  # started from an unknown voltage: never reported as clean


@pytest.mark.parametrize("readback", ["millivolts", "nan", "raises"])
def test_lying_readback_is_refused_with_the_electrode_and_value(readback: str) -> None:
    loaded = loaded_with_rest([0.0] * 7)
    backend = FaultyBackend(loaded.setup, loaded.backend_settings)
    backend.readback = readback
    backend.bench.restore_held([0.0, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0])
    device = SafeDevice(backend, SafetyLimits(1.6, 200.0), RATE)
    with pytest.raises(ShutdownFailed) as info, device:
        assert "e1" in device.unknown_electrodes()
        with pytest.raises(UnknownVoltage, match="e1") as refused:
            device.apply(np.zeros((7, 10)))
        if readback == "millivolts":
            assert "reads back 300 V" in str(refused.value)
        assert backend.bench.audit.total_samples == 0  # nothing was sent
    report = info.value.report
    # a readback in millivolts is caught where it is implausible (e1); one that says nothing
    # (NaN, or no answer) leaves every electrode unknown
    expected = ["e1"] if readback == "millivolts" else [f"e{k}" for k in range(7)]
    assert report.stepped_electrodes == expected
    assert "unknown" in str(info.value)
    np.testing.assert_array_equal(backend.bench.applied_v, 0.0)


def test_a_waveform_exactly_at_the_limits_passes_and_one_beyond_does_not() -> None:
    loaded = loaded_with_rest([0.0] * 7)
    backend = FaultyBackend(loaded.setup, loaded.backend_settings)
    limits = SafetyLimits(1.6, 200.0)
    device = SafeDevice(backend, limits, RATE)
    step = limits.slew_v_per_s / RATE
    n = math.ceil(RANGE_V / step)
    up = np.linspace(0.0, RANGE_V, n + 1)
    row = np.concatenate([up, up[::-1]])
    wave = np.zeros((7, row.size))
    wave[3] = row
    with device:
        device.apply(wave)
        beyond = wave.copy()
        beyond[3, n] = RANGE_V + 1e-6
        with pytest.raises(SafetyViolation, match="maximum"):
            device.apply(beyond)
    check_audit(device, backend, device.last_shutdown_report or ShutdownReport())
