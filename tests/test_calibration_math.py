"""Tests for labctl.homodyne.calibration: chain response, projection, sign rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from labctl.homodyne.calibration import (
    ChainResponse,
    project_gradient,
    project_with_errors,
    response_from_loopback,
    response_from_resistor,
    sign_by_phase,
)

FREQS = np.array([220.0, 270.0, 330.0, 520.0, 620.0])
AMPS = np.array([0.03, 0.01, 0.01, 0.005, 0.005])


def chain(psi_deg: float | np.ndarray, mag: float | np.ndarray = 0.8) -> np.ndarray:
    return mag * np.exp(1j * np.radians(psi_deg)) * np.ones(FREQS.size)


# --------------------------------------------------------------------------- projection


@pytest.mark.parametrize("psi_deg", np.arange(-170.0, 171.0, 10.0))
def test_projection_removes_any_chain_phase(psi_deg: float) -> None:
    rng = np.random.default_rng(7)
    g_true = rng.normal(0.0, 5e-9, (3, FREQS.size))  # A/V, mixed signs, 3 outputs
    resp = chain(psi_deg, mag=rng.uniform(0.5, 1.5, FREQS.size))
    c = g_true * AMPS * resp  # noise-free measured complex amplitudes
    g, q = project_gradient(c, AMPS, resp)
    assert g.shape == q.shape == (3, FREQS.size)
    np.testing.assert_allclose(g, g_true, rtol=1e-12, atol=1e-24)
    np.testing.assert_allclose(q, 0.0, atol=1e-12 * np.abs(g_true).max())


def test_projection_reports_quadrature_part() -> None:
    # a capacitive pickup 90 degrees ahead of the drive lands entirely in the quadrature
    resp = chain(-30.0)
    g_true = np.full(FREQS.size, 2e-9)
    pickup = 1e-9 * np.exp(1j * np.pi / 2)
    c = (g_true + pickup) * AMPS * resp
    g, q = project_gradient(c, AMPS, resp)
    np.testing.assert_allclose(g, g_true, rtol=1e-12)
    np.testing.assert_allclose(q, 1e-9, rtol=1e-12)


def test_projection_equals_formula_with_phase_and_magnitude() -> None:
    rng = np.random.default_rng(3)
    c = rng.normal(size=FREQS.size) + 1j * rng.normal(size=FREQS.size)
    resp = rng.uniform(0.5, 2, FREQS.size) * np.exp(1j * rng.uniform(-3, 3, FREQS.size))
    g, q = project_gradient(c, AMPS, resp)
    rot = c * np.exp(-1j * np.angle(resp))
    np.testing.assert_allclose(g, rot.real / (AMPS * np.abs(resp)), rtol=1e-12)
    np.testing.assert_allclose(q, rot.imag / (AMPS * np.abs(resp)), rtol=1e-12)


def test_projection_validates_shapes() -> None:
    with pytest.raises(ValueError, match="one value per tone"):
        project_gradient(np.ones(4), AMPS, np.ones(5))
    with pytest.raises(ValueError, match="response_at_f"):
        project_gradient(np.ones(5), AMPS, np.ones(4))
    with pytest.raises(ValueError, match="> 0 V"):
        project_gradient(np.ones(5), -AMPS, np.ones(5))


# --------------------------------------------------------------------------- sign rule


@pytest.mark.parametrize("psi_deg", [-89.0, -60.0, 0.0, 45.0, 89.0])
def test_sign_by_phase_right_below_90_degrees(psi_deg: float) -> None:
    g_true = np.array([3e-9, -2e-9, 1e-9, -4e-9, 5e-9])
    c = g_true * AMPS * np.exp(1j * np.radians(psi_deg))  # |C| = 1, lag psi
    np.testing.assert_allclose(sign_by_phase(c, AMPS), g_true, rtol=1e-12)


@pytest.mark.parametrize("psi_deg", [-91.0, -120.0, -170.0, 100.0, 150.0])
def test_sign_by_phase_flips_beyond_90_degrees(psi_deg: float) -> None:
    g_true = np.array([3e-9, -2e-9, 1e-9, -4e-9, 5e-9])
    c = g_true * AMPS * np.exp(1j * np.radians(psi_deg))
    np.testing.assert_allclose(sign_by_phase(c, AMPS), -g_true, rtol=1e-12)
    # the calibrated projection has no such limit
    g, _ = project_gradient(c, AMPS, np.exp(1j * np.radians(psi_deg)) * np.ones(5))
    np.testing.assert_allclose(g, g_true, rtol=1e-12)


def test_sign_by_phase_threshold_and_validation() -> None:
    c = np.array([np.exp(1j * np.radians(50.0))])
    assert sign_by_phase(c, [1.0], threshold_deg=60.0)[0] == pytest.approx(1.0)
    assert sign_by_phase(c, [1.0], threshold_deg=45.0)[0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="threshold_deg"):
        sign_by_phase(c, [1.0], threshold_deg=0.0)


# --------------------------------------------------------------------------- ChainResponse


def test_interpolation_linear_in_magnitude_and_phase() -> None:
    cr = ChainResponse(
        frequencies_hz=np.array([100.0, 200.0]),
        response=np.array([1.0 * np.exp(-0.2j), 0.6 * np.exp(-0.6j)]),
        method="loopback",
    )
    v = cr.at([100.0, 150.0, 175.0, 200.0])
    np.testing.assert_allclose(np.abs(v), [1.0, 0.8, 0.7, 0.6], rtol=1e-12)
    np.testing.assert_allclose(np.angle(v), [-0.2, -0.4, -0.5, -0.6], rtol=1e-12)
    assert cr.at(np.array([[150.0]])).shape == (1, 1)


def test_interpolation_of_phase_across_wrap_point() -> None:
    # the lag grows past -180 degrees: stored angles jump from -170 to +170 degrees
    cr = ChainResponse(
        frequencies_hz=[300.0, 100.0, 200.0],  # unsorted on purpose
        response=np.exp(1j * np.radians([170.0, -150.0, -170.0])),
        method="resistor",
    )
    np.testing.assert_allclose(cr.frequencies_hz, [100.0, 200.0, 300.0])
    np.testing.assert_allclose(np.degrees(cr.phase_rad), [-150.0, -170.0, -190.0], atol=1e-12)
    mid = cr.at(250.0)
    # -180 degrees, not the 0 degrees a naive interpolation of the wrapped angles would give
    assert np.real(mid) == pytest.approx(-1.0, abs=1e-12)
    assert np.imag(mid) == pytest.approx(0.0, abs=1e-12)
    q = cr.at(275.0)
    assert np.degrees(np.angle(q)) == pytest.approx(360.0 - 185.0, abs=1e-9)


def test_outside_span_raises_naming_frequency_and_span() -> None:
    cr = ChainResponse(frequencies_hz=FREQS, response=chain(-20.0), method="resistor")
    with pytest.raises(ValueError, match=r"1000\.0 Hz.*\[220\.0, 620\.0\]"):
        cr.at([300.0, 1000.0])
    with pytest.raises(ValueError, match="outside the calibrated span"):
        cr.at(219.0)
    # within the small tolerance the edge value is used
    np.testing.assert_allclose(cr.at(620.0 * (1 + 1e-9)), cr.response[-1])
    np.testing.assert_allclose(cr.at(220.0 * (1 - 1e-9)), cr.response[0])


def test_single_frequency_response() -> None:
    cr = ChainResponse(frequencies_hz=[500.0], response=[0.9j], method="loopback")
    np.testing.assert_allclose(cr.at(500.0), 0.9j)
    with pytest.raises(ValueError, match="outside"):
        cr.at(501.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frequencies_hz": [], "response": []}, "at least one"),
        ({"frequencies_hz": [1.0, 2.0], "response": [1.0]}, "one response per"),
        ({"frequencies_hz": [1.0, 1.0], "response": [1.0, 1.0]}, "duplicates"),
        ({"frequencies_hz": [-1.0], "response": [1.0]}, "> 0 Hz"),
        ({"frequencies_hz": [1.0], "response": [0.0]}, "non-zero"),
        ({"frequencies_hz": [1.0], "response": [1.0], "method": "guess"}, "method"),
    ],
)
def test_chain_response_validation(kwargs: dict[str, object], message: str) -> None:
    kwargs.setdefault("method", "resistor")
    with pytest.raises(ValueError, match=message):
        ChainResponse(**kwargs)  # type: ignore[arg-type]


def test_round_trip_to_dict_from_dict_through_json_and_yaml() -> None:
    rng = np.random.default_rng(11)
    resp = rng.uniform(0.5, 1.5, 5) * np.exp(1j * rng.uniform(-3, 3, 5))
    cr = ChainResponse(
        frequencies_hz=FREQS,
        response=resp,
        method="resistor",
        metadata={"resistance_ohm": 1e8, "gain_v_per_a": -1e8, "note": "77 K"},
    )
    d = cr.to_dict()
    for text in (json.dumps(d), yaml.safe_dump(d)):
        back = ChainResponse.from_dict(yaml.safe_load(text))
        np.testing.assert_array_equal(back.frequencies_hz, cr.frequencies_hz)
        np.testing.assert_array_equal(back.response, cr.response)
        assert back.method == "resistor"
        assert back.metadata == cr.metadata
    with pytest.raises(ValueError, match="missing"):
        ChainResponse.from_dict({"method": "resistor", "frequencies_hz": [1.0]})
    with pytest.raises(ValueError, match="must match"):
        ChainResponse.from_dict({**d, "response_im": [0.0]})


# --------------------------------------------------------------------------- calibrations


def test_response_from_resistor_and_end_to_end_projection() -> None:
    r_ohm = 100e6
    true_chain = 0.95 * np.exp(-1j * np.radians([20.0, 35.0, 60.0, 100.0, 130.0]))
    c_cal = AMPS / r_ohm * true_chain  # current through the resistor, through the chain
    cr = response_from_resistor(c_cal, AMPS, r_ohm, FREQS, metadata={"gain_v_per_a": 1e8})
    assert cr.method == "resistor"
    assert cr.metadata == {"gain_v_per_a": 1e8, "resistance_ohm": r_ohm}
    np.testing.assert_allclose(cr.response, true_chain, rtol=1e-12)
    # device measurement at the same tones with lags up to 130 degrees
    g_true = np.array([[4e-9, -3e-9, 2e-9, -1e-9, 5e-10]])
    g, q = project_gradient(g_true * AMPS * true_chain, AMPS, cr.at(FREQS))
    np.testing.assert_allclose(g, g_true, rtol=1e-10)
    np.testing.assert_allclose(q, 0.0, atol=1e-20)
    with pytest.raises(ValueError, match="resistance_ohm"):
        response_from_resistor(c_cal, AMPS, 0.0, FREQS)


def test_response_from_loopback() -> None:
    true_chain = np.exp(-2j * np.pi * FREQS * 50e-6)  # a 50 us delay
    cr = response_from_loopback(AMPS * true_chain, AMPS, FREQS)
    assert cr.method == "loopback"
    np.testing.assert_allclose(cr.response, true_chain, rtol=1e-12)
    np.testing.assert_allclose(cr.phase_rad, -2 * np.pi * FREQS * 50e-6, rtol=1e-12)
    with pytest.raises(ValueError, match="one per tone"):
        response_from_loopback(AMPS, AMPS, FREQS[:3])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("cov_frac", [0.0, 0.6])
def test_error_propagation_matches_monte_carlo(cov_frac: float) -> None:
    rng = np.random.default_rng(2024)
    n_draws = 40_000
    resp = np.array([0.9, 1.1, 0.7, 1.0, 1.3]) * np.exp(1j * np.radians([-10, -50, -95, 140, 30]))
    g_true = np.array([2e-9, -1e-9, 5e-10, 3e-9, -2e-9])
    c0 = g_true * AMPS * resp
    sx = np.array([1e-12, 2e-12, 5e-13, 1e-12, 3e-12])
    sy = np.array([2e-12, 1e-12, 5e-13, 3e-12, 1e-12])
    cov = cov_frac * sx * sy
    # correlated X, Y noise per tone
    z1 = rng.standard_normal((n_draws, 5))
    z2 = rng.standard_normal((n_draws, 5))
    rho = cov / (sx * sy)
    nx = sx * z1
    ny = sy * (rho * z1 + np.sqrt(1 - rho**2) * z2)
    c = c0 + nx + 1j * ny
    proj = project_with_errors(c, AMPS, resp, sx, sy, cov)
    assert proj.gradient.shape == proj.gradient_stderr.shape == (n_draws, 5)
    mc_g = proj.gradient.std(axis=0, ddof=1)
    mc_q = proj.quadrature.std(axis=0, ddof=1)
    # 40k draws: the sample std has ~0.35 % relative error; allow 2 %
    np.testing.assert_allclose(proj.gradient_stderr[0], mc_g, rtol=0.02)
    np.testing.assert_allclose(proj.quadrature_stderr[0], mc_q, rtol=0.02)
    # and the projection is unbiased
    np.testing.assert_allclose(proj.gradient.mean(axis=0), g_true, atol=float(3 * mc_g.max() / 100))


def test_error_propagation_rejects_bad_stderr() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        project_with_errors(np.ones(5), AMPS, np.ones(5), -np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="broadcast"):
        project_with_errors(np.ones(5), AMPS, np.ones(5), np.ones(3), np.ones(5))
