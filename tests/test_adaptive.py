"""Adaptive tone amplitudes on the simulated DNPU: SNR, bounds, trade-off direction, accuracy."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from labctl.config import AdaptiveAmplitudeConfig, LoadedConfig
from labctl.connect import build_device
from labctl.device.safety import SafeDevice
from labctl.homodyne.adaptive import (
    AmplitudeLimits,
    AmplitudeProbe,
    apply_adaptive_amplitudes,
    choose_amplitudes,
    plan_amplitudes,
    probe_amplitude_response,
)
from labctl.homodyne.calibrate import calibration_frequencies, measure_chain_response
from labctl.homodyne.engine import GradientEngine
from tests.conftest import NO_EFFECTS, config_from

NA = 1e9  # A/V -> nA/V


def operating_points(n: int, seed: int) -> np.ndarray:
    """Random operating points of the 7-electrode DNPU, controls well inside their ranges."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1.0, 1.0, size=(n, 7))
    points[:, 1:6] = rng.uniform(-0.8, 0.8, size=(n, 5))
    return points


# Every point has a control with |dI/dV| > 25 nA/V (five in all) on the default device.
POINTS = operating_points(4, seed=18)


def default_config(override: dict | None = None) -> LoadedConfig:
    return config_from("sim_dnpu.yaml", override)


@contextmanager
def calibrated_engine(loaded: LoadedConfig) -> Iterator[tuple[SafeDevice, GradientEngine]]:
    """An opened device and an engine with a chain calibration (phase projection)."""
    settings = loaded.config.homodyne
    perturbed = loaded.config.perturbed_electrodes()
    with build_device(loaded) as device:
        bare = GradientEngine(
            device, loaded.setup, settings.model_copy(update={"phase": "sign"}), perturbed
        )
        with device.reference_resistor(loaded.setup.electrode_index(perturbed[0]), 10e6):
            response = measure_chain_response(
                device, loaded, calibration_frequencies(bare.plan), settings.window_s
            )
        yield device, GradientEngine(device, loaded.setup, settings, perturbed, response)


def truth(device: SafeDevice, engine: GradientEngine, point: np.ndarray) -> np.ndarray:
    exact = device.reference_gradient(point)
    assert exact is not None
    return exact[list(engine.electrode_indices)]


def measure_windows(engine: GradientEngine, point: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Gradients and standard errors of ``n`` windows at ``point``, shape ``(n, n_perturbed)``."""
    batch = engine.measure(np.repeat(point[None, :], n, axis=0), mode="parallel")
    return batch.gradients_a_per_v, batch.stderr_a_per_v


# -- on the simulated DNPU at the paper's noise level -------------------------------------------


def test_large_gradients_reach_the_target_snr_within_bounds() -> None:
    settings = AdaptiveAmplitudeConfig(target_snr=20.0)
    loaded = default_config()
    checked = 0
    with calibrated_engine(loaded) as (device, engine):
        rows = [loaded.setup.electrodes[i] for i in engine.electrode_indices]
        limits = AmplitudeLimits(  # the setup's own ranges, independent of the engine's padding
            min_v=np.array([e.min_v for e in rows]),
            max_v=np.array([e.max_v for e in rows]),
            slew_v_per_s=loaded.setup.safety.slew_v_per_s,
        )
        assert np.allclose(AmplitudeLimits.from_engine(engine).min_v, limits.min_v)
        frequencies = np.array(engine.plan.frequencies_hz)
        for point in POINTS:
            exact = truth(device, engine, point)
            choice = apply_adaptive_amplitudes(engine, point, settings)
            a = choice.amplitudes_v
            assert np.array_equal(engine.amplitudes_v, a)
            # bounds: configured interval, DC +/- A inside the range, tone slew within budget
            assert np.all(a >= settings.min_amplitude_v - 1e-15)
            assert np.all(a <= settings.max_amplitude_v + 1e-15)
            dc = point[list(engine.electrode_indices)]
            assert np.all(dc - a > limits.min_v) and np.all(dc + a < limits.max_v)
            assert np.all(2 * math.pi * frequencies * a <= 0.5 * limits.slew_v_per_s + 1e-12)
            assert choice.probe_device_seconds > 0 and len(choice.notes) == 5
            gradients, stderr = measure_windows(engine, point, 8)
            measured_snr = np.mean(np.abs(gradients) / stderr, axis=0)
            for k in range(5):
                if abs(exact[k]) < 25e-9:
                    continue
                # large gradients: the SNR target is reachable well inside the bias bound
                assert choice.binding[k] in ("snr", "min_amplitude_v"), choice.notes[k]
                assert choice.predicted_snr[k] >= settings.target_snr * (1 - 1e-9)
                # 8 windows at SNR ~20 average to within a few percent; 15 % slack for the
                # noise of the probe's own estimates of s and g
                assert measured_snr[k] >= 0.85 * settings.target_snr, (k, measured_snr)
                checked += 1
    assert checked >= 4  # the points do contain large gradients


def test_adapted_amplitudes_beat_a_poor_fixed_amplitude() -> None:
    """Averaged over points and windows, the adapted gradient is closer to the model truth."""
    settings = AdaptiveAmplitudeConfig()
    errors: dict[str, list[np.ndarray]] = {"fixed": [], "adaptive": []}
    with calibrated_engine(default_config()) as (device, engine):
        for point in POINTS:
            exact = truth(device, engine, point)
            engine.amplitudes_v = np.full(5, 0.002)
            fixed, _ = measure_windows(engine, point, 6)
            apply_adaptive_amplitudes(engine, point, settings)
            adapted, _ = measure_windows(engine, point, 6)
            errors["fixed"].append(fixed - exact)
            errors["adaptive"].append(adapted - exact)
    rms = {key: float(np.sqrt(np.mean(np.square(value)))) for key, value in errors.items()}
    # the 2 mV error is ~5 nA/V per component; adapting removes most of it (the ratio was
    # 0.19-0.53 on 12 other device seeds)
    assert rms["adaptive"] <= 0.75 * rms["fixed"], rms


def test_settings_move_amplitudes_in_the_expected_direction() -> None:
    """Same seed, same probes: a looser bias bound raises, a lower target lowers amplitudes."""
    base = AdaptiveAmplitudeConfig(target_snr=20.0, max_bias_fraction=0.02)
    variants = {
        "base": base,
        "looser_bias": base.model_copy(update={"max_bias_fraction": 0.2}),
        "lower_target": base.model_copy(update={"target_snr": 8.0}),
    }
    point = POINTS[0]
    choices = {}
    for name, settings in variants.items():
        with calibrated_engine(default_config()) as (_, engine):
            choices[name] = choose_amplitudes(engine, point, settings)
    probes = [c.probe.probe_gradients_a_per_v for c in choices.values()]
    assert all(np.array_equal(probes[0], p) for p in probes[1:])  # bit-for-bit reproducible
    a = {name: c.amplitudes_v for name, c in choices.items()}
    assert np.all(a["looser_bias"] >= a["base"])
    bias_bound = [k for k, reason in enumerate(choices["base"].binding) if reason == "bias"]
    assert bias_bound, choices["base"].notes
    assert np.all(a["looser_bias"][bias_bound] > a["base"][bias_bound])
    assert np.all(a["lower_target"] <= a["base"])
    assert np.any(a["lower_target"] < a["base"])
    # and the same holds on many operating points, from one probe each
    with calibrated_engine(default_config()) as (_, engine):
        for point in operating_points(6, seed=5):
            probe = probe_amplitude_response(engine, point, base)
            chosen = {name: plan_amplitudes(probe, s).amplitudes_v for name, s in variants.items()}
            assert np.all(chosen["looser_bias"] >= chosen["base"])
            assert np.all(chosen["lower_target"] <= chosen["base"])


def test_amplitudes_respect_a_nearby_range_edge_and_the_engine_is_restored() -> None:
    settings = AdaptiveAmplitudeConfig(target_snr=1000.0)  # wants as much amplitude as allowed
    point = POINTS[1].copy()
    point[2] = 1.2 - 0.0015  # e2: 1.5 mV below its upper limit, less than min_amplitude_v
    with calibrated_engine(default_config()) as (_, engine):
        before = engine.amplitudes_v
        choice = choose_amplitudes(engine, point, settings)
        assert np.array_equal(engine.amplitudes_v, before)
        k = engine.electrodes.index("e2")
        assert choice.binding[k] == "range"
        assert 0.00149 < choice.amplitudes_v[k] < 0.0015  # the range beats min_amplitude_v
        assert "below min_amplitude_v" in choice.notes[k]
        # the slowest tone is capped by max_amplitude_v, the fastest by the slew budget
        fastest = int(np.argmax(engine.plan.frequencies_hz))
        assert choice.probe.max_reason[fastest] == "slew"
        engine.amplitudes_v = choice.amplitudes_v
        engine.measure(point)  # the engine accepts the choice at this point
        edge = point.copy()
        edge[2] = 1.2
        with pytest.raises(ValueError, match="no room for a tone"):
            choose_amplitudes(engine, edge, settings)
        with pytest.raises(ValueError, match="probe_ratio"):
            choose_amplitudes(engine, point, settings, probe_ratio=1.0)


def test_probe_recovers_curvature_bias_on_a_noise_free_device() -> None:
    """Without noise, extrapolating g(A) = g + b·A² to A = 0 removes the curvature bias."""
    loaded = default_config({"setup": {"backend": {"settings": {"effects": NO_EFFECTS}}}})
    settings = AdaptiveAmplitudeConfig(max_amplitude_v=0.05)
    with calibrated_engine(loaded) as (device, engine):
        for point in POINTS[:2]:
            exact = truth(device, engine, point)
            # bias_z ~ 0: every curvature counts as significant, so g is extrapolated
            probe = probe_amplitude_response(engine, point, settings, bias_z=1e-9)
            assert np.all(probe.curvature_significant)
            high_error = np.linalg.norm(probe.probe_gradients_a_per_v[1] - exact)
            assert high_error > 1e-11  # the 25-50 mV probe is visibly biased
            assert np.linalg.norm(probe.gradient_a_per_v - exact) < 0.05 * high_error


# -- the choice rule on constructed probes ------------------------------------------------------


def constructed_probe(
    gradient: list[float], curvature: list[float], curvature_se: float = 1e-8
) -> AmplitudeProbe:
    n = len(gradient)
    s = np.full(n, 1e-11)  # sd(g) = 1 nA/V at 10 mV
    return AmplitudeProbe(
        electrodes=tuple(f"c{k}" for k in range(n)),
        operating_point_v=np.zeros(n),
        probe_amplitudes_v=np.array([np.full(n, 0.01), np.full(n, 0.02)]),
        probe_gradients_a_per_v=np.array([gradient, gradient]),
        probe_stderr_a_per_v=np.array([s / 0.01, s / 0.02]),
        noise_scale_a=s,
        curvature_a_per_v3=np.array(curvature),
        curvature_stderr_a_per_v3=np.full(n, curvature_se),
        gradient_a_per_v=np.array(gradient),
        gradient_stderr_a_per_v=np.full(n, 0.4e-9),
        max_amplitude_v=np.array([0.05, 0.05, 0.05, 0.05, 0.003]),
        max_reason=("max_amplitude_v",) * 4 + ("slew",),
        frequencies_hz=np.linspace(200.0, 600.0, n),
        device_seconds=0.5,
        bias_z=2.0,
    )


def test_choice_rule_formulas_and_conflicts() -> None:
    settings = AdaptiveAmplitudeConfig(target_snr=20.0, max_bias_fraction=0.02)
    # c0: SNR-limited; c1: bias wins the conflict; c2: unresolved gradient; c3: tiny amplitude
    # needed (floor); c4: slew cap below what the SNR wants
    probe = constructed_probe(
        gradient=[20e-9, 20e-9, 0.2e-9, 400e-9, 20e-9],
        curvature=[1e-6, 2e-5, 1e-5, 1e-5, 1e-5],
    )
    choice = plan_amplitudes(probe, settings)
    a = choice.amplitudes_v
    assert choice.binding == ("snr", "bias", "noise-bias", "min_amplitude_v", "slew")
    assert a[0] == pytest.approx(20 * 1e-11 / 20e-9)  # A = SNR* s / |g| = 10 mV
    assert choice.predicted_snr[0] == pytest.approx(20.0)
    assert a[1] == pytest.approx(math.sqrt(0.02 * 20e-9 / 2e-5))  # b A² = 2 % of |g|
    assert choice.predicted_bias_fraction[1] == pytest.approx(0.02)
    assert "shortfall" in choice.notes[1] and choice.predicted_snr[1] < 20
    assert a[2] == pytest.approx((1e-22 / (2 * (1e-5) ** 2)) ** (1 / 6))
    assert "not resolved" in choice.notes[2]
    assert a[3] == settings.min_amplitude_v and choice.predicted_snr[3] > 20
    assert a[4] == 0.003 and "shortfall" in choice.notes[4]
    # an unresolved curvature is used as an upper bound |b| + z·sigma_b
    loose = plan_amplitudes(constructed_probe([20e-9] * 5, [0.0] * 5, 2e-5), settings)
    bound = 2 * 2e-5
    assert loose.binding[1] == "bias"
    assert loose.amplitudes_v[1] == pytest.approx(math.sqrt(0.02 * 20e-9 / bound))
    assert "upper bound" in loose.notes[1]
