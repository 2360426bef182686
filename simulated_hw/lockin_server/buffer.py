"""Sample storage shared by the SR830 data buffer and the SR86x capture buffer."""

from __future__ import annotations

import math

import numpy as np

from simulated_hw.lockin_server.demod import FloatArray


class RingStore:
    """``n_channels`` float channels of ``capacity`` points, one-shot or looping.

    Args:
        capacity: Points per channel.
        n_channels: Number of channels stored per point.
        loop: Overwrite the oldest points when full (else stop storing).
    """

    def __init__(self, capacity: int, n_channels: int, loop: bool) -> None:
        self.capacity = int(capacity)
        self.n_channels = int(n_channels)
        self.loop = loop
        self.data = np.zeros((self.capacity, self.n_channels), dtype=np.float64)
        self.written = 0
        """Points stored since the last clear (may exceed the capacity when looping)."""

    def clear(self) -> None:
        """Forget every point (the memory reads as zeros)."""
        self.data[:] = 0.0
        self.written = 0

    @property
    def count(self) -> int:
        """Points held (at most the capacity)."""
        return min(self.written, self.capacity)

    @property
    def full(self) -> bool:
        """Whether a one-shot store has no room left."""
        return not self.loop and self.written >= self.capacity

    def append(self, points: FloatArray) -> int:
        """Store rows of ``points`` (shape ``(n, n_channels)``); return how many were stored."""
        rows = np.asarray(points, dtype=np.float64).reshape(-1, self.n_channels)
        if not self.loop:
            rows = rows[: max(self.capacity - self.written, 0)]
        n = rows.shape[0]
        if n == 0:
            return 0
        if n >= self.capacity:  # only the newest fit
            start = (self.written + n - self.capacity) % self.capacity
            tail = rows[-self.capacity :]
            idx = (start + np.arange(self.capacity)) % self.capacity
            self.data[idx] = tail
        else:
            idx = (self.written + np.arange(n)) % self.capacity
            self.data[idx] = rows
        self.written += n
        return n

    def chronological(self) -> FloatArray:
        """Points held, oldest first, shape ``(count, n_channels)``."""
        if self.written <= self.capacity:
            return self.data[: self.written].copy()
        start = self.written % self.capacity
        return np.concatenate((self.data[start:], self.data[:start]))


class SampleClock:
    """Times at which a rate-clocked store is due: ``start + k / rate`` for k = 0, 1, …

    Args:
        start_s: Simulated time (s) of point 0.
        rate_hz: Points per second.
    """

    def __init__(self, start_s: float, rate_hz: float) -> None:
        self.start_s = float(start_s)
        self.rate_hz = float(rate_hz)
        self.next_k = 0

    def due(self, until_s: float) -> FloatArray:
        """Times (s) of the points due up to ``until_s`` not taken yet; marks them taken."""
        last = math.floor((until_s - self.start_s) * self.rate_hz + 1e-9)
        if last < self.next_k:
            return np.zeros(0)
        ks = np.arange(self.next_k, last + 1, dtype=np.float64)
        self.next_k = last + 1
        return self.start_s + ks / self.rate_hz
