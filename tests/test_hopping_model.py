"""Tests of the hopping-network device model (simulated_hw.hopping)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from simulated_hw.hopping import HoppingNetworkModel, HoppingParameters, _phi_from_exp
from simulated_hw.models import DeviceModel, FloatArray, gradient_fd, hessian_fd

NA = 1e-9
GATES: dict[str, tuple[int, int, int, int]] = {
    "AND": (0, 0, 0, 1),
    "OR": (0, 1, 1, 1),
    "NAND": (1, 1, 1, 0),
    "NOR": (1, 0, 0, 0),
    "XOR": (0, 1, 1, 0),
    "XNOR": (1, 0, 0, 1),
}
INPUTS = (0, 6)
CONTROLS = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def model() -> HoppingNetworkModel:
    return HoppingNetworkModel()


def random_voltages(model: HoppingNetworkModel, n: int, seed: int) -> FloatArray:
    ranges = model.voltage_ranges_v
    return np.random.default_rng(seed).uniform(ranges[:, 0], ranges[:, 1], (n, 7))


def gate_voltages(model: HoppingNetworkModel, controls_v: FloatArray) -> FloatArray:
    """Voltages (V) of the four cases 00, 01, 10, 11 for each row of controls, (n, 4, 7)."""
    ranges = model.voltage_ranges_v
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 1, 0, 1])
    volts = np.empty((controls_v.shape[0], 4, 7))
    volts[:, :, INPUTS[0]] = np.where(a == 1, ranges[INPUTS[0], 1], ranges[INPUTS[0], 0])
    volts[:, :, INPUTS[1]] = np.where(b == 1, ranges[INPUTS[1], 1], ranges[INPUTS[1], 0])
    volts[:, :, list(CONTROLS)] = controls_v[:, None, :]
    return volts


def optimise_gate(
    model: HoppingNetworkModel,
    truth: tuple[int, int, int, int],
    restarts: int = 8,
    steps: int = 300,
    lr_v: float = 0.05,
    seed: int = 0,
) -> tuple[float, FloatArray]:
    """Adam ascent of the separation (A) min(high) - max(low) over the controls, clipped to range.

    Returns the best separation (A) seen and its control voltages (V).
    """
    ranges = model.voltage_ranges_v[list(CONTROLS)]
    lo, hi = ranges[:, 0], ranges[:, 1]
    controls = np.random.default_rng(seed).uniform(lo, hi, (restarts, len(CONTROLS)))
    high = np.array(truth, dtype=bool)
    rows = np.arange(restarts)
    m1 = np.zeros_like(controls)
    m2 = np.zeros_like(controls)
    best_sep, best_controls = -math.inf, controls[0].copy()
    for it in range(steps + 1):
        volts = gate_voltages(model, controls).reshape(-1, 7)
        current, grad = model.current_and_gradient(volts)
        current_na = current.reshape(restarts, 4) / NA
        grad_na = grad.reshape(restarts, 4, 7)[:, :, list(CONTROLS)] / NA
        i_high = np.argmin(np.where(high, current_na, np.inf), axis=1)
        i_low = np.argmax(np.where(~high, current_na, -np.inf), axis=1)
        sep = current_na[rows, i_high] - current_na[rows, i_low]
        k = int(np.argmax(sep))
        if sep[k] > best_sep:
            best_sep, best_controls = float(sep[k]), controls[k].copy()
        if it == steps:
            break
        g = -(grad_na[rows, i_high] - grad_na[rows, i_low])
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g * g
        step = (m1 / (1 - 0.9 ** (it + 1))) / (np.sqrt(m2 / (1 - 0.999 ** (it + 1))) + 1e-8)
        controls = np.clip(controls - lr_v * step, lo, hi)
    return best_sep * NA, best_controls


# ---- contract and validation ------------------------------------------------------------------


def test_implements_device_model_contract(model: HoppingNetworkModel) -> None:
    assert isinstance(model, DeviceModel)
    assert model.n_electrodes == 7
    ranges = model.voltage_ranges_v
    assert ranges.shape == (7, 2)
    assert np.all(ranges[:, 0] <= 0.0) and np.all(ranges[:, 1] >= 0.0)
    assert np.all(ranges >= -1.2) and np.all(ranges <= 1.2)
    assert model.current_a(np.zeros(7)).shape == (1,)
    assert model.gradient_a_per_v(np.zeros(7)).shape == (1, 7)
    volts = random_voltages(model, 5, seed=3)
    assert model.current_a(volts).shape == (5,)
    assert model.gradient_a_per_v(volts).shape == (5, 7)


def test_rejects_bad_voltages(model: HoppingNetworkModel) -> None:
    with pytest.raises(ValueError, match="shape"):
        model.current_a(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="NaN"):
        model.current_a(np.full(7, np.nan))


@pytest.mark.parametrize(
    "change",
    [
        {"n_sites": 0},
        {"localisation_length_m": -1.0},
        {"cutoff_localisation_lengths": 1.0},
        {"voltage_min_v": 0.5},
        {"electrode_slots": (0, 1, 2, 3, 4, 5, 6, 6)},
    ],
)
def test_rejects_bad_parameters(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(HoppingParameters(), **change)


def test_zero_voltages_give_zero_current(model: HoppingNetworkModel) -> None:
    assert model.current_a(np.zeros(7))[0] == 0.0


def test_without_gating_the_network_is_linear() -> None:
    linear = HoppingNetworkModel(HoppingParameters(gating_kt_per_v=0.0), seed=0)
    volts = random_voltages(linear, 4, seed=1)
    np.testing.assert_allclose(linear.current_a(2.0 * volts), 2.0 * linear.current_a(volts))
    np.testing.assert_allclose(
        linear.current_a(volts[:1] + volts[1:2]),
        linear.current_a(volts[:1]) + linear.current_a(volts[1:2]),
    )


# ---- 1. determinism ----------------------------------------------------------------------------


def test_same_seed_bit_identical_and_batch_independent() -> None:
    a = HoppingNetworkModel(seed=5)
    b = HoppingNetworkModel(seed=5)
    volts = random_voltages(a, 200, seed=7)
    current = a.current_a(volts)
    assert np.array_equal(current, b.current_a(volts))
    assert np.array_equal(current[17:18], a.current_a(volts[17]))
    assert np.array_equal(a.gradient_a_per_v(volts), b.gradient_a_per_v(volts))


def test_different_seeds_give_different_devices() -> None:
    volts = random_voltages(HoppingNetworkModel(seed=0), 50, seed=7)
    currents = [HoppingNetworkModel(seed=s).current_a(volts) for s in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.max(np.abs(currents[i] - currents[j])) > 0.1 * NA


# ---- 2. smoothness and exact gradient ----------------------------------------------------------


def test_gradient_matches_finite_differences(model: HoppingNetworkModel) -> None:
    for v in random_voltages(model, 8, seed=11):
        exact = model.gradient_a_per_v(v)[0]
        fd = gradient_fd(model, v, step_v=1e-5)
        assert np.max(np.abs(exact - fd)) <= 1e-6 * np.max(np.abs(exact))


def test_current_and_gradient_agree_with_separate_calls(model: HoppingNetworkModel) -> None:
    volts = random_voltages(model, 20, seed=12)
    current, grad = model.current_and_gradient(volts)
    assert np.array_equal(current, model.current_a(volts))
    assert np.array_equal(grad, model.gradient_a_per_v(volts))


def test_hessian_converges_and_is_non_zero(model: HoppingNetworkModel) -> None:
    for v in random_voltages(model, 5, seed=13):
        scale = abs(model.current_a(v)[0]) + NA
        h_coarse = hessian_fd(model, v, step_v=4e-3)
        h_mid = hessian_fd(model, v, step_v=2e-3)
        h_fine = hessian_fd(model, v, step_v=1e-3)
        assert np.all(np.isfinite(h_fine))
        norm = np.linalg.norm(h_fine)
        # Clearly curved: at least 1 % of |I| (+1 nA) per V².
        assert norm > 0.01 * scale
        # Second-order convergence of the central difference: errors shrink about 4x per halving.
        d_coarse = np.linalg.norm(h_mid - h_coarse)
        d_fine = np.linalg.norm(h_fine - h_mid)
        assert d_fine < 0.4 * d_coarse or d_fine < 1e-6 * norm
        assert d_fine < 1e-3 * norm


def test_phi_series_and_closed_form_join_smoothly() -> None:
    # phi(y) = y / sinh(y) and dlog(phi)/dy = 1/y - coth(y) on both sides of the series switch.
    for y in (0.01, 0.0499999, 0.0500001, 0.2, -0.0500001, -1.5, 3.0):
        phi, dlog = _phi_from_exp(y, 1.0, math.exp(y))
        assert phi == pytest.approx(y / math.sinh(y), rel=1e-13)
        assert dlog == pytest.approx(1.0 / y - 1.0 / math.tanh(y), rel=1e-9)
    # Tiny arguments: phi -> 1 - y²/6 and dlog(phi)/dy -> -y/3.
    phi, dlog = _phi_from_exp(1e-9, 1.0, math.exp(1e-9))
    assert phi == 1.0
    assert dlog == pytest.approx(-1e-9 / 3.0, rel=1e-12)
    phi0, dlog0 = _phi_from_exp(0.0, 1.0, 1.0)
    assert (phi0, dlog0) == (1.0, 0.0)


# ---- 3. non-monotonic inputs -------------------------------------------------------------------


@pytest.mark.parametrize("data_electrode", INPUTS)
def test_some_controls_make_input_response_non_monotonic(
    model: HoppingNetworkModel, data_electrode: int
) -> None:
    ranges = model.voltage_ranges_v
    sweep = np.linspace(ranges[data_electrode, 0], ranges[data_electrode, 1], 121)
    found = 0
    for base in random_voltages(model, 30, seed=21):
        volts = np.repeat(base[None, :], sweep.size, axis=0)
        volts[:, data_electrode] = sweep
        current = model.current_a(volts)
        peak = int(np.argmax(current))
        if 0 < peak < sweep.size - 1:
            rise = current[peak] - current[0]
            fall = current[peak] - current[-1]
            if min(rise, fall) > 0.5 * NA:
                found += 1
    assert found >= 1


# ---- 4. current scale --------------------------------------------------------------------------


def test_currents_are_nanoamps(model: HoppingNetworkModel) -> None:
    median = np.median(np.abs(model.current_a(random_voltages(model, 2000, seed=31))))
    assert 0.5 * NA <= median <= 200 * NA


# ---- 5. Boolean gates --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gate", list(GATES))
def test_realises_boolean_gate(gate: str, seed: int) -> None:
    device = HoppingNetworkModel(seed=seed)
    separation_a, controls = optimise_gate(device, GATES[gate])
    assert separation_a >= 0.5 * NA, f"{gate} seed {seed}: separation {separation_a / NA:.2f} nA"
    # The returned controls really realise the gate (independent re-evaluation).
    current = device.current_a(gate_voltages(device, controls[None, :])[0])
    high = np.array(GATES[gate], dtype=bool)
    assert current[high].min() - current[~high].max() == pytest.approx(separation_a, rel=1e-9)
    ranges = device.voltage_ranges_v[list(CONTROLS)]
    assert np.all(controls >= ranges[:, 0]) and np.all(controls <= ranges[:, 1])
