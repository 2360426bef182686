"""The safety layer: every sample that reaches any instrument passes here first.

:class:`SafeDevice` wraps a :class:`~labctl.device.composite.Composite` setup and is the only
object the rest of labctl drives. Its rules:

- **Everything sent is checked.** The caller's waveforms, the ramps this layer prepends, and
  its park and shutdown ramps all pass :func:`~labctl.device.checks.check_waveform`, including
  the step from what the electrodes hold to the first sample and the envelope of any sine an
  instrument adds by itself. Tone specs pass :func:`~labctl.device.tones.check_tone_specs`
  before any oscillator is programmed.
- **Where the electrodes are is known, or it is unknown.** What each electrode holds is kept by
  :class:`~labctl.device.knowledge.ElectrodeKnowledge` from what the source confirms, from
  plausible readback and from the voltages persisted per setup (:mod:`labctl.device.state`),
  so a process started after a SIGKILL knows them. An unknown electrode is never driven:
  waveforms are refused, naming it, until a park or shutdown brings it to 0 V by the only move
  that cannot leave its range, one step to 0 V.
- **Shutdown cannot be interrupted half-way.** SIGINT and SIGTERM are deferred while a
  shutdown or park ramp plays; the shut-down flag is set only after the ramp went out, and a
  failed ramp can be retried.
- **Failures are loud.** :meth:`SafeDevice.close` and :meth:`SafeDevice.park` raise
  :class:`ShutdownFailed` with the :class:`ShutdownReport` when the electrodes could not be
  verified at 0 V.
- **Park** ramps every electrode to 0 V and holds it there, from any thread, within one
  record: the record in flight is cancelled and replayed after :meth:`SafeDevice.unpark`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

import numpy as np

from labctl.device.checks import (
    SafetyLimits,
    SafetyViolation,
    check_electrodes,
    check_waveform,
    ramp_samples,
)
from labctl.device.composite import Composite
from labctl.device.knowledge import ElectrodeKnowledge
from labctl.device.protocols import (
    DemodulatedReading,
    DemodulatedReadout,
    DemodulatedTrace,
    DemodulatorSettings,
    ReferenceOutput,
    SineSource,
    TriggeredDemodulatedReadout,
)
from labctl.device.reports import DeviceShutDown, ShutdownFailed, ShutdownReport
from labctl.device.signals import TerminatedBySignal, shutdown_on_signals, signals_deferred
from labctl.device.state import VoltageStateFile
from labctl.device.tones import ToneSpec, check_tone_specs, tone_envelope
from labctl.device.types import (
    Acquisition,
    CurrentOutput,
    Electrode,
    FloatArray,
    RecordInterrupted,
)

__all__ = [
    "DeviceShutDown",
    "SafeDevice",
    "SafetyLimits",
    "SafetyViolation",
    "ShutdownFailed",
    "ShutdownReport",
    "TerminatedBySignal",
    "check_waveform",
    "ramp_samples",
    "shutdown_on_signals",
]

log = logging.getLogger(__name__)

ZERO_TOLERANCE_V = 1e-3
"""A readback within this of 0 V (V) verifies a shutdown."""


class CheckedDemodulator:
    """A demodulated readout seen through the safety layer: configuring goes through
    :meth:`SafeDevice.configure_demodulator`; reading passes straight through."""

    def __init__(self, device: SafeDevice, name: str, demodulator: DemodulatedReadout) -> None:
        self._device = device
        self._name = name
        self._demodulator = demodulator

    def open(self) -> None:
        """Opened with the device."""

    def close(self) -> None:
        """Closed with the device."""

    def identity(self) -> dict[str, Any]:
        return self._demodulator.identity()

    def configure(self, settings: DemodulatorSettings) -> DemodulatorSettings:
        return self._device.configure_demodulator(self._name, settings)

    def settling_time_s(self) -> float:
        return self._demodulator.settling_time_s()

    def read(self) -> DemodulatedReading:
        return self._demodulator.read()

    @property
    def can_trace(self) -> bool:
        """Whether the instrument stores X/Y from a trigger (see :meth:`arm_trace`)."""
        return isinstance(self._demodulator, TriggeredDemodulatedReadout)

    def arm_trace(self, duration_s: float, max_rate_hz: float) -> float:
        """Arm X/Y storage started by the next record (moves no output); returns the rate (Hz).

        Raises:
            TypeError: The instrument stores no traces.
        """
        return self._triggered().arm_trace(duration_s, max_rate_hz)

    def fetch_trace(self) -> DemodulatedTrace:
        """The X/Y stored since the trigger."""
        return self._triggered().fetch_trace()

    def _triggered(self) -> TriggeredDemodulatedReadout:
        if not isinstance(self._demodulator, TriggeredDemodulatedReadout):
            raise TypeError(
                f"demodulated readout {self._name!r} cannot store X/Y from a trigger (no buffer "
                "or capture): it cannot read operating points during a record"
            )
        return self._demodulator

    @property
    def instrument(self) -> DemodulatedReadout:
        """The instrument underneath (for identities and simulator tests)."""
        return self._demodulator


class SafeDevice:
    """A setup behind the safety layer; the only device object labctl drives.

    Use it as a context manager: the instruments are opened on entry, and on any exit (normal,
    exception, KeyboardInterrupt, :class:`TerminatedBySignal`) every electrode is brought to
    0 V before they are closed. An ``atexit`` hook covers devices that are never closed.

    Args:
        setup: The composite setup, or one instrument that is at least a voltage source.
        limits: Global safety limits.
        sample_rate_hz: Requested rate (Hz) for records and generated ramps; coerced by the
            source when the device is opened (read :attr:`sample_rate_hz` after that).
        state_file: Where the last commanded voltages are persisted (None: not persisted).
    """

    def __init__(
        self,
        setup: Composite | object,
        limits: SafetyLimits,
        sample_rate_hz: float,
        *,
        state_file: VoltageStateFile | None = None,
    ) -> None:
        composite = setup if isinstance(setup, Composite) else Composite.single("device", setup)
        check_electrodes(composite.source.electrodes, limits)
        for electrode in composite.sine_sources:
            if electrode not in {e.name for e in composite.source.electrodes}:
                raise ValueError(f"sine source on unknown electrode {electrode!r}")
        self._setup = composite
        self._source = composite.source
        self._electrodes = tuple(composite.source.electrodes)
        self._limits = limits
        self._requested_rate_hz = float(sample_rate_hz)
        self._rate_hz = float(sample_rate_hz)
        self._knowledge = ElectrodeKnowledge(self._electrodes, limits, self._source, state_file)
        self._cond = threading.Condition(threading.RLock())
        self._flight_lock = threading.Lock()
        self._cancel: threading.Event | None = None
        self._opened = False
        self._accepting = False
        self._shutdown_done = False
        self._park_requested = False
        self._parked = False
        self._last_report: ShutdownReport | None = None
        self._tones: dict[str, list[ToneSpec]] = {}

    # -- description -------------------------------------------------------------------------
    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """The voltage electrodes, in waveform row order."""
        return self._electrodes

    @property
    def outputs(self) -> tuple[CurrentOutput, ...]:
        """The current outputs of the sampled readout, in acquisition row order."""
        readout = self._setup.readout
        return tuple(readout.outputs) if readout is not None else ()

    @property
    def electrode_names(self) -> tuple[str, ...]:
        """Electrode names in waveform row order."""
        return tuple(e.name for e in self._electrodes)

    @property
    def limits(self) -> SafetyLimits:
        """The global limits in force."""
        return self._limits

    @property
    def sample_rate_hz(self) -> float:
        """The rate (Hz) records run at: coerced by the source once the device is open."""
        return self._rate_hz

    @property
    def device_seconds(self) -> float:
        """Total time the electrodes have been driven (s), ramps and shutdown included."""
        return self._knowledge.driven_s

    @property
    def is_shut_down(self) -> bool:
        """Whether a shutdown began; the device then refuses waveforms."""
        return not self._accepting and (self._opened or self._shutdown_done)

    @property
    def is_open(self) -> bool:
        """Whether the instruments are open (after a shutdown too, until :meth:`close`)."""
        return self._opened

    @property
    def is_parked(self) -> bool:
        """Whether the electrodes are held at 0 V by :meth:`park`."""
        return self._parked

    @property
    def last_shutdown_report(self) -> ShutdownReport | None:
        """The report of the latest shutdown or park (None before any)."""
        return self._last_report

    @property
    def instruments(self) -> Mapping[str, object]:
        """Every instrument by name (read-only view, for identities and simulator tests)."""
        return dict(self._setup.instruments)

    @property
    def demodulators(self) -> Mapping[str, CheckedDemodulator]:
        """The demodulated readouts (lock-ins) by instrument name.

        Reading them moves nothing. Configuring one that is also a sine source moves its
        reference, and so its sine (or the residual of its safe state): those go through
        :meth:`configure_demodulator`, which checks the sine at the new frequency first.
        """
        return {
            name: CheckedDemodulator(self, name, d) for name, d in self._setup.demodulators.items()
        }

    def configure_demodulator(
        self, name: str, settings: DemodulatorSettings
    ) -> DemodulatorSettings:
        """Configure demodulated readout ``name``; if it is also a sine source, the sine it
        will make at the new reference (its tone, or its safe-state residual) is checked first.

        Raises:
            SafetyViolation: That sine would break a limit; nothing was sent.
        """
        demodulator = self._setup.demodulators[name]
        with self._cond:
            reference_hz = (
                settings.reference_hz
            )  # the sine output runs at the reference, not the harmonic
            moved: list[ToneSpec] = []
            for electrode, source in self._setup.sine_sources.items():
                if source is not cast(object, demodulator):
                    continue
                for spec in self._tones.get(electrode, []):
                    moved.append(replace(spec, frequency_hz=reference_hz))
                if electrode not in self._tones:
                    residual = source.residual_tone(electrode, reference_hz)
                    if residual is not None:
                        moved.append(residual)
            if moved:
                others = [
                    spec
                    for spec in self._active_tones()
                    if spec.electrode not in {m.electrode for m in moved}
                ]
                check_tone_specs([*others, *moved], self._electrodes, self._limits, self._dc_now())
            return demodulator.configure(settings)

    @property
    def sine_sources(self) -> Mapping[str, SineSource]:
        """Per electrode name, the instrument that can add its own sine there."""
        return dict(self._setup.sine_sources)

    @property
    def reference_output(self) -> ReferenceOutput | None:
        """The voltage source's lock-in reference output (a DAQ counter), if it has one.

        It drives a lock-in's REF IN, never an electrode, so it passes straight through.
        """
        source = self._source
        return source if isinstance(source, ReferenceOutput) else None

    @property
    def can_switch_reference(self) -> bool:
        """Whether an instrument can put a reference resistor in place of the device."""
        return self._setup.switch is not None

    def identity(self) -> dict[str, Any]:
        """Per instrument name, its identity (for the run store)."""
        return self._setup.identity()

    def reference_gradient(self, voltages_v: FloatArray) -> FloatArray | None:
        """True dI/dV (A/V) per electrode from a simulation oracle; None on real hardware."""
        oracle = self._setup.oracle
        if oracle is None:
            return None
        return oracle.reference_gradient(np.asarray(voltages_v, dtype=np.float64))

    def reference_hessian(self, voltages_v: FloatArray) -> FloatArray | None:
        """True d²I/dV² (A/V²) from a simulation oracle; None on real hardware."""
        oracle = self._setup.oracle
        if oracle is None:
            return None
        return oracle.reference_hessian(np.asarray(voltages_v, dtype=np.float64))

    def rest_voltages(self) -> FloatArray:
        """The resting voltage (V) of every electrode, shape ``(n_electrodes,)``."""
        return np.array([e.rest_v for e in self._electrodes])

    def present_voltages(self) -> FloatArray:
        """What the layer knows each electrode holds (V); NaN where it is unknown."""
        return self._knowledge.held_v

    def unknown_electrodes(self) -> list[str]:
        """Names of the electrodes whose voltage is unknown."""
        return self._knowledge.unknown()

    def coerce_sample_rate(self, sample_rate_hz: float) -> float:
        """The rate (Hz) the hardware will actually run at."""
        return self._source.coerce_sample_rate(sample_rate_hz)

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> SafeDevice:
        """Open every instrument, coerce the rate, and learn what the electrodes hold.

        Opening moves no electrode. Electrodes whose voltage cannot be learnt (no valid
        readback and no persisted state) are unknown: see :meth:`park`.
        """
        with self._cond:
            if self._opened:
                return self
            opened: list[Any] = []
            try:
                for instrument in self._setup.instruments.values():
                    instrument.open()
                    opened.append(instrument)
                self._rate_hz = float(self._source.coerce_sample_rate(self._requested_rate_hz))
            except BaseException:
                for instrument in reversed(opened):
                    with contextlib.suppress(Exception):
                        instrument.close()
                raise
            self._opened = True
            self._accepting = True
            self._shutdown_done = False
            self._parked = False
            self._park_requested = False
            self._last_report = None
            self._knowledge.learn_at_open()
            atexit.register(self._shutdown_at_exit)
            return self

    def close(self) -> None:
        """Bring every electrode to 0 V (if not already done) and release the instruments.

        SIGINT and SIGTERM wait until this is done. If the shutdown itself raises, the
        instruments stay open and the exit-time hook stays registered, so it is tried again.

        Raises:
            ShutdownFailed: The electrodes could not be verified at 0 V (after one retry).
        """
        with signals_deferred(), self._cond:
            if not self._opened:
                return
            report = self.safe_shutdown()
            if not report.completed:
                log.error("safe shutdown incomplete (%s): retrying once", report.summary())
                report = self.safe_shutdown()
            self._opened = False
            atexit.unregister(self._shutdown_at_exit)
            for name, instrument in reversed(self._setup.instruments.items()):
                try:
                    instrument.close()
                except Exception:
                    log.exception("closing instrument %s failed", name)
        if not report.ok:
            raise ShutdownFailed(report)

    def __enter__(self) -> SafeDevice:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- driving -----------------------------------------------------------------------------
    def check(self, waveform_v: FloatArray, sample_rate_hz: float) -> None:
        """Check a caller's waveform against every limit without sending it.

        Raises:
            SafetyViolation: The waveform breaks a limit.
        """
        amplitude, slew = tone_envelope(self._active_tones(), self._electrodes)
        check_waveform(
            waveform_v,
            sample_rate_hz,
            self._electrodes,
            self._limits,
            tone_amplitude_v=amplitude,
            tone_slew_v_per_s=slew,
        )

    def apply(
        self,
        waveform_v: FloatArray,
        sample_rate_hz: float | None = None,
        *,
        before_each_attempt: Callable[[], None] | None = None,
    ) -> Acquisition:
        """Check and apply a waveform; return the synchronously sampled output current.

        The waveform must start and end on the resting voltages. If the electrodes hold
        something else, a slew-limited ramp is played first; it is checked with the waveform
        and its samples are removed from the returned record (``metadata["ramp_samples"]``).
        While the device is parked this call waits for :meth:`unpark`; a record cancelled by
        a park is played again, whole, after it.

        A setup without a sampled readout (lock-ins only) plays the waveform all the same and
        returns a record with no outputs (``current_a`` of shape ``(0, n_samples)``).

        Args:
            waveform_v: Shape ``(n_electrodes, n_samples)`` (V).
            sample_rate_hz: Rate (Hz); default the device's rate. It must be one the hardware
                supports exactly (see :meth:`coerce_sample_rate`), so tones stay coherent.
            before_each_attempt: Called right before the record (ramp included) starts, again
                before a replay after a park: e.g. arms lock-in buffers started by the record's
                trigger. It must not drive electrodes. If it raises, nothing is sent and the
                error propagates (the electrodes keep what they hold).

        Raises:
            SafetyViolation: The waveform (or the ramp to it) breaks a limit; nothing was sent.
            UnknownVoltage: An electrode's voltage is unknown; nothing was sent.
            DeviceShutDown: The device was shut down.
        """
        rate = self._rate_hz if sample_rate_hz is None else float(sample_rate_hz)
        wave = np.array(waveform_v, dtype=np.float64, order="C")
        self.check(wave, rate)
        rest = self.rest_voltages()
        wave[:, 0] = rest  # within round-off of rest (checked): make the ends exact
        wave[:, -1] = rest
        readout = self._setup.readout
        with self._cond:
            self._ensure_open()
            coerced = self._source.coerce_sample_rate(rate)
            if not math.isclose(coerced, rate, rel_tol=1e-12):
                raise ValueError(
                    f"sample rate {rate} Hz is not available; the hardware would run at "
                    f"{coerced} Hz. Use SafeDevice.coerce_sample_rate() and build the waveform "
                    "at that rate."
                )
            while True:
                self._hold_while_parked()
                full, n_ramp = self._with_ramp(wave, rate)
                cancel = threading.Event()
                with self._flight_lock:
                    if self._park_requested or not self._accepting:
                        continue
                    self._cancel = cancel
                if before_each_attempt is not None:
                    try:  # nothing has been sent yet: a failure here is no failed record
                        before_each_attempt()
                    except BaseException:
                        with self._flight_lock:
                            self._cancel = None
                        raise
                try:
                    if readout is not None:
                        readout.arm(full.shape[1], rate)
                    self._knowledge.play(full, rate, cancel)
                    acquisition = (
                        readout.fetch()
                        if readout is not None
                        else Acquisition(
                            current_a=np.zeros((0, full.shape[1])),
                            sample_rate_hz=rate,
                            saturated=np.zeros(0, dtype=bool),
                        )
                    )
                except RecordInterrupted as exc:
                    if exc.cancelled and (self._park_requested or not self._accepting):
                        continue  # parked: replay after unpark; shut down: refused above
                    self._fail_during_record(exc)
                    raise
                except BaseException as exc:
                    self._fail_during_record(exc)
                    raise
                finally:
                    with self._flight_lock:
                        self._cancel = None
                break
        metadata = dict(acquisition.metadata, ramp_samples=n_ramp)
        return replace(acquisition, current_a=acquisition.current_a[:, n_ramp:], metadata=metadata)

    def idle(self, duration_s: float) -> None:
        """Hold the resting voltages for ``duration_s`` (s; counts as device time)."""
        n = max(2, round(duration_s * self._rate_hz))
        self.apply(np.repeat(self.rest_voltages()[:, None], n, axis=1))

    def program_tones(
        self, specs: Sequence[ToneSpec], dc_v: Mapping[str, tuple[float, float]] | None = None
    ) -> None:
        """Check ``specs`` analytically, then program each electrode's sine source.

        Args:
            specs: The tones to run (replacing any running on the same electrodes).
            dc_v: Per electrode, the (lowest, highest) DC (V) the source will hold while the
                tones run; default what it holds now and its resting voltage.

        Raises:
            SafetyViolation: DC plus amplitudes leave a range or the ceiling, or Σ 2πfA is
                above the slew limit; nothing was programmed.
            KeyError: No sine source drives a named electrode.
        """
        sources = self._setup.sine_sources
        for spec in specs:
            if spec.electrode not in sources:
                known = ", ".join(sources) or "none"
                raise KeyError(
                    f"no sine source drives electrode {spec.electrode!r} (sine sources: {known})"
                )
        with self._cond:
            self._ensure_open()
            self._hold_while_parked()
            self._knowledge.require_known()
            replaced = {s.electrode for s in specs}
            kept = [s for e, tones in self._tones.items() if e not in replaced for s in tones]
            dc = {**self._dc_now(), **(dc_v or {})}
            check_tone_specs([*kept, *specs], self._electrodes, self._limits, dc)
            by_electrode: dict[str, list[ToneSpec]] = {}
            for spec in specs:
                by_electrode.setdefault(spec.electrode, []).append(spec)
            for name, tones in by_electrode.items():
                source = sources[name]
                self._tones[name] = tones  # counted as on from the first write attempt
                try:
                    for spec in tones:
                        source.program_tone(spec)
                except BaseException:
                    self._tones_off([name], ShutdownReport())
                    raise

    def tones_off(self) -> None:
        """Bring every sine source to its minimum output."""
        with self._cond:
            report = ShutdownReport()
            self._tones_off(list(self._tones), report)
            if report.errors:
                raise ShutdownFailed(report)

    # -- shutdown and park --------------------------------------------------------------------
    def safe_shutdown(self) -> ShutdownReport:
        """Bring every electrode to 0 V and refuse further waveforms. Idempotent.

        Sine sources go to their minimum first; then one multi-channel ramp at the ramp rate
        (a single step to 0 V for unknown electrodes); if it fails, each electrode is moved on
        its own so one failing channel does not leave the others energised. SIGINT and
        SIGTERM wait until the ramp is out. Never raises for instrument errors: the report
        says what happened (:meth:`close` raises on it).
        """
        self._request_stop_of_record(shutting_down=True)
        with signals_deferred(), self._cond:
            if not self._opened:
                return self._last_report or ShutdownReport()
            if self._shutdown_done and self._last_report is not None:
                return self._last_report
            self._accepting = False
            report = self._move_to_zero()
            self._last_report = report
            if report.completed:
                self._shutdown_done = True
                if report.ok:
                    log.info("safe shutdown: all electrodes ramped to 0 V")
                else:
                    log.error("safe shutdown: %s", report.summary())
            else:
                log.error("safe shutdown incomplete: %s", report.summary())
            self._cond.notify_all()
            return report

    def park(self) -> ShutdownReport:
        """Ramp every electrode to 0 V and hold it there until :meth:`unpark`. Any thread.

        A record in flight is cancelled at the sample it reached (and replayed after
        :meth:`unpark`); the ramp runs from there. Returns when the electrodes are at 0 V.

        Raises:
            ShutdownFailed: The electrodes could not be verified at 0 V.
            DeviceShutDown: The device is not open.
        """
        self._request_stop_of_record(shutting_down=False)
        with signals_deferred(), self._cond:
            self._ensure_open(allow_shut_down=True)
            if not self._parked:
                self._park_locked()
            report = self._last_report or ShutdownReport()
        if not report.ok:
            raise ShutdownFailed(report)
        return report

    def unpark(self) -> None:
        """Let the next waveform ramp up from 0 V again (waiting records resume)."""
        with self._cond:
            self._parked = False
            self._park_requested = False
            self._cond.notify_all()

    @contextlib.contextmanager
    def hands_on(self) -> Iterator[None]:
        """Parked, with the device lock held, while a person changes the wiring.

        Every "connect it by hand" prompt happens inside this block; no other thread can drive
        the electrodes until it ends. The park state from before is restored afterwards.
        """
        with self._cond:
            was_parked = self._parked
            self.park()
            try:
                yield
            finally:
                if not was_parked:
                    self.unpark()

    @contextlib.contextmanager
    def reference_resistor(self, electrode_index: int, resistance_ohm: float) -> Iterator[None]:
        """Switch a known resistor (Ω) in place of the device: switched parked, under the lock.

        Raises:
            NotImplementedError: No instrument can switch; connect it by hand inside
                :meth:`hands_on`.
        """
        switch = self._setup.switch
        if switch is None:
            raise NotImplementedError("no instrument of this setup can switch in a resistor")
        with self.hands_on(), switch.reference_resistor(electrode_index, resistance_ohm):
            self.unpark()
            try:
                yield
            finally:
                self.park()

    # -- internals ------------------------------------------------------------------------
    @property
    def ramp_rate_v_per_s(self) -> float:
        """Rate (V/s) of the ramps this layer generates (to a record, to park, to 0 V).

        The configured ramp rate, lowered so that a ramp plus the sines running on any
        electrode (programmed tones, and the residual a sine output keeps at its minimum)
        stays under the slew limit: Σ 2πfA is taken from the slew budget first.
        """
        _, tone_slew = tone_envelope(self._active_tones(), self._electrodes)
        room = self._limits.slew_v_per_s - max(tone_slew, default=0.0)
        rate = min(self._limits.effective_ramp_v_per_s, room * (1 - 1e-6))
        # tones leave no room at all only if their own check failed; never a zero rate
        return max(rate, 1e-3 * self._limits.slew_v_per_s)

    def _active_tones(self) -> list[ToneSpec]:
        """Every sine on the electrodes: programmed tones, and safe-state residuals."""
        specs = [spec for tones in self._tones.values() for spec in tones]
        for electrode, source in self._setup.sine_sources.items():
            if electrode not in self._tones:
                residual = source.residual_tone(electrode)
                if residual is not None:
                    specs.append(residual)
        return specs

    def _dc_now(self) -> dict[str, tuple[float, float]]:
        """Per electrode, the DC range (V) it sits in between records: held and rest."""
        dc: dict[str, tuple[float, float]] = {}
        for row, electrode in enumerate(self._electrodes):
            held = float(self._knowledge.held_v[row])
            held = electrode.rest_v if held != held else held
            dc[electrode.name] = (min(held, electrode.rest_v), max(held, electrode.rest_v))
        return dc

    def _ensure_open(self, allow_shut_down: bool = False) -> None:
        if not self._opened:
            raise DeviceShutDown("the device is not open: use it as a context manager")
        if not allow_shut_down and not self._accepting:
            raise DeviceShutDown("the device was shut down and accepts no more waveforms")

    def _shutdown_at_exit(self) -> None:
        report = self.safe_shutdown()
        if not report.ok:
            log.critical("at exit: %s", report.summary())

    # -- internals: playing -------------------------------------------------------------------
    def _with_ramp(self, wave: FloatArray, rate: float) -> tuple[FloatArray, int]:
        """``wave`` preceded by the ramp from what the electrodes hold; checked whole."""
        self._knowledge.require_known()
        ramp = ramp_samples(self._knowledge.held_v, wave[:, 0], rate, self.ramp_rate_v_per_s)
        full = np.concatenate([ramp, wave], axis=1) if ramp.shape[1] else wave
        self._check_sent(full, rate, self._knowledge.held_v)
        return full, ramp.shape[1]

    def _check_sent(self, full: FloatArray, rate: float, held: FloatArray) -> None:
        amplitude, slew = tone_envelope(self._active_tones(), self._electrodes)
        check_waveform(
            full,
            rate,
            self._electrodes,
            self._limits,
            require_rest_ends=False,
            held_v=held,
            tone_amplitude_v=amplitude,
            tone_slew_v_per_s=slew,
        )

    def _fail_during_record(self, exc: BaseException) -> None:
        log.error("instrument failed during a record (%r): shutting down", exc)
        report = self.safe_shutdown()
        if not report.ok:
            log.critical("after the failure: %s", report.summary())

    def _request_stop_of_record(self, *, shutting_down: bool) -> None:
        with self._flight_lock:
            if shutting_down:
                self._accepting = False
            else:
                self._park_requested = True
            if self._cancel is not None:
                self._cancel.set()

    def _hold_while_parked(self) -> None:
        """Caller holds the lock: park if asked, wait while parked, refuse once shut down."""
        while True:
            self._ensure_open()
            if self._park_requested and not self._parked:
                self._park_locked()
            if not self._parked:
                return
            self._cond.wait()

    def _park_locked(self) -> None:
        self._park_requested = True
        with signals_deferred():
            report = self._move_to_zero()
        self._last_report = report
        if report.completed:
            self._parked = True
            log.info("parked: %s", report.summary())
        self._cond.notify_all()
        if not report.completed:
            raise ShutdownFailed(report)

    def _tones_off(self, electrodes: list[str], report: ShutdownReport) -> None:
        for electrode in electrodes:
            source = self._setup.sine_sources.get(electrode)
            if source is None:
                continue
            try:
                source.tone_off()
            except Exception as exc:
                report.errors.append(f"{electrode}: sine output not switched off: {exc}")
                report.failed_electrodes.append(electrode)
                continue
            self._tones.pop(electrode, None)

    def _move_to_zero(self) -> ShutdownReport:
        """Caller holds the lock: sines off, then every electrode to 0 V; never raises."""
        report = ShutdownReport()
        self._tones_off(list(self._tones), report)
        why_unknown = self._knowledge.reason
        stepped: set[str] = set()
        wave = self._zero_move(self._knowledge.held_v, self._rate_hz)
        if wave is not None:
            try:
                self._send_move(wave, stepped)
            except Exception as exc:
                report.errors.append(f"multi-channel ramp to 0 V failed: {exc}")
                log.error("ramp to 0 V failed (%s); moving one electrode at a time", exc)
                self._move_one_by_one(report, stepped)
        report.stepped_electrodes = [e.name for e in self._electrodes if e.name in stepped]
        if report.stepped_electrodes:
            report.errors.append(
                "voltage was unknown ("
                + (why_unknown or self._knowledge.reason or "unconfirmed")
                + ")"
            )
        self._verify_zero(report)
        report.completed = not report.failed_electrodes
        report.ok = report.completed and not report.stepped_electrodes
        return report

    def _send_move(self, wave: FloatArray, stepped: set[str]) -> None:
        """Check and play a move to 0 V; electrodes it steps from an unknown voltage go to
        ``stepped`` (before the play: a failed play may have stepped them already)."""
        held = self._knowledge.held_v
        self._check_sent(wave, self._rate_hz, held)
        stepped.update(e.name for e, v in zip(self._electrodes, held, strict=True) if v != v)
        self._knowledge.play(wave, self._rate_hz, None)

    def _zero_move(self, held: FloatArray, rate: float) -> FloatArray | None:
        """Ramp rows for known electrodes, one step to 0 V for unknown ones; None if at 0."""
        start = np.nan_to_num(held, nan=0.0)
        wave = ramp_samples(start, np.zeros_like(start), rate, self.ramp_rate_v_per_s)
        if wave.shape[1] == 0:
            if not np.isnan(held).any():
                return None
            wave = np.zeros((held.size, 1))
        return wave

    def _move_one_by_one(self, report: ShutdownReport, stepped: set[str]) -> None:
        """Each electrode not at 0 V on its own (the others held, unknown ones to 0 V)."""
        rate = self._rate_hz
        for row, electrode in enumerate(self._electrodes):
            held = self._knowledge.held_v
            if held[row] == 0.0:
                continue
            start = np.nan_to_num(held, nan=0.0)
            target = start.copy()
            target[row] = 0.0
            wave = ramp_samples(start, target, rate, self.ramp_rate_v_per_s)
            if wave.shape[1] == 0:
                wave = target[:, None].copy()
            try:
                self._send_move(wave, stepped)
            except Exception as exc:
                report.failed_electrodes.append(electrode.name)
                report.errors.append(f"{electrode.name}: {exc}")
                log.error("shutdown: electrode %s could not be moved: %s", electrode.name, exc)

    def _verify_zero(self, report: ShutdownReport) -> None:
        readback, problems = self._knowledge.readback(np.zeros((len(self._electrodes), 2)))
        for row, electrode in enumerate(self._electrodes):
            if electrode.name in report.failed_electrodes:
                continue
            v = readback[row]
            if electrode.name in problems:
                report.failed_electrodes.append(electrode.name)
                report.errors.append(problems[electrode.name])
            elif math.isfinite(v) and abs(v) > ZERO_TOLERANCE_V:
                report.failed_electrodes.append(electrode.name)
                report.errors.append(f"{electrode.name}: reads back {v:.6g} V after the ramp")
            elif self._knowledge.held_v[row] != 0.0:
                report.failed_electrodes.append(electrode.name)
                report.errors.append(f"{electrode.name}: not confirmed at 0 V")
        if "" in problems:
            report.errors.append(problems[""])
