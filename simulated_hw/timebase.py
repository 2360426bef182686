"""Simulated time for the simulated bench: as fast as possible, or paced to the wall clock."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TimeBase:
    """The simulated clock shared by everything behind one simulated bench.

    In fast mode (default) :meth:`advance` only adds to the simulated time. In real-time mode it
    also sleeps until the wall clock, measured with ``clock`` from the first :meth:`advance`
    call, has caught up with the simulated time, so a record of ``T`` seconds takes at least
    ``T`` seconds of wall time (as on real hardware). Thread-safe.

    Args:
        realtime: Pace :meth:`advance` to the wall clock.
        clock: Monotonic wall clock in seconds (default :func:`time.monotonic`).
        sleep: Sleep function taking seconds (default :func:`time.sleep`).
    """

    def __init__(
        self,
        realtime: bool = False,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._realtime = bool(realtime)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._now_s = 0.0
        self._wall_origin: tuple[float, float] | None = None

    @property
    def realtime(self) -> bool:
        """Whether :meth:`advance` is paced to the wall clock."""
        return self._realtime

    @property
    def now_s(self) -> float:
        """Simulated seconds since the start (or the last :meth:`reset`)."""
        with self._lock:
            return self._now_s

    def advance(self, duration_s: float) -> float:
        """Move simulated time forward by ``duration_s`` (s) and return the new time (s).

        In real-time mode, block until the wall clock has caught up.

        Raises:
            ValueError: If ``duration_s`` is negative or not finite.
        """
        if not (math.isfinite(duration_s) and duration_s >= 0.0):
            raise ValueError(f"duration_s must be finite and >= 0 (s), got {duration_s}.")
        with self._lock:
            if self._realtime and self._wall_origin is None:
                self._wall_origin = (self._clock(), self._now_s)
            self._now_s += duration_s
            target_s = self._now_s
            origin = self._wall_origin
        if origin is not None:
            wall_start, sim_start = origin
            remaining = (target_s - sim_start) - (self._clock() - wall_start)
            if remaining > 0.0:
                self._sleep(remaining)  # time.sleep never returns early (PEP 475)
        return target_s

    def reset(self) -> None:
        """Set simulated time back to 0 and forget the wall-clock origin."""
        with self._lock:
            self._now_s = 0.0
            self._wall_origin = None
