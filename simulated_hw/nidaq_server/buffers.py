"""Task buffers: the AO output buffer (regenerating ring or FIFO) and the AI input ring.

Positions are absolute sample counts per channel since the task started. Not thread-safe:
:class:`simulated_hw.nidaq_server.daq.SimDaq` holds its lock around every call.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from simulated_hw.nidaq_server.errors import Code, DaqmxError

FloatArray = NDArray[np.float64]


class OutputBuffer:
    """The AO buffer of one task: ``(n_channels, size)`` samples (V).

    Before a start, writes fill it from the beginning (``idle_pos``); at start the samples
    written so far are generated first (``valid`` of them). With regeneration the generator
    loops over those ``valid`` samples; without it the buffer is a FIFO ring of ``size``
    samples: every sample is generated once and the writer must stay ahead. While running,
    writes go to absolute position ``write_abs`` (modulo the ring length) and may only replace
    samples already generated.

    Args:
        n_channels: Channels in the task.
        size: Buffer size (samples per channel).
        explicit: Whether the size was configured (else a later first write may resize it).
    """

    def __init__(self, n_channels: int, size: int, explicit: bool) -> None:
        self.size = int(size)
        self.explicit = explicit
        self.data = np.zeros((n_channels, self.size))
        self.valid = 0
        self.idle_pos = 0
        self.write_abs = 0
        self.ring = self.size

    def write_idle(self, samples: FloatArray) -> None:
        """Write while the task is not running (appends after earlier idle writes).

        Raises:
            DaqmxError: -200293 when the samples do not fit in the buffer.
        """
        n = samples.shape[1]
        if self.idle_pos + n > self.size:
            raise DaqmxError(
                Code.NO_MORE_SPACE,
                f"Buffer Size (samples per channel): {self.size}\nSamples already written: "
                f"{self.idle_pos}\nSamples to write: {n}",
                samps_per_chan_written=0,
            )
        self.data[:, self.idle_pos : self.idle_pos + n] = samples
        self.idle_pos += n
        self.valid = max(self.valid, self.idle_pos)

    def on_start(self, regenerate: bool) -> None:
        """The task starts: the samples written so far are what is generated first.

        Args:
            regenerate: Loop over the written samples (else: a FIFO of the whole buffer).
        """
        self.write_abs = self.valid
        self.idle_pos = 0
        self.ring = self.valid if regenerate else self.size

    def on_stop(self) -> None:
        """The task stopped: the next write starts again at the beginning of the buffer."""
        self.idle_pos = 0

    def space(self, generated: int) -> int:
        """Samples per channel that can be written now without replacing ungenerated ones."""
        if self.valid == 0:
            return 0
        return max(0, min(self.ring, self.ring - (self.write_abs - generated)))

    def write_running(self, samples: FloatArray) -> None:
        """Write while running (the caller checked :meth:`space`)."""
        n = samples.shape[1]
        index = (self.write_abs + np.arange(n)) % self.ring
        self.data[:, index] = samples
        self.write_abs += n

    def available(self, generated: int, regenerate: bool) -> float:
        """Samples per channel the generator may take after ``generated`` (inf: regenerating)."""
        if self.valid == 0:
            return 0.0
        if regenerate:
            return float("inf")
        return float(max(0, self.write_abs - generated))

    def take(self, generated: int, n: int) -> FloatArray:
        """The next ``n`` samples to generate after ``generated`` (looping over the ring)."""
        index = (generated + np.arange(n)) % self.ring
        return self.data[:, index]


class InputBuffer:
    """The AI buffer of one task: a ring of ``(n_channels, size)`` samples (V).

    Args:
        n_channels: Channels in the task.
        size: Buffer size (samples per channel).
    """

    def __init__(self, n_channels: int, size: int) -> None:
        self.size = max(1, int(size))
        self.data = np.zeros((n_channels, self.size))
        self.acquired = 0
        self.read_pos = 0
        self.overflowed = False

    @property
    def unread(self) -> int:
        """Samples per channel acquired and not read yet."""
        return self.acquired - self.read_pos

    def append(self, samples: FloatArray, overwrite: bool) -> None:
        """Store freshly acquired samples; flag an overflow unread data was overwritten."""
        n = samples.shape[1]
        if n == 0:
            return
        if not overwrite and self.unread + n > self.size:
            self.overflowed = True
        if n >= self.size:
            samples = samples[:, -self.size :]
            start = self.acquired + n - self.size
        else:
            start = self.acquired
        index = (start + np.arange(samples.shape[1])) % self.size
        self.data[:, index] = samples
        self.acquired += n

    def oldest(self) -> int:
        """Absolute position of the oldest sample still in the ring."""
        return max(0, self.acquired - self.size)

    def read(self, start: int, n: int) -> FloatArray:
        """Samples ``[start, start + n)`` (the caller checked they are available).

        Raises:
            DaqmxError: -200279 if some of them were overwritten.
        """
        if start < self.oldest():
            raise DaqmxError(
                Code.SAMPLES_NO_LONGER_AVAILABLE,
                f"Attempted to read sample: {start}\nOldest sample in the buffer: "
                f"{self.oldest()}\nBuffer Size: {self.size}",
            )
        index = (start + np.arange(n)) % self.size
        return self.data[:, index]
