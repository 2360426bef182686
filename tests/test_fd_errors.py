"""Finite-difference standard errors from the record's own noise spectrum.

Correctness on the simulator: the reported standard errors of central FD match the spread of
repeated gradients under 1/f noise, drift and amplifier roll-off (where the within-plateau
scatter reads ~7x low) and under white noise; and the spectral fit itself on synthetic noise.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from labctl.benchsuite.devices import engine_for, open_dnpu, random_points
from labctl.homodyne.fd_errors import (
    NoiseModel,
    basis_gains,
    drift_coefficient_a2_hz,
    fit_noise_model,
)
from labctl.homodyne.plan import PlanWarning

FS_HZ = 10_000.0
N_PLATEAU = 1000
SEPARATION = 1150


def _plateaus(n_plateaus: int, gap: int = SEPARATION - N_PLATEAU) -> list[tuple[int, int]]:
    return [(k * (N_PLATEAU + gap), k * (N_PLATEAU + gap) + N_PLATEAU) for k in range(n_plateaus)]


def test_white_gain_is_exact() -> None:
    gains = basis_gains(FS_HZ, N_PLATEAU, SEPARATION)
    sigma = 3e-12
    white = NoiseModel(2 * sigma**2 / FS_HZ, 0.0, 0.0, FS_HZ)
    assert math.isclose(white.difference_variance_a2(N_PLATEAU, SEPARATION), 2 * sigma**2 / 1000)
    assert gains[1] > 0 and gains[2] > 0


def test_random_walk_gain_matches_the_exact_discrete_variance() -> None:
    # x_t = sum of steps e_s: var(mean_b - mean_a) = var(e) * sum_s W_s^2 (tail sums of weights)
    d_a_per_sqrt_s = 2e-12
    weights = np.zeros(SEPARATION + N_PLATEAU)
    weights[:N_PLATEAU] = -1.0 / N_PLATEAU
    weights[SEPARATION:] = 1.0 / N_PLATEAU
    tails = np.cumsum(weights[::-1])[::-1]
    exact = d_a_per_sqrt_s**2 / FS_HZ * float(np.sum(tails**2))
    model = NoiseModel(0.0, 0.0, drift_coefficient_a2_hz(d_a_per_sqrt_s), FS_HZ)
    assert model.difference_variance_a2(N_PLATEAU, SEPARATION) == pytest.approx(exact, rel=0.02)


def _noise(kind: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of one-sided PSD ``a·(1 + 100 Hz/f)`` (flicker), ``a·(1 + (30 Hz/f)²)``
    (random walk) or ``a`` (white), shaped in the frequency domain."""
    sigma = 1e-11
    if kind == "white":
        return rng.normal(0.0, sigma, n_samples)
    m = 1 << math.ceil(math.log2(4 * n_samples))
    f = np.fft.rfftfreq(m, 1 / FS_HZ)
    f[0] = f[1]
    white = 2 * sigma**2 / FS_HZ
    psd = white * (1 + 100 / f) if kind == "flicker" else white * (1 + (30 / f) ** 2)
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, m)) * np.sqrt(psd * FS_HZ / 2)
    return np.fft.irfft(spectrum, m)[:n_samples]


@pytest.mark.parametrize("n_plateaus", [11, 41])
@pytest.mark.parametrize("kind", ["white", "flicker", "random walk"])
def test_fit_predicts_the_spread_of_plateau_differences(kind: str, n_plateaus: int) -> None:
    rng = np.random.default_rng(7)
    windows = _plateaus(n_plateaus)
    differences, predicted, within = [], [], []
    for _ in range(1200 // n_plateaus):
        record = _noise(kind, windows[-1][1], rng)
        means = np.array([record[a:b].mean() for a, b in windows])
        differences.append(means[2::2] - means[1::2])
        model = fit_noise_model(record, windows, FS_HZ)
        predicted.append(model.difference_variance_a2(N_PLATEAU, SEPARATION))
        within.append(np.mean([record[a:b].var() for a, b in windows]) * 2 / N_PLATEAU)
    measured = float(np.mean(np.concatenate(differences) ** 2))
    # ~600 differences: the measured variance is good to ~6 % (1 sd), the mean prediction to
    # a few % more
    assert float(np.mean(predicted)) / measured == pytest.approx(1.0, abs=0.2)
    if kind != "white":  # the within-plateau scatter alone reads far too low
        assert float(np.mean(within)) / measured < 0.5


def _fd_repeats(effects: dict[str, bool], n_repeats: int) -> tuple[np.ndarray, np.ndarray]:
    homodyne = {"amplitude_v": 0.01, "window_s": 0.1, "settle_s": 0.015, "fd_step_v": 0.01}
    override = {
        "setup": {"backend": {"settings": {"effects": effects, "noise_seed": 11}}},
        "homodyne": homodyne,
    }
    with open_dnpu(override) as (device, loaded):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlanWarning)
            engine = engine_for(device, loaded, homodyne, None)
        point = random_points(device, engine, 1, np.random.default_rng(3))[0]
        estimates, stderrs = [], []
        for _ in range(n_repeats // 12):  # 12 points per record: the fit pools all plateaus
            batch = engine.measure(np.repeat(point[None, :], 12, axis=0), mode="fd")
            estimates.append(batch.gradients_a_per_v)
            stderrs.append(batch.stderr_a_per_v)
    return np.concatenate(estimates), np.concatenate(stderrs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("condition", "effects"),
    [
        ("1/f + drift + roll-off", {}),
        ("white", {"flicker": False, "drift": False, "bandwidth": False}),
    ],
)
def test_fd_reported_stderr_matches_the_spread_of_repeats(
    condition: str, effects: dict[str, bool]
) -> None:
    estimates, stderrs = _fd_repeats(effects, 48)
    measured_sd = estimates.std(axis=0, ddof=1)
    reported = np.sqrt(np.mean(stderrs**2, axis=0))
    ratio = float(np.sqrt(np.mean(reported**2)) / np.sqrt(np.mean(measured_sd**2)))
    # 5 components x 47 degrees of freedom: the pooled sd is good to ~5 % (1 sd)
    assert ratio == pytest.approx(1.0, abs=0.25), condition
    if condition != "white":  # the condition really is 1/f-dominated: ~5x the white-noise sd
        white_sd = math.sqrt(1e-5 * 1e-18 / (4 * 0.01**2 * 0.1))
        assert float(np.mean(measured_sd)) > 3 * white_sd
