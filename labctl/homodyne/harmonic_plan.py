"""Harmonic frequency plans: every tone a harmonic of one lock-in reference.

A lock-in referenced to ``f0`` (its REF IN) detects at ``n · f0`` when set to harmonic ``n``
(SR830 and SR86x ``HARM``). With the tones at ``f_k = n_k · f0`` one lock-in reads every tone
by switching harmonic only: the reference, and so the lock-in's phase lock, never moves; only
the output filter re-settles (see :mod:`labctl.homodyne.hardware`).

The plan picks the reference bin ``b0`` (``f0 = b0 / T`` on the window's grid, so every tone
is coherent with the window, as :class:`~labctl.homodyne.plan.FrequencyPlan` requires) and
harmonic numbers ``n_k`` such that

- every tone lies in ``band_hz`` and at most ``max_harmonic``;
- tones are at least ``min_spacing_hz`` apart and keep ``mains_guard_bins`` from every mains
  harmonic;
- no second- or (``max_order: 3``) third-order intermodulation product of the tones lands on a
  read harmonic (:func:`~labctl.homodyne.plan.find_collisions`). Every product of harmonics of
  ``f0`` is itself a harmonic of ``f0``, so the search runs over the integers ``n_k``: the set
  stays clean even if the tones play together (several lock-ins, or the sampled readout,
  reading the same record).

Among the clean plans the one with the highest reference is chosen (fewest, lowest harmonic
numbers: the lock-in's harmonic limit and its reference-input range are easiest to meet),
and for that reference the lexicographically smallest harmonics.

Units: Hz, s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

from labctl.config import HomodyneConfig
from labctl.homodyne.plan import FrequencyPlan, PlanError, find_collisions, window_samples

NODE_LIMIT = 200_000
"""Search nodes per reference before a reference is given up (the search is exhaustive below)."""


@dataclass(frozen=True)
class HarmonicPlan:
    """Tones as harmonics of one reference.

    Attributes:
        reference_hz: The reference frequency f0 (Hz).
        harmonics: Harmonic number of each tone, in tone order.
        plan: The tones as a frequency plan (bins ``n_k · b0``).
    """

    reference_hz: float
    harmonics: tuple[int, ...]
    plan: FrequencyPlan

    @property
    def frequencies_hz(self) -> tuple[float, ...]:
        """Tone frequencies ``n_k · f0`` (Hz)."""
        return self.plan.frequencies_hz


def reference_of(plan: FrequencyPlan) -> tuple[float, tuple[int, ...]]:
    """The highest common reference of a plan's tones and each tone's harmonic number.

    ``f0 = gcd(bins) / T``: for a harmonic plan its reference (or a multiple of it, when every
    harmonic shares a factor); for any other plan the tones' common divisor.
    """
    common = reduce(math.gcd, plan.bins)
    return common * plan.bin_width_hz, tuple(b // common for b in plan.bins)


def plan_harmonics(
    sample_rate_hz: float,
    window_s: float,
    n_tones: int,
    *,
    band_hz: tuple[float, float],
    min_spacing_hz: float | None = None,
    mains_hz: Sequence[float] = (50.0, 60.0),
    mains_guard_bins: int = 2,
    max_order: int = 3,
    max_harmonic: int = 40,
) -> HarmonicPlan:
    """Plan ``n_tones`` tones at harmonics of one reference (see the module docstring).

    Raises:
        PlanError: No reference on the window's grid admits a clean set; the message says
            what to relax.
    """
    if n_tones < 1:
        raise PlanError(f"n_tones must be at least 1, got {n_tones}")
    if max_order not in (2, 3):
        raise PlanError(f"max_order must be 2 or 3, got {max_order}")
    if max_harmonic < 1:
        raise PlanError(f"max_harmonic must be at least 1, got {max_harmonic}")
    n_samples = window_samples(sample_rate_hz, window_s)
    width = sample_rate_hz / n_samples
    low, high = band_hz
    lo_bin = max(1, math.ceil(low / width - 1e-9))
    hi_bin = min(math.floor(high / width + 1e-9), (n_samples - 1) // 2)
    if hi_bin < lo_bin:
        raise PlanError(
            f"band {low:g}–{high:g} Hz holds no bin of a {window_s:g} s window (1/T = "
            f"{width:g} Hz): widen band_hz or lengthen window_s"
        )
    spacing_bins = 0 if min_spacing_hz is None else math.ceil(min_spacing_hz / width - 1e-9)
    mains_bins = [h * m / width for m in mains_hz for h in range(1, int(high / m) + 3)]

    def mains_ok(b: int) -> bool:
        return all(abs(b - mb) > mains_guard_bins for mb in mains_bins)

    for b0 in range(hi_bin, 0, -1):
        n_lo = max(1, math.ceil(lo_bin / b0))
        n_hi = min(max_harmonic, hi_bin // b0)
        if n_hi - n_lo + 1 < n_tones:
            continue
        candidates = [n for n in range(n_lo, n_hi + 1) if mains_ok(n * b0)]
        step = max(1, math.ceil(spacing_bins / b0)) if spacing_bins else 1
        chosen = _search(candidates, n_tones, step, max_order)
        if chosen is None:
            continue
        plan = FrequencyPlan(
            sample_rate_hz=sample_rate_hz,
            window_s=window_s,
            frequencies_hz=tuple(n * b0 * width for n in chosen),
            bins=tuple(n * b0 for n in chosen),
            max_order=max_order,
        )
        return HarmonicPlan(b0 * width, tuple(chosen), plan)
    raise PlanError(
        f"no reference on the {width:g} Hz grid has {n_tones} harmonics ≤ {max_harmonic} in "
        f"{low:g}–{high:g} Hz that are {min_spacing_hz or 0:g} Hz apart, off the mains and free "
        f"of order-{max_order} intermodulation: widen band_hz, raise "
        "hardware_lockin.max_harmonic, lower min_spacing_hz or max_order, or lengthen window_s"
    )


def _search(
    candidates: Sequence[int], n_tones: int, step: int, max_order: int
) -> tuple[int, ...] | None:
    """Depth-first: the lexicographically smallest clean set of ``n_tones`` candidates."""
    nodes = 0

    def extend(chosen: tuple[int, ...], start: int) -> tuple[int, ...] | None:
        nonlocal nodes
        if len(chosen) == n_tones:
            return chosen
        for i in range(start, len(candidates)):
            if len(candidates) - i < n_tones - len(chosen):
                return None
            n = candidates[i]
            if chosen and n - chosen[-1] < step:
                continue
            nodes += 1
            if nodes > NODE_LIMIT:
                return None
            trial = (*chosen, n)
            if find_collisions(trial, max_order=max_order):
                continue
            found = extend(trial, i + 1)
            if found is not None:
                return found
        return None

    return extend((), 0)


def plan_from_settings(
    settings: HomodyneConfig, sample_rate_hz: float, n_tones: int
) -> HarmonicPlan:
    """The harmonic plan the ``homodyne`` settings describe at ``sample_rate_hz`` (Hz)."""
    s = settings
    return plan_harmonics(
        sample_rate_hz,
        s.window_s,
        n_tones,
        band_hz=s.band_hz,
        min_spacing_hz=s.min_spacing_hz,
        mains_hz=tuple(s.mains_hz),
        mains_guard_bins=s.mains_guard_bins,
        max_order=s.max_order,
        max_harmonic=s.hardware_lockin.max_harmonic,
    )
