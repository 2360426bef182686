"""Honest standard errors for finite-difference gradients, from the record's own noise spectrum.

A central difference ``(m₊ − m₋) / 2h`` subtracts the means of two plateaus that lie one
plateau (plus settling) apart. Its noise is therefore set by the noise spectrum near the
plateau-switching frequency, ~1/(2(T + settle)), not by the scatter inside a plateau: under
1/f noise and drift the within-plateau standard error of the mean reads several times low.

This module measures the low-frequency spectrum from the same record and propagates it:

1. **Noise model.** One-sided PSD ``S(f) = a + b/f + c/f²`` (A²/Hz): white floor, 1/f
   (flicker) and random-walk drift (``c = D²/(2π²)`` for a drift of ``D`` A/√s).
2. **Fit from the record.** Inside each plateau the signal is constant, so the difference of
   two adjacent block means (a Haar wavelet contrast) is pure noise. Its mean square at block
   lengths ``n/2, n/4, …`` (pooled over every plateau of the record) is set against the
   variance each basis spectrum predicts for that contrast (``∫ S(f) |W(f)|² df``), and
   ``a, b, c ≥ 0`` are fitted by non-negative least squares (relative errors, reweighted by
   the model), the terms entering by forward selection (:func:`fit_noise_model`).
3. **Propagate.** The variance of ``m₊ − m₋`` for the actual plateau length and separation is
   ``∫ S(f) |W(f)|² df`` with the fitted ``S``.

White noise alone gives back the within-plateau result (``2σ²/n``). The fit extrapolates from
block lengths up to ``n/2`` to a separation of about ``n + settle``; for a 1/f or 1/f² spectrum
that extrapolation is what the model exists for, and other shapes (e.g. a single Lorentzian
much slower than the plateau) are only approximated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import nnls

from labctl.device import FloatArray

MIN_BLOCK_SAMPLES = 4
"""Shortest block of the Haar contrasts (samples): shorter ones see the amplifier roll-off."""
MAX_LEVELS = 8
"""Most block lengths used in the fit (halving from n/2)."""
_LOWEST_HZ = 1e-4
"""Lower end of the spectral integrals (Hz); zero-sum contrasts make the integrand finite."""
_GRID_POINTS = 12_000
SELECTION_CHI2 = 4.0
"""Chi-square drop a noise term must bring to enter the fit (about two standard deviations)."""


@dataclass(frozen=True)
class NoiseModel:
    """A fitted one-sided noise PSD ``S(f) = white + flicker/f + drift/f²`` (A²/Hz).

    Attributes:
        white_a2_per_hz: White floor ``a`` (A²/Hz).
        flicker_a2: 1/f coefficient ``b`` (A²), ``S = b/f``.
        drift_a2_hz: 1/f² coefficient ``c`` (A²·Hz), ``S = c/f²``.
        sample_rate_hz: Sample rate of the record (Hz).
    """

    white_a2_per_hz: float
    flicker_a2: float
    drift_a2_hz: float
    sample_rate_hz: float

    @property
    def coefficients(self) -> FloatArray:
        """``(a, b, c)``."""
        return np.array([self.white_a2_per_hz, self.flicker_a2, self.drift_a2_hz])

    def psd_a2_per_hz(self, frequency_hz: FloatArray) -> FloatArray:
        """The model PSD at ``frequency_hz`` (A²/Hz)."""
        f = np.asarray(frequency_hz, dtype=np.float64)
        return self.white_a2_per_hz + self.flicker_a2 / f + self.drift_a2_hz / f**2

    def difference_variance_a2(self, n_samples: int, separation_samples: int) -> float:
        """Variance (A²) of the difference of two ``n_samples`` means ``separation`` apart."""
        gains = basis_gains(self.sample_rate_hz, n_samples, separation_samples)
        return float(self.coefficients @ gains)


@lru_cache(maxsize=256)
def basis_gains(sample_rate_hz: float, n_samples: int, separation_samples: int) -> FloatArray:
    """``∫ S_k(f) |W(f)|² df`` for the three basis spectra ``1, 1/f, 1/f²``.

    ``W`` is the contrast "mean of ``n_samples`` samples starting ``separation_samples`` later
    minus mean of ``n_samples`` samples" (one-sided PSD, so ``var = ∫₀^{f_s/2} S |W|² df``).
    The white term is exact (``a · f_s/2 · Σw²``); the others are integrated on a geometric
    grid from 1e-4 Hz to Nyquist.
    """
    fs = float(sample_rate_hz)
    n = int(n_samples)
    d = int(separation_samples)
    if n < 1 or d < n:
        raise ValueError(f"need n_samples >= 1 and separation >= n_samples, got {n}, {d}")
    f = np.geomspace(_LOWEST_HZ, fs / 2, _GRID_POINTS)
    omega = 2 * np.pi * f / fs
    with np.errstate(invalid="ignore", divide="ignore"):
        dirichlet = np.sin(n * omega / 2) / (n * np.sin(omega / 2))
    dirichlet = np.where(np.isfinite(dirichlet), dirichlet, 1.0)
    gain = dirichlet**2 * 4 * np.sin(omega * d / 2) ** 2
    white = fs / 2 * (2.0 / n)
    flicker = float(np.trapezoid(gain / f, f))
    drift = float(np.trapezoid(gain / f**2, f))
    out = np.array([white, flicker, drift])
    out.setflags(write=False)
    return out


def haar_levels(
    record: FloatArray, windows: Sequence[tuple[int, int]]
) -> list[tuple[int, float, int]]:
    """Per block length ``b``: (b, mean square of adjacent-block mean differences, count).

    The contrasts are taken inside each window ``(start, stop)`` of ``record`` (A), where the
    signal is constant, so they carry noise only.
    """
    lengths = [stop - start for start, stop in windows]
    if not lengths:
        return []
    n = min(lengths)
    out: list[tuple[int, float, int]] = []
    block = n // 2
    while block >= MIN_BLOCK_SAMPLES and len(out) < MAX_LEVELS:
        pairs = n // (2 * block)
        squares = []
        for start, _ in windows:
            chunk = record[start : start + 2 * block * pairs].reshape(pairs, 2, block).mean(axis=2)
            squares.append((chunk[:, 1] - chunk[:, 0]) ** 2)
        values = np.concatenate(squares)
        out.append((block, float(values.mean()), int(values.size)))
        block //= 2
    return out


def _fit_terms(
    design: FloatArray, observed: FloatArray, counts: FloatArray, terms: Sequence[int]
) -> tuple[FloatArray, float]:
    """Non-negative fit of the basis ``terms``: (three coefficients, chi-square)."""
    sub = design[:, list(terms)]
    scale = np.maximum(sub.max(axis=0), 1e-300)
    expected = np.maximum(observed, 1e-300)
    solution = np.zeros(len(terms))
    model = expected
    for _ in range(3):  # relative errors, then reweighted by the model's own prediction
        weights = np.sqrt(counts / 2) / expected  # sd of a mean square of K values: V·√(2/K)
        solution, _ = nnls((sub / scale) * weights[:, None], observed * weights)
        solution = solution / scale
        model = sub @ solution
        if not np.all(model > 0):
            break
        expected = model
    coefficients = np.zeros(3)
    coefficients[list(terms)] = solution
    if not np.all(model > 0):
        return coefficients, math.inf
    return coefficients, float(np.sum(counts / 2 * ((observed - model) / model) ** 2))


def fit_noise_model(
    record: FloatArray, windows: Sequence[tuple[int, int]], sample_rate_hz: float
) -> NoiseModel:
    """Fit ``S(f) = a + b/f + c/f²`` to the within-window Haar contrasts of ``record``.

    Terms enter by forward selection: white alone, then 1/f, then 1/f² (or white + 1/f² when
    1/f does not help), each kept only if it lowers the chi-square by more than
    :data:`SELECTION_CHI2`. Fitting every term to every record would let noise in the longest
    blocks (few of them) turn into a spurious drift term that the extrapolation to the plateau
    separation then amplifies; the selection keeps the estimate unbiased to ~10 % with as few
    as 11 plateaus (white, 1/f or drift-dominated noise alike; tested in ``tests``).

    Args:
        record: Output current (A), one record.
        windows: ``(start, stop)`` sample ranges of constant drive (the plateaus).
        sample_rate_hz: Sample rate (Hz).

    Raises:
        ValueError: If the windows are too short for two block lengths.
    """
    levels = haar_levels(np.asarray(record, dtype=np.float64), windows)
    if len(levels) < 2:
        raise ValueError(
            f"plateaus of {min(b - a for a, b in windows)} samples are too short to fit a "
            f"noise spectrum (need at least {4 * MIN_BLOCK_SAMPLES})"
        )
    design = np.array([basis_gains(sample_rate_hz, b, b) for b, _, _ in levels])
    observed = np.array([v for _, v, _ in levels])
    counts = np.array([k for _, _, k in levels], dtype=np.float64)
    best, best_chi2 = _fit_terms(design, observed, counts, (0,))
    chosen: tuple[int, ...] = (0,)
    for terms in ((0, 1), (0, 1, 2)):
        coefficients, chi2 = _fit_terms(design, observed, counts, terms)
        if best_chi2 - chi2 > SELECTION_CHI2:
            best, best_chi2, chosen = coefficients, chi2, terms
    if chosen == (0,):
        coefficients, chi2 = _fit_terms(design, observed, counts, (0, 2))
        if best_chi2 - chi2 > SELECTION_CHI2:
            best = coefficients
    return NoiseModel(
        white_a2_per_hz=float(best[0]),
        flicker_a2=float(best[1]),
        drift_a2_hz=float(best[2]),
        sample_rate_hz=float(sample_rate_hz),
    )


def white_psd_a2_per_hz(sample_sd_a: float, sample_rate_hz: float) -> float:
    """One-sided white PSD (A²/Hz) of samples with standard deviation ``sample_sd_a``."""
    return 2.0 * sample_sd_a**2 / sample_rate_hz


def drift_coefficient_a2_hz(drift_a_per_sqrt_s: float) -> float:
    """The ``c`` of ``S = c/f²`` for a random walk of ``drift_a_per_sqrt_s`` (A/√s)."""
    return drift_a_per_sqrt_s**2 / (2 * math.pi**2)
