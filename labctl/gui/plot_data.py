"""Plot data of the GUI: preallocated ring buffers, the run history, spectra, plan markers.

- :class:`RingBuffer`: rows kept in a preallocated ring whose contents read back as one
  contiguous slice (no allocation per frame, even for 1e5-point traces).
- :class:`RunHistory`: what the live (or replayed) plots show, fed by iteration records.
- :func:`case_outputs`, :func:`amplitude_spectrum`: the per-iteration panels' data.
- :func:`plan_markers`, :func:`mixing_frequencies_hz`: tones, 2nd/3rd-order products, mains
  harmonics and collisions of a frequency plan, for the plan view and the spectrum.

Qt-free: tested without a window. Units: SI inside; ``*_na`` values are for display (nA).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labctl.homodyne.plan import FrequencyPlan, find_collisions, product_bins
from labctl.run.store import IterationRecord

FloatArray = NDArray[np.float64]

NANO = 1e9
"""Display factor: A → nA, A/V → nA/V."""


@dataclass(frozen=True)
class PlanMarkers:
    """What the plan view draws on one frequency axis (Hz).

    Attributes:
        tones_hz: The tone frequencies; ``tone_labels`` names them (``f0 e1``).
        second_hz: Second-order products (2f_i, f_i ± f_j), fundamentals and DC excluded.
        third_hz: Third-order products not already among the second-order ones.
        mains_hz: Mains harmonics up to ``span_hz``.
        collisions: Each collision in words; ``collision_hz`` where each one lands.
        band_hz: The planning band.
        span_hz: The upper end of the axis.
    """

    tones_hz: tuple[float, ...]
    tone_labels: tuple[str, ...]
    second_hz: tuple[float, ...]
    third_hz: tuple[float, ...]
    mains_hz: tuple[float, ...]
    collisions: tuple[str, ...]
    collision_hz: tuple[float, ...]
    band_hz: tuple[float, float]
    span_hz: float


def plan_markers(
    plan: FrequencyPlan,
    electrodes: Sequence[str],
    mains_hz: Sequence[float],
    band_hz: tuple[float, float],
) -> PlanMarkers:
    """The tones, their products, mains harmonics and collisions of ``plan``."""
    width = plan.bin_width_hz
    bins = plan.bins
    fundamentals = set(bins)
    second_bins = product_bins(bins, 2) - fundamentals - {0}
    third_bins = (
        product_bins(bins, 3) - product_bins(bins, 2) - fundamentals
        if plan.max_order >= 3
        else set()
    )
    top = max([*bins, *second_bins, *third_bins]) * width
    span = max(top, band_hz[1]) * 1.05
    mains: list[float] = []
    for f0 in mains_hz:
        if f0 <= 0:
            continue
        k = 1
        while k * f0 <= span:
            mains.append(k * f0)
            k += 1
    collisions = find_collisions(
        bins, max_order=plan.max_order, curvature=plan.curvature, n_samples=plan.n_samples
    )
    labels = tuple(
        f"f{k} {electrodes[k]}" if k < len(electrodes) else f"f{k}" for k in range(len(bins))
    )
    return PlanMarkers(
        tones_hz=tuple(float(f) for f in plan.frequencies_hz),
        tone_labels=labels,
        second_hz=tuple(sorted(b * width for b in second_bins)),
        third_hz=tuple(sorted(b * width for b in third_bins)),
        mains_hz=tuple(sorted(set(mains))),
        collisions=tuple(str(c) for c in collisions),
        collision_hz=tuple(c.bin * width for c in collisions),
        band_hz=(float(band_hz[0]), float(band_hz[1])),
        span_hz=float(span),
    )


def mixing_frequencies_hz(plan: FrequencyPlan) -> tuple[FloatArray, FloatArray]:
    """(tones, products) in Hz: the products up to the plan's order, DC and tones excluded."""
    width = plan.bin_width_hz
    products = product_bins(plan.bins, plan.max_order) - set(plan.bins) - {0}
    return (
        np.asarray(plan.frequencies_hz, dtype=np.float64),
        np.array(sorted(products), dtype=np.float64) * width,
    )


# ---------------------------------------------------------------------------------- buffers
class RingBuffer:
    """A preallocated ring of rows whose contents read back as one contiguous array.

    Every row is written twice (at ``i`` and ``i + capacity``), so :meth:`view` is a slice,
    never a copy: plotting 1e5 points costs no allocation per frame.

    Args:
        capacity: Rows kept (the oldest are overwritten).
        width: Values per row.
    """

    def __init__(self, capacity: int, width: int = 1) -> None:
        if capacity < 1 or width < 1:
            raise ValueError("capacity and width must be positive")
        self._buf = np.full((2 * capacity, width), np.nan)
        self._capacity = capacity
        self._pos = 0
        self._count = 0

    @property
    def capacity(self) -> int:
        """Rows kept."""
        return self._capacity

    @property
    def width(self) -> int:
        """Values per row."""
        return int(self._buf.shape[1])

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        """Forget every row."""
        self._pos = 0
        self._count = 0

    def append(self, row: float | Sequence[float] | FloatArray) -> None:
        """Add one row (a scalar for width 1)."""
        values = np.asarray(row, dtype=np.float64).reshape(-1)
        if values.size != self.width:
            raise ValueError(f"row of {values.size} values for a buffer of width {self.width}")
        self._buf[self._pos] = values
        self._buf[self._pos + self._capacity] = values
        self._pos = (self._pos + 1) % self._capacity
        self._count = min(self._count + 1, self._capacity)

    def extend(self, rows: FloatArray | Sequence[Sequence[float]] | Sequence[float]) -> None:
        """Add many rows at once, shape ``(n, width)`` (or ``(n,)`` for width 1)."""
        block = np.asarray(rows, dtype=np.float64).reshape(-1, self.width)
        if block.shape[0] >= self._capacity:
            block = block[-self._capacity :]
            self._buf[: self._capacity] = block
            self._buf[self._capacity :] = block
            self._pos = 0
            self._count = self._capacity
            return
        for start in range(0, block.shape[0], self._capacity):
            chunk = block[start : start + self._capacity]
            n = chunk.shape[0]
            first = min(n, self._capacity - self._pos)
            for lo, part in ((self._pos, chunk[:first]), (0, chunk[first:])):
                if part.shape[0]:
                    self._buf[lo : lo + part.shape[0]] = part
                    self._buf[lo + self._capacity : lo + self._capacity + part.shape[0]] = part
            self._pos = (self._pos + n) % self._capacity
            self._count = min(self._count + n, self._capacity)

    def view(self) -> FloatArray:
        """The rows, oldest first, shape ``(len, width)``: a read-only slice of the buffer."""
        if self._count < self._capacity:
            out = self._buf[: self._count]
        else:
            out = self._buf[self._pos : self._pos + self._capacity]
        out = out.view()
        out.flags.writeable = False
        return out

    def column(self, index: int = 0) -> FloatArray:
        """One column of :meth:`view`."""
        return self.view()[:, index]


@dataclass(frozen=True)
class ControlInfo:
    """A trained control electrode: its name and range (V)."""

    name: str
    min_v: float
    max_v: float


class RunHistory:
    """What the live (or replayed) run plots show, fed one iteration record at a time.

    Time series (iteration, loss, accuracy, device time, controls) go into ring buffers of
    ``capacity`` rows; the latest record is kept whole for the per-iteration plots (outputs per
    case, gradients, raw record). :attr:`version` increases with every change, so a view
    redraws only when something is new.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self.controls_info: tuple[ControlInfo, ...] = ()
        self.targets: FloatArray | None = None
        self.iteration = RingBuffer(capacity)
        self.loss = RingBuffer(capacity)
        self.accuracy = RingBuffer(capacity)
        self.device_s = RingBuffer(capacity)
        self.controls = RingBuffer(capacity, 1)
        self.restarts: list[int] = []
        self.latest: IterationRecord | None = None
        self.latest_raw: FloatArray | None = None
        self.raw_iteration: int | None = None
        self.version = 0

    def reset(
        self,
        controls: Sequence[ControlInfo] = (),
        targets: FloatArray | Sequence[float] | None = None,
    ) -> None:
        """Start over for a run with these controls and per-case targets (train set order)."""
        self.controls_info = tuple(controls)
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float64)
        for buf in (self.iteration, self.loss, self.accuracy, self.device_s):
            buf.clear()
        self.controls = RingBuffer(self._capacity, max(1, len(self.controls_info)))
        self.restarts = []
        self.latest = None
        self.latest_raw = None
        self.raw_iteration = None
        self.version += 1

    def add(self, record: IterationRecord) -> None:
        """Append one iteration."""
        if self.controls.width != record.n_controls:
            self.controls = RingBuffer(self._capacity, record.n_controls)
        if self.latest is not None and record.restart_index != self.latest.restart_index:
            self.restarts.append(record.run_iteration)
        self.iteration.append(record.run_iteration)
        self.loss.append(record.loss)
        self.accuracy.append(record.accuracy)
        self.device_s.append(record.device_seconds)
        self.controls.append(record.controls_v)
        self.latest = record
        if record.raw is not None and "record_a" in record.raw:
            self.latest_raw = np.asarray(record.raw["record_a"], dtype=np.float64)
            self.raw_iteration = record.run_iteration
        self.version += 1

    def extend(self, records: Iterable[IterationRecord]) -> None:
        """Append many iterations (a replay): one bulk write per buffer, the same result as
        :meth:`add` for each record."""
        batch = list(records)
        if not batch:
            return
        widths = {r.n_controls for r in batch}
        if len(widths) > 1:  # the control count changes inside: record by record
            for record in batch:
                self.add(record)
            return
        (width,) = widths
        if self.controls.width != width:
            self.controls = RingBuffer(self._capacity, width)
        previous = self.latest.restart_index if self.latest is not None else None
        for record in batch:
            if previous is not None and record.restart_index != previous:
                self.restarts.append(record.run_iteration)
            previous = record.restart_index
        self.iteration.extend([r.run_iteration for r in batch])
        self.loss.extend([r.loss for r in batch])
        self.accuracy.extend([r.accuracy for r in batch])
        self.device_s.extend([r.device_seconds for r in batch])
        self.controls.extend(np.array([r.controls_v for r in batch], dtype=np.float64))
        self.latest = batch[-1]
        for record in reversed(batch):
            if record.raw is not None and "record_a" in record.raw:
                self.latest_raw = np.asarray(record.raw["record_a"], dtype=np.float64)
                self.raw_iteration = record.run_iteration
                break
        self.version += 1

    def __len__(self) -> int:
        return len(self.iteration)


def case_targets(history: RunHistory, record: IterationRecord) -> FloatArray | None:
    """The target of each case in ``record`` (its ``extra["cases"]`` index the train set)."""
    if history.targets is None:
        return None
    cases = record.extra.get("cases")
    idx = np.arange(record.n_cases) if cases is None else np.asarray(cases, dtype=int)
    if idx.size != record.n_cases or idx.max(initial=0) >= history.targets.size:
        return None
    return history.targets[idx]


@dataclass(frozen=True)
class CaseOutputs:
    """The outputs of one iteration per case, for the bar plot (nA)."""

    outputs_na: FloatArray
    targets: FloatArray | None
    threshold_na: float | None
    separation_na: float


def case_outputs(history: RunHistory, record: IterationRecord) -> CaseOutputs:
    """Per-case outputs of ``record`` with the best decision threshold (class 1 above it)."""
    from labctl.training.metrics import threshold_accuracy

    outputs = np.asarray(record.outputs_a, dtype=np.float64) * NANO
    targets = case_targets(history, record)
    threshold: float | None = None
    if targets is not None and np.all(np.isfinite(outputs)):
        try:
            threshold = float(threshold_accuracy(outputs, targets, direction=1).threshold)
        except ValueError:
            threshold = None
        if threshold is not None and not math.isfinite(threshold):
            threshold = None
    return CaseOutputs(outputs, targets, threshold, record.separation_a * NANO)


def amplitude_spectrum(samples: FloatArray, sample_rate_hz: float) -> tuple[FloatArray, FloatArray]:
    """One-sided amplitude spectrum (same unit as ``samples``) with a Hann window.

    A sine of amplitude A on a bin reads A (the window's coherent gain is divided out).
    Returns (frequencies in Hz, amplitudes).
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size < 2:
        return np.zeros(0), np.zeros(0)
    x = x - x.mean()
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window)) * 2.0 / window.sum()
    freqs = np.fft.rfftfreq(x.size, d=1.0 / sample_rate_hz)
    return freqs.astype(np.float64), spectrum.astype(np.float64)
