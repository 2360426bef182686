"""One simulated bench: a device model, its measurement chain and a shared clock.

Several simulated instruments can stand behind one :class:`SimBench` at once (the in-process
backend, a simulated DAQ server, simulated lock-in amplifiers, possibly on other threads): what
one of them drives, the others can observe through :meth:`SimBench.subscribe`.

Drive model: the DAC applies each waveform sample for ``1 / f_s`` seconds (zero-order hold); the
device is quasi-static, so its current is evaluated once per sample; the chain turns that
current into the ADC reading taken at the same sample clock. After a waveform the electrodes
hold its last sample.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simulated_hw.chain import MeasurementChain
from simulated_hw.models import DeviceModel
from simulated_hw.timebase import TimeBase

FloatArray = NDArray[np.float64]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchRecord:
    """Everything that happened during one :meth:`SimBench.play` call (arrays are read-only).

    Attributes:
        t0_s: Simulated time (s) of the first sample.
        sample_rate_hz: Sample rate (Hz) of drive and readout.
        voltages_v: Electrode voltages (the DAQ waveform plus any external sines), shape
            ``(n_electrodes, n_samples)`` (V).
        device_current_a: Noise-free device current per sample, shape ``(n_samples,)`` (A).
        tia_v: Amplifier output per sample (V).
        adc_v: ADC reading per sample (V).
        saturated: Whether the amplifier swing or the ADC range was hit.
        measured_current_a: ADC reading converted back to current (``adc_v / gain``) (A).
    """

    t0_s: float
    sample_rate_hz: float
    voltages_v: FloatArray
    device_current_a: FloatArray
    tia_v: FloatArray
    adc_v: FloatArray
    saturated: bool
    measured_current_a: FloatArray

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.device_current_a.size)

    @property
    def duration_s(self) -> float:
        """Duration (s): ``n_samples / sample_rate_hz``."""
        return self.n_samples / self.sample_rate_hz

    def times_s(self) -> FloatArray:
        """Simulated time (s) of every sample."""
        return self.t0_s + np.arange(self.n_samples, dtype=np.float64) / self.sample_rate_hz


@dataclass(frozen=True)
class ExternalSine:
    """A sine an instrument adds on one electrode by itself (a lock-in's sine output summed
    onto the DAQ's DC at the breakout).

    Attributes:
        electrode_index: Row of the electrode it drives.
        frequency_hz: Frequency (Hz).
        amplitude_v: Peak amplitude (V).
        phase_rad: Phase (rad) at simulated time 0.
    """

    electrode_index: int
    frequency_hz: float
    amplitude_v: float
    phase_rad: float = 0.0

    def values_v(self, times_s: FloatArray) -> FloatArray:
        """The sine's voltage (V) at ``times_s`` (s of simulated time)."""
        return self.amplitude_v * np.sin(2 * np.pi * self.frequency_hz * times_s + self.phase_rad)


class BenchAudit:
    """Exact record of what reached the electrodes, for safety checks. Thread-safe.

    Per electrode: the lowest and highest voltage ever applied (NaN before the first sample) and
    the largest slew rate ``|Δv| · f_s`` (V/s) between consecutive samples, including the step
    from the voltage held before a waveform to its first sample.
    """

    def __init__(self, n_electrodes: int) -> None:
        if n_electrodes < 1:
            raise ValueError(f"n_electrodes must be positive, got {n_electrodes}.")
        self._n = int(n_electrodes)
        self._lock = threading.Lock()
        self._min_v = np.full(self._n, np.nan)
        self._max_v = np.full(self._n, np.nan)
        self._max_slew = np.zeros(self._n)
        self._total_samples = 0
        self._n_plays = 0

    @property
    def n_electrodes(self) -> int:
        """Number of electrodes audited."""
        return self._n

    @property
    def min_v(self) -> FloatArray:
        """Lowest voltage (V) applied per electrode since the last reset (NaN if none)."""
        with self._lock:
            return self._min_v.copy()

    @property
    def max_v(self) -> FloatArray:
        """Highest voltage (V) applied per electrode since the last reset (NaN if none)."""
        with self._lock:
            return self._max_v.copy()

    @property
    def max_slew_v_per_s(self) -> FloatArray:
        """Largest slew rate (V/s) per electrode since the last reset (0 if none)."""
        with self._lock:
            return self._max_slew.copy()

    @property
    def total_samples(self) -> int:
        """Samples applied since the last reset."""
        with self._lock:
            return self._total_samples

    @property
    def n_plays(self) -> int:
        """Waveforms applied since the last reset."""
        with self._lock:
            return self._n_plays

    def observe(self, held_v: FloatArray, waveform_v: FloatArray, sample_rate_hz: float) -> None:
        """Account for ``waveform_v`` (``(n_electrodes, n)``, V) played after holding ``held_v``."""
        lo = waveform_v.min(axis=1)
        hi = waveform_v.max(axis=1)
        first_step = np.abs(waveform_v[:, 0] - held_v)
        if waveform_v.shape[1] > 1:
            steps = np.abs(np.diff(waveform_v, axis=1)).max(axis=1)
            first_step = np.maximum(first_step, steps)
        slew = first_step * sample_rate_hz
        with self._lock:
            self._min_v = np.fmin(self._min_v, lo)
            self._max_v = np.fmax(self._max_v, hi)
            self._max_slew = np.maximum(self._max_slew, slew)
            self._total_samples += int(waveform_v.shape[1])
            self._n_plays += 1

    def reset(self) -> None:
        """Forget everything observed so far (the electrodes keep their voltages)."""
        with self._lock:
            self._min_v = np.full(self._n, np.nan)
            self._max_v = np.full(self._n, np.nan)
            self._max_slew = np.zeros(self._n)
            self._total_samples = 0
            self._n_plays = 0


class SimBench:
    """A simulated setup: device model + measurement chain + clock, shared by instruments.

    :meth:`play` is serialised by a lock (one waveform at a time, as on one DAQ); records are
    delivered to subscribers in order, from the thread that played them, while the lock is
    held. Subscribers must therefore be quick and must not wait for another thread that plays.

    Args:
        model: The device (voltages in V → current in A).
        chain: The measurement chain (amplifier, noise, ADC); the bench owns its state.
        timebase: The simulated clock; a fresh fast one when None.
    """

    def __init__(
        self,
        model: DeviceModel,
        chain: MeasurementChain,
        timebase: TimeBase | None = None,
    ) -> None:
        self._model = model
        self._chain = chain
        self._timebase = timebase if timebase is not None else TimeBase()
        n = int(model.n_electrodes)
        self._n = n
        self._play_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._applied_v = np.zeros(n)
        self._electrode_v = np.zeros(n)
        self._sines: dict[str, ExternalSine] = {}
        self._last_record: BenchRecord | None = None
        self._audit = BenchAudit(n)
        self._subscribers: list[Callable[[BenchRecord], None]] = []

    @property
    def model(self) -> DeviceModel:
        """The device model."""
        return self._model

    @contextlib.contextmanager
    def device_replaced(self, model: DeviceModel) -> Iterator[None]:
        """Put ``model`` (e.g. a reference resistor) in place of the device, then restore it."""
        if int(model.n_electrodes) != self._n:
            raise ValueError(
                f"replacement has {model.n_electrodes} electrodes, the bench has {self._n}"
            )
        with self._play_lock:
            previous = self._model
            self._model = model
        try:
            yield
        finally:
            with self._play_lock:
                self._model = previous

    @property
    def chain(self) -> MeasurementChain:
        """The measurement chain."""
        return self._chain

    @property
    def timebase(self) -> TimeBase:
        """The simulated clock."""
        return self._timebase

    @property
    def n_electrodes(self) -> int:
        """Number of voltage electrodes."""
        return self._n

    @property
    def applied_v(self) -> FloatArray:
        """Voltage (V) each electrode holds now (0 V at the start), shape ``(n_electrodes,)``."""
        with self._state_lock:
            return self._applied_v.copy()

    def set_external_sine(self, key: str, sine: ExternalSine | None) -> None:
        """Add (or, with None, remove) a sine that an instrument sums onto an electrode.

        From the next :meth:`play` on, the electrode sees the DAQ's waveform plus every sine
        (the audit checks that sum); :attr:`applied_v` stays what the DAQ holds.
        """
        if sine is not None and not 0 <= sine.electrode_index < self._n:
            raise ValueError(f"electrode index {sine.electrode_index} outside 0..{self._n - 1}")
        with self._play_lock, self._state_lock:
            if sine is None:
                self._sines.pop(key, None)
            else:
                self._sines[key] = sine

    @property
    def external_sines(self) -> dict[str, ExternalSine]:
        """The sines instruments add, by key."""
        with self._state_lock:
            return dict(self._sines)

    def restore_held(self, voltages_v: ArrayLike) -> None:
        """Make the electrodes hold ``voltages_v`` (V) without playing anything.

        A DAC keeps its outputs when the program that drove it dies; the simulated backend
        calls this on open with the voltages a killed process left, so the next process finds
        the electrodes where they were. Allowed only before the first :meth:`play`.
        """
        held = np.asarray(voltages_v, dtype=np.float64).reshape(self._n)
        if not np.all(np.isfinite(held)):
            raise ValueError("held voltages must be finite (V)")
        with self._state_lock:
            if self._last_record is not None:
                raise RuntimeError("restore_held is only for a bench that has played nothing")
            self._applied_v = held.copy()
            self._electrode_v = held.copy()

    @property
    def audit(self) -> BenchAudit:
        """Exact record of applied voltages and slew rates."""
        return self._audit

    @property
    def last_record(self) -> BenchRecord | None:
        """The most recent record (None before the first :meth:`play`)."""
        with self._state_lock:
            return self._last_record

    def subscribe(self, callback: Callable[[BenchRecord], None]) -> Callable[[], None]:
        """Call ``callback(record)`` after every :meth:`play`; returns an unsubscribe function.

        Exceptions raised by a callback are logged and otherwise ignored.
        """
        with self._state_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._state_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def play(self, waveform_v: ArrayLike, sample_rate_hz: float) -> BenchRecord:
        """Apply a DAC waveform and read the output synchronously.

        Args:
            waveform_v: Electrode voltages, shape ``(n_electrodes, n_samples)`` (V), n ≥ 1.
            sample_rate_hz: DAC/ADC sample rate (Hz).

        Returns:
            The record of this waveform; the clock advances by ``n_samples / sample_rate_hz``
            and the electrodes then hold the last sample.

        Raises:
            ValueError: If the waveform has the wrong shape, no samples or non-finite values,
                or the sample rate is not positive.
        """
        wf = np.array(waveform_v, dtype=np.float64, copy=True)
        if wf.ndim != 2 or wf.shape[0] != self._n or wf.shape[1] < 1:
            raise ValueError(
                f"waveform_v must have shape ({self._n}, n_samples) with n_samples >= 1, "
                f"got {np.shape(waveform_v)}."
            )
        if not np.all(np.isfinite(wf)):
            raise ValueError("waveform_v contains NaN or infinite values.")
        fs = float(sample_rate_hz)
        if not (math.isfinite(fs) and fs > 0.0):
            raise ValueError(f"sample_rate_hz must be positive (Hz), got {sample_rate_hz}.")
        n = wf.shape[1]
        with self._play_lock:
            daq_last = wf[:, -1].copy()
            if self._sines:
                times = self._timebase.now_s + np.arange(n, dtype=np.float64) / fs
                for sine in self._sines.values():
                    wf[sine.electrode_index] += sine.values_v(times)
            wf.setflags(write=False)
            current = np.asarray(self._model.current_a(wf.T), dtype=np.float64)
            if current.shape != (n,):
                raise ValueError(
                    f"The device model returned shape {current.shape}, expected ({n},)."
                )
            out = self._chain.process(current, fs)
            measured = self._chain.to_current_a(out.adc_v)
            for arr in (current, out.tia_v, out.adc_v, measured):
                arr.setflags(write=False)
            with self._state_lock:
                held = self._electrode_v
            self._audit.observe(held, wf, fs)
            record = BenchRecord(
                t0_s=self._timebase.now_s,
                sample_rate_hz=fs,
                voltages_v=wf,
                device_current_a=current,
                tia_v=out.tia_v,
                adc_v=out.adc_v,
                saturated=out.saturated,
                measured_current_a=measured,
            )
            with self._state_lock:
                self._applied_v = daq_last
                self._electrode_v = wf[:, -1].copy()
                self._last_record = record
                subscribers = list(self._subscribers)
            self._timebase.advance(n / fs)
            for callback in subscribers:
                try:
                    callback(record)
                except Exception:
                    logger.exception("A SimBench subscriber raised; the record was still played.")
        return record
