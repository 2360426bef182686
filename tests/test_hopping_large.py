"""Larger hopping-network devices (12, 22, 42 electrodes) for scaling studies: the default
device unchanged, exact gradients, clean frequency plans, and HGE agreeing with the model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from labctl.benchsuite.cost import BAND_HZ, SAMPLE_RATE_HZ, max_order_for
from labctl.benchsuite.devices import (
    calibrate,
    engine_for,
    large_dnpu_model,
    large_dnpu_settings,
    open_with_model,
    random_points,
)
from labctl.homodyne.plan import PlanError, find_collisions, plan_frequencies
from simulated_hw.hopping import HoppingNetworkModel, HoppingParameters, default_electrode_slots
from simulated_hw.models import gradient_fd


def test_scaled_seven_is_the_default_device() -> None:
    assert HoppingParameters.scaled(7) == HoppingParameters()
    assert default_electrode_slots(7) == HoppingParameters().electrode_slots
    volts = np.random.default_rng(1).uniform(-1.2, 1.2, (50, 7))
    default = HoppingNetworkModel()
    explicit = HoppingNetworkModel(HoppingParameters(n_voltage_electrodes=7))
    assert np.array_equal(default.current_a(volts), explicit.current_a(volts))
    assert default.n_electrodes == 7 and default.output_electrode == 7


@pytest.mark.parametrize("n_voltage", [12, 22, 42])
def test_large_device_shapes_and_exact_gradient(n_voltage: int) -> None:
    model = HoppingNetworkModel(HoppingParameters.scaled(n_voltage), seed=3)
    assert model.n_electrodes == n_voltage
    assert model.voltage_ranges_v.shape == (n_voltage, 2)
    assert model.electrodes_xy_m.shape == (n_voltage + 1, 2)
    assert model.gating_kt_per_v_matrix.shape[1] == n_voltage
    rng = np.random.default_rng(0)
    volts = rng.uniform(-1.2, 1.2, (200, n_voltage))
    current = model.current_a(volts)
    assert 1e-9 < np.median(np.abs(current)) < 200e-9  # tens of nA, like the default device
    for point in volts[:3]:
        exact = model.gradient_a_per_v(point)[0]
        numeric = gradient_fd(model, point, step_v=1e-5)
        assert np.allclose(exact, numeric, rtol=1e-4, atol=1e-6 * np.abs(exact).max())
    with pytest.raises(ValueError, match="shape"):
        model.current_a(np.zeros(7))


def test_slots_must_match_the_electrode_count() -> None:
    with pytest.raises(ValueError, match=r"permutation of 0\.\.12"):
        HoppingParameters(n_voltage_electrodes=12)
    with pytest.raises(ValueError, match="n_voltage_electrodes"):
        HoppingParameters(n_voltage_electrodes=0)
    slots = default_electrode_slots(42)
    assert sorted(slots) == list(range(43)) and slots[-1] == 0


@pytest.mark.parametrize(("n_tones", "window_s"), [(10, 0.1), (20, 0.05), (40, 0.1)])
def test_planner_finds_clean_plans_for_the_large_devices(n_tones: int, window_s: float) -> None:
    order = max_order_for(n_tones)
    plan = plan_frequencies(
        SAMPLE_RATE_HZ, window_s, n_tones, band_hz=BAND_HZ, min_spacing_hz=None, mains_hz=[],
        max_order=order,
    )  # fmt: skip
    assert plan.n_tones == n_tones
    assert find_collisions(plan.bins, max_order=order, n_samples=plan.n_samples) == []
    assert all(BAND_HZ[0] <= f <= BAND_HZ[1] for f in plan.frequencies_hz)


def test_planner_names_what_to_relax_for_forty_third_order_tones() -> None:
    with pytest.raises(PlanError, match="accept max_order=2"):
        plan_frequencies(
            SAMPLE_RATE_HZ, 0.05, 40, band_hz=BAND_HZ, min_spacing_hz=None, mains_hz=[],
            max_order=3,
        )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("n_controls", [10, 20])
def test_parallel_hge_on_a_large_device_matches_the_exact_gradient(n_controls: int) -> None:
    settings = dataclasses.replace(
        large_dnpu_settings(n_controls),
        noise_psd_at_1khz_a2_per_hz=1e-28,
        drift_a_per_sqrt_s=0.0,
    )
    homodyne = {
        "amplitude_v": 0.005,
        "window_s": 0.1,
        "band_hz": list(BAND_HZ),
        "min_spacing_hz": None,
        "mains_hz": [],
        "max_order": max_order_for(n_controls),
        "calibration": {"resistance_ohm": 1e6},
    }
    model = large_dnpu_model(n_controls)
    with open_with_model(settings, homodyne, model) as (device, loaded):
        engine = engine_for(device, loaded, homodyne, None)
        plan = engine.plan
        assert find_collisions(plan.bins, max_order=plan.max_order, n_samples=plan.n_samples) == []
        response = calibrate(device, loaded, plan.frequencies_hz, 0.2)
        engine.set_calibration(response)
        points = random_points(device, engine, 3, np.random.default_rng(5))
        batch = engine.measure(points)
    truth = model.gradient_a_per_v(points)[:, list(engine.electrode_indices)]
    error = batch.gradients_a_per_v - truth
    rms_truth = float(np.sqrt(np.mean(truth**2)))
    assert not batch.saturated
    assert float(np.sqrt(np.mean(error**2))) < 0.05 * rms_truth
