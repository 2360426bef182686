"""The lock-in's signal path: reference oscillator, input coupling, demodulator, RC filters.

Conventions (as in the SRS manuals): with a reference ``sin(θ_ref(t))`` and an input
``√2·V·sin(θ_ref(t) + φ)``, the outputs are ``X = V cos φ``, ``Y = V sin φ`` (rms), i.e.::

    X + iY = √2 · i · LPF[ u(t) · exp(−i θ_ref(t)) ]

The input ``u`` is what the bench played, one value per sample: either a staircase (each value
held for ``1/f_s``: the DAC's electrode voltages, or the amplifier output when the bench has no
amplifier bandwidth), whose mixer output is integrated exactly over every hold interval, or the
values of a continuous signal at the sample instants (the amplifier output with bandwidth: the
bench only knows it there), mixed at those instants like a sampling DSP lock-in does. The
low-pass is a cascade of identical RC stages of time constant ``τ`` (6/12/18/24 dB/oct = 1…4
stages), integrated exactly in continuous time. Settling (≈ 5/7/9/10 τ
to 1e-3…1e-4), the 2f ripple and the equivalent noise bandwidth of the bench's noise
(1/(4τ), 1/(8τ), 3/(32τ), 5/(64τ)) therefore come out of the filter itself, not from a formula.

The reference is phase-continuous in the bench's simulated time (``t0_s + n / f_s``): a
frequency change at time ``t`` starts a new segment whose phase at ``t`` equals the old one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

MAX_STAGES = 4
"""Number of RC stages always computed (24 dB/oct); the slope selects which one is output."""

_TWO_PI = 2.0 * math.pi


def enbw_hz(time_constant_s: float, n_stages: int) -> float:
    """Equivalent noise bandwidth (Hz) of ``n_stages`` RC stages of time constant ``τ`` (s)."""
    factor = {1: 1 / 4, 2: 1 / 8, 3: 3 / 32, 4: 5 / 64}[n_stages]
    return factor / time_constant_s


@dataclass(frozen=True)
class _Segment:
    start_s: float
    frequency_hz: float
    phase_rad: float  # phase at simulated time 0 of θ(t) = 2π f t + phase


class PhaseTrack:
    """A phase-continuous oscillator: ``θ(t) = 2π f_k t + φ_k`` from ``t_k`` on (rad).

    Args:
        frequency_hz: Initial frequency (Hz).
        phase_rad: Initial phase at simulated time 0 (rad).
    """

    def __init__(self, frequency_hz: float, phase_rad: float = 0.0) -> None:
        self._segments = [_Segment(-math.inf, float(frequency_hz), float(phase_rad))]

    @property
    def frequency_hz(self) -> float:
        """The present frequency (Hz)."""
        return self._segments[-1].frequency_hz

    @property
    def phase_rad(self) -> float:
        """Phase (rad) at simulated time 0 of the present segment (for a bench sine)."""
        return self._segments[-1].phase_rad

    def phase_at(self, time_s: float) -> float:
        """The oscillator phase (rad, wrapped to [0, 2π)) at one time (s)."""
        return float(self.phases_rad(np.array([time_s]))[0])

    def set_frequency(self, time_s: float, frequency_hz: float) -> None:
        """Change the frequency (Hz) from ``time_s`` (s) on, keeping the phase continuous."""
        last = self._segments[-1]
        if frequency_hz == last.frequency_hz:
            return
        phase_now = _TWO_PI * math.fmod(last.frequency_hz * time_s, 1.0) + last.phase_rad
        phase0 = phase_now - _TWO_PI * math.fmod(frequency_hz * time_s, 1.0)
        self._append(_Segment(time_s, float(frequency_hz), math.fmod(phase0, _TWO_PI)))

    def lock_to(self, time_s: float, frequency_hz: float, phase_rad: float) -> None:
        """From ``time_s`` (s) on follow ``sin(2π f t + phase_rad)`` (an external signal)."""
        last = self._segments[-1]
        if frequency_hz == last.frequency_hz and phase_rad == last.phase_rad:
            return
        self._append(_Segment(time_s, float(frequency_hz), float(phase_rad)))

    def _append(self, segment: _Segment) -> None:
        while len(self._segments) > 1 and self._segments[-1].start_s >= segment.start_s:
            self._segments.pop()
        self._segments.append(segment)

    def prune(self, time_s: float) -> None:
        """Forget segments that ended before ``time_s`` (s): nothing earlier is asked again."""
        while len(self._segments) > 1 and self._segments[1].start_s <= time_s:
            self._segments.pop(0)

    def _index(self, times_s: FloatArray) -> NDArray[np.intp]:
        starts = np.array([s.start_s for s in self._segments])
        return np.searchsorted(starts, times_s, side="right") - 1

    def phases_rad(self, times_s: FloatArray) -> FloatArray:
        """Phase (rad, in [0, 2π)) at each time (s)."""
        idx = self._index(times_s)
        freqs = np.array([s.frequency_hz for s in self._segments])[idx]
        phis = np.array([s.phase_rad for s in self._segments])[idx]
        cycles = np.mod(freqs * times_s, 1.0)
        return np.mod(_TWO_PI * cycles + phis, _TWO_PI)

    def frequencies_hz(self, times_s: FloatArray) -> FloatArray:
        """Frequency (Hz) in effect at each time (s)."""
        idx = self._index(times_s)
        return np.array([s.frequency_hz for s in self._segments])[idx]


def _stage_integrals(q: ComplexArray) -> ComplexArray:
    """``I_k(q) = ∫₀¹ v^(k−1) e^(−q v) dv`` for k = 1…4, shape ``(len(q), 4)``.

    A power series for small ``|q|``; the upward recurrence ``I_(k+1) = (k·I_k − e^(−q)) / q``
    (stable there) for large ``|q|``.
    """
    out = np.zeros((q.size, MAX_STAGES), dtype=np.complex128)
    small = np.abs(q) < 2.0
    if np.any(small):
        qs = q[small]
        term = np.ones_like(qs)
        for m in range(40):  # Σ (−q)^m / (m! (m + k))
            for k in range(1, MAX_STAGES + 1):
                out[small, k - 1] += term / (m + k)
            term = term * (-qs) / (m + 1)
    large = ~small
    if np.any(large):
        ql = q[large]
        decay = np.exp(-ql)
        value = (1.0 - decay) / ql
        out[large, 0] = value
        for k in range(1, MAX_STAGES):
            value = (k * value - decay) / ql
            out[large, k] = value
    return out


def _cascade_drive(x: FloatArray, wdt: FloatArray) -> ComplexArray:
    """Response of stage k (1…4) after a time ``s`` to a unit input ``exp(−iωs')`` on stage 1.

    ``G_k = ∫₀^s h_k(s − s') e^(−iωs') ds'`` with the k-stage impulse response
    ``h_k(t) = t^(k−1) e^(−t/τ) / ((k−1)! τ^k)``; ``x = s/τ``, ``wdt = ω·s`` (arrays of one
    shape). Returns shape ``(len, 4)``.
    """
    x = np.asarray(x, dtype=np.float64)
    wdt = np.asarray(wdt, dtype=np.float64)
    q = x - 1j * wdt
    integrals = _stage_integrals(np.asarray(q, dtype=np.complex128))
    k = np.arange(1, MAX_STAGES + 1)
    factorials = np.array([math.factorial(int(i) - 1) for i in k], dtype=np.float64)
    scale = x[:, None] ** k[None, :] / factorials[None, :]
    return np.asarray(np.exp(-1j * wdt)[:, None] * scale * integrals)


def _free_response(x: FloatArray) -> FloatArray:
    """Coupling ``e^(−x) x^j / j!`` (j = 0…3) of stage k to stage k − j over ``x = s/τ``."""
    x = np.asarray(x, dtype=np.float64)
    j = np.arange(MAX_STAGES)
    factorials = np.array([math.factorial(int(i)) for i in j], dtype=np.float64)
    return np.asarray(np.exp(-x)[:, None] * x[:, None] ** j[None, :] / factorials[None, :])


@dataclass(frozen=True)
class DemodBlock:
    """The filters during one record, for reading them at any instant.

    Attributes:
        t0_s: Time (s) of the first sample.
        sample_rate_hz: Sample rate (Hz).
        states: Every stage's output at the ``n + 1`` sample instants, shape ``(4, n + 1)``.
        mixed: Mixer input ``u·exp(−iθ)`` per sample.
        omega_rad_per_s: Angular frequency the phasor rotates at within each sample (0: held
            product).
        time_constant_s: τ (s).
    """

    t0_s: float
    sample_rate_hz: float
    states: ComplexArray
    mixed: ComplexArray
    omega_rad_per_s: FloatArray
    time_constant_s: float

    def output(self, n_stages: int) -> ComplexArray:
        """Stage ``n_stages`` (1…4) at the sample instants, shape ``(n + 1,)``."""
        return np.asarray(self.states[n_stages - 1])

    def at(self, times_s: FloatArray, n_stages: int) -> ComplexArray:
        """Output of stage ``n_stages`` at ``times_s`` (s, clipped to the record), exactly."""
        n = self.mixed.size
        pos = np.clip(
            (np.asarray(times_s, dtype=np.float64) - self.t0_s) * self.sample_rate_hz, 0.0, float(n)
        )
        m = np.minimum(np.floor(pos).astype(np.intp), n - 1)
        offset_s = (pos - m) / self.sample_rate_hz
        x = offset_s / self.time_constant_s
        free = _free_response(x)
        drive = _cascade_drive(x, self.omega_rad_per_s[m] * offset_s)
        k = n_stages - 1
        value = drive[:, k] * self.mixed[m]
        for j in range(k + 1):
            value = value + free[:, j] * self.states[k - j, m]
        return np.asarray(value, dtype=np.complex128)


class Demodulator:
    """Input coupling, mixing and four cascaded RC stages, carried across records.

    Not thread-safe: the instrument that owns it serialises access.
    """

    def __init__(self) -> None:
        self._stages = np.zeros(MAX_STAGES, dtype=np.complex128)
        self._coupling_state = 0.0
        self._coupling_ready = False

    def reset(self) -> None:
        """Discharge the filters and the coupling capacitor (all outputs 0)."""
        self._stages[:] = 0.0
        self._coupling_state = 0.0
        self._coupling_ready = False

    def output(self, n_stages: int) -> complex:
        """Present output ``LPF[u·exp(−iθ)]`` of stage ``n_stages`` (1…4), input units."""
        return complex(self._stages[n_stages - 1])

    def couple(
        self, u: FloatArray, sample_rate_hz: float, ac_coupled: bool, corner_hz: float
    ) -> FloatArray:
        """The input after the coupling stage: unchanged (DC) or high-passed at ``corner_hz``.

        AC coupling is a first-order high-pass (a series capacitor), ``u − LP(u)``, its state
        carried across records; it starts charged to the first value it sees.
        """
        if not ac_coupled:
            self._coupling_ready = False
            return u
        if not self._coupling_ready:
            self._coupling_state = float(u[0])
            self._coupling_ready = True
        a = math.exp(-_TWO_PI * corner_hz / sample_rate_hz)
        low, _ = lfilter([1.0 - a], [1.0, -a], u, zi=[a * self._coupling_state])
        before = np.concatenate(([self._coupling_state], low[:-1]))
        self._coupling_state = float(low[-1])
        return np.asarray(u - before, dtype=np.float64)

    def process(
        self,
        u: FloatArray,
        sample_rate_hz: float,
        theta_rad: FloatArray,
        omega_rad_per_s: FloatArray,
        time_constant_s: float,
        held: bool = True,
        t0_s: float = 0.0,
    ) -> DemodBlock:
        """Demodulate one record and advance the filters.

        Exact in continuous time: over every sample the first stage is driven by a constant
        times a rotating phasor (or a constant), and the response of the whole cascade to that
        is known in closed form, so the filters settle, ripple and pass noise exactly like
        four analogue RC stages, whatever ``τ`` is compared with ``1/f_s``.

        Args:
            u: Input per sample, after coupling, in input units.
            sample_rate_hz: Sample rate ``f_s`` (Hz).
            theta_rad: Detection phase ``θ_ref`` (rad) at every sample instant.
            omega_rad_per_s: Detection angular frequency (rad/s) during every sample.
            time_constant_s: RC time constant ``τ`` (s) of each stage.
            held: What the samples are. True: a staircase, each value held for ``1/f_s``
                (a DAC output): the mixer output ``u·exp(−iθ(t))`` rotates within each
                sample, so the readings include the hold's ``sinc(f/f_s)`` and half-sample
                delay. False: the signal's values at the sample instants: they are mixed at
                those instants (as a sampling lock-in does) and the product is held, so the
                steady readings equal the demodulation of the samples.
            t0_s: Time (s) of the first sample (for :meth:`DemodBlock.at`).

        Returns:
            The filters during the record: every stage at the ``n + 1`` sample instants
            ``t0, t0 + 1/f_s, …, t0 + n/f_s`` (the first is the state before the record).
        """
        dt = 1.0 / sample_rate_hz
        x = dt / time_constant_s
        wdt = np.asarray(omega_rad_per_s, dtype=np.float64) * dt if held else np.zeros(u.size)
        unique, index = np.unique(wdt, return_inverse=True)
        drive_weights = _cascade_drive(np.full(unique.size, x), unique)[index]  # (n, 4)
        mixed = u * np.exp(-1j * theta_rad)
        free = np.array([math.exp(-x) * x**j / math.factorial(j) for j in range(MAX_STAGES)])
        outputs: list[ComplexArray] = []
        for k in range(MAX_STAGES):
            v = drive_weights[:, k] * mixed
            for j in range(1, k + 1):  # coupling from the lower stages' states
                v = v + free[j] * outputs[k - j][:-1]
            y = lfilter([1.0], [1.0, -free[0]], v, zi=[free[0] * self._stages[k]])[0]
            outputs.append(np.concatenate(([self._stages[k]], np.asarray(y))))
        for k in range(MAX_STAGES):
            self._stages[k] = outputs[k][-1]
        return DemodBlock(
            t0_s=t0_s,
            sample_rate_hz=sample_rate_hz,
            states=np.asarray(np.vstack(outputs), dtype=np.complex128),
            mixed=np.asarray(mixed, dtype=np.complex128),
            omega_rad_per_s=wdt / dt,
            time_constant_s=time_constant_s,
        )
