"""Fig. 3b: mean squared gradient error vs frequency spacing with a streaming lock-in.

Five tones ``f_c + k·Δf`` (k = −2..2, f_c = 500 Hz) at f_s = 10 kHz, 10 mV each; the channel of
interest is the middle one (gradient 10 nA/V), its four neighbours are ``ratio`` times stronger
(ratio 1, 2.05 and 20, as in the paper's curves and grey band). White output noise of one-sided
PSD S = 1e-5 nA²/Hz (the paper's figure). Each record lasts the paper's 0.1 s per data point and
is demodulated by :class:`labctl.homodyne.lockin.StreamingLockIn` (4 RC sections, τ = 5 ms, so it
settles within the record); the estimate is the in-phase output at the end of the record.

Analytic (dashed: sequential, one tone at a time; solid: parallel), in gradient units::

    MSE_seq = S ∫ |H(f)|² df / A²                     (two-sided integral, exact discrete H)
    MSE_par = MSE_seq + Σ_j (ratio · g)² |H(δ_j)|² / 2  (δ_j = ±Δf, ±2Δf; random neighbour phases)

with ``H`` the lock-in's low-pass response. Simulated: the same records with random phases and
noise, ``repeats`` per point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.device import FloatArray
from labctl.homodyne.lockin import StreamingLockIn

FS_HZ = 10_000.0
RECORD_S = 0.1
CENTRE_HZ = 500.0
AMPLITUDE_V = 0.01
GRADIENT_A_PER_V = 10e-9
PSD_A2_PER_HZ = 1e-23
TAU_S = 0.005
ORDER = 4
RATIOS = (1.0, 2.05, 20.0)
SPACINGS_HZ = (2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 80.0)
OFFSETS = (-2, -1, 1, 2)


@dataclass(frozen=True)
class Fig3b:
    """Analytic and simulated MSE ((A/V)²) per ratio and spacing.

    Attributes:
        spacings_hz: Δf values.
        sequential_analytic: The floor (one tone at a time), a scalar.
        sequential_simulated: Simulated, per spacing (the tone moves with Δf; same floor).
        parallel_analytic: ``{ratio: array over spacings}``.
        parallel_simulated: ``{ratio: array over spacings}``.
        repeats: Records per simulated point.
    """

    spacings_hz: tuple[float, ...]
    sequential_analytic: float
    sequential_simulated: FloatArray
    parallel_analytic: dict[float, FloatArray]
    parallel_simulated: dict[float, FloatArray]
    repeats: int

    def floor_spacing_hz(self, ratio: float, factor: float = 1.1) -> float:
        """Smallest scanned Δf with analytic parallel MSE within ``factor`` × the floor."""
        for df, mse in zip(self.spacings_hz, self.parallel_analytic[ratio], strict=True):
            if mse <= factor * self.sequential_analytic:
                return df
        return float("nan")


def _lockin(freqs: FloatArray, phases: FloatArray) -> StreamingLockIn:
    return StreamingLockIn(FS_HZ, freqs, time_constant_s=TAU_S, order=ORDER, phases_rad=phases)


def analytic(
    spacings_hz: tuple[float, ...], ratios: tuple[float, ...]
) -> tuple[float, dict[float, FloatArray]]:
    """The sequential floor and the parallel curves ((A/V)²)."""
    probe = _lockin(np.array([CENTRE_HZ]), np.zeros(1))
    grid = np.linspace(-FS_HZ / 2, FS_HZ / 2, 200_001)
    h2 = np.abs(probe.frequency_response(grid)) ** 2
    noise = PSD_A2_PER_HZ * float(np.trapezoid(h2, grid)) / AMPLITUDE_V**2
    curves = {}
    for ratio in ratios:
        leak = []
        for df in spacings_hz:
            offsets = np.array(OFFSETS, dtype=float) * df
            h = np.abs(probe.frequency_response(offsets)) ** 2
            leak.append(float(np.sum((ratio * GRADIENT_A_PER_V) ** 2 * h / 2)))
        curves[ratio] = noise + np.array(leak)
    return noise, curves


def simulate_point(
    spacing_hz: float, ratio: float | None, repeats: int, rng: np.random.Generator
) -> float:
    """Simulated MSE ((A/V)²) of the middle channel; ``ratio=None``: that tone alone."""
    n = round(FS_HZ * RECORD_S)
    t = np.arange(n) / FS_HZ
    freqs = CENTRE_HZ + np.array([-2, -1, 0, 1, 2], dtype=float) * spacing_hz
    gradients = np.full(5, (ratio or 0.0) * GRADIENT_A_PER_V)
    gradients[2] = GRADIENT_A_PER_V
    sigma = np.sqrt(PSD_A2_PER_HZ * FS_HZ / 2)
    errors = np.empty(repeats)
    for r in range(repeats):
        phases = rng.uniform(0, 2 * np.pi, 5)
        signal = (AMPLITUDE_V * gradients)[:, None] * np.sin(
            2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]
        )
        record = signal.sum(axis=0) + rng.normal(0.0, sigma, n)
        lockin = _lockin(freqs[2:3], phases[2:3])
        out = lockin.process(record)
        errors[r] = out[0, -1].real / AMPLITUDE_V - GRADIENT_A_PER_V
    return float(np.mean(errors**2))


def compute(repeats: int, spacings_hz: tuple[float, ...] = SPACINGS_HZ, seed: int = 3) -> Fig3b:
    """Analytic curves and the simulated points."""
    rng = np.random.default_rng(seed)
    floor, curves = analytic(spacings_hz, RATIOS)
    sequential = np.array([simulate_point(df, None, repeats, rng) for df in spacings_hz])
    simulated = {
        ratio: np.array([simulate_point(df, ratio, repeats, rng) for df in spacings_hz])
        for ratio in RATIOS
    }
    return Fig3b(tuple(spacings_hz), floor, sequential, curves, simulated, repeats)
