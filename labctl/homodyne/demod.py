"""Joint least-squares demodulation of multi-tone responses.

Conventions (SI: samples in the output unit, e.g. A; frequencies in Hz; phases in rad):

* Tone k is driven as ``A_k sin(2 pi f_k t + phi_k)`` with ``t = (start_index + n) / f_s`` for
  sample n of the window, so ``start_index`` (the window's first sample counted from the drive's
  time origin) keeps phases referenced to the drive.
* A response ``a sin(2 pi f_k t + phi_k + theta)`` has complex amplitude
  ``c = a e^{i theta} = X + iY``: X is the part in phase with the drive, Y the quadrature.

:func:`fit_tones` fits DC, an optional linear drift and a sine/cosine pair per tone (and per
optional extra frequency, e.g. 2 f_i or f_i +- f_j for curvature) by least squares. In white
Gaussian noise of variance sigma^2 this attains the Cramer-Rao bound,
var(X) = var(Y) = 2 sigma^2 / N_s for coherent windows, and it stays unbiased for non-coherent
windows where the boxcar demodulator (:func:`boxcar_demodulate`) leaks between tones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

_RANK_TOL = 1e-9  # smallest accepted ratio of singular values of the design matrix
_CACHE_MAX_ELEMENTS = 2_000_000  # design matrices larger than this are not cached (memory)


@dataclass(frozen=True)
class ToneFit:
    """Result of :func:`fit_tones`. A leading ``n_outputs`` axis is present iff the input was 2-D.

    Attributes:
        complex_amplitude: X + iY per tone, shape (n_outputs?, n_tones), output units.
        stderr: standard error of X and of Y (the larger of the two; they are equal for
            coherent windows), shape (n_outputs?, n_tones), output units.
        stderr_components: standard errors [se(X), se(Y)], shape (n_outputs?, n_tones, 2).
        dc: fitted level at the window centre, shape (n_outputs?,), output units.
        drift_per_s: fitted linear drift, output units per s (zeros if drift was not fitted).
        extra_complex_amplitude: X + iY at the extra frequencies, shape (n_outputs?, n_extra).
        extra_stderr: standard error of X and of Y at the extra frequencies (larger of the two).
        residual_rms: RMS of the fit residual, shape (n_outputs?,), output units.
        n_samples: number of samples in the window.
        frequencies_hz: the tone frequencies in Hz.
        extra_frequencies_hz: the extra frequencies in Hz.
    """

    complex_amplitude: NDArray[np.complex128]
    stderr: NDArray[np.float64]
    stderr_components: NDArray[np.float64]
    dc: NDArray[np.float64]
    drift_per_s: NDArray[np.float64]
    extra_complex_amplitude: NDArray[np.complex128]
    extra_stderr: NDArray[np.float64]
    residual_rms: NDArray[np.float64]
    n_samples: int
    frequencies_hz: tuple[float, ...]
    extra_frequencies_hz: tuple[float, ...]


@dataclass(frozen=True)
class _Projector:
    """Precomputed least-squares solver for one design matrix A = U S V^T (read-only arrays)."""

    basis: NDArray[np.float64]  # U, (n, p): orthonormal basis of the column space
    solve: NDArray[np.float64]  # V S^-1, (p, p): coefficients = solve @ (U^T y)
    cov_diag: NDArray[np.float64]  # diag((A^T A)^-1), (p,)
    n_lead: int  # number of leading columns (1 DC + 1 drift if fitted)


def _tone_cycles(
    n: int, sample_rate_hz: float, frequency_hz: float, start_index: int
) -> NDArray[np.float64]:
    """Fractional drive cycles f * t (mod 1) for the samples of the window."""
    idx = np.arange(start_index, start_index + n, dtype=np.float64)
    return np.mod(idx * (frequency_hz / sample_rate_hz), 1.0)


def _build_projector(
    n: int,
    sample_rate_hz: float,
    frequencies_hz: tuple[float, ...],
    phases_rad: tuple[float, ...],
    start_index: int,
    drift: bool,
) -> _Projector:
    columns = [np.ones(n)]
    if drift:
        columns.append((np.arange(n) - (n - 1) / 2) / n)
    for f, phi in zip(frequencies_hz, phases_rad, strict=True):
        arg = 2 * np.pi * _tone_cycles(n, sample_rate_hz, f, start_index) + phi
        columns.append(np.sin(arg))
        columns.append(np.cos(arg))
    design = np.column_stack(columns)
    u, s, vt = np.linalg.svd(design, full_matrices=False)
    if s[-1] <= _RANK_TOL * s[0]:
        raise ValueError(
            f"the {design.shape[1]} fit columns are (nearly) linearly dependent over {n} samples "
            f"(condition number {s[0] / max(s[-1], 1e-300):.3g}): a frequency is at DC or Nyquist, "
            "or two frequencies are too close for this window; lengthen the window or separate "
            "the frequencies"
        )
    solve = vt.T / s
    cov_diag = np.sum(solve**2, axis=1)
    for arr in (u, solve, cov_diag):
        arr.setflags(write=False)
    return _Projector(basis=u, solve=solve, cov_diag=cov_diag, n_lead=2 if drift else 1)


_cached_projector = lru_cache(maxsize=16)(_build_projector)


def _as_phases(phases_rad: ArrayLike | None, n: int, name: str) -> tuple[float, ...]:
    if phases_rad is None:
        return (0.0,) * n
    out = tuple(float(p) for p in np.atleast_1d(np.asarray(phases_rad, dtype=float)))
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries, expected one per frequency ({n})")
    if not all(math.isfinite(p) for p in out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _as_frequencies(
    frequencies_hz: ArrayLike, sample_rate_hz: float, name: str
) -> tuple[float, ...]:
    out = tuple(float(f) for f in np.atleast_1d(np.asarray(frequencies_hz, dtype=float)))
    for f in out:
        if not (math.isfinite(f) and 0 < f < sample_rate_hz / 2):
            raise ValueError(
                f"{name} must lie strictly between 0 and Nyquist ({sample_rate_hz / 2:g} Hz), "
                f"got {f!r}"
            )
    return out


def _as_samples(samples: ArrayLike) -> tuple[NDArray[np.float64], bool]:
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim not in (1, 2):
        raise ValueError(f"samples must have shape (n,) or (n_outputs, n), got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("samples contain NaN or inf; remove or mask them before demodulating")
    return np.atleast_2d(data), data.ndim == 1


def _check_rate(sample_rate_hz: float) -> float:
    rate = float(sample_rate_hz)
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"sample_rate_hz must be a positive finite number, got {sample_rate_hz!r}")
    return rate


def fit_tones(
    samples: ArrayLike,
    sample_rate_hz: float,
    frequencies_hz: Sequence[float] | ArrayLike,
    *,
    phases_rad: Sequence[float] | ArrayLike | None = None,
    start_index: int = 0,
    drift: bool = True,
    extra_frequencies_hz: Sequence[float] | ArrayLike = (),
    extra_phases_rad: Sequence[float] | ArrayLike | None = None,
) -> ToneFit:
    """Demodulate every tone at once by least squares.

    Model: ``dc + drift * (t - t_mid) + sum_k [X_k sin(w_k t + phi_k) + Y_k cos(w_k t + phi_k)]``
    plus the same sine/cosine pair for each extra frequency (reference phase
    ``extra_phases_rad``, default 0). The solver for each distinct (n, f_s, frequencies, phases,
    start_index, drift) is cached, so repeated windows cost two small matrix products.

    Args:
        samples: one window, shape (n,) or (n_outputs, n), output units (e.g. A).
        sample_rate_hz: sample rate f_s in Hz.
        frequencies_hz: tone frequencies in Hz (need not be coherent, must be distinct).
        phases_rad: drive phases phi_k in rad (default 0).
        start_index: index of the window's first sample counted from the drive's time origin.
        drift: also fit a linear drift (recommended; costs < 1e-3 relative variance for tones
            many cycles long).
        extra_frequencies_hz: additional frequencies fitted jointly and reported separately.
        extra_phases_rad: reference phases of the extra frequencies in rad (default 0).

    Returns:
        The fit; standard errors use the unbiased residual variance RSS / (n - p).

    Raises:
        ValueError: on malformed input, duplicate/near-duplicate frequencies, or fewer samples
            than fit parameters + 1.
    """
    rate = _check_rate(sample_rate_hz)
    data, squeeze = _as_samples(samples)
    freqs = _as_frequencies(frequencies_hz, rate, "frequencies_hz")
    extras = _as_frequencies(extra_frequencies_hz, rate, "extra_frequencies_hz")
    if not freqs:
        raise ValueError("frequencies_hz is empty; give at least one tone frequency")
    phases = _as_phases(phases_rad, len(freqs), "phases_rad")
    extra_phases = _as_phases(extra_phases_rad, len(extras), "extra_phases_rad")
    if int(start_index) != start_index:
        raise ValueError(f"start_index must be an integer sample index, got {start_index!r}")
    n = data.shape[1]
    n_params = (2 if drift else 1) + 2 * (len(freqs) + len(extras))
    if n <= n_params:
        raise ValueError(
            f"window has {n} samples but the fit has {n_params} parameters; use a longer window"
        )
    args = (n, rate, freqs + extras, phases + extra_phases, int(start_index), bool(drift))
    if n * n_params <= _CACHE_MAX_ELEMENTS:
        proj = _cached_projector(*args)
    else:
        proj = _build_projector(*args)

    projected = data @ proj.basis  # (n_out, p)
    coef = projected @ proj.solve.T
    residual = data - projected @ proj.basis.T
    rss = np.einsum("ij,ij->i", residual, residual)
    sigma2 = rss / (n - n_params)
    se = np.sqrt(sigma2[:, None] * proj.cov_diag[None, :])

    lead = proj.n_lead
    n_t = len(freqs)
    tone_coef = coef[:, lead : lead + 2 * n_t]
    extra_coef = coef[:, lead + 2 * n_t :]
    n_out = data.shape[0]
    tone_se = se[:, lead : lead + 2 * n_t].reshape(n_out, n_t, 2)
    extra_se = se[:, lead + 2 * n_t :].reshape(n_out, len(extras), 2)
    dc = coef[:, 0]
    drift_per_s = coef[:, 1] * rate / n if drift else np.zeros_like(dc)

    def out(arr: NDArray) -> NDArray:
        return arr[0] if squeeze else arr

    return ToneFit(
        complex_amplitude=out(tone_coef[:, 0::2] + 1j * tone_coef[:, 1::2]),
        stderr=out(tone_se.max(axis=-1)),
        stderr_components=out(tone_se),
        dc=out(dc),
        drift_per_s=out(drift_per_s),
        extra_complex_amplitude=out(extra_coef[:, 0::2] + 1j * extra_coef[:, 1::2]),
        extra_stderr=out(extra_se.max(axis=-1)),
        residual_rms=out(np.sqrt(rss / n)),
        n_samples=n,
        frequencies_hz=freqs,
        extra_frequencies_hz=extras,
    )


def boxcar_demodulate(
    samples: ArrayLike,
    sample_rate_hz: float,
    frequencies_hz: Sequence[float] | ArrayLike,
    *,
    phases_rad: Sequence[float] | ArrayLike | None = None,
    start_index: int = 0,
) -> NDArray[np.complex128]:
    """Reference boxcar (integrate-and-dump) demodulator, as in the lab code.

    ``o = y - mean(y)``, ``X_k = 2 mean(o sin(w_k t + phi_k))``, ``Y_k = 2 mean(o cos(...))``.
    Exact and optimal for coherent windows; leaks between tones otherwise.

    Args:
        samples: one window, shape (n,) or (n_outputs, n), output units.
        sample_rate_hz: sample rate f_s in Hz.
        frequencies_hz: tone frequencies in Hz.
        phases_rad: drive phases in rad (default 0).
        start_index: index of the window's first sample from the drive's time origin.

    Returns:
        X + iY, shape (n_outputs?, n_tones), output units.
    """
    rate = _check_rate(sample_rate_hz)
    data, squeeze = _as_samples(samples)
    freqs = _as_frequencies(frequencies_hz, rate, "frequencies_hz")
    phases = _as_phases(phases_rad, len(freqs), "phases_rad")
    n = data.shape[1]
    o = data - data.mean(axis=1, keepdims=True)
    arg = (
        2 * np.pi * np.stack([_tone_cycles(n, rate, f, int(start_index)) for f in freqs])
        + np.asarray(phases)[:, None]
    )
    x = 2.0 * (o @ np.sin(arg).T) / n
    y = 2.0 * (o @ np.cos(arg).T) / n
    result = x + 1j * y
    return result[0] if squeeze else result


def local_noise_stderr(
    samples: ArrayLike,
    bins: Sequence[int],
    occupied_bins: Sequence[int],
    neighbours: int = 8,
) -> NDArray[np.float64]:
    """Standard error of X (and Y) at each bin from the noise spectrum next to it.

    The residual-based errors of :func:`fit_tones` assume white noise; a real chain's noise is
    coloured (1/f below, amplifier roll-off above), so the spread at a tone differs from the
    window-average. This estimates it from the periodogram of the (mean- and trend-removed)
    window in the ``neighbours`` free bins on either side of each bin, skipping every occupied
    bin (tones, intermodulation and curvature bins, DC). For a coherent window of N samples,
    ``se(X) = sqrt(2 · mean|Z_m|²) / N`` with Z the DFT, which is ``sqrt(2σ²/N)`` in white noise.

    Args:
        samples: One coherent window, shape (n,), output units.
        bins: Bins (integer multiples of 1/T) to estimate at.
        occupied_bins: Bins that carry signal and must not count as noise.
        neighbours: Free bins used on each side.

    Returns:
        Shape (len(bins),), output units.
    """
    data = np.asarray(samples, dtype=np.float64)
    n = data.size
    t = np.arange(n) - (n - 1) / 2
    detrended = data - data.mean() - t * (t @ data) / (t @ t)
    power = np.abs(np.fft.rfft(detrended)) ** 2
    occupied = {0, 1, *(int(b) for b in occupied_bins)}
    out = np.empty(len(bins))
    for index, centre in enumerate(bins):
        picked: list[int] = []
        offset = 1
        while len(picked) < 2 * neighbours and offset < power.size:
            for candidate in (centre - offset, centre + offset):
                if 0 < candidate < power.size and candidate not in occupied:
                    picked.append(candidate)
            offset += 1
        if not picked:
            raise ValueError("window too short to estimate the noise next to the tones")
        out[index] = math.sqrt(2.0 * float(power[picked].mean())) / n
    return out
