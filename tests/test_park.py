"""Park: every electrode to 0 V from any thread, within one record, and carry on after unpark."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labctl.config import LoadedConfig
from labctl.device import Acquisition
from labctl.device.safety import SafeDevice, SafetyLimits, ShutdownFailed
from labctl.run.control import RunController
from labctl.run.events import Event, IterationCompleted
from labctl.run.state import RunState
from labctl.training.session import execute, new_run
from simulated_hw.backend import SimulatedBackend
from tests.conftest import NO_EFFECTS, bench_of, config_from

RATE = 10_000.0


def loaded_at_rest(rest_v: float, realtime: bool = False, **settings: Any) -> LoadedConfig:
    electrodes = [
        {
            "name": f"e{k}",
            "role": "input" if k in (0, 6) else "control",
            "min_v": -1.2,
            "max_v": 1.2,
            "rest_v": rest_v,
        }
        for k in range(7)
    ]
    backend = {"effects": NO_EFFECTS, "realtime": realtime, **settings}
    return config_from(
        "sim_dnpu.yaml", {"setup": {"electrodes": electrodes, "backend": {"settings": backend}}}
    )


def make_device(loaded: LoadedConfig, cls: type[SimulatedBackend] = SimulatedBackend) -> SafeDevice:
    backend = cls(loaded.setup, loaded.backend_settings)
    return SafeDevice(backend, SafetyLimits(1.6, 200.0), RATE)


def held_record(device: SafeDevice, level_v: float, duration_s: float) -> np.ndarray:
    """rest -> ramp -> level held for duration_s -> ramp -> rest."""
    rest = device.rest_voltages()
    step = device.limits.slew_v_per_s / RATE * 0.5
    n_ramp = int(np.ceil(np.max(np.abs(level_v - rest)) / step)) + 1
    up = np.linspace(rest, np.full_like(rest, level_v), n_ramp, axis=1)
    hold = np.full((rest.size, round(duration_s * RATE)), level_v)
    return np.concatenate([up, hold, up[:, ::-1]], axis=1)


def assert_audit_within_limits(device: SafeDevice) -> None:
    audit = bench_of(device).audit
    for row, electrode in enumerate(device.electrodes):
        assert electrode.min_v - 1e-12 <= audit.min_v[row] <= audit.max_v[row]
        assert audit.max_v[row] <= electrode.max_v + 1e-12
        assert audit.max_slew_v_per_s[row] <= device.limits.slew_v_per_s * (1 + 1e-6)


def test_park_from_another_thread_cancels_a_1_s_record_and_the_record_resumes() -> None:
    device = make_device(loaded_at_rest(0.2, realtime=True))
    bench = bench_of(device)
    wave = held_record(device, 0.5, 1.0)
    record_s = wave.shape[1] / RATE
    results: dict[str, Any] = {}
    with device:
        device.idle(0.005)  # electrodes now hold their 0.2 V resting voltage
        start_s = bench.timebase.now_s

        def worker() -> None:
            try:
                results["acquisition"] = device.apply(wave)
            except BaseException as exc:  # reported below
                results["error"] = exc

        thread = threading.Thread(target=worker)
        thread.start()
        while bench.timebase.now_s < start_s + 0.2:  # the record is well under way
            threading.Event().wait(0.01)
        assert np.allclose(bench.applied_v, 0.5)
        report = device.park()
        parked_at_s = bench.timebase.now_s
        assert report.ok and device.is_parked
        np.testing.assert_array_equal(bench.applied_v, 0.0)
        # 0 V was reached before the record would have ended (simulated = real time here)
        assert parked_at_s < start_s + record_s
        thread.join(0.3)
        assert thread.is_alive()  # the cancelled record waits while parked
        np.testing.assert_array_equal(bench.applied_v, 0.0)
        device.unpark()
        thread.join(30)
        assert not thread.is_alive()
        assert "error" not in results, results.get("error")
        acquisition: Acquisition = results["acquisition"]
        assert acquisition.n_samples == wave.shape[1]  # replayed whole after unpark
        np.testing.assert_allclose(bench.applied_v, 0.2)
    np.testing.assert_array_equal(bench.applied_v, 0.0)
    assert_audit_within_limits(device)


def test_the_before_record_hook_runs_again_when_a_parked_record_is_replayed() -> None:
    """Lock-in buffers armed on the record's trigger are armed again for the replay."""
    device = make_device(loaded_at_rest(0.0, realtime=True))
    bench = bench_of(device)
    wave = held_record(device, 0.3, 0.6)
    armed: list[float] = []
    results: dict[str, Any] = {}
    with device:
        start_s = bench.timebase.now_s

        def worker() -> None:
            try:
                hook = lambda: armed.append(bench.timebase.now_s)  # noqa: E731
                results["acquisition"] = device.apply(wave, before_each_attempt=hook)
            except BaseException as exc:  # reported below
                results["error"] = exc

        thread = threading.Thread(target=worker)
        thread.start()
        while bench.timebase.now_s < start_s + 0.15:
            threading.Event().wait(0.01)
        assert device.park().ok
        assert len(armed) == 1
        device.unpark()
        thread.join(30)
        assert "error" not in results, results.get("error")
        assert len(armed) == 2 and armed[1] > armed[0]  # armed again, right before the replay
        assert results["acquisition"].n_samples == wave.shape[1]
    np.testing.assert_array_equal(bench.applied_v, 0.0)


def test_a_failing_before_record_hook_sends_nothing_and_keeps_the_device_usable() -> None:
    device = make_device(loaded_at_rest(0.0))
    bench = bench_of(device)
    wave = held_record(device, 0.3, 0.05)

    def refuse() -> None:
        raise ValueError("buffer too short")

    with device:
        plays = bench.audit.n_plays
        with pytest.raises(ValueError, match="buffer too short"):
            device.apply(wave, before_each_attempt=refuse)
        assert bench.audit.n_plays == plays and not device.is_shut_down
        assert device.apply(wave).n_samples == wave.shape[1]  # and it still drives
    np.testing.assert_array_equal(bench.applied_v, 0.0)


def test_a_training_run_continues_after_unpark(tmp_path: Path) -> None:
    loaded = config_from(
        "xor_sim.yaml",
        {
            "setup": {"backend": {"settings": {"effects": NO_EFFECTS}}},
            "homodyne": {"calibration": {"file": str(tmp_path / "xor.calibration.json")}},
            "run": {
                "max_iterations": 8,
                "loss_threshold": -1e9,
                "report": False,
                "directory": str(tmp_path / "runs"),
            },
        },
    )
    run = new_run(loaded)
    controller = RunController()
    third = threading.Event()
    parked = threading.Event()
    during_park: list[int] = []

    def on_event(event: Event) -> None:
        if isinstance(event, IterationCompleted):
            if parked.is_set():
                during_park.append(event.record.run_iteration)
            if event.record.run_iteration == 2:
                third.set()

    controller.bus.subscribe(on_event)
    devices: list[SafeDevice] = []
    controller.start()
    outcome: dict[str, RunState] = {}
    worker = threading.Thread(
        target=lambda: outcome.update(state=execute(run, controller, on_device=devices.append))
    )
    worker.start()
    assert third.wait(60)
    (device,) = devices
    device.park()
    parked.set()
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    count = run.store.iteration_count()
    worker.join(0.3)
    assert run.store.iteration_count() <= count + 1  # at most the one being committed
    assert bench_of(device).applied_v.max() == 0.0
    parked.clear()
    device.unpark()
    worker.join(120)
    assert outcome["state"] is RunState.FINISHED
    assert run.store.iteration_count() == 8
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    run.store.close()


def test_park_from_an_unknown_voltage_steps_to_zero_says_so_and_then_drives_again() -> None:
    loaded = loaded_at_rest(0.0, readback=False)
    device = make_device(loaded)
    bench = bench_of(device)
    bench.restore_held(np.full(7, 0.4))  # left by someone else; cannot be read back
    with device:
        assert device.unknown_electrodes() == [f"e{k}" for k in range(7)]
        with pytest.raises(ShutdownFailed) as info:
            device.park()
        assert info.value.report.stepped_electrodes == [f"e{k}" for k in range(7)]
        assert device.is_parked and device.unknown_electrodes() == []
        np.testing.assert_array_equal(bench.applied_v, 0.0)
        device.unpark()
        device.apply(held_record(device, 0.1, 0.01))  # known again: driving works
    assert device.last_shutdown_report is not None and device.last_shutdown_report.ok


def test_hands_on_parks_and_keeps_other_threads_off_the_electrodes() -> None:
    device = make_device(loaded_at_rest(0.3))
    bench = bench_of(device)
    done = threading.Event()
    with device:
        device.idle(0.002)
        with device.hands_on():
            np.testing.assert_array_equal(bench.applied_v, 0.0)
            worker = threading.Thread(target=lambda: (device.idle(0.002), done.set()))
            worker.start()
            assert not done.wait(0.3)  # blocked: a person is wiring
            np.testing.assert_array_equal(bench.applied_v, 0.0)
        assert done.wait(30)
        worker.join()
        np.testing.assert_allclose(bench.applied_v, 0.3)
    np.testing.assert_array_equal(bench.applied_v, 0.0)


class RecordingSwitch(SimulatedBackend):
    """Records what the electrodes hold when the reference resistor is switched in and out."""

    seen_at_switch: list[np.ndarray]

    @contextlib.contextmanager
    def reference_resistor(self, electrode_index: int, resistance_ohm: float) -> Iterator[None]:
        self.seen_at_switch = getattr(self, "seen_at_switch", [])
        self.seen_at_switch.append(self.bench.applied_v)
        with super().reference_resistor(electrode_index, resistance_ohm):
            yield
        self.seen_at_switch.append(self.bench.applied_v)


def test_the_reference_resistor_is_switched_parked() -> None:
    device = make_device(loaded_at_rest(0.3), RecordingSwitch)
    (switch,) = device.instruments.values()
    assert isinstance(switch, RecordingSwitch)
    with device:
        device.idle(0.002)
        with device.reference_resistor(1, 1e7):
            device.idle(0.002)  # measurements run unparked, at rest
            np.testing.assert_allclose(bench_of(device).applied_v, 0.3)
        assert not device.is_parked
    assert len(switch.seen_at_switch) == 2
    for held in switch.seen_at_switch:
        np.testing.assert_array_equal(held, 0.0)


def test_labctl_park_steps_unknown_electrodes_to_zero_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import yaml

    from labctl.cli import EXIT_OK, EXIT_SHUTDOWN_FAILED, main

    sim_state = tmp_path / "bench.json"
    sim_state.write_text(json.dumps({"applied_v": [0.0, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0]}))
    data = yaml.safe_load((Path(__file__).parents[1] / "configs" / "sim_dnpu.yaml").read_text())
    data["setup"]["backend"]["settings"].update(
        {"state_file": str(sim_state), "readback": False, "effects": NO_EFFECTS}
    )
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump(data))
    assert main(["park", str(config)]) == EXIT_SHUTDOWN_FAILED
    out = capsys.readouterr().out
    assert "voltage unknown on e0, e1" in out and "stepped to 0 V" in out
    assert json.loads(sim_state.read_text())["applied_v"] == [0.0] * 7
    # now the layer knows (its persisted state says 0 V): a second park is clean
    assert main(["park", str(config)]) == EXIT_OK
    assert "electrodes ramped to 0 V" in capsys.readouterr().out
