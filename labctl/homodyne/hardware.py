"""Gradients from hardware lock-in amplifiers (``homodyne.demodulation: hardware_lockin``).

Each perturbed electrode has a lock-in whose sine output is wired to it
(``setup.roles.sine_sources``) and whose input reads the output current: the lock-in makes the
tone and demodulates the response at it, so the two are phase-locked by construction.

One measurement of operating points ``V_1 … V_n``:

1. every lock-in is configured (internal reference at its tone, time constant, slope,
   sensitivity; through :meth:`SafeDevice.configure_demodulator`, which checks the sine at the
   new frequency first);
2. the tones are programmed (:meth:`SafeDevice.program_tones`, checked for every plateau of
   the record) — all at once in ``parallel`` mode, one at a time in ``sequential`` mode;
3. the DAQ plays one record of DC plateaus, each held for the lock-ins' settling time (e.g.
   10 τ at 24 dB/oct) plus the window; the lock-ins store X/Y from the record's start trigger
   (armed right before the record starts, again if a park makes it replay);
4. per plateau the stored points inside the window are averaged. The standard error comes
   from their scatter with the effective number of independent points ``2 · ENBW · T`` (the
   filter output is correlated over ~1/ENBW), never more than the points stored;
5. the tones go back to the sine outputs' minimum, whatever happened.

The reading of a tone ``A sin(ωt)`` on electrode ``k`` is ``X + iY`` (A rms) with
``X = ∂I/∂V_k · A / √2`` for an in-phase response; ``√2 (X + iY)`` is the same complex
amplitude the sampled engine fits, so phase projection with a chain calibration or the
sign-by-phase rule turn it into a signed gradient in the same way.

The DC output current of each point comes from the sampled readout when the setup has one
(NaN otherwise: gradients only, no training).

**Tones from the DAQ** (``hardware_lockin.tones: daq``, mode ``sequential``): the DAQ's AO
makes each tone in the same waveform as the DC (checked by the safety layer like any record),
and one lock-in (``hardware_lockin.lockin``) reads them one electrode at a time, on external
reference: a DAQ counter output (``hardware_lockin.reference_counter``, wired to its REF IN)
makes a pulse train at the reference ``f0``, armed on the record's start trigger, so its first
rising edge is ``d`` = :meth:`~labctl.device.protocols.ReferenceOutput.reference_delay_s` after
the record's first sample. The lock-in's sine output is not used (it stays at its minimum).
With a harmonic plan (:mod:`labctl.homodyne.harmonic_plan`) tone ``k`` is ``n_k · f0`` and the
lock-in reads harmonic ``n_k``: between electrodes only ``HARM`` changes, the reference (and so
the counter task and the lock-in's phase lock) stays; without one (``harmonics: false``) each
tone is its own reference and the counter is re-made per electrode.

Phase: the tone ``A sin(2π f (t − t_r) + φ)`` starts at the drive's first sample, ``t_r`` after
the record's (the safety layer's ramp), while the lock-in's reference at harmonic ``n`` is
``sin(2π f (t − d))``; the reading is rotated by ``exp(i (2π f (t_r − d) − φ))`` into the
sampled engine's frame (phase relative to the tone itself), where the chain calibration applies.

Units: V, A, s, Hz.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labctl.config import HomodyneConfig, SetupConfig
from labctl.config.homodyne import hardware_lockin_problems
from labctl.device import FloatArray
from labctl.device.protocols import DemodulatedTrace, DemodulatorSettings, ReferenceOutput
from labctl.device.safety import CheckedDemodulator, SafeDevice
from labctl.device.tones import ToneSpec
from labctl.homodyne.drive import Drive, ToneSet, device_drive, synthesise_drive
from labctl.homodyne.harmonic_plan import reference_of
from labctl.homodyne.plan import FrequencyPlan

log = logging.getLogger(__name__)

_STAGES = {6: 1, 12: 2, 18: 3, 24: 4}
"""RC sections of each filter slope (dB/octave)."""


def rc_enbw_hz(time_constant_s: float, slope_db_per_oct: int) -> float:
    """Equivalent noise bandwidth (Hz) of ``n`` cascaded RC sections of time constant τ.

    ``ENBW = C(2n−2, n−1) / (2^(2n) τ)``: 1/(4τ), 1/(8τ), 3/(32τ), 5/(64τ) for 6…24 dB/oct.
    """
    n = _STAGES[slope_db_per_oct]
    return math.comb(2 * n - 2, n - 1) / (2.0 ** (2 * n) * time_constant_s)


@dataclass(frozen=True)
class LockinReading:
    """What one lock-in read in one window.

    Attributes:
        complex_amplitude_a: ``√2 (X + iY)``: the response's peak complex amplitude (A).
        stderr_components_a: Standard errors of its real and imaginary parts (A).
        n_points: Stored points averaged.
        overload: The lock-in overloaded during the trace.
    """

    complex_amplitude_a: complex
    stderr_components_a: tuple[float, float]
    n_points: int
    overload: bool


def window_reading(
    trace: DemodulatedTrace, start_s: float, stop_s: float, *, where: str = "window"
) -> LockinReading:
    """Average the points of ``trace`` taken in ``[start_s, stop_s)`` (s after the trigger).

    Raises:
        ValueError: Fewer than two points fall in the window (the storage rate is too low or
            the trace too short).
    """
    times = np.arange(len(trace.x_a)) / trace.rate_hz
    inside = (times >= start_s - 1e-9) & (times < stop_s - 1e-9)
    n = int(inside.sum())
    if n < 2:
        raise ValueError(
            f"{where}: {n} lock-in point(s) stored in {stop_s - start_s:.3g} s at "
            f"{trace.rate_hz:g} Hz ({len(trace.x_a)} stored in all); lengthen homodyne.window_s "
            "or raise homodyne.hardware_lockin.max_trace_rate_hz"
        )
    x = trace.x_a[inside]
    y = trace.y_a[inside]
    enbw = rc_enbw_hz(trace.time_constant_s, trace.slope_db_per_oct)
    n_eff = min(float(n), max(1.0, 2.0 * enbw * (stop_s - start_s)))
    scale = math.sqrt(2.0)
    se_x = float(np.std(x, ddof=1)) / math.sqrt(n_eff)
    se_y = float(np.std(y, ddof=1)) / math.sqrt(n_eff)
    return LockinReading(
        complex_amplitude_a=complex(scale * float(x.mean()), scale * float(y.mean())),
        stderr_components_a=(scale * se_x, scale * se_y),
        n_points=n,
        overload=trace.overload,
    )


@dataclass(frozen=True)
class LockinRecord:
    """One record read by lock-ins: per point and per read electrode.

    Attributes:
        readings: ``readings[point][k]`` for the electrodes read (in the order asked).
        dc_current_a: DC output current per point (A; NaN without a sampled readout).
        saturated: A lock-in overloaded or the sampled readout saturated.
        record_a: The sampled readout's record ``(n_outputs, n_samples)`` (A), maybe empty.
    """

    readings: list[list[LockinReading]]
    dc_current_a: FloatArray
    saturated: bool
    record_a: FloatArray


class LockinBank:
    """The lock-ins of the perturbed electrodes, configured for their tones.

    Args:
        device: The opened safe device.
        setup: The setup (``roles.sine_sources`` says which lock-in drives which electrode).
        settings: The homodyne settings (``hardware_lockin``, window, settle, fade).
        electrodes: Perturbed electrode names, in gradient order.
        plan: The frequency plan (needed with ``tones: daq``: it gives the reference and each
            tone's harmonic).
    """

    def __init__(
        self,
        device: SafeDevice,
        setup: SetupConfig,
        settings: HomodyneConfig,
        electrodes: Sequence[str],
        plan: FrequencyPlan | None = None,
    ) -> None:
        roles = setup.roles
        hw = settings.hardware_lockin
        problems = hardware_lockin_problems(list(electrodes), roles, hw)
        if problems:
            raise ValueError("; ".join(problems))
        assert roles is not None
        self._device = device
        self._settings = settings
        self._electrodes = tuple(electrodes)
        self._daq_tones = hw.tones == "daq"
        self._reference: ReferenceOutput | None = None
        self._references: tuple[tuple[float, int], ...] = ()
        if self._daq_tones:
            assert hw.lockin is not None
            self._names = tuple(hw.lockin for _ in electrodes)
            self._reference = device.reference_output
            if self._reference is None:
                raise ValueError(
                    "homodyne.hardware_lockin.tones: daq: the voltage source has no reference "
                    "output (a DAQ counter) to reference the lock-in"
                )
            if plan is None:
                raise ValueError("tones: daq needs the frequency plan (reference, harmonics)")
            self.use_plan(plan)
        else:
            self._names = tuple(roles.sine_sources[e] for e in electrodes)
        demodulators = device.demodulators
        self._lockins: tuple[CheckedDemodulator, ...] = tuple(demodulators[n] for n in self._names)
        for name, lockin in zip(self._names, self._lockins, strict=True):
            if not lockin.can_trace:
                raise ValueError(
                    f"lock-in {name!r} cannot store X/Y from a trigger, so it cannot read "
                    "operating points during a record"
                )
        self._configured: tuple[float, ...] | None = None
        self._used: list[DemodulatorSettings] = []
        self._settle_s: list[float] = []

    def use_plan(self, plan: FrequencyPlan) -> None:
        """Reference (Hz) and harmonic of each tone from ``plan`` (tones: daq): one reference
        for all with a harmonic plan, else each tone its own reference at harmonic 1."""
        if self._settings.hardware_lockin.use_harmonics:
            f0, harmonics = reference_of(plan)
            self._references = tuple((f0, n) for n in harmonics)
        else:
            self._references = tuple((f, 1) for f in plan.frequencies_hz)
        self._configured = None

    @property
    def references(self) -> tuple[tuple[float, int], ...]:
        """Per tone ``(reference Hz, harmonic)`` with tones: daq (empty otherwise)."""
        return self._references

    @property
    def instrument_names(self) -> tuple[str, ...]:
        """The lock-in of each perturbed electrode (instrument names)."""
        return self._names

    @property
    def used_settings(self) -> list[DemodulatorSettings]:
        """What each lock-in uses (its table entries), after the first measurement."""
        return list(self._used)

    def describe(self) -> str:
        """One line: which lock-ins, with the filter they use once configured."""
        text = f"hardware lock-ins {', '.join(self._names)}"
        if self._daq_tones:
            hw = self._settings.hardware_lockin
            f0s = sorted({f for f, _ in self._references})
            text = (
                f"hardware lock-in {self._names[0]} on DAQ tones, external reference from "
                f"{hw.reference_counter} at {', '.join(f'{f:g}' for f in f0s)} Hz"
            )
            if hw.use_harmonics:
                text += f", harmonics {', '.join(str(n) for _, n in self._references)}"
        if self._used:
            used = self._used[0]
            text += (
                f" (tau {used.time_constant_s * 1e3:g} ms, {used.slope_db_per_oct} dB/oct, "
                f"settle {max(self._settle_s):.3g} s, full scale {used.sensitivity_a * 1e9:g} nA)"
            )
        return text

    def configure(self, frequencies_hz: Sequence[float]) -> None:
        """Reference of lock-in ``k`` at ``frequencies_hz[k]`` (Hz) with the configured filter
        and sensitivity (skipped when already so)."""
        wanted = tuple(float(f) for f in frequencies_hz)
        if self._configured == wanted:
            return
        hw = self._settings.hardware_lockin
        self._used, self._settle_s = [], []
        for frequency, lockin in zip(wanted, self._lockins, strict=True):
            used = lockin.configure(
                DemodulatorSettings(
                    reference_hz=frequency,
                    harmonic=1,
                    time_constant_s=hw.time_constant_s,
                    slope_db_per_oct=hw.slope_db_per_oct,
                    sensitivity_a=hw.sensitivity_a,
                )
            )
            self._used.append(used)
            if hw.settle_time_constants is not None:
                self._settle_s.append(hw.settle_time_constants * used.time_constant_s)
            else:
                self._settle_s.append(lockin.settling_time_s())
        self._configured = wanted
        log.info(
            "lock-ins %s at %s Hz, τ = %s s",
            ", ".join(self._names),
            ", ".join(f"{u.reference_hz:g}" for u in self._used),
            ", ".join(f"{u.time_constant_s:g}" for u in self._used),
        )

    def read(
        self,
        points_v: FloatArray,
        which: Sequence[int],
        frequencies_hz: Sequence[float],
        amplitudes_v: Sequence[float],
    ) -> tuple[LockinRecord, FloatArray]:
        """Play one record of the DC ``points_v`` with the tones of electrodes ``which`` on.

        Args:
            points_v: Operating points, shape ``(n_points, n_electrodes)`` (V).
            which: Positions (in the perturbed electrodes) whose tones run and are read.
            frequencies_hz: Tone frequency per perturbed electrode (Hz).
            amplitudes_v: Tone amplitude per perturbed electrode (V peak).

        Returns:
            The readings, and the amplitude (V peak) each tone of ``which`` really had (a
            sine output's level steps can round it down).
        """
        if self._daq_tones:
            return self._read_daq_tone(points_v, which, frequencies_hz, amplitudes_v)
        self.configure(frequencies_hz)
        device = self._device
        settle = max([self._settings.settle_s, *(self._settle_s[k] for k in which)])
        specs = [
            ToneSpec(self._electrodes[k], float(frequencies_hz[k]), float(amplitudes_v[k]))
            for k in which
        ]
        rows = [device.electrode_names.index(spec.electrode) for spec in specs]
        held = device.present_voltages()
        dc_v = {
            spec.electrode: (
                float(min(points_v[:, row].min(), held[row], device.rest_voltages()[row])),
                float(max(points_v[:, row].max(), held[row], device.rest_voltages()[row])),
            )
            for spec, row in zip(specs, rows, strict=True)
        }
        max_rate = self._settings.hardware_lockin.max_trace_rate_hz
        lockins = [self._lockins[k] for k in which]

        def arm() -> None:  # right before the record: the tones (and so the ramp rate) are set
            duration_s = self._record_duration_s(drive, device.present_voltages())
            for lockin in lockins:
                lockin.arm_trace(duration_s, max_rate)

        device.program_tones(specs, dc_v)
        try:
            # DC plateaus whose ramps leave the sines' Σ 2πfA of the slew limit free
            ramp_rate = device.ramp_rate_v_per_s
            drive = synthesise_drive(
                rest_v=device.rest_voltages(),
                operating_points_v=points_v,
                tones=None,
                sample_rate_hz=device.sample_rate_hz,
                window_s=self._settings.window_s,
                settle_s=settle,
                slew_v_per_s=ramp_rate,
                fade_periods=self._settings.fade_periods,
                dc_ramp_v_per_s=ramp_rate,
            )
            sources = device.sine_sources
            realised = np.array(
                [
                    _realised(sources[spec.electrode].programmed_amplitude_v(), spec.amplitude_v)
                    for spec in specs
                ]
            )
            acquisition = device.apply(
                drive.waveform_v, drive.sample_rate_hz, before_each_attempt=arm
            )
            traces = [lockin.fetch_trace() for lockin in lockins]
        finally:
            device.tones_off()
        n_ramp = int(acquisition.metadata.get("ramp_samples", 0))
        rate = drive.sample_rate_hz
        readings: list[list[LockinReading]] = []
        for case, window in enumerate(drive.windows):
            start_s = (n_ramp + window.start) / rate
            stop_s = (n_ramp + window.stop) / rate
            readings.append(
                [
                    window_reading(
                        trace, start_s, stop_s, where=f"lock-in {self._names[k]!r}, point {case}"
                    )
                    for trace, k in zip(traces, which, strict=True)
                ]
            )
        dc = _window_means_a(drive, acquisition.current_a)
        saturated = bool(acquisition.saturated.any()) or any(t.overload for t in traces)
        overloaded = [self._names[k] for k, t in zip(which, traces, strict=True) if t.overload]
        if overloaded:
            log.warning(
                "lock-in %s overloaded: raise homodyne.hardware_lockin.sensitivity_a",
                ", ".join(overloaded),
            )
        return LockinRecord(readings, dc, saturated, acquisition.current_a), realised

    def _configure_daq_tone(self, k: int) -> float:
        """The lock-in on external reference at tone ``k``'s harmonic; its settling time (s)."""
        hw = self._settings.hardware_lockin
        reference_hz, harmonic = self._references[k]
        wanted = (reference_hz, float(harmonic))
        lockin = self._lockins[k]
        if self._configured != wanted:
            used = lockin.configure(
                DemodulatorSettings(
                    reference_hz=reference_hz,
                    harmonic=harmonic,
                    time_constant_s=hw.time_constant_s,
                    slope_db_per_oct=hw.slope_db_per_oct,
                    sensitivity_a=hw.sensitivity_a,
                    reference="external",
                )
            )
            settle = (
                hw.settle_time_constants * used.time_constant_s
                if hw.settle_time_constants is not None
                else lockin.settling_time_s()
            )
            self._used, self._settle_s = [used], [settle]
            self._configured = wanted
            log.info(
                "lock-in %s: external reference %g Hz, harmonic %d, τ = %g s",
                self._names[k],
                reference_hz,
                harmonic,
                used.time_constant_s,
            )
        return self._settle_s[0]

    def _read_daq_tone(
        self,
        points_v: FloatArray,
        which: Sequence[int],
        frequencies_hz: Sequence[float],
        amplitudes_v: Sequence[float],
    ) -> tuple[LockinRecord, FloatArray]:
        """One record with tone ``which[0]`` made by the DAQ, read by the one lock-in."""
        if len(which) != 1:
            raise ValueError(
                "tones: daq reads one tone per record with one lock-in: use mode: sequential"
            )
        (k,) = which
        assert self._reference is not None
        hw = self._settings.hardware_lockin
        assert hw.reference_counter is not None
        device = self._device
        lockin_settle_s = self._configure_daq_tone(k)
        settle = max(self._settings.settle_s, lockin_settle_s)
        reference_hz, _ = self._references[k]
        self._reference.set_reference_output(hw.reference_counter, reference_hz)
        row = device.electrode_names.index(self._electrodes[k])
        tones = ToneSet(
            electrode_indices=(row,),
            frequencies_hz=(float(frequencies_hz[k]),),
            amplitudes_v=(float(amplitudes_v[k]),),
        )
        drive = device_drive(
            device, points_v, tones, self._settings.window_s, settle, self._settings.fade_periods
        )
        lockin = self._lockins[k]
        max_rate = hw.max_trace_rate_hz

        def arm() -> None:
            lockin.arm_trace(self._record_duration_s(drive, device.present_voltages()), max_rate)

        acquisition = device.apply(drive.waveform_v, drive.sample_rate_hz, before_each_attempt=arm)
        trace = lockin.fetch_trace()
        n_ramp = int(acquisition.metadata.get("ramp_samples", 0))
        rate = drive.sample_rate_hz
        # into the tone's own frame: exp(i (2π f (t_r − d) − φ))
        frequency = float(frequencies_hz[k])
        delay_s = self._reference.reference_delay_s()
        rotation = np.exp(
            1j * (2.0 * math.pi * frequency * (n_ramp / rate - delay_s) - tones.phases_rad[0])
        )
        readings: list[list[LockinReading]] = []
        for case, window in enumerate(drive.windows):
            start_s = (n_ramp + window.start) / rate
            stop_s = (n_ramp + window.stop) / rate
            reading = window_reading(
                trace, start_s, stop_s, where=f"lock-in {self._names[k]!r}, point {case}"
            )
            readings.append([_rotated(reading, complex(rotation))])
        dc = _window_means_a(drive, acquisition.current_a)
        if trace.overload:
            log.warning(
                "lock-in %s overloaded: raise homodyne.hardware_lockin.sensitivity_a",
                self._names[k],
            )
        saturated = bool(acquisition.saturated.any()) or trace.overload
        return LockinRecord(readings, dc, saturated, acquisition.current_a), np.array(
            [amplitudes_v[k]]
        )

    def _record_duration_s(self, drive: Drive, held_v: FloatArray) -> float:
        """The record's length (s) with the ramp the safety layer plays before it."""
        distance = float(np.max(np.abs(held_v - drive.waveform_v[:, 0]), initial=0.0))
        ramp_s = distance / self._device.ramp_rate_v_per_s
        samples = drive.waveform_v.shape[1]
        return (samples + 2) / drive.sample_rate_hz + ramp_s


def _window_means_a(drive: Drive, current_a: FloatArray) -> FloatArray:
    """Mean sampled current (A) in each of ``drive``'s windows; NaN without a sampled readout
    (a setup whose record has no current channel)."""
    if not current_a.shape[0]:
        return np.full(len(drive.windows), np.nan)
    return np.array(
        [drive.window_samples(current_a[0], c).mean() for c in range(len(drive.windows))]
    )


def _realised(programmed_v: float | None, asked_v: float) -> float:
    if programmed_v is None or not math.isfinite(programmed_v) or programmed_v <= 0:
        return asked_v
    if programmed_v < 0.9 * asked_v:
        log.warning(
            "a sine output runs %.4g V for a %.4g V tone (its level steps): the gradient uses "
            "the level it runs",
            programmed_v,
            asked_v,
        )
    return programmed_v


def _rotated(reading: LockinReading, rotation: complex) -> LockinReading:
    """``reading`` in a frame turned by ``rotation`` (|rotation| = 1); the errors of its
    components are turned with it (their larger one bounds both)."""
    if rotation == 1:
        return reading
    se_x, se_y = reading.stderr_components_a
    c, s = abs(rotation.real), abs(rotation.imag)
    return LockinReading(
        complex_amplitude_a=reading.complex_amplitude_a * rotation,
        stderr_components_a=(math.hypot(c * se_x, s * se_y), math.hypot(s * se_x, c * se_y)),
        n_points=reading.n_points,
        overload=reading.overload,
    )
