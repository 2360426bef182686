"""The safety layer: limits, slew, resting ends, ramps and the safe shutdown on every exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.config import LoadedConfig
from labctl.device import FloatArray
from labctl.device.safety import (
    DeviceShutDown,
    SafeDevice,
    SafetyLimits,
    SafetyViolation,
    ShutdownFailed,
    check_waveform,
    ramp_samples,
)
from simulated_hw.backend import SimulatedBackend
from tests.conftest import REPO, bench_of

RATE = 10_000.0


def make_device(loaded: LoadedConfig, backend_cls: type = SimulatedBackend) -> SafeDevice:
    setup = loaded.setup
    backend = backend_cls(setup, loaded.backend_settings)
    limits = SafetyLimits(setup.safety.max_abs_v, setup.safety.slew_v_per_s)
    return SafeDevice(backend, limits, setup.sample_rate_hz)


def instrument_of(device: SafeDevice) -> SimulatedBackend:
    (instrument,) = device.instruments.values()
    assert isinstance(instrument, SimulatedBackend)
    return instrument


def assert_audit_within_limits(device: SafeDevice) -> None:
    audit = bench_of(device).audit
    limits = device.limits
    for row, electrode in enumerate(device.electrodes):
        if audit.total_samples == 0:
            return
        assert audit.min_v[row] >= min(electrode.min_v, 0.0) - 1e-12
        assert audit.max_v[row] <= max(electrode.max_v, 0.0) + 1e-12
        assert max(abs(audit.min_v[row]), abs(audit.max_v[row])) <= limits.max_abs_v + 1e-12
        assert audit.max_slew_v_per_s[row] <= limits.slew_v_per_s * (1 + 1e-6)


def plateau(device: SafeDevice, point: FloatArray, hold: int = 50) -> FloatArray:
    """rest -> ramp -> point (held) -> ramp -> rest, at the slew limit."""
    rest = device.rest_voltages()
    up = ramp_samples(rest, point, RATE, device.limits.slew_v_per_s)
    down = ramp_samples(point, rest, RATE, device.limits.slew_v_per_s)
    return np.concatenate(
        [rest[:, None], up, np.repeat(point[:, None], hold, axis=1), down], axis=1
    )


# -- the check itself ---------------------------------------------------------------------------


def test_violations_name_electrode_sample_value_and_limit(sim_config) -> None:
    device = make_device(sim_config(exact=True))
    electrodes = device.electrodes
    limits = device.limits
    wave = np.zeros((len(electrodes), 100))
    wave[3, 40:60] = electrodes[3].max_v + 0.05
    with pytest.raises(SafetyViolation) as info:
        check_waveform(wave, RATE, electrodes, limits)
    err = info.value
    assert err.electrode == electrodes[3].name
    assert err.sample_index == 40
    assert err.value == pytest.approx(electrodes[3].max_v + 0.05)
    assert err.limit == pytest.approx(electrodes[3].max_v)
    assert electrodes[3].name in str(err) and "sample 40" in str(err)


def test_slew_rest_ends_and_nan_are_rejected(sim_config) -> None:
    device = make_device(sim_config(exact=True))
    electrodes, limits = device.electrodes, device.limits
    n = len(electrodes)
    step = np.zeros((n, 50))
    step[1, 10:40] = 0.1  # a 0.1 V step in one sample = 1000 V/s at 10 kS/s
    with pytest.raises(SafetyViolation, match="slew") as info:
        check_waveform(step, RATE, electrodes, limits)
    assert info.value.sample_index == 10 and info.value.electrode == electrodes[1].name
    off_rest = plateau(device, np.full(n, 0.1))[:, :-5]
    with pytest.raises(SafetyViolation, match="resting voltage"):
        check_waveform(off_rest, RATE, electrodes, limits)
    nan = np.zeros((n, 10))
    nan[2, 5] = np.nan
    with pytest.raises(SafetyViolation, match="finite"):
        check_waveform(nan, RATE, electrodes, limits)


def test_global_ceiling_applies_even_inside_an_electrode_range(sim_config) -> None:
    device = make_device(sim_config(exact=True))
    electrodes = device.electrodes
    tight = SafetyLimits(
        max_abs_v=max(abs(electrodes[0].min_v), electrodes[0].max_v), slew_v_per_s=1e6
    )
    wave = np.zeros((len(electrodes), 20))
    wave[0, 5] = electrodes[0].min_v
    check_waveform(wave, RATE, electrodes, tight)
    lower = SafetyLimits(max_abs_v=abs(electrodes[0].min_v) * 0.5, slew_v_per_s=1e6)
    with pytest.raises(SafetyViolation, match="ceiling"):
        check_waveform(wave, RATE, electrodes, lower)


def test_nothing_reaches_the_backend_after_a_violation(sim_config) -> None:
    with make_device(sim_config(exact=True)) as device:
        bench = bench_of(device)
        before = bench.audit.total_samples
        bad = plateau(device, device.rest_voltages() + 0.1)
        bad[0, 30] = 5.0
        with pytest.raises(SafetyViolation):
            device.apply(bad)
        assert bench.audit.total_samples == before


def test_ramp_from_present_state_is_prepended_and_stripped(sim_config) -> None:
    loaded = sim_config(exact=True)
    data = loaded.resolved_dict()
    data["setup"]["electrodes"][2]["rest_v"] = 0.25
    import yaml

    from labctl.config import parse_config

    loaded = parse_config(yaml.safe_dump(data), source=loaded.source)
    with make_device(loaded) as device:
        bench = bench_of(device)
        rest = device.rest_voltages()
        assert rest[2] == 0.25
        wave = plateau(device, rest + np.where(np.arange(7) == 2, 0.1, 0.0))
        acquisition = device.apply(wave)
        expected_ramp = int(np.ceil(0.25 / (device.limits.slew_v_per_s / RATE)))
        assert acquisition.metadata["ramp_samples"] == expected_ramp
        assert acquisition.current_a.shape == (1, wave.shape[1])
        np.testing.assert_allclose(bench.applied_v, rest)
        second = device.apply(wave)
        assert second.metadata["ramp_samples"] == 0
    np.testing.assert_array_equal(bench.applied_v, 0.0)
    assert_audit_within_limits(device)


# -- random waveforms and call sequences ------------------------------------------------------

_call = st.one_of(
    st.tuples(
        st.just("apply"),
        st.integers(0, 6),
        st.floats(-3.0, 3.0),
        st.integers(2, 60),
        st.sampled_from(["ramped", "step", "no_rest_end"]),
    ),
    st.tuples(
        st.just("random"),
        st.integers(0, 2**31 - 1),
        st.floats(0.001, 4.0),
        st.integers(1, 40),
        st.just(""),
    ),
    st.tuples(st.just("shutdown"), st.just(0), st.just(0.0), st.just(0), st.just("")),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=st.lists(_call, min_size=1, max_size=12))
def test_random_call_sequences_never_break_a_limit(sim_config, calls) -> None:
    device = make_device(sim_config(exact=True))
    with device:
        for kind, a, b, c, variant in calls:
            before = bench_of(device).audit.total_samples
            if kind == "shutdown":
                device.safe_shutdown()
                continue
            if kind == "apply":
                point = device.rest_voltages().copy()
                point[a] = b
                wave = plateau(device, point, hold=c)
                if variant == "step":
                    wave[a, 1:-1] = b
                elif variant == "no_rest_end":
                    wave = wave[:, : max(2, wave.shape[1] // 2)]
            else:
                rng = np.random.default_rng(a)
                wave = rng.normal(0.0, b, size=(len(device.electrodes), c))
                wave = np.cumsum(wave, axis=1) * rng.uniform(0, 0.1)
            try:
                device.apply(wave)
            except (SafetyViolation, DeviceShutDown):
                assert bench_of(device).audit.total_samples == before
            assert_audit_within_limits(device)
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    assert_audit_within_limits(device)


# -- every kind of exit leaves the electrodes at 0 V --------------------------------------------


def energise(device: SafeDevice) -> None:
    """Leave the electrodes at a non-zero operating point (rest voltages moved off 0)."""
    point = device.rest_voltages().copy()
    point[:] = [0.3 if e.max_v >= 0.3 else e.max_v / 2 for e in device.electrodes]
    # Waveforms through the safety layer always end at rest, so energise the instrument directly
    # (slew-limited), as a crashed program or an instrument left on by hand would; then the
    # layer learns what it holds, as it does when it opens.
    backend = instrument_of(device)
    backend.play(ramp_samples(backend.present_voltages(), point, RATE, 100.0), RATE, None)
    device._knowledge.learn_at_open()


def test_normal_exit_ramps_to_zero(sim_config) -> None:
    device = make_device(sim_config(exact=True))
    with device:
        energise(device)
        assert np.abs(bench_of(device).applied_v).max() > 0.1
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    assert_audit_within_limits(device)


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_exception_and_keyboard_interrupt_ramp_to_zero(sim_config, exc_type) -> None:
    device = make_device(sim_config(exact=True))
    with pytest.raises(exc_type), device:
        energise(device)
        raise exc_type("boom")
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    assert_audit_within_limits(device)
    with pytest.raises(DeviceShutDown):
        device.apply(np.zeros((len(device.electrodes), 4)))


def test_shutdown_is_idempotent(sim_config) -> None:
    device = make_device(sim_config(exact=True))
    with device:
        energise(device)
        first = device.safe_shutdown()
        samples = bench_of(device).audit.total_samples
        second = device.safe_shutdown()
        assert first.ok and second.ok and second is first
        assert bench_of(device).audit.total_samples == samples


class FlakyBackend(SimulatedBackend):
    """Fault injection: one electrode's channel fails in every record that moves it, once armed."""

    fail_e4 = False

    def play(self, waveform_v: FloatArray, sample_rate_hz: float, cancel=None) -> None:
        if self.fail_e4:
            moving = np.ptp(waveform_v, axis=1) > 0
            if moving[4] or waveform_v[4, 0] != self.bench.applied_v[4]:
                raise RuntimeError("channel e4: device absent or unavailable")
        super().play(waveform_v, sample_rate_hz, cancel)


def test_backend_error_mid_run_shuts_down_the_other_electrodes_and_says_so(sim_config) -> None:
    device = make_device(sim_config(exact=True), FlakyBackend)
    backend = instrument_of(device)
    with pytest.raises(ShutdownFailed) as info, device:
        energise(device)
        backend.fail_e4 = True
        point = device.rest_voltages().copy()
        device.apply(plateau(device, point + 0.05))
    report = info.value.report
    assert not report.ok and report.failed_electrodes == ["e4"]
    assert "e4" in str(info.value) and "NOT verified at 0 V" in str(info.value)
    assert isinstance(info.value.__context__, RuntimeError)  # the original error is kept
    applied = backend.bench.applied_v
    for row, value in enumerate(applied):
        if row == 4:
            assert value != 0.0  # the failing channel could not be moved
        else:
            assert value == 0.0
    assert_audit_within_limits(device)


# -- processes: SIGTERM, SIGINT and interpreter exit --------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time, numpy as np
    sys.path.insert(0, {repo!r})
    from tests.conftest import config_from, NO_EFFECTS
    from labctl.connect import build_device
    from labctl.device.safety import shutdown_on_signals
    electrodes = [
        {{"name": f"e{{k}}", "role": "input" if k in (0, 6) else "control",
          "min_v": -1.2, "max_v": 1.2, "rest_v": 0.3}}
        for k in range(7)
    ]
    loaded = config_from("sim_dnpu.yaml", {{"setup": {{"electrodes": electrodes,
        "backend": {{"settings": {{"effects": NO_EFFECTS, "state_file": {state!r}}}}}}}}})
    mode = {mode!r}
    device = build_device(loaded)
    if mode == "atexit":
        device.open(); device.idle(0.01); print("ready", flush=True); sys.exit(0)
    with shutdown_on_signals():
        with device:
            device.idle(0.01)  # every record ends on the resting voltages: 0.3 V
            print("ready", flush=True)
            while True:
                device.idle(0.01)
                time.sleep(0.01)
    """
)


@pytest.mark.parametrize(
    ("mode", "sig", "expected_rc"),
    [("signal", signal.SIGTERM, 143), ("signal", signal.SIGINT, 1), ("atexit", None, 0)],
)
def test_process_exits_leave_electrodes_at_zero(tmp_path: Path, mode, sig, expected_rc) -> None:
    state = tmp_path / "state.json"
    script = CHILD.format(repo=str(REPO), state=str(state), mode=mode)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
    energised = json.loads(state.read_text())
    if sig is not None:
        time.sleep(0.05)
        os.kill(proc.pid, sig)
    rc = proc.wait(timeout=60)
    final = json.loads(state.read_text())
    assert max(abs(v) for v in energised["applied_v"]) > 0.1 or sig is None
    assert final["applied_v"] == [0.0] * 7, final
    assert final["open"] is False or mode == "atexit"
    if sig == signal.SIGINT:
        assert rc != 0  # KeyboardInterrupt: Python exits by SIGINT after the cleanup
    else:
        assert rc == expected_rc


def _independent_verdict(wave: np.ndarray, electrodes, limits: SafetyLimits, rate: float) -> bool:
    """Brute-force reading of the rules, sample by sample."""
    step = limits.slew_v_per_s / rate
    for row, e in enumerate(electrodes):
        values = [float(v) for v in wave[row]]
        if values[0] != e.rest_v or values[-1] != e.rest_v:
            return False
        for n, v in enumerate(values):
            if not (e.min_v <= v <= e.max_v) or abs(v) > limits.max_abs_v:
                return False
            if n and abs(v - values[n - 1]) > step * (1 + 1e-9):
                return False
    return True


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 40),
    scale=st.sampled_from([0.0, 0.005, 0.02, 0.5, 3.0]),
    rest_ends=st.booleans(),
)
def test_check_agrees_with_a_brute_force_reading_of_the_rules(
    sim_config, seed: int, n: int, scale: float, rest_ends: bool
) -> None:
    device = make_device(sim_config(exact=True))
    rng = np.random.default_rng(seed)
    wave = np.cumsum(rng.normal(0.0, scale, size=(7, n)), axis=1)
    if rest_ends:
        wave[:, 0] = 0.0
        wave[:, -1] = 0.0
    expected = _independent_verdict(wave, device.electrodes, device.limits, RATE)
    try:
        check_waveform(wave, RATE, device.electrodes, device.limits)
        verdict = True
    except SafetyViolation:
        verdict = False
    assert verdict == expected
