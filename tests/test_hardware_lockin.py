"""Gradient extraction with hardware lock-ins (homodyne.demodulation: hardware_lockin).

Everything runs over the real protocols: the `nidaq` driver through nidaqmx to the simulated NI
gRPC Device Server, and the SR830/SR860 drivers through pyvisa-py to simulated lock-ins over
TCP, all on one simulated bench (`labctl sim-lab`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.cli import main
from labctl.config import ConfigError, load_config, merge_overrides
from labctl.connect import build_device
from labctl.homodyne.hardware import LockinReading, rc_enbw_hz, window_reading
from labctl.homodyne.session import open_engine
from labctl.run.control import RunController, RunState
from labctl.training.session import execute, new_run
from simulated_hw.lockin_server.lab import SimLab, load_lab_config, on_free_ports, start_lab
from tests.conftest import CONFIGS

POINT = {"e1": 0.2, "e2": -0.4, "e3": 0.6, "e4": -0.2, "e5": 0.3}
LABS = {"sr830": "cdaq_sr830s.yaml", "sr860": "cdaq_sr860s.yaml"}


def _start(model: str) -> SimLab:
    return start_lab(on_free_ports(load_lab_config(CONFIGS / "sim_lab" / LABS[model])))


@pytest.fixture(scope="module")
def labs() -> Iterator[dict[str, SimLab]]:
    started: dict[str, SimLab] = {}
    try:
        for model in LABS:
            started[model] = _start(model)
        yield started
    finally:
        for lab in started.values():
            lab.stop()


def lockin_config(
    lab: SimLab, model: str, tmp_path: Path, override: dict[str, Any] | None = None
) -> Path:
    """configs/sim_lockin_MODEL.yaml pointed at ``lab``'s servers, parked, written to tmp."""
    data = yaml.safe_load((CONFIGS / f"sim_lockin_{model}.yaml").read_text())
    instruments = data["setup"]["instruments"]
    instruments["daq"]["settings"]["grpc"]["port"] = lab.daq.port
    for k, server in enumerate(lab.lockins, start=1):
        instruments[f"li{k}"]["settings"]["resource"] = server.resource
    data["run"].update({"directory": str(tmp_path / "runs"), "report": False})
    data["homodyne"]["calibration"] = {"file": str(tmp_path / "chain.json")}
    data = merge_overrides(data, override or {})
    path = tmp_path / f"lockin_{model}.yaml"
    path.write_text(yaml.safe_dump(data))
    if not (tmp_path / "parked").exists():
        assert main(["park", str(path)]) == 3  # first open: AO has no readback
        (tmp_path / "parked").touch()
    return path


def measure_at_point(path: Path, override: dict[str, Any] | None = None) -> Any:
    loaded = load_config(path) if not override else None
    if override:
        data = merge_overrides(yaml.safe_load(path.read_text()), override)
        path.with_suffix(".alt.yaml").write_text(yaml.safe_dump(data))
        loaded = load_config(path.with_suffix(".alt.yaml"))
    assert loaded is not None
    with build_device(loaded) as device:
        engine, _ = open_engine(device, loaded)
        point = device.rest_voltages()
        for name, value in POINT.items():
            point[device.electrode_names.index(name)] = value
        batch = engine.measure(point[None, :])
        return batch, engine.plan.frequencies_hz


# -- pieces ----------------------------------------------------------------------------------------
def test_enbw_of_rc_cascades() -> None:
    tau = 0.01
    for slope, expected in ((6, 1 / 4), (12, 1 / 8), (18, 3 / 32), (24, 5 / 64)):
        assert rc_enbw_hz(tau, slope) == pytest.approx(expected / tau)


def test_window_reading_averages_the_window_and_counts_correlated_points() -> None:
    from labctl.device.protocols import DemodulatedTrace

    rng = np.random.default_rng(1)
    rate, tau = 512.0, 0.01
    x = 1e-9 + 1e-11 * rng.standard_normal(1024)
    y = np.full(1024, -2e-10)
    trace = DemodulatedTrace(rate, x, y, False, tau, 24)
    reading = window_reading(trace, 0.5, 1.0)
    inside = slice(256, 512)
    assert isinstance(reading, LockinReading)
    assert reading.n_points == 256
    assert reading.complex_amplitude_a == pytest.approx(
        math.sqrt(2) * complex(x[inside].mean(), -2e-10)
    )
    n_eff = 2 * rc_enbw_hz(tau, 24) * 0.5  # 7.8 independent points, not 256
    expected = math.sqrt(2) * np.std(x[inside], ddof=1) / math.sqrt(n_eff)
    assert reading.stderr_components_a[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="max_trace_rate_hz"):
        window_reading(trace, 0.5, 0.5015)  # one point


def test_configuration_cross_checks_name_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIGS / "sim_lockin_sr830.yaml").read_text())
    cases = [
        ({"setup": {"roles": {"sine_sources": {"e5": "li4"}}}}, "wired to both"),
        ({"setup": {"roles": {"demodulated_readouts": ["li1", "li2", "li3", "li4"]}}}, "li5"),
        ({"homodyne": {"mode": "fd"}}, "homodyne.mode 'fd'"),
        ({"homodyne": {"curvature": True}}, "curvature"),
        ({"homodyne": {"electrodes": ["e1", "e2"], "hardware_lockin": {"slope": 24}}}, "slope"),
    ]
    for override, words in cases:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(merge_overrides(data, override)))
        with pytest.raises(ConfigError, match=words):
            load_config(path)
        assert main(["validate", str(path)]) == 2
    sim = yaml.safe_load((CONFIGS / "sim_dnpu.yaml").read_text())
    path = tmp_path / "plain.yaml"
    plain = merge_overrides(sim, {"homodyne": {"demodulation": "hardware_lockin"}})
    path.write_text(yaml.safe_dump(plain))
    with pytest.raises(ConfigError, match="setup of instruments with roles"):
        load_config(path)


# -- against the sampled engine and the model ------------------------------------------------------
@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_lockin_gradient_agrees_with_sampled_hge_within_the_errors(
    labs: dict[str, SimLab], tmp_path: Path, mode: str
) -> None:
    # SR860s: their sine outputs go down to 1 nV, so the sampled engine's own tones at the same
    # frequencies are not disturbed by the lock-ins' residual sines (an SR830 keeps 4 mV rms).
    lab = labs["sr860"]
    path = lockin_config(lab, "sr860", tmp_path, {"homodyne": {"mode": mode}})
    lockin, frequencies = measure_at_point(path)
    sampled, _ = measure_at_point(
        path,
        {
            "homodyne": {
                "mode": "parallel",
                "demodulation": "least_squares",
                "frequencies_hz": list(frequencies),
                "insist": True,
            }
        },
    )
    g_lock, se_lock = lockin.gradients_a_per_v[0], lockin.stderr_a_per_v[0]
    g_samp, se_samp = sampled.gradients_a_per_v[0], sampled.stderr_a_per_v[0]
    assert not lockin.saturated
    assert np.all(se_lock > 0) and np.all(se_lock < 2e-9)  # errors measured, not zero
    z = np.abs(g_lock - g_samp) / np.hypot(se_lock, se_samp)
    assert np.all(z < 4.5), (g_lock, g_samp, z)
    truth = true_gradient(lab)
    strong = np.abs(truth) > 10e-9
    np.testing.assert_allclose(g_lock[strong], truth[strong], rtol=0.05)
    # device time: plateaus held for the lock-ins' settling (10 tau at 24 dB/oct) + the window
    settle = 10 * lockin_tau(lab)
    records = 5 if mode == "sequential" else 1
    assert lockin.device_seconds >= records * (settle + 0.15)
    # the sine outputs are back at their minimum and the electrodes at 0 V
    assert all(server.instrument.slvl_v == pytest.approx(1e-9) for server in lab.lockins)
    np.testing.assert_array_equal(lab.bench.applied_v, np.zeros(7))


def _point(lab: SimLab) -> np.ndarray:
    point = np.zeros(7)
    for name, value in POINT.items():
        point[int(name[1])] = value
    return point


def true_gradient(lab: SimLab) -> np.ndarray:
    """The hopping model's exact dI/dV (A/V) of the controls e1..e5 at POINT."""
    from simulated_hw.hopping import HoppingNetworkModel

    model = lab.bench.model
    assert isinstance(model, HoppingNetworkModel)
    return np.asarray(model.gradient_a_per_v(_point(lab)[None, :])[0][1:6])


def lockin_tau(lab: SimLab) -> float:
    return float(lab.lockins[0].instrument._time_constant_s())


def test_sr830_gradient_matches_the_model(labs: dict[str, SimLab], tmp_path: Path) -> None:
    lab = labs["sr830"]
    path = lockin_config(lab, "sr830", tmp_path)
    batch, _ = measure_at_point(path)
    truth = true_gradient(lab)
    g, se = batch.gradients_a_per_v[0], batch.stderr_a_per_v[0]
    strong = np.abs(truth) > 10e-9
    np.testing.assert_allclose(g[strong], truth[strong], rtol=0.05)
    assert np.all(np.abs(g - truth) < 5 * se + 0.05 * np.abs(truth))
    # the SR830's sine cannot go below 4 mV rms: that is where each one is left
    assert all(server.instrument.slvl_v == pytest.approx(0.004) for server in lab.lockins)


# -- training --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("model", "mode"), [("sr860", "parallel"), ("sr830", "sequential")])
def test_a_gate_trains_in_lockin_mode(
    labs: dict[str, SimLab], tmp_path: Path, model: str, mode: str
) -> None:
    lab = labs[model]
    path = lockin_config(
        lab,
        model,
        tmp_path,
        {"homodyne": {"mode": mode}, "task": {"name": "OR"}, "run": {"max_iterations": 60}},
    )
    run = new_run(load_config(path))
    controller = RunController()
    controller.start()
    assert execute(run, controller) is RunState.FINISHED
    records = run.store.iterations(include_raw=False)
    assert run.outcome is not None and run.outcome.solved, run.outcome
    assert records[0].accuracy < 1.0  # it had something to learn
    assert all(np.all(np.isfinite(r.gradients_a_per_v)) for r in records)
    # device time counts the lock-ins' settling: >= 4 points x (10 tau + window) per record
    per_record = 4 * (10 * lockin_tau(lab) + 0.15)
    n_records = 5 if mode == "sequential" else 1
    assert records[-1].device_seconds >= len(records) * n_records * per_record
    assert run.shutdown_report is not None and run.shutdown_report.ok
    np.testing.assert_array_equal(lab.bench.applied_v, np.zeros(7))
    run.store.close()


# -- bad values ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"hardware_lockin": {"sensitivity_a": 1.0e-3}}, "sensitivity"),
        ({"hardware_lockin": {"time_constant_s": 1.0e6}}, "time constant"),
        ({"frequencies_hz": [110.0, 170.0, 230.0, 290.0, 2.0e5], "insist": True}, "Hz"),
        ({"amplitude_v": 0.3}, "slew"),
    ],
)
def test_bad_values_leave_the_lockins_safe_and_say_why(
    labs: dict[str, SimLab], tmp_path: Path, capsys: Any, override: dict[str, Any], words: str
) -> None:
    lab = labs["sr830"]
    path = lockin_config(lab, "sr830", tmp_path, {"homodyne": override})
    status = main(["gradient", str(path)])
    err = capsys.readouterr().err
    assert status in (1, 2), err
    assert words in err, err
    assert all(server.instrument.slvl_v == pytest.approx(0.004) for server in lab.lockins)
    np.testing.assert_array_equal(lab.bench.applied_v, np.zeros(7))


def test_a_lockin_lost_mid_session_ends_the_measurement_loudly_and_safely(tmp_path: Path) -> None:
    """A dropped connection to one lock-in: a clear error naming it, 0 V on every electrode, the
    other lock-ins' sines at their minimum, and a shutdown report that says the lost sine could
    not be verified off."""
    from labctl.device import BackendError
    from labctl.device.safety import ShutdownFailed

    with _start("sr860") as lab:
        path = lockin_config(lab, "sr860", tmp_path)
        loaded = load_config(path)
        device = build_device(loaded)
        with pytest.raises(ShutdownFailed) as failed, device:
            engine, _ = open_engine(device, loaded)
            point = device.rest_voltages()
            point[1:6] = list(POINT.values())
            engine.measure(point[None, :])  # works
            lab.lockins[2].stop()  # li3's cable is pulled (the unit powers down)
            with pytest.raises(BackendError, match="closed by the instrument") as lost:
                engine.measure(point[None, :])
            assert lab.lockins[2].resource.split("::")[2] in str(lost.value)
        report = failed.value.report
        assert not report.ok
        assert any("e3" in error or "li3" in error for error in report.errors), report.errors
        np.testing.assert_array_equal(lab.bench.applied_v, np.zeros(7))
        for k, server in enumerate(lab.lockins):
            if k != 2:
                assert server.instrument.slvl_v == pytest.approx(1e-9)


def test_a_hung_lockin_times_out_with_its_name_and_the_electrodes_go_to_0_v(
    tmp_path: Path,
) -> None:
    """A lock-in that stops answering (VISA timeout): the error names it and the timeout, the
    electrodes end at 0 V, and the shutdown says its sine could not be verified off."""
    from labctl.device import BackendError
    from labctl.device.safety import ShutdownFailed

    with _start("sr860") as lab:
        override = {
            "setup": {
                "instruments": {f"li{k}": {"settings": {"timeout_s": 0.5}} for k in range(1, 6)}
            }
        }
        path = lockin_config(lab, "sr860", tmp_path, override)
        loaded = load_config(path)
        device = build_device(loaded)
        with pytest.raises(ShutdownFailed) as failed, device:
            engine, _ = open_engine(device, loaded)
            point = device.rest_voltages()
            point[1:6] = list(POINT.values())
            engine.measure(point[None, :])
            lab.lockins[1].unresponsive.set()
            with pytest.raises(BackendError, match="tim") as hung:
                engine.measure(point[None, :])
            assert lab.lockins[1].resource.split("::")[2] in str(hung.value)
        assert any("e2" in error for error in failed.value.report.errors)
        np.testing.assert_array_equal(lab.bench.applied_v, np.zeros(7))
        lab.lockins[1].unresponsive.clear()


@pytest.mark.slow
def test_lockin_overload_in_a_run_is_flagged_and_restarts_are_bounded(
    labs: dict[str, SimLab], tmp_path: Path
) -> None:
    """A full scale far below the signal: every reading overloads, the run says so, restarts
    on saturation at most run.max_restarts times, and ends with the electrodes at 0 V."""
    lab = labs["sr860"]
    override = {
        "homodyne": {"hardware_lockin": {"sensitivity_a": 1.0e-12}},
        "run": {"max_iterations": 6, "max_restarts": 2, "accuracy_hold_iterations": None},
    }
    run = new_run(load_config(lockin_config(lab, "sr860", tmp_path, override)))
    controller = RunController()
    controller.start()
    execute(run, controller)
    records = run.store.iterations(include_raw=False)
    assert len(records) == 6
    assert all(r.extra["saturated"] for r in records)
    assert max(r.restart_index for r in records) == 2
    np.testing.assert_array_equal(lab.bench.applied_v, np.zeros(7))
    assert all(server.instrument.slvl_v == pytest.approx(1e-9) for server in lab.lockins)
    run.store.close()


# -- tones from the DAQ, read by one lock-in on an external reference ------------------------------
DAQ_TONES = "daq_sr830"  # sim_lockin_daq_sr830.yaml on sim_lab/cdaq_one_lockin.yaml
NOT_DAQ_TONES = {
    "tones": "lockin_sine",
    "lockin": None,
    "reference_counter": None,
    "harmonics": None,
}


@pytest.fixture(scope="module")
def one_lab() -> Iterator[SimLab]:
    lab = start_lab(on_free_ports(load_lab_config(CONFIGS / "sim_lab" / "cdaq_one_lockin.yaml")))
    try:
        yield lab
    finally:
        lab.stop()


def test_harmonic_plans_keep_intermodulation_off_every_read_harmonic() -> None:
    from labctl.homodyne.harmonic_plan import plan_harmonics, reference_of
    from labctl.homodyne.plan import PlanError, find_collisions

    plan = plan_harmonics(10_000.0, 0.2, 5, band_hz=(100.0, 1000.0), min_spacing_hz=50.0)
    f0, harmonics = plan.reference_hz, plan.harmonics
    assert plan.frequencies_hz == pytest.approx([n * f0 for n in harmonics])
    assert all(100.0 <= f <= 1000.0 for f in plan.frequencies_hz)
    assert min(np.diff(sorted(plan.frequencies_hz))) >= 50.0
    assert find_collisions(harmonics, max_order=3) == []  # no product on a read harmonic
    assert plan.plan.collisions() == []
    for f in plan.frequencies_hz:  # off the mains by more than the guard (2 bins of 5 Hz)
        assert min(abs(f - h * m) for m in (50.0, 60.0) for h in range(1, 25)) > 10.0
    assert reference_of(plan.plan) == (pytest.approx(f0), harmonics)
    # second order only admits a higher reference; an impossible request says what to relax
    second = plan_harmonics(
        10_000.0, 0.2, 5, band_hz=(100.0, 1000.0), min_spacing_hz=50.0, max_order=2
    )
    assert second.reference_hz >= f0
    with pytest.raises(PlanError, match="max_harmonic"):
        plan_harmonics(10_000.0, 0.2, 5, band_hz=(100.0, 1000.0), max_harmonic=6)


def amplifier_chain() -> Any:
    """The simulated chain's response: the transimpedance amplifier's first-order 2 kHz pole."""
    from labctl.homodyne.calibration import ChainResponse

    f = np.arange(50.0, 2001.0, 5.0)
    return ChainResponse(f, 1.0 / (1.0 + 1j * f / 2000.0), "resistor")


def measure_projected(path: Path, override: dict[str, Any]) -> Any:
    """One gradient at POINT with phase projection on :func:`amplifier_chain`."""
    data = merge_overrides(yaml.safe_load(path.read_text()), override)
    alt = path.with_suffix(".projected.yaml")
    alt.write_text(yaml.safe_dump(data))
    loaded = load_config(alt)
    with build_device(loaded) as device:
        engine, _ = open_engine(device, loaded, use_calibration=False)
        engine.set_calibration(amplifier_chain())
        point = device.rest_voltages()
        for name, value in POINT.items():
            point[device.electrode_names.index(name)] = value
        return engine.measure(point[None, :]), engine.plan.frequencies_hz


def test_daq_tones_read_by_one_lockin_agree_with_sampled_hge(
    one_lab: SimLab, tmp_path: Path
) -> None:
    lab = one_lab
    server = lab.lockins[0]
    made = lab.daq.calls.count("CreateCOPulseChanFreq")
    path = lockin_config(lab, DAQ_TONES, tmp_path)
    lockin, frequencies = measure_projected(path, {})
    # one reference for all five tones: the counter task was made once, the lock-in's harmonic
    # moved between electrodes (it reads the last one's now), its sine stayed at its minimum
    assert lab.daq.calls.count("CreateCOPulseChanFreq") == made + 1
    f0 = 15.0
    assert frequencies == pytest.approx([f0 * n for n in (9, 21, 25, 31, 38)])
    assert server.instrument._external_mode() and server.instrument._harmonic() == 38
    assert server.instrument.slvl_v == pytest.approx(0.004)
    sampled, _ = measure_projected(
        path,
        {
            "homodyne": {
                "demodulation": "least_squares",
                "frequencies_hz": list(frequencies),
                "insist": True,
                "hardware_lockin": NOT_DAQ_TONES,
            }
        },
    )
    g_lock, se_lock = lockin.gradients_a_per_v[0], lockin.stderr_a_per_v[0]
    g_samp, se_samp = sampled.gradients_a_per_v[0], sampled.stderr_a_per_v[0]
    assert lockin.results[0].phase_method == "projection" and not lockin.saturated
    assert np.all(se_lock > 0) and np.all(se_lock < 2e-9)
    z = np.abs(g_lock - g_samp) / np.hypot(se_lock, se_samp)
    assert np.all(z < 4.5), (g_lock, g_samp, z)
    # the phase is the sampled engine's: in-phase and quadrature parts agree (the analytic
    # chain leaves the same residual phase in both, the converters' delays)
    q_lock = lockin.results[0].quadrature_a_per_v
    q_samp = sampled.results[0].quadrature_a_per_v
    zq = np.abs(q_lock - q_samp) / np.hypot(se_lock, se_samp)
    assert np.all(zq < 4.5), (q_lock, q_samp, zq)
    truth = true_gradient(lab)
    strong = np.abs(truth) > 10e-9
    np.testing.assert_allclose(g_lock[strong], truth[strong], rtol=0.08)
    # five records, each plateau held for the lock-in's settling (10 tau) and the window
    assert lockin.device_seconds >= 5 * (10 * lockin_tau(lab) + 0.2)
    np.testing.assert_array_equal(lab.bench.applied_v, np.zeros(7))


def test_a_reading_turned_into_the_tones_frame_turns_its_errors_with_it() -> None:
    from labctl.homodyne.hardware import _rotated

    reading = LockinReading(complex(3e-9, 1e-9), (1e-11, 4e-11), 50, False)
    quarter = _rotated(reading, 1j)  # 90°: X and Y swap places (and errors)
    assert quarter.complex_amplitude_a == pytest.approx(complex(-1e-9, 3e-9))
    assert quarter.stderr_components_a == pytest.approx((4e-11, 1e-11))
    eighth = _rotated(reading, complex(math.cos(0.5), math.sin(0.5)))
    assert abs(eighth.complex_amplitude_a) == pytest.approx(abs(reading.complex_amplitude_a))
    assert np.hypot(*eighth.stderr_components_a) == pytest.approx(np.hypot(1e-11, 4e-11))


def test_without_harmonics_every_tone_moves_the_reference(one_lab: SimLab, tmp_path: Path) -> None:
    lab = one_lab
    made = lab.daq.calls.count("CreateCOPulseChanFreq")
    path = lockin_config(
        lab, DAQ_TONES, tmp_path, {"homodyne": {"hardware_lockin": {"harmonics": False}}}
    )
    batch, _ = measure_at_point(path)
    assert lab.daq.calls.count("CreateCOPulseChanFreq") == made + 5  # one counter per tone
    assert lab.lockins[0].instrument._harmonic() == 1
    truth = true_gradient(lab)
    strong = np.abs(truth) > 10e-9
    np.testing.assert_allclose(batch.gradients_a_per_v[0][strong], truth[strong], rtol=0.12)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"homodyne": {"mode": "parallel"}}, "use mode: sequential"),
        ({"homodyne": {"hardware_lockin": {"lockin": None}}}, "hardware_lockin.lockin is needed"),
        ({"homodyne": {"hardware_lockin": {"lockin": "li9"}}}, "not in setup.roles"),
        (
            {"homodyne": {"hardware_lockin": {"reference_counter": "cDAQ1Mod1/ao0"}}},
            "reference_counter",
        ),
        ({"homodyne": {"frequencies_hz": [300.0, 400.0, 500.0, 600.0, 900.0]}}, "harmonic plan"),
        ({"homodyne": {"hardware_lockin": {"max_harmonic": 6}}}, "max_harmonic"),
        ({"homodyne": {"demodulation": "least_squares"}}, "needs demodulation: hardware_lockin"),
        (
            {"homodyne": {"hardware_lockin": {**NOT_DAQ_TONES, "harmonics": True}}},
            "hardware_lockin.harmonics applies to tones: daq only",
        ),
    ],
)
def test_bad_daq_tone_configs_exit_2_before_any_instrument_is_touched(
    one_lab: SimLab, tmp_path: Path, capsys: Any, override: dict[str, Any], words: str
) -> None:
    lab = one_lab
    good = lockin_config(lab, DAQ_TONES, tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(merge_overrides(yaml.safe_load(good.read_text()), override)))
    calls, commands = len(lab.daq.calls), len(lab.lockins[0].commands)
    capsys.readouterr()
    assert main(["gradient", str(bad)]) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert len(lab.daq.calls) == calls and len(lab.lockins[0].commands) == commands


def test_a_source_without_a_counter_output_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIGS / "sim_lockin_daq_sr830.yaml").read_text())
    data["setup"]["instruments"]["daq"] = {"backend": "simulated", "settings": {}}
    path = tmp_path / "no_counter.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="no counter output"):
        load_config(path)


@pytest.mark.slow
def test_a_gate_trains_on_daq_tones_read_by_one_lockin(one_lab: SimLab, tmp_path: Path) -> None:
    lab = one_lab
    path = lockin_config(
        lab, DAQ_TONES, tmp_path, {"task": {"name": "OR"}, "run": {"max_iterations": 40}}
    )
    run = new_run(load_config(path))
    controller = RunController()
    controller.start()
    assert execute(run, controller) is RunState.FINISHED
    records = run.store.iterations(include_raw=False)
    assert run.outcome is not None and run.outcome.solved, run.outcome
    assert records[0].accuracy < 1.0
    assert all(np.all(np.isfinite(r.gradients_a_per_v)) for r in records)
    assert run.shutdown_report is not None and run.shutdown_report.ok
    np.testing.assert_array_equal(lab.bench.applied_v, np.zeros(7))
    assert lab.lockins[0].instrument.slvl_v == pytest.approx(0.004)
    run.store.close()
