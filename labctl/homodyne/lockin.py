"""Streaming multi-channel software lock-in amplifier.

Each channel mixes the input with ``2 sin(2 pi f_k t + phi_k)`` and ``2 cos(2 pi f_k t + phi_k)``
(t = sample index / f_s, counted from the first sample after construction or :meth:`reset`, offset
by ``start_index``) and low-pass filters both products with ``order`` cascaded identical
first-order RC sections (time constant tau each, discretised as
``y[n] = y[n-1] + alpha (x[n] - y[n-1])`` with ``alpha = 1 - exp(-1 / (f_s tau))``).

For an input ``a sin(2 pi f_k t + phi_k + theta)`` the settled output is ``a e^{i theta} = X + iY``,
the same convention as :func:`labctl.homodyne.demod.fit_tones`. A neighbouring tone of amplitude
``a_j`` at ``f_k + df`` appears as a phasor rotating at df with magnitude ``a_j |H(df)|``, where
``|H(f)| = (1 + (2 pi f tau)^2)^(-order/2)``; this is the streaming analogue of the boxcar
leakage and reproduces how closely tones may be spaced for a given filter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.signal import sosfilt
from scipy.special import gammainccinv


class StreamingLockIn:
    """Software lock-in with persistent oscillator phase and filter state.

    Processing a record in chunks gives bit-for-bit the same output as one call on the whole
    record.

    Args:
        sample_rate_hz: sample rate f_s in Hz.
        frequencies_hz: reference frequencies f_k in Hz (0 < f_k < f_s / 2).
        time_constant_s: time constant tau of each RC section in s; give this or ``cutoff_hz``.
        cutoff_hz: -3 dB frequency of the whole cascade in Hz; sets
            ``tau = sqrt(2^(1/order) - 1) / (2 pi cutoff_hz)``.
        order: number of cascaded first-order sections, 1..8 (6 dB/octave each).
        phases_rad: reference phases phi_k in rad (default 0).
        start_index: sample index of the first processed sample relative to the drive's time
            origin, so that phases stay referenced to the drive.
    """

    def __init__(
        self,
        sample_rate_hz: float,
        frequencies_hz: Sequence[float] | ArrayLike,
        *,
        time_constant_s: float | None = None,
        cutoff_hz: float | None = None,
        order: int = 4,
        phases_rad: Sequence[float] | ArrayLike | None = None,
        start_index: int = 0,
    ) -> None:
        rate = float(sample_rate_hz)
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"sample_rate_hz must be positive and finite, got {sample_rate_hz!r}")
        freqs = np.atleast_1d(np.asarray(frequencies_hz, dtype=np.float64))
        if freqs.ndim != 1 or freqs.size == 0:
            raise ValueError("frequencies_hz must be a non-empty sequence of frequencies in Hz")
        if not np.all(np.isfinite(freqs)) or np.any(freqs <= 0) or np.any(freqs >= rate / 2):
            raise ValueError(
                f"frequencies_hz must lie strictly between 0 and Nyquist ({rate / 2:g} Hz), "
                f"got {freqs.tolist()}"
            )
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 8:
            raise ValueError(f"order must be an integer from 1 to 8, got {order!r}")
        if (time_constant_s is None) == (cutoff_hz is None):
            raise ValueError("give exactly one of time_constant_s and cutoff_hz")
        if time_constant_s is not None:
            tau = float(time_constant_s)
            if not (math.isfinite(tau) and tau > 0):
                raise ValueError(f"time_constant_s must be positive, got {time_constant_s!r}")
        else:
            assert cutoff_hz is not None  # exactly one of the two is given (checked above)
            fc = float(cutoff_hz)
            if not (math.isfinite(fc) and 0 < fc < rate / 2):
                raise ValueError(f"cutoff_hz must lie in (0, {rate / 2:g}) Hz, got {cutoff_hz!r}")
            tau = math.sqrt(2 ** (1 / order) - 1) / (2 * math.pi * fc)
        if phases_rad is None:
            phases = np.zeros_like(freqs)
        else:
            phases = np.atleast_1d(np.asarray(phases_rad, dtype=np.float64))
            if phases.shape != freqs.shape or not np.all(np.isfinite(phases)):
                raise ValueError(
                    f"phases_rad must hold {freqs.size} finite phases in rad, got {phases_rad!r}"
                )
        if int(start_index) != start_index:
            raise ValueError(f"start_index must be an integer, got {start_index!r}")

        self._rate = rate
        self._freqs = freqs
        self._cycles_per_sample = freqs / rate
        self._phases = phases
        self._order = order
        self._tau = tau
        self._alpha = -math.expm1(-1.0 / (rate * tau))
        section = [self._alpha, 0.0, 0.0, 1.0, self._alpha - 1.0, 0.0]
        self._sos = np.array([section] * order, dtype=np.float64)
        self._start_index = int(start_index)
        self._index = self._start_index
        self._zi = np.zeros((order, 2 * freqs.size, 2))

    # ---------------------------------------------------------------- properties
    @property
    def sample_rate_hz(self) -> float:
        """Sample rate in Hz."""
        return self._rate

    @property
    def frequencies_hz(self) -> tuple[float, ...]:
        """Reference frequencies in Hz."""
        return tuple(float(f) for f in self._freqs)

    @property
    def order(self) -> int:
        """Number of cascaded first-order sections."""
        return self._order

    @property
    def time_constant_s(self) -> float:
        """Time constant tau of each section in s."""
        return self._tau

    @property
    def cutoff_hz(self) -> float:
        """-3 dB frequency of the whole cascade in Hz (continuous-time formula)."""
        return math.sqrt(2 ** (1 / self._order) - 1) / (2 * math.pi * self._tau)

    @property
    def enbw_hz(self) -> float:
        """Equivalent noise bandwidth of the low-pass filter in Hz (one-sided, continuous time).

        ``ENBW = integral_0^inf |H(f)|^2 df = Gamma(n - 1/2) / (4 sqrt(pi) Gamma(n) tau)``;
        1 / (4 tau) for order 1.
        """
        n = self._order
        return math.exp(math.lgamma(n - 0.5) - math.lgamma(n)) / (
            4 * math.sqrt(math.pi) * self._tau
        )

    @property
    def samples_processed(self) -> int:
        """Number of samples processed since construction or the last :meth:`reset`."""
        return self._index - self._start_index

    # ---------------------------------------------------------------- methods
    def settling_time_s(self, fraction: float = 1e-3) -> float:
        """Time in s for the step response to come within ``fraction`` of its final value.

        For n cascaded sections the remaining error after time t is
        ``Q(n, t / tau)`` (regularised upper incomplete gamma function).
        """
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
        return float(self._tau * gammainccinv(self._order, fraction))

    def frequency_response(self, frequency_hz: float | ArrayLike) -> NDArray[np.complex128]:
        """Exact complex response of the discrete low-pass cascade at baseband offset(s) in Hz."""
        f = np.asarray(frequency_hz, dtype=np.float64)
        z_inv = np.exp(-2j * np.pi * f / self._rate)
        return (self._alpha / (1 - (1 - self._alpha) * z_inv)) ** self._order

    def reset(self) -> None:
        """Clear the filter state and restart the oscillators at ``start_index``."""
        self._index = self._start_index
        self._zi[...] = 0.0

    def process(self, chunk: ArrayLike) -> NDArray[np.complex128]:
        """Demodulate the next chunk of the input record.

        Args:
            chunk: consecutive input samples, shape (n,), input units (e.g. A).

        Returns:
            Filtered X + iY for every sample, shape (n_tones, n), input units.
        """
        data = np.asarray(chunk, dtype=np.float64)
        if data.ndim != 1:
            raise ValueError(f"chunk must be one-dimensional, got shape {data.shape}")
        n = data.size
        n_t = self._freqs.size
        if n == 0:
            return np.zeros((n_t, 0), dtype=np.complex128)
        if not np.all(np.isfinite(data)):
            raise ValueError("chunk contains NaN or inf; the filter state would be corrupted")
        idx = np.arange(self._index, self._index + n, dtype=np.float64)
        cycles = np.mod(idx[None, :] * self._cycles_per_sample[:, None], 1.0)
        arg = 2 * np.pi * cycles + self._phases[:, None]
        mixed = np.empty((2 * n_t, n))
        mixed[:n_t] = 2.0 * data * np.sin(arg)
        mixed[n_t:] = 2.0 * data * np.cos(arg)
        filtered, self._zi = sosfilt(self._sos, mixed, axis=-1, zi=self._zi)
        self._index += n
        return filtered[:n_t] + 1j * filtered[n_t:]
