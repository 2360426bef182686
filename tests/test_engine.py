"""The homodyne engine on the simulated bench: accuracy, crosstalk, plans, curvature, phase."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from labctl.cli import main
from labctl.config import LoadedConfig
from labctl.connect import build_device
from labctl.device.safety import SafeDevice
from labctl.homodyne.calibrate import calibration_frequencies, measure_chain_response
from labctl.homodyne.engine import PROJECTION, SIGN_BY_PHASE, GradientEngine
from labctl.homodyne.plan import PlanError
from labctl.homodyne.report import cosine_similarity
from tests.conftest import CONFIGS, bench_of

# Operating points of the default simulated DNPU (seed 0) where |dI/dV| over the five controls
# is 60-170 nA/V: typical slopes of a working gate (tens of nA/V per electrode).
POINTS = np.array(
    [
        [1.2, -0.5, 0.6, 0.2, -0.8, -0.1, -1.2],
        [1.2, -0.7, 0.5, -0.8, -0.2, 0.0, -1.2],
        [-1.2, 0.2, 0.5, 0.9, -0.4, 0.3, -1.2],
    ]
)


def engine_for(
    device: SafeDevice, loaded: LoadedConfig, calibrated: bool = True, **homodyne
) -> GradientEngine:
    settings = loaded.config.homodyne.model_copy(update=homodyne)
    perturbed = loaded.config.perturbed_electrodes()
    uncalibrated = settings.model_copy(update={"phase": "sign"})
    engine = GradientEngine(device, loaded.setup, uncalibrated, perturbed, None)
    if not calibrated:
        return engine
    with device.reference_resistor(loaded.setup.electrode_index(perturbed[0]), 10e6):
        response = measure_chain_response(
            device, loaded, calibration_frequencies(engine.plan), settings.window_s
        )
    return GradientEngine(device, loaded.setup, settings, perturbed, response)


def truth(device: SafeDevice, engine: GradientEngine, point: np.ndarray) -> np.ndarray:
    exact = device.reference_gradient(point)
    assert exact is not None
    return exact[list(engine.electrode_indices)]


def test_parallel_gradient_matches_model_at_paper_noise(sim_config) -> None:
    loaded = sim_config()
    with build_device(loaded) as device:
        engine = engine_for(device, loaded)
        assert engine.phase_method == PROJECTION
        assert engine.plan.window_s == 0.1 and len(engine.electrodes) == 5
        batch = engine.measure(POINTS)
        for point, result in zip(POINTS, batch.results, strict=True):
            exact = truth(device, engine, point)
            assert np.linalg.norm(exact) > 50e-9
            assert cosine_similarity(result.gradient_a_per_v, exact) >= 0.999
            # the reported errors are honest: within 4.5 standard errors component-wise
            z = (result.gradient_a_per_v - exact) / result.stderr_a_per_v
            assert np.all(np.abs(z) < 4.5), z
            # and close to the noise limit sqrt(S/T)/A (S = 1e-23 A^2/Hz at 1 kHz, 1/f below)
            assert np.all(result.stderr_a_per_v < 2.0e-9)
            assert np.all(result.stderr_a_per_v > 0.5e-9)


def test_coherent_plan_has_no_crosstalk(sim_config) -> None:
    """A resistor on one electrode: only that electrode may show a gradient (1/R)."""
    loaded = sim_config(exact=True)
    with build_device(loaded) as device:
        engine = engine_for(device, loaded, calibrated=False)
        for k, index in enumerate(engine.electrode_indices):
            with device.reference_resistor(index, 5e6):
                result = engine.measure(POINTS[0]).results[0]
            expected = np.zeros(len(engine.electrodes))
            expected[k] = 1 / 5e6
            # ideal chain: the only error is the exact LS fit (no leakage between bins)
            np.testing.assert_allclose(result.gradient_a_per_v, expected, rtol=0, atol=1e-15)


def test_modes_agree_with_model(sim_config) -> None:
    loaded = sim_config({"setup": {"backend": {"settings": {"flicker_corner_hz": 1.0}}}})
    with build_device(loaded) as device:
        engine = engine_for(device, loaded)
        point = POINTS[1]
        exact = truth(device, engine, point)
        seconds = {}
        for mode in ("parallel", "sequential", "fd"):
            batch = engine.measure(point, mode=mode)
            seconds[mode] = batch.device_seconds
            assert cosine_similarity(batch.results[0].gradient_a_per_v, exact) > 0.995, mode
        # one record for all controls versus one per control
        assert seconds["sequential"] > 3 * seconds["parallel"]


def test_gradients_of_several_cases_in_one_record(sim_config) -> None:
    loaded = sim_config(exact=True)
    with build_device(loaded) as device:
        engine = engine_for(device, loaded)
        batch = engine.measure(POINTS)
        assert len(batch.records) == 1
        for point, result in zip(POINTS, batch.results, strict=True):
            exact = truth(device, engine, point)
            # ideal chain: only the O(A^2) averaging of the slope over the tone remains
            np.testing.assert_allclose(
                result.gradient_a_per_v, exact, atol=2e-3 * np.abs(exact).max()
            )
            dc = bench_of(device).model.current_a(point)[0]
            # the tones shift the DC level by 1/4 sum_k H_kk A_k^2 (method.md 2.1)
            hessian = device.reference_hessian(point)
            idx = list(engine.electrode_indices)
            shift = 0.25 * np.sum(np.diag(hessian)[idx] * engine.amplitudes_v**2)
            assert abs(shift) > 5e-12
            assert result.dc_current_a == pytest.approx(dc + shift, abs=0.1 * abs(shift))


def test_curvature_matches_the_hessian(sim_config) -> None:
    slow_slew = {"setup": {"safety": {"slew_v_per_s": 1000}}}
    loaded = sim_config(slow_slew, exact=True)
    with build_device(loaded) as device:
        engine = engine_for(device, loaded, curvature=True)
        point = POINTS[0]
        result = engine.measure(point).results[0]
        hessian = device.reference_hessian(point)
        idx = list(engine.electrode_indices)
        exact = hessian[np.ix_(idx, idx)]
        assert result.hessian_a_per_v2 is not None
        error = np.linalg.norm(result.hessian_a_per_v2 - exact) / np.linalg.norm(exact)
        assert error < 0.01
    # with the paper's noise: larger tones and a longer window, still within 5 %
    loaded = sim_config(slow_slew)
    with build_device(loaded) as device:
        engine = engine_for(device, loaded, curvature=True, amplitude_v=0.05, window_s=1.0)
        result = engine.measure(point).results[0]
        error = np.linalg.norm(result.hessian_a_per_v2 - exact) / np.linalg.norm(exact)
        assert error < 0.05


def lagging_chain(delay_samples: int, bandwidth_hz: float) -> dict:
    """Noise-free chain with the amplifier low-pass and an ADC filter delay switched on."""
    return {
        "setup": {
            "amplifier": {"bandwidth_hz": bandwidth_hz},
            "backend": {
                "settings": {
                    "adc_delay_samples": delay_samples,
                    "effects": {"bandwidth": True},
                }
            },
        }
    }


def chain_lag_deg(loaded: LoadedConfig, device: SafeDevice, engine: GradientEngine) -> np.ndarray:
    chain = bench_of(device).chain
    response = chain.tia_response(np.array(engine.plan.frequencies_hz), device.sample_rate_hz)
    return -np.degrees(np.angle(response))


def test_calibration_removes_chain_lag_up_to_80_degrees(sim_config) -> None:
    # hold + 2-sample ADC delay + 2 kHz amplifier: lags of 27-75 degrees over the plan
    loaded = sim_config(lagging_chain(delay_samples=2, bandwidth_hz=2000.0), exact=True)
    with build_device(loaded) as device:
        engine = engine_for(device, loaded)
        lag = chain_lag_deg(loaded, device, engine)
        assert 70 < lag.max() <= 80
        result = engine.measure(POINTS[0]).results[0]
        exact = truth(device, engine, POINTS[0])
        np.testing.assert_allclose(result.gradient_a_per_v, exact, atol=2e-3 * np.abs(exact).max())
        assert np.all(np.abs(result.quadrature_a_per_v) < 1e-3 * np.abs(exact).max())


def test_sign_by_phase_fails_beyond_90_degrees(sim_config) -> None:
    loaded = sim_config(lagging_chain(delay_samples=3, bandwidth_hz=1000.0), exact=True)
    with build_device(loaded) as device:
        raw = engine_for(device, loaded, calibrated=False)
        assert raw.phase_method == SIGN_BY_PHASE
        lag = chain_lag_deg(loaded, device, raw)
        beyond = lag > 90
        assert beyond.any() and (~beyond).any()
        point = POINTS[0]
        exact = truth(device, raw, point)
        measured = raw.measure(point).results[0].gradient_a_per_v
        big = np.abs(exact) > 1e-9
        assert np.all(np.sign(measured[beyond & big]) == -np.sign(exact[beyond & big]))
        assert np.all(np.sign(measured[~beyond & big]) == np.sign(exact[~beyond & big]))
        calibrated = engine_for(device, loaded)
        fixed = calibrated.measure(point).results[0].gradient_a_per_v
        assert cosine_similarity(fixed, exact) > 0.9999


def test_planner_rejects_colliding_explicit_plans(sim_config) -> None:
    loaded = sim_config(exact=True)
    with build_device(loaded) as device:
        lab_plan = [200.0, 360.0, 520.0, 760.0, 920.0]
        with pytest.raises(PlanError, match="2f0\\+f1"):
            engine_for(
                device,
                loaded,
                calibrated=False,
                frequencies_hz=lab_plan,
                window_s=0.05,
                mains_guard_bins=1,
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine = engine_for(
                device,
                loaded,
                calibrated=False,
                frequencies_hz=lab_plan,
                window_s=0.05,
                mains_guard_bins=1,
                insist=True,
            )
        assert engine.plan.frequencies_hz == tuple(lab_plan)
        assert any("2f0+f1" in str(w.message) for w in caught)
        good = [220.0, 270.0, 330.0, 520.0, 620.0]
        engine = engine_for(device, loaded, calibrated=False, frequencies_hz=good)
        assert engine.plan.collisions() == []


def test_every_engine_drive_respects_the_safety_limits(sim_config) -> None:
    loaded = sim_config(exact=True)
    with build_device(loaded) as device:
        engine = engine_for(device, loaded, curvature=True)
        for mode in ("parallel", "sequential", "fd"):
            engine.measure(POINTS, mode=mode)
        audit = bench_of(device).audit
        assert np.all(audit.max_slew_v_per_s <= device.limits.slew_v_per_s * (1 + 1e-6))
        for row, electrode in enumerate(device.electrodes):
            assert electrode.min_v - 1e-12 <= audit.min_v[row]
            assert audit.max_v[row] <= electrode.max_v + 1e-12


def test_points_without_room_for_the_tone_are_refused(sim_config) -> None:
    loaded = sim_config(exact=True)
    with build_device(loaded) as device:
        engine = engine_for(device, loaded, calibrated=False)
        point = POINTS[0].copy()
        point[1] = device.electrodes[1].max_v
        with pytest.raises(ValueError, match=r"no room for its 10\.0 mV tone"):
            engine.measure(point)


def test_gradient_cli_json_and_calibrate(tmp_path, capsys) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text((CONFIGS / "sim_dnpu.yaml").read_text())
    assert main(["gradient", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["phase_method"] == SIGN_BY_PHASE
    assert "no calibration" in report["calibration"]
    assert main(["calibrate", str(config)]) == 0
    assert (tmp_path / "sim.calibration.json").is_file()
    capsys.readouterr()
    assert main(["gradient", str(config), "--json", "--at", "e2=-0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["phase_method"] == PROJECTION
    assert report["operating_point_v"]["e2"] == -0.1
    assert report["cosine_similarity"] > 0.99
    assert len(report["gradient_a_per_v"]) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "e9=0.1"], "no electrode 'e9'"),
        (["--at", "e1=5"], "outside e1's range"),
        (["--at", "e1"], "expected ELECTRODE=VOLTS"),
    ],
)
def test_gradient_cli_bad_arguments_exit_2(args, message, capsys) -> None:
    assert main(["gradient", str(CONFIGS / "sim_dnpu.yaml"), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("demodulation", ["boxcar", "software_lockin"])
def test_other_demodulators_agree_on_a_coherent_plan(sim_config, demodulation) -> None:
    loaded = sim_config(exact=True)
    with build_device(loaded) as device:
        engine = engine_for(device, loaded, demodulation=demodulation, window_s=0.2)
        point = POINTS[1]
        exact = truth(device, engine, point)
        measured = engine.measure(point).results[0].gradient_a_per_v
        assert cosine_similarity(measured, exact) > 0.999


@pytest.mark.filterwarnings("ignore::labctl.homodyne.plan.PlanWarning")
def test_lockin_crosstalk_grows_as_tones_get_closer(sim_config) -> None:
    """The paper's point (Fig. 3b): with a finite lock-in filter, close tones leak."""
    loaded = sim_config(exact=True)
    errors = {}
    with build_device(loaded) as device:
        for spacing in (10.0, 40.0):
            freqs = [300.0 + k * spacing for k in range(5)]
            engine = engine_for(
                device,
                loaded,
                demodulation="software_lockin",
                frequencies_hz=freqs,
                insist=True,
                mains_hz=[],
                lockin_order=2,
                lockin_time_constant_s=0.01,
                window_s=0.1,
            )
            point = POINTS[1]
            exact = truth(device, engine, point)
            measured = engine.measure(point).results[0].gradient_a_per_v
            errors[spacing] = np.linalg.norm(measured - exact) / np.linalg.norm(exact)
    assert errors[10.0] > 3 * errors[40.0]
