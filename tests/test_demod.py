"""Tests for least-squares and boxcar demodulation (labctl.homodyne.demod)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.homodyne import demod
from labctl.homodyne.demod import boxcar_demodulate, fit_tones

FS = 10_000.0
N = 1000  # T = 0.1 s
PLAN = (220.0, 270.0, 330.0, 520.0, 620.0)
PHASES = (0.3, -1.1, 2.0, 0.0, 0.7)


def _synth(
    n: int,
    freqs: tuple[float, ...],
    amps: np.ndarray,
    phases: tuple[float, ...],
    start: int = 0,
    dc: float = 0.0,
    drift: float = 0.0,
) -> np.ndarray:
    """Sum of a_k sin(w_k t + phi_k + theta_k) for complex amplitudes a_k e^{i theta_k}."""
    t = (start + np.arange(n)) / FS
    t_mid = (start + (n - 1) / 2) / FS
    y = dc + drift * (t - t_mid)
    for f, c, phi in zip(freqs, amps, phases, strict=True):
        y = y + np.abs(c) * np.sin(2 * np.pi * f * t + phi + np.angle(c))
    return y


AMPS = np.array([1.0 + 2.0j, -0.5 + 0.1j, 0.3j, 2.0, -1.0 - 0.25j])


def test_exact_recovery_coherent() -> None:
    y = _synth(N, PLAN, AMPS, PHASES, start=12_345, dc=0.7, drift=-3.0)
    fit = fit_tones(y, FS, PLAN, phases_rad=PHASES, start_index=12_345)
    np.testing.assert_allclose(fit.complex_amplitude, AMPS, atol=1e-10)
    assert fit.dc == pytest.approx(0.7, abs=1e-10)
    assert fit.drift_per_s == pytest.approx(-3.0, abs=1e-9)
    assert fit.residual_rms < 1e-10
    assert fit.n_samples == N
    assert fit.complex_amplitude.shape == (5,)
    assert fit.stderr.shape == (5,)
    assert fit.stderr_components.shape == (5, 2)


def test_exact_recovery_non_coherent() -> None:
    freqs = (223.7, 271.3, 318.9, 517.77, 640.1)
    y = _synth(N, freqs, AMPS, PHASES, start=77, dc=-0.2, drift=1.5)
    fit = fit_tones(y, FS, freqs, phases_rad=PHASES, start_index=77)
    np.testing.assert_allclose(fit.complex_amplitude, AMPS, atol=1e-10)
    assert fit.dc == pytest.approx(-0.2, abs=1e-10)
    assert fit.drift_per_s == pytest.approx(1.5, abs=1e-9)
    # the boxcar leaks between non-coherent tones; least squares does not
    box = boxcar_demodulate(
        y - 1.5 * ((77 + np.arange(N)) / FS), FS, freqs, phases_rad=PHASES, start_index=77
    )
    assert np.max(np.abs(box - AMPS)) > 1e-3


def test_start_index_keeps_phase_referenced_to_drive() -> None:
    y = _synth(N, PLAN[:1], AMPS[:1], PHASES[:1], start=333)
    right = fit_tones(y, FS, PLAN[:1], phases_rad=PHASES[:1], start_index=333)
    wrong = fit_tones(y, FS, PLAN[:1], phases_rad=PHASES[:1], start_index=0)
    np.testing.assert_allclose(right.complex_amplitude, AMPS[:1], atol=1e-10)
    shift = np.exp(1j * 2 * np.pi * PLAN[0] * 333 / FS)  # reference lags by 333 samples
    np.testing.assert_allclose(wrong.complex_amplitude, AMPS[:1] * shift, atol=1e-10)


def test_zero_crosstalk_coherent() -> None:
    for j in range(len(PLAN)):
        amps = np.zeros(len(PLAN), dtype=complex)
        amps[j] = 5.0 - 3.0j
        y = _synth(N, PLAN, amps, PHASES)
        fit = fit_tones(y, FS, PLAN, phases_rad=PHASES)
        box = boxcar_demodulate(y, FS, PLAN, phases_rad=PHASES)
        others = np.arange(len(PLAN)) != j
        assert np.max(np.abs(fit.complex_amplitude[others])) < 1e-12
        assert np.max(np.abs(box[others])) < 1e-12
        assert abs(box[j] - amps[j]) < 1e-12


@pytest.mark.parametrize("freqs", [PLAN, (223.7, 271.3, 318.9, 517.77, 640.1)])
def test_stderr_matches_empirical_spread_and_crb(freqs: tuple[float, ...]) -> None:
    rng = np.random.default_rng(20240601)
    sigma = 0.3
    clean = _synth(N, freqs, AMPS, PHASES, dc=1.0)
    trials = 500
    estimates = np.empty((trials, len(freqs)), dtype=complex)
    stderrs = np.empty((trials, len(freqs), 2))
    for i in range(trials):
        fit = fit_tones(clean + rng.normal(0.0, sigma, N), FS, freqs, phases_rad=PHASES)
        estimates[i] = fit.complex_amplitude
        stderrs[i] = fit.stderr_components
    emp = np.stack([estimates.real.std(axis=0), estimates.imag.std(axis=0)], axis=-1)
    predicted = np.sqrt(np.mean(stderrs**2, axis=0))
    np.testing.assert_allclose(predicted / emp, 1.0, atol=0.1)
    # unbiased
    assert np.all(np.abs(estimates.mean(axis=0) - AMPS) < 4 * emp.max() / np.sqrt(trials))
    # Cramer-Rao: var = 2 sigma^2 / N (drift and non-coherence cost < 1 %)
    crb = 2 * sigma**2 / N
    np.testing.assert_allclose(predicted**2 / crb, 1.0, atol=0.03)


def test_multi_output_matches_single_fits() -> None:
    rng = np.random.default_rng(7)
    rows = np.stack(
        [_synth(N, PLAN, AMPS * k, PHASES, dc=k) + rng.normal(0, 0.1, N) for k in (1, -2, 3)]
    )
    fit = fit_tones(rows, FS, PLAN, phases_rad=PHASES)
    assert fit.complex_amplitude.shape == (3, 5)
    assert fit.stderr.shape == (3, 5)
    assert fit.dc.shape == (3,)
    assert fit.residual_rms.shape == (3,)
    for k in range(3):
        single = fit_tones(rows[k], FS, PLAN, phases_rad=PHASES)
        np.testing.assert_allclose(fit.complex_amplitude[k], single.complex_amplitude, atol=1e-12)
        np.testing.assert_allclose(fit.stderr[k], single.stderr, rtol=1e-10)
        assert fit.dc[k] == pytest.approx(single.dc)
    box = boxcar_demodulate(rows, FS, PLAN, phases_rad=PHASES)
    assert box.shape == (3, 5)


def test_extra_frequencies_recovered() -> None:
    extra = (2 * PLAN[0], PLAN[0] + PLAN[1], PLAN[1] - PLAN[0])
    extra_amps = np.array([0.05 - 0.02j, 0.01j, -0.03 + 0.0j])
    y = _synth(N, PLAN, AMPS, PHASES, dc=0.5) + _synth(N, extra, extra_amps, (0.0, 0.0, 0.0))
    fit = fit_tones(y, FS, PLAN, phases_rad=PHASES, extra_frequencies_hz=extra)
    np.testing.assert_allclose(fit.complex_amplitude, AMPS, atol=1e-10)
    np.testing.assert_allclose(fit.extra_complex_amplitude, extra_amps, atol=1e-10)
    assert fit.extra_complex_amplitude.shape == (3,)
    assert fit.extra_stderr.shape == (3,)
    assert fit.extra_frequencies_hz == extra
    # extra reference phases are honoured
    shifted = fit_tones(
        y, FS, PLAN, phases_rad=PHASES, extra_frequencies_hz=extra, extra_phases_rad=(0.5, 0, 0)
    )
    assert shifted.extra_complex_amplitude[0] == pytest.approx(extra_amps[0] * np.exp(-0.5j))


def test_without_drift_column() -> None:
    y = _synth(N, PLAN, AMPS, PHASES, dc=0.25)
    fit = fit_tones(y, FS, PLAN, phases_rad=PHASES, drift=False)
    np.testing.assert_allclose(fit.complex_amplitude, AMPS, atol=1e-10)
    assert fit.dc == pytest.approx(0.25, abs=1e-12)
    assert fit.drift_per_s == 0.0


def test_solver_is_cached() -> None:
    rng = np.random.default_rng(3)
    freqs = (230.0, 290.0)
    demod._cached_projector.cache_clear()
    for _ in range(5):
        fit_tones(rng.normal(size=N), FS, freqs, start_index=N)
    info = demod._cached_projector.cache_info()
    assert info.misses == 1 and info.hits == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(frequencies_hz=(220.0, 220.0)), "linearly dependent"),
        (dict(frequencies_hz=(220.0, 6000.0)), "Nyquist"),
        (dict(frequencies_hz=()), "empty"),
        (dict(frequencies_hz=(220.0,), phases_rad=(0.0, 1.0)), "phases_rad"),
        (dict(samples=np.zeros((2, 2, N))), "shape"),
        (dict(samples=np.zeros(5), frequencies_hz=(220.0, 270.0, 330.0)), "longer window"),
        (dict(samples=np.full(N, np.nan)), "NaN"),
        (dict(sample_rate_hz=-1.0), "sample_rate_hz"),
    ],
)
def test_bad_input_raises(kwargs: dict, match: str) -> None:
    args: dict = dict(samples=np.zeros(N), sample_rate_hz=FS, frequencies_hz=PLAN)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_tones(**args)
