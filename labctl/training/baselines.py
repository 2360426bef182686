"""Gradient baselines to compare homodyne gradient extraction against.

:func:`measure_plateaus` visits DC plateaus in one record through the safe device; the baseline
training methods (:mod:`labctl.training.methods`) measure with it.

:func:`spsa_gradient` estimates dI/dV by simultaneous perturbation (SPSA, Spall 1992): for each of
``n_pairs`` random Rademacher vectors Δ (entries ±1) the DC output is measured at ``V + cΔ`` and
at ``V − cΔ``; each pair gives ``ĝ = (I₊ − I₋) / (2c) · Δ`` (since ``1/Δ_k = Δ_k``), and the
estimate is the mean over pairs. Every component of one pair carries, on top of the measurement
noise, the projection of all the other components (``Σ_{j≠k} g_j Δ_j Δ_k``), so its variance per
pair is about ``Σ_{j≠k} g_j²``: SPSA needs only two measurements per pair whatever the number of
parameters, but many pairs for an accurate gradient.

All plateaus of one call are visited in one record (DC only, no tones) built by
:func:`labctl.homodyne.drive.device_drive` (within the device's slew and ramp limits) and played
through the :class:`SafeDevice`, so the device time it reports (ramps and settling included)
compares directly with :attr:`labctl.homodyne.engine.GradientBatch.device_seconds`.

Units: V, A, s; gradients in A/V.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labctl.device import FloatArray
from labctl.device.safety import SafeDevice
from labctl.homodyne.drive import Drive, device_drive, finite_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PlateauMeasurement:
    """DC plateaus measured in one record.

    Attributes:
        means_a: Mean output current (A) in each plateau's window, shape ``(n_plateaus,)``.
        sems_a: Standard error of each mean (A) from the window's sample spread.
        record_a: The whole output record (A), shape ``(n_samples,)``.
        device_seconds: Device time the record used (s), ramps and settling included.
        saturated: The record hit the amplifier or ADC limit.
        block_sems_a: Standard error of each mean (A) from the spread of the means of
            :data:`NOISE_BLOCKS` equal blocks of the window: unlike ``sems_a`` it holds when
            neighbouring samples are correlated (amplifier bandwidth, 1/f noise). NaN for
            windows shorter than two samples per block.
    """

    means_a: FloatArray
    sems_a: FloatArray
    record_a: FloatArray
    device_seconds: float
    saturated: bool
    block_sems_a: FloatArray | None = None


NOISE_BLOCKS = 8
"""Blocks per window for :attr:`PlateauMeasurement.block_sems_a`."""


def block_sem(window: FloatArray, n_blocks: int = NOISE_BLOCKS) -> float:
    """Standard error of ``window``'s mean from the spread of its ``n_blocks`` block means.

    Returns NaN when the window has fewer than two samples per block.
    """
    size = window.size // n_blocks
    if size < 2 or n_blocks < 2:
        return math.nan
    blocks = window[: size * n_blocks].reshape(n_blocks, size).mean(axis=1)
    return float(blocks.std(ddof=1) / math.sqrt(n_blocks))


def play_dc_record(device: SafeDevice, drive: Drive) -> tuple[FloatArray, float, bool]:
    """Play a DC-plateau record through the safe device.

    Returns the output current record (A), the device time it used (s, ramps and settling
    included) and whether it hit the amplifier or ADC limit.

    Raises:
        ValueError: The setup has no sampled readout, or the record holds NaN or inf samples
            (the readout failed: nothing can be measured from it).
    """
    start = device.device_seconds
    acquisition = device.apply(drive.waveform_v, drive.sample_rate_hz)
    used = device.device_seconds - start
    if acquisition.current_a.shape[0] == 0:
        raise ValueError(
            "this setup has no sampled readout (setup.roles.sampled_readout), so the DC "
            "output current cannot be measured; lock-ins read only their tones"
        )
    record = finite_record(acquisition)[0]
    return record, used, bool(acquisition.saturated.any())


def measure_plateaus(
    device: SafeDevice, plateaus_v: FloatArray, *, window_s: float, settle_s: float
) -> PlateauMeasurement:
    """Visit every DC plateau (rows of ``plateaus_v``, V per electrode) in one record.

    The record is built by :func:`~labctl.homodyne.drive.device_drive` within the device's
    slew and ramp limits and played through the safe device, so its device time counts ramps
    and settling exactly as a homodyne record's does.
    """
    plateaus = np.atleast_2d(np.asarray(plateaus_v, dtype=np.float64))
    drive = device_drive(device, plateaus, None, window_s, settle_s)
    record, used, saturated = play_dc_record(device, drive)
    windows = [drive.window_samples(record, c) for c in range(len(plateaus))]
    means = np.array([w.mean() for w in windows])
    sems = np.array([w.std(ddof=1) / math.sqrt(w.size) if w.size > 1 else np.nan for w in windows])
    return PlateauMeasurement(
        means_a=means,
        sems_a=sems,
        record_a=record,
        device_seconds=used,
        saturated=saturated,
        block_sems_a=np.array([block_sem(w) for w in windows]),
    )


@dataclass(frozen=True, eq=False)
class SpsaResult:
    """An SPSA gradient estimate at one operating point.

    Attributes:
        gradient_a_per_v: dI/dV per perturbed electrode (A/V), mean over pairs.
        stderr_a_per_v: Standard error of each component (A/V), from the spread of the per-pair
            estimates (NaN with a single pair).
        device_seconds: Device time the call used (s), ramps and settling included.
        pair_gradients_a_per_v: The per-pair estimates, shape ``(n_pairs, n_perturbed)`` (A/V).
        perturbations: The Rademacher vectors Δ, shape ``(n_pairs, n_perturbed)`` (±1).
        currents_a: Mean output current (A) on each plateau, shape ``(n_pairs, 2)``
            (``[:, 0]`` at ``V + cΔ``, ``[:, 1]`` at ``V − cΔ``).
        saturated: The record hit the amplifier or ADC limit.
    """

    gradient_a_per_v: FloatArray
    stderr_a_per_v: FloatArray
    device_seconds: float
    pair_gradients_a_per_v: FloatArray
    perturbations: FloatArray
    currents_a: FloatArray
    saturated: bool

    @property
    def n_pairs(self) -> int:
        """Number of ± pairs measured."""
        return int(self.perturbations.shape[0])


def spsa_gradient(
    device: SafeDevice,
    point_v: FloatArray,
    electrode_indices: Sequence[int],
    perturbation_v: float,
    n_pairs: int,
    rng: np.random.Generator,
    *,
    window_s: float,
    settle_s: float,
) -> SpsaResult:
    """Estimate dI/dV at ``point_v`` by simultaneous perturbation (Spall 1992).

    Args:
        device: The opened safe device; the record runs at its default sample rate.
        point_v: DC voltage of every electrode (V), shape ``(n_electrodes,)``.
        electrode_indices: Rows of the perturbed electrodes (distinct).
        perturbation_v: Perturbation size c (V): every perturbed electrode moves by ±c.
        n_pairs: Number of random ± pairs (>= 1; >= 2 for a standard error).
        rng: Source of the Rademacher vectors (seeded, for reproducible results).
        window_s: Averaging window per plateau (s).
        settle_s: Wait after each DC change before a window (s).

    Returns:
        The estimate, its standard error and the device time used.

    Raises:
        ValueError: Wrong shapes or values, or ``point ± c`` leaves an electrode's range.
    """
    point = np.asarray(point_v, dtype=np.float64)
    electrodes = device.electrodes
    if point.shape != (len(electrodes),):
        raise ValueError(
            f"point_v must hold one voltage per electrode, shape ({len(electrodes)},); "
            f"got {point.shape}"
        )
    if not np.all(np.isfinite(point)):
        raise ValueError("point_v must be finite")
    indices = [int(i) for i in electrode_indices]
    if not indices:
        raise ValueError("electrode_indices is empty; name at least one electrode to perturb")
    if len(set(indices)) != len(indices):
        raise ValueError(f"electrode_indices must be distinct, got {indices}")
    bad = [i for i in indices if not 0 <= i < len(electrodes)]
    if bad:
        raise ValueError(
            f"electrode_indices {bad} do not exist: the device has rows 0..{len(electrodes) - 1}"
        )
    if not (math.isfinite(perturbation_v) and perturbation_v > 0):
        raise ValueError(f"perturbation_v must be a positive number of volts, got {perturbation_v}")
    if isinstance(n_pairs, bool) or int(n_pairs) != n_pairs or n_pairs < 1:
        raise ValueError(f"n_pairs must be a whole number >= 1, got {n_pairs}")
    n_pairs = int(n_pairs)
    for row, electrode in enumerate(electrodes):
        pad = perturbation_v if row in indices else 0.0
        low, high = electrode.min_v + pad, electrode.max_v - pad
        if not low - 1e-12 <= point[row] <= high + 1e-12:
            raise ValueError(
                f"operating point {point[row]:+.4f} V on {electrode.name!r} leaves no room for "
                f"a ±{pad * 1e3:.1f} mV perturbation inside [{electrode.min_v}, "
                f"{electrode.max_v}] V; keep it within [{low:+.4f}, {high:+.4f}] V or use a "
                "smaller perturbation_v"
            )

    deltas = (2 * rng.integers(0, 2, size=(n_pairs, len(indices))) - 1).astype(np.float64)
    plateaus = np.repeat(point[None, :], 2 * n_pairs, axis=0)
    plateaus[0::2, indices] += perturbation_v * deltas
    plateaus[1::2, indices] -= perturbation_v * deltas

    drive = device_drive(device, plateaus, None, window_s, settle_s)
    record, used, saturated = play_dc_record(device, drive)
    means = np.array([drive.window_samples(record, c).mean() for c in range(2 * n_pairs)])
    currents = means.reshape(n_pairs, 2)
    pair_gradients = ((currents[:, 0] - currents[:, 1]) / (2 * perturbation_v))[:, None] * deltas
    gradient = pair_gradients.mean(axis=0)
    if n_pairs > 1:
        stderr = pair_gradients.std(axis=0, ddof=1) / math.sqrt(n_pairs)
    else:
        stderr = np.full(len(indices), np.nan)
    if saturated:
        log.warning("SPSA record saturated the amplifier or ADC; the estimate is unreliable")
    return SpsaResult(
        gradient_a_per_v=gradient,
        stderr_a_per_v=stderr,
        device_seconds=used,
        pair_gradients_a_per_v=pair_gradients,
        perturbations=deltas,
        currents_a=currents,
        saturated=saturated,
    )
