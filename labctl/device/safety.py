"""The safety layer: every waveform passes here before any backend sees it.

:class:`SafeDevice` wraps an :class:`~labctl.device.ElectrodeBackend` and is the only object the
rest of labctl drives. It enforces, on every sample of every waveform:

- each electrode's ``[min_v, max_v]`` (so DC plus the sum of tone amplitudes must fit);
- a global ceiling ``|V| <= max_abs_v``;
- a maximum slew rate ``|v[n+1] - v[n]| * f_s <= slew_v_per_s`` between consecutive samples;
- waveforms that start and end on each electrode's resting voltage.

A violation raises :class:`SafetyViolation` naming electrode, sample index, value and limit, and
nothing is sent. The backend is moved from whatever it holds to a waveform's first sample by a
slew-limited ramp that this layer generates (and strips from the returned record).

:meth:`SafeDevice.safe_shutdown` ramps every electrode to 0 V at the slew limit. It is
idempotent, runs on context-manager exit (normal, exception, KeyboardInterrupt), at interpreter
exit (``atexit``) and after any backend error, and keeps going on the other electrodes if one
fails. :func:`shutdown_on_signals` turns SIGTERM (and optionally SIGINT) into an exception so
that the same paths run.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

import numpy as np

from labctl.device import Acquisition, CurrentOutput, Electrode, ElectrodeBackend, FloatArray

log = logging.getLogger(__name__)

_RELATIVE_TOLERANCE = 1e-9
"""Slack on slew checks for floating-point round-off (fraction of the per-sample step)."""
_ABSOLUTE_TOLERANCE_V = 1e-12
"""Slack on voltage comparisons for floating-point round-off (V)."""


class SafetyViolation(ValueError):
    """A waveform would break a safety limit; nothing was sent to the device."""

    def __init__(
        self, electrode: str, sample_index: int, value: float, limit: float, rule: str
    ) -> None:
        self.electrode = electrode
        self.sample_index = sample_index
        self.value = value
        self.limit = limit
        self.rule = rule
        super().__init__(
            f"electrode {electrode!r}, sample {sample_index}: {rule} "
            f"(value {value:.6g}, limit {limit:.6g}); nothing was sent to the device"
        )


class DeviceShutDown(RuntimeError):
    """The device has been shut down (abort, error or exit) and accepts no more waveforms."""


class TerminatedBySignal(SystemExit):
    """Raised in the main thread when SIGTERM (or a handled SIGINT) arrives.

    A :class:`SystemExit` so that ``except Exception`` blocks do not swallow it while ``finally``
    blocks and context managers (and so the safe shutdown) still run.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(128 + signum)


@dataclass(frozen=True)
class SafetyLimits:
    """Limits that apply to every electrode on top of its own range.

    Attributes:
        max_abs_v: Global ceiling on |V| for every sample (V).
        slew_v_per_s: Maximum rate of change between consecutive samples (V/s).
        ramp_v_per_s: Rate of the ramps this layer generates (V/s); at most ``slew_v_per_s``.
    """

    max_abs_v: float
    slew_v_per_s: float
    ramp_v_per_s: float | None = None

    def __post_init__(self) -> None:
        if not (self.max_abs_v > 0 and math.isfinite(self.max_abs_v)):
            raise ValueError(f"max_abs_v must be a positive number of volts, got {self.max_abs_v}")
        if not (self.slew_v_per_s > 0 and math.isfinite(self.slew_v_per_s)):
            raise ValueError(f"slew_v_per_s must be positive, got {self.slew_v_per_s}")
        if self.ramp_v_per_s is not None and not 0 < self.ramp_v_per_s <= self.slew_v_per_s:
            raise ValueError("ramp_v_per_s must be positive and at most slew_v_per_s")

    @property
    def effective_ramp_v_per_s(self) -> float:
        """Rate used for generated ramps (V/s)."""
        return self.ramp_v_per_s if self.ramp_v_per_s is not None else self.slew_v_per_s


@dataclass
class ShutdownReport:
    """What a safe shutdown did.

    Attributes:
        ok: Every electrode reached 0 V as far as the backend reported.
        failed_electrodes: Names of electrodes whose ramp raised.
        errors: The error messages, in order.
    """

    ok: bool = True
    failed_electrodes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def check_waveform(
    waveform_v: FloatArray,
    sample_rate_hz: float,
    electrodes: tuple[Electrode, ...],
    limits: SafetyLimits,
    *,
    require_rest_ends: bool = True,
) -> None:
    """Raise :class:`SafetyViolation` at the first sample that breaks a limit.

    Args:
        waveform_v: Shape ``(n_electrodes, n_samples)`` (V).
        sample_rate_hz: Rate at which the waveform will be played (Hz).
        electrodes: The device's electrodes, in row order.
        limits: The global limits.
        require_rest_ends: Whether the first and last samples must equal the resting voltages.
    """
    wave = np.asarray(waveform_v)
    if wave.ndim != 2 or wave.shape[0] != len(electrodes):
        raise ValueError(
            f"waveform must have shape (n_electrodes={len(electrodes)}, n_samples), "
            f"got {wave.shape}"
        )
    if wave.shape[1] < 1:
        raise ValueError("waveform has no samples")
    if not (sample_rate_hz > 0 and math.isfinite(sample_rate_hz)):
        raise ValueError(f"sample rate must be a positive number of Hz, got {sample_rate_hz}")
    max_step_v = limits.slew_v_per_s / sample_rate_hz * (1 + _RELATIVE_TOLERANCE)
    for row, electrode in enumerate(electrodes):
        samples = wave[row]
        bad = ~np.isfinite(samples)
        if bad.any():
            index = int(np.argmax(bad))
            raise SafetyViolation(
                electrode.name, index, float(samples[index]), electrode.max_v, "not a finite number"
            )
        _first_outside(samples, electrode.name, electrode.max_v, "above the electrode maximum")
        _first_outside(-samples, electrode.name, -electrode.min_v, "below the electrode minimum")
        _first_outside(np.abs(samples), electrode.name, limits.max_abs_v, "|V| above the ceiling")
        if samples.size > 1:
            steps = np.abs(np.diff(samples))
            over = steps > max_step_v
            if over.any():
                index = int(np.argmax(over))
                raise SafetyViolation(
                    electrode.name,
                    index + 1,
                    float(steps[index] * sample_rate_hz),
                    limits.slew_v_per_s,
                    "slew rate (V/s) above the limit",
                )
        if require_rest_ends:
            for index in (0, samples.size - 1):
                if abs(samples[index] - electrode.rest_v) > _ABSOLUTE_TOLERANCE_V:
                    raise SafetyViolation(
                        electrode.name,
                        index,
                        float(samples[index]),
                        electrode.rest_v,
                        "waveform must start and end on the resting voltage",
                    )


def _first_outside(values: FloatArray, name: str, limit: float, rule: str) -> None:
    over = values > limit + _ABSOLUTE_TOLERANCE_V
    if over.any():
        index = int(np.argmax(over))
        raise SafetyViolation(name, index, float(abs(values[index])), abs(limit), rule)


def ramp_samples(
    start_v: FloatArray, stop_v: FloatArray, sample_rate_hz: float, rate_v_per_s: float
) -> FloatArray:
    """A linear multi-channel ramp from ``start_v`` to ``stop_v`` (both excluded/included).

    The ramp excludes ``start_v`` (the backend already holds it) and ends exactly on
    ``stop_v``. Every electrode moves by at most ``rate_v_per_s / sample_rate_hz`` per sample.

    Returns:
        Shape ``(n_electrodes, n_steps)``; ``n_steps`` is 0 when nothing moves.
    """
    start = np.asarray(start_v, dtype=np.float64)
    stop = np.asarray(stop_v, dtype=np.float64)
    distance = float(np.max(np.abs(stop - start), initial=0.0))
    if distance == 0.0:
        return np.empty((start.size, 0))
    max_step = rate_v_per_s / sample_rate_hz
    n_steps = max(1, math.ceil(distance / max_step * (1 + 1e-12)))
    fractions = np.arange(1, n_steps + 1) / n_steps
    ramp = start[:, None] + (stop - start)[:, None] * fractions[None, :]
    ramp[:, -1] = stop
    return ramp


class SafeDevice:
    """An electrode device behind the safety layer; the only device object labctl drives.

    Use it as a context manager: the backend is opened on entry, and on any exit (normal,
    exception, KeyboardInterrupt, :class:`TerminatedBySignal`) every electrode is ramped to 0 V
    before the backend is closed. An ``atexit`` hook covers devices that are never closed.

    Args:
        backend: The instrument backend.
        limits: Global safety limits.
        sample_rate_hz: Default rate (Hz) for generated ramps and the shutdown.
    """

    def __init__(
        self, backend: ElectrodeBackend, limits: SafetyLimits, sample_rate_hz: float
    ) -> None:
        for electrode in backend.electrodes:
            _check_electrode_against_limits(electrode, limits)
        self._backend = backend
        self._limits = limits
        self._lock = threading.RLock()
        self._opened = False
        self._shut_down = False
        self._device_seconds = 0.0
        self._last_commanded_v = np.zeros(len(backend.electrodes))
        self._sample_rate_hz = backend.coerce_sample_rate(sample_rate_hz)

    # -- description -------------------------------------------------------------------------
    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """The voltage electrodes, in waveform row order."""
        return self._backend.electrodes

    @property
    def outputs(self) -> tuple[CurrentOutput, ...]:
        """The current outputs, in acquisition row order."""
        return self._backend.outputs

    @property
    def electrode_names(self) -> tuple[str, ...]:
        """Electrode names in waveform row order."""
        return self._backend.electrode_names

    @property
    def limits(self) -> SafetyLimits:
        """The global limits in force."""
        return self._limits

    @property
    def sample_rate_hz(self) -> float:
        """The default (coerced) sample rate (Hz)."""
        return self._sample_rate_hz

    @property
    def device_seconds(self) -> float:
        """Total time the device has been driven (s), ramps and shutdown included."""
        return self._device_seconds

    @property
    def is_shut_down(self) -> bool:
        """Whether :meth:`safe_shutdown` has run; the device then refuses waveforms."""
        return self._shut_down

    def identity(self) -> dict[str, Any]:
        """Instrument identities for the run store."""
        return self._backend.identity()

    def reference_gradient(self, voltages_v: FloatArray) -> FloatArray | None:
        """True dI/dV (A/V) per electrode from a simulated backend; None on real hardware."""
        return self._backend.reference_gradient(np.asarray(voltages_v, dtype=np.float64))

    def reference_hessian(self, voltages_v: FloatArray) -> FloatArray | None:
        """True d²I/dV² (A/V²) from a simulated backend; None on real hardware."""
        return self._backend.reference_hessian(np.asarray(voltages_v, dtype=np.float64))

    @contextlib.contextmanager
    def reference_resistor(self, electrode_index: int, resistance_ohm: float) -> Iterator[None]:
        """Switch a known resistor in place of the device (if the backend can), at 0 V.

        Raises:
            NotImplementedError: The backend cannot switch; connect the resistor by hand.
        """
        with self._lock:
            self._ensure_running()
        with self._backend.reference_resistor(electrode_index, resistance_ohm):
            yield

    def rest_voltages(self) -> FloatArray:
        """The resting voltage (V) of every electrode, shape ``(n_electrodes,)``."""
        return np.array([e.rest_v for e in self.electrodes])

    def coerce_sample_rate(self, sample_rate_hz: float) -> float:
        """The rate (Hz) the hardware will actually run at."""
        return self._backend.coerce_sample_rate(sample_rate_hz)

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> SafeDevice:
        """Open the backend and register the exit-time shutdown."""
        with self._lock:
            if self._opened:
                return self
            self._backend.open()
            self._opened = True
            self._shut_down = False
            self._last_commanded_v = self._read_present_or_last()
            atexit.register(self.safe_shutdown)
            return self

    def close(self) -> None:
        """Ramp to 0 V (if not already done) and release the backend."""
        with self._lock:
            if not self._opened:
                return
            try:
                self.safe_shutdown()
            finally:
                self._opened = False
                atexit.unregister(self.safe_shutdown)
                try:
                    self._backend.close()
                except Exception:
                    log.exception("closing the backend failed")

    def __enter__(self) -> SafeDevice:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- driving -----------------------------------------------------------------------------
    def check(self, waveform_v: FloatArray, sample_rate_hz: float) -> None:
        """Check a waveform against every limit without sending it (raises SafetyViolation)."""
        check_waveform(waveform_v, sample_rate_hz, self.electrodes, self._limits)

    def apply(self, waveform_v: FloatArray, sample_rate_hz: float | None = None) -> Acquisition:
        """Check and apply a waveform; return the synchronously sampled output current.

        The waveform must start and end on the resting voltages. If the electrodes hold
        something else, a slew-limited ramp is played first; its samples are removed from the
        returned record (``metadata["ramp_samples"]`` says how many there were).

        Args:
            waveform_v: Shape ``(n_electrodes, n_samples)`` (V).
            sample_rate_hz: Rate (Hz); default the device's rate. It must be one the hardware
                supports exactly (see :meth:`coerce_sample_rate`), so tones stay coherent.

        Raises:
            SafetyViolation: The waveform breaks a limit; nothing was sent.
            DeviceShutDown: The device was shut down.
        """
        rate = self._sample_rate_hz if sample_rate_hz is None else float(sample_rate_hz)
        coerced = self._backend.coerce_sample_rate(rate)
        if not math.isclose(coerced, rate, rel_tol=1e-12):
            raise ValueError(
                f"sample rate {rate} Hz is not available; the hardware would run at {coerced} Hz. "
                "Use SafeDevice.coerce_sample_rate() and build the waveform at that rate."
            )
        wave = np.array(waveform_v, dtype=np.float64, order="C")
        self.check(wave, rate)
        rest = self.rest_voltages()
        wave[:, 0] = rest  # within round-off of rest (checked): make the ends exact
        wave[:, -1] = rest
        with self._lock:
            self._ensure_running()
            ramp = ramp_samples(
                self._read_present_or_last(),
                wave[:, 0],
                rate,
                min(self._limits.effective_ramp_v_per_s, self._limits.slew_v_per_s),
            )
            full = np.concatenate([ramp, wave], axis=1) if ramp.shape[1] else wave
            try:
                acquisition = self._backend.write_read(full, rate)
            except BaseException:
                log.exception("backend failed while applying a waveform: shutting down")
                self._last_commanded_v = full[:, -1].copy()
                self.safe_shutdown()
                raise
            self._last_commanded_v = full[:, -1].copy()
            self._device_seconds += full.shape[1] / rate
        n_ramp = ramp.shape[1]
        metadata = dict(acquisition.metadata, ramp_samples=n_ramp)
        return replace(acquisition, current_a=acquisition.current_a[:, n_ramp:], metadata=metadata)

    def idle(self, duration_s: float) -> None:
        """Hold the resting voltages for ``duration_s`` (counts as device time)."""
        n = max(2, round(duration_s * self._sample_rate_hz))
        self.apply(np.repeat(self.rest_voltages()[:, None], n, axis=1))

    def safe_shutdown(self) -> ShutdownReport:
        """Ramp every electrode to 0 V at the slew limit. Idempotent; never raises.

        If the multi-channel ramp fails, each electrode is ramped on its own (others held), so
        one failing channel does not leave the others energised.
        """
        report = ShutdownReport()
        with self._lock:
            if self._shut_down or not self._opened:
                self._shut_down = True
                return report
            self._shut_down = True
            rate = self._sample_rate_hz
            ramp_rate = self._limits.effective_ramp_v_per_s
            present = self._read_present_or_last()
            target = np.zeros_like(present)
            ramp = ramp_samples(present, target, rate, ramp_rate)
            if ramp.shape[1] == 0:
                return report
            try:
                self._backend.write(ramp, rate)
                self._device_seconds += ramp.shape[1] / rate
                self._last_commanded_v = target
                log.info("safe shutdown: all electrodes ramped to 0 V")
                return report
            except Exception as exc:
                log.error("safe shutdown: multi-channel ramp failed (%s); ramping one by one", exc)
                report.errors.append(str(exc))
            held = self._read_present_or_last()
            for row, electrode in enumerate(self.electrodes):
                stop = held.copy()
                stop[row] = 0.0
                single = ramp_samples(held, stop, rate, ramp_rate)
                if single.shape[1] == 0:
                    continue
                try:
                    self._backend.write(single, rate)
                    held = stop
                except Exception as exc:
                    log.error("safe shutdown: electrode %s failed: %s", electrode.name, exc)
                    report.failed_electrodes.append(electrode.name)
                    report.errors.append(f"{electrode.name}: {exc}")
            self._last_commanded_v = held
            report.ok = not report.failed_electrodes
            return report

    # -- internals ---------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if not self._opened:
            raise DeviceShutDown("the device is not open: use it as a context manager")
        if self._shut_down:
            raise DeviceShutDown("the device was shut down and accepts no more waveforms")

    def _read_present_or_last(self) -> FloatArray:
        try:
            return np.asarray(self._backend.present_voltages(), dtype=np.float64).copy()
        except Exception as exc:
            log.warning("could not read present voltages (%s); using last commanded", exc)
            return self._last_commanded_v.copy()


def _check_electrode_against_limits(electrode: Electrode, limits: SafetyLimits) -> None:
    if not electrode.min_v < electrode.max_v:
        raise ValueError(f"electrode {electrode.name!r}: min_v must be below max_v")
    if max(abs(electrode.min_v), abs(electrode.max_v)) > limits.max_abs_v:
        raise ValueError(
            f"electrode {electrode.name!r}: range [{electrode.min_v}, {electrode.max_v}] V "
            f"exceeds the ceiling |V| <= {limits.max_abs_v} V"
        )
    if not electrode.min_v <= 0.0 <= electrode.max_v:
        raise ValueError(f"electrode {electrode.name!r}: range must contain 0 V (the safe state)")
    if not electrode.contains(electrode.rest_v):
        raise ValueError(f"electrode {electrode.name!r}: resting voltage outside its range")


@contextlib.contextmanager
def shutdown_on_signals(*, sigint: bool = False) -> Iterator[None]:
    """Turn SIGTERM (and SIGINT if asked) into :class:`TerminatedBySignal` in the main thread.

    The exception unwinds through every ``with SafeDevice`` block, so electrodes are ramped to
    0 V. Previous handlers are restored on exit. Installed by applications (the CLI), never by
    library constructors. Does nothing outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, _frame: FrameType | None) -> None:
        raise TerminatedBySignal(signum)

    signals = [signal.SIGTERM] + ([signal.SIGINT] if sigint else [])
    previous = {sig: signal.signal(sig, _raise) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
