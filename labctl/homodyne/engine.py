"""The homodyne gradient engine: measure dI/dV (and curvature) at operating points.

One call of :meth:`GradientEngine.measure` takes a set of operating points (e.g. the four input
cases of a Boolean gate) and returns, per point, the gradient of the output current with
respect to every perturbed electrode, with standard errors, the quadrature part, the DC
current, per-tone SNR and saturation flags; with a curvature-clean plan also the Hessian of the
perturbed electrodes, from the same record.

Modes (all through the same safe device, so they can be compared in device-seconds):

- ``parallel``: every electrode gets its tone at once; one record for all points.
- ``sequential``: one electrode at a time (the paper's reference); N records.
With ``demodulation: hardware_lockin`` the parallel and sequential modes read lock-in
amplifiers instead of the sampled record (:mod:`labctl.homodyne.hardware`): the lock-ins' sine
outputs make the tones, their stored X/Y give the responses.

- ``fd``: central finite differences at DC, ``(I(V + h) - I(V - h)) / 2h``; one record with
  2N + 1 plateaus per point. Its standard errors come from the record's own noise spectrum
  (white + 1/f + drift, fitted inside the plateaus and propagated to the plateau separation,
  :mod:`labctl.homodyne.fd_errors`), so 1/f noise and drift between plateaus, which the scatter
  inside a plateau does not see, are counted. That noise is the physics HGE escapes.

Phase handling: with a chain calibration the complex response is projected onto the
calibrated phase (unbiased at any SNR, quadrature reported); without one the engine falls
back to the lab's sign-by-phase rule and says so in every result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from labctl.config import HomodyneConfig, SetupConfig
from labctl.device import FloatArray
from labctl.device.safety import SafeDevice
from labctl.homodyne.calibration import ChainResponse, project_with_errors, sign_by_phase
from labctl.homodyne.demod import ToneFit, boxcar_demodulate, fit_tones, local_noise_stderr
from labctl.homodyne.drive import Drive, ToneSet, device_drive, finite_record
from labctl.homodyne.fd_errors import fit_noise_model
from labctl.homodyne.hardware import LockinBank, LockinReading
from labctl.homodyne.lockin import StreamingLockIn
from labctl.homodyne.plan import (
    FrequencyPlan,
    plan_frequencies,
    product_bins,
    validate_frequencies,
)

log = logging.getLogger(__name__)

PROJECTION = "projection"
SIGN_BY_PHASE = "sign-by-phase"
FINITE_DIFFERENCE = "finite-difference"


@dataclass(frozen=True, eq=False)
class GradientResult:
    """The gradient measured at one operating point.

    Attributes:
        electrodes: Names of the perturbed electrodes, in gradient order.
        operating_point_v: DC voltage of every electrode (V), setup order.
        gradient_a_per_v: dI/dV per perturbed electrode (A/V).
        stderr_a_per_v: Standard error of each gradient component (A/V).
        quadrature_a_per_v: Out-of-phase part after calibration (A/V); NaN when not defined.
        dc_current_a: Output current at the operating point (A), averaged over the window (it
            carries the O(A²) curvature shift of the tones).
        snr: |gradient| / standard error per component.
        saturated: The record hit the amplifier or ADC limit.
        hessian_a_per_v2: d²I/dV² of the perturbed electrodes (A/V²) when curvature was asked.
        hessian_stderr_a_per_v2: Its standard errors.
        phase_method: ``projection``, ``sign-by-phase`` or ``finite-difference``.
    """

    electrodes: tuple[str, ...]
    operating_point_v: FloatArray
    gradient_a_per_v: FloatArray
    stderr_a_per_v: FloatArray
    quadrature_a_per_v: FloatArray
    dc_current_a: float
    snr: FloatArray
    saturated: bool
    hessian_a_per_v2: FloatArray | None = None
    hessian_stderr_a_per_v2: FloatArray | None = None
    phase_method: str = PROJECTION


@dataclass(frozen=True, eq=False)
class GradientBatch:
    """Gradients at several operating points from one call.

    Attributes:
        results: One result per operating point, in order.
        mode: ``parallel``, ``sequential`` or ``fd``.
        device_seconds: Device time the call used (s), ramps and settling included.
        plan: The frequency plan (None for finite differences).
        amplitudes_v: Tone amplitude (or FD step) per perturbed electrode (V).
        records: Raw records ``(n_outputs, n_samples)`` (A) of the call, for the run store.
    """

    results: tuple[GradientResult, ...]
    mode: str
    device_seconds: float
    plan: FrequencyPlan | None
    amplitudes_v: FloatArray
    records: tuple[FloatArray, ...] = field(default=())

    @property
    def gradients_a_per_v(self) -> FloatArray:
        """Shape ``(n_points, n_perturbed)`` (A/V)."""
        return np.array([r.gradient_a_per_v for r in self.results])

    @property
    def stderr_a_per_v(self) -> FloatArray:
        """Shape ``(n_points, n_perturbed)`` (A/V)."""
        return np.array([r.stderr_a_per_v for r in self.results])

    @property
    def dc_currents_a(self) -> FloatArray:
        """Shape ``(n_points,)`` (A)."""
        return np.array([r.dc_current_a for r in self.results])

    @property
    def saturated(self) -> bool:
        """Whether any record saturated."""
        return any(r.saturated for r in self.results)


def plan_from_settings(
    settings: HomodyneConfig, sample_rate_hz: float, n_tones: int
) -> FrequencyPlan:
    """The frequency plan ``settings`` describe at ``sample_rate_hz`` (Hz) for ``n_tones``.

    Explicit ``frequencies_hz`` are validated; otherwise ``n_tones`` tones are planned in
    ``band_hz``. Raises :class:`~labctl.homodyne.plan.PlanError` saying what to relax.
    Hardware lock-ins on DAQ tones with harmonics: the harmonic plan
    (:mod:`labctl.homodyne.harmonic_plan`).
    """
    s = settings
    if s.demodulation == "hardware_lockin" and s.hardware_lockin.use_harmonics:
        from labctl.homodyne.harmonic_plan import plan_from_settings as harmonic_plan

        return harmonic_plan(s, sample_rate_hz, n_tones).plan
    if s.frequencies_hz is not None:
        return validate_frequencies(
            list(s.frequencies_hz),
            sample_rate_hz,
            s.window_s,
            insist=s.insist,
            min_spacing_hz=s.min_spacing_hz,
            mains_hz=tuple(s.mains_hz),
            mains_guard_bins=s.mains_guard_bins,
            max_order=s.max_order,
            curvature=s.curvature,
        )
    return plan_frequencies(
        sample_rate_hz,
        s.window_s,
        n_tones,
        band_hz=s.band_hz,
        min_spacing_hz=s.min_spacing_hz,
        mains_hz=tuple(s.mains_hz),
        mains_guard_bins=s.mains_guard_bins,
        max_order=s.max_order,
        curvature=s.curvature,
    )


class GradientEngine:
    """Measures gradients on a safe device as the ``homodyne`` configuration says.

    Args:
        device: The opened safe device.
        setup: The setup configuration (electrode names and order).
        settings: The homodyne configuration.
        perturbed: Names of the perturbed electrodes.
        calibration: Chain response for phase projection; None falls back to sign-by-phase.
    """

    def __init__(
        self,
        device: SafeDevice,
        setup: SetupConfig,
        settings: HomodyneConfig,
        perturbed: list[str],
        calibration: ChainResponse | None = None,
    ) -> None:
        self._device = device
        self._setup = setup
        self._settings = settings
        self._names = tuple(perturbed)
        self._indices = tuple(setup.electrode_index(n) for n in perturbed)
        self._amplitudes = np.array([settings.amplitude(n) for n in perturbed])
        self._rate = device.sample_rate_hz
        self._calibration = calibration
        self._plan = self._make_plan()
        self._fallback_announced = False
        self._lockins = (
            LockinBank(device, setup, settings, perturbed, plan=self._plan)
            if settings.demodulation == "hardware_lockin"
            else None
        )

    # -- description -------------------------------------------------------------------------
    @property
    def device(self) -> SafeDevice:
        """The safe device the engine drives."""
        return self._device

    @property
    def plan(self) -> FrequencyPlan:
        """The frequency plan in use."""
        return self._plan

    @property
    def electrodes(self) -> tuple[str, ...]:
        """Perturbed electrode names."""
        return self._names

    @property
    def electrode_indices(self) -> tuple[int, ...]:
        """Rows of the perturbed electrodes in waveforms."""
        return self._indices

    @property
    def amplitudes_v(self) -> FloatArray:
        """Tone amplitude per perturbed electrode (V)."""
        return self._amplitudes.copy()

    @amplitudes_v.setter
    def amplitudes_v(self, value: FloatArray) -> None:
        amplitudes = np.asarray(value, dtype=np.float64)
        if amplitudes.shape != self._amplitudes.shape or np.any(amplitudes <= 0):
            raise ValueError("amplitudes must be positive, one per perturbed electrode")
        self._amplitudes = amplitudes

    @property
    def calibration(self) -> ChainResponse | None:
        """The chain calibration in use (None: sign-by-phase fallback)."""
        return self._calibration

    def set_calibration(self, calibration: ChainResponse | None) -> None:
        """Use a (new) chain calibration for phase projection."""
        self._calibration = calibration

    @property
    def demodulation(self) -> str:
        """How responses are read: the configured demodulation, or the lock-ins in use."""
        if self._lockins is not None:
            return self._lockins.describe()
        return {
            "least_squares": "least-squares fit of the sampled record",
            "boxcar": "boxcar averages of the sampled record",
            "software_lockin": "software lock-in on the sampled record",
        }.get(self._settings.demodulation, self._settings.demodulation)

    @property
    def phase_method(self) -> str:
        """How responses become signed gradients."""
        if self._settings.phase == PROJECTION and self._calibration is not None:
            return PROJECTION
        return SIGN_BY_PHASE

    def tone_set(self, only: int | None = None) -> ToneSet:
        """The tones of the plan (all, or only perturbed electrode ``only``)."""
        picks = range(len(self._names)) if only is None else [only]
        return ToneSet(
            electrode_indices=tuple(self._indices[k] for k in picks),
            frequencies_hz=tuple(self._plan.frequencies_hz[k] for k in picks),
            amplitudes_v=tuple(float(self._amplitudes[k]) for k in picks),
        )

    def control_bounds(self) -> tuple[FloatArray, FloatArray]:
        """Per perturbed electrode, the DC range (V) that leaves room for its tone."""
        electrodes = self._device.electrodes
        low = np.array([electrodes[i].min_v for i in self._indices]) + self._amplitudes
        high = np.array([electrodes[i].max_v for i in self._indices]) - self._amplitudes
        return low, high

    # -- measurement -------------------------------------------------------------------------
    def measure(self, operating_points_v: FloatArray, mode: str | None = None) -> GradientBatch:
        """Measure the gradient at each operating point.

        Args:
            operating_points_v: Shape ``(n_points, n_electrodes)`` (V), or one point.
            mode: Override the configured mode.
        """
        points = np.atleast_2d(np.asarray(operating_points_v, dtype=np.float64))
        if points.shape[1] != len(self._device.electrodes):
            raise ValueError(
                f"operating points need {len(self._device.electrodes)} voltages, "
                f"got {points.shape[1]}"
            )
        self._check_points(points)
        mode = mode or self._settings.mode
        if (
            mode != "fd"
            and self._settings.phase == PROJECTION
            and self._calibration is None
            and not self._fallback_announced
        ):
            self._fallback_announced = True
            log.warning(
                "no chain calibration: falling back to the sign-by-phase rule "
                "(run `labctl calibrate` for unbiased, sign-safe gradients)"
            )
        start = self._device.device_seconds
        if mode in ("parallel", "sequential") and self._lockins is not None:
            results, records = self._hardware_lockins(points, sequential=mode == "sequential")
        elif mode == "parallel":
            results, records = self._parallel(points)
        elif mode == "sequential":
            results, records = self._sequential(points)
        elif mode == "fd":
            results, records = self._finite_differences(points)
        else:
            raise ValueError(f"unknown mode {mode!r}; use parallel, sequential or fd")
        amplitudes = (
            np.full(len(self._names), self._settings.fd_step_v)
            if mode == "fd"
            else self._amplitudes
        )
        return GradientBatch(
            results=tuple(results),
            mode=mode,
            device_seconds=self._device.device_seconds - start,
            plan=None if mode == "fd" else self._plan,
            amplitudes_v=amplitudes.copy(),
            records=tuple(records),
        )

    def measure_dc(self, operating_points_v: FloatArray) -> tuple[FloatArray, bool]:
        """Output current (A) at each point with no tones (the final, unperturbed evaluation)."""
        points = np.atleast_2d(np.asarray(operating_points_v, dtype=np.float64))
        drive = self._drive(points, tones=None)
        acquisition = self._device.apply(drive.waveform_v, drive.sample_rate_hz)
        finite_record(acquisition)
        if acquisition.current_a.shape[0] == 0:
            raise ValueError(
                "this setup has no sampled readout (setup.roles.sampled_readout), so the DC "
                "output current cannot be measured; lock-ins read only their tones"
            )
        currents = np.array(
            [drive.window_samples(acquisition.current_a[0], c).mean() for c in range(len(points))]
        )
        return currents, bool(acquisition.saturated.any())

    # -- modes -------------------------------------------------------------------------------
    def _parallel(self, points: FloatArray) -> tuple[list[GradientResult], list[FloatArray]]:
        tones = self.tone_set()
        drive = self._drive(points, tones)
        acquisition = self._device.apply(drive.waveform_v, drive.sample_rate_hz)
        finite_record(acquisition)
        record = acquisition.current_a[0]
        saturated = bool(acquisition.saturated.any())
        lockin = None
        if self._settings.demodulation == "software_lockin":
            lockin = StreamingLockIn(
                self._rate,
                tones.frequencies_hz,
                time_constant_s=self._settings.lockin_time_constant_s,
                order=self._settings.lockin_order,
                phases_rad=tones.phases_rad,
            ).process(record)
        results = []
        for case, window in enumerate(drive.windows):
            samples = record[window.start : window.stop]
            if lockin is not None:
                fit = lockin_fit(samples, lockin[:, window.start : window.stop], tones, self._rate)
            else:
                fit = self._fit(samples, tones, window.start, curvature=self._settings.curvature)
            results.append(self._result(points[case], fit, np.arange(len(self._names)), saturated))
        return results, [acquisition.current_a]

    def _sequential(self, points: FloatArray) -> tuple[list[GradientResult], list[FloatArray]]:
        n = len(self._names)
        gradient = np.zeros((len(points), n))
        stderr = np.zeros_like(gradient)
        quadrature = np.zeros_like(gradient)
        dc = np.zeros((len(points), n))
        saturated = False
        records = []
        for k in range(n):
            tones = self.tone_set(only=k)
            drive = self._drive(points, tones)
            acquisition = self._device.apply(drive.waveform_v, drive.sample_rate_hz)
            finite_record(acquisition)
            records.append(acquisition.current_a)
            saturated |= bool(acquisition.saturated.any())
            for case, window in enumerate(drive.windows):
                samples = acquisition.current_a[0, window.start : window.stop]
                fit = self._fit(samples, tones, window.start, curvature=False)
                g, se, q = self._to_gradient(fit, np.array([k]))
                gradient[case, k], stderr[case, k], quadrature[case, k] = g[0], se[0], q[0]
                dc[case, k] = float(fit.dc)
        results = [
            GradientResult(
                electrodes=self._names,
                operating_point_v=points[case].copy(),
                gradient_a_per_v=gradient[case],
                stderr_a_per_v=stderr[case],
                quadrature_a_per_v=quadrature[case],
                dc_current_a=float(dc[case].mean()),
                snr=np.abs(gradient[case]) / np.maximum(stderr[case], 1e-300),
                saturated=saturated,
                phase_method=self.phase_method,
            )
            for case in range(len(points))
        ]
        return results, records

    def _hardware_lockins(
        self, points: FloatArray, *, sequential: bool
    ) -> tuple[list[GradientResult], list[FloatArray]]:
        """Gradients read by the lock-ins: one record with every tone, or one per electrode."""
        assert self._lockins is not None
        n = len(self._names)
        groups = [[k] for k in range(n)] if sequential else [list(range(n))]
        frequencies = self._plan.frequencies_hz
        readings: list[dict[int, LockinReading]] = [{} for _ in points]
        amplitudes = self._amplitudes.copy()
        dc = np.zeros((len(groups), len(points)))
        saturated = False
        records = []
        for g, which in enumerate(groups):
            amplitudes_asked = [float(a) for a in self._amplitudes]
            record, realised = self._lockins.read(points, which, frequencies, amplitudes_asked)
            amplitudes[which] = realised
            for case in range(len(points)):
                for k, reading in zip(which, record.readings[case], strict=True):
                    readings[case][k] = reading
            dc[g] = record.dc_current_a
            saturated |= record.saturated
            records.append(record.record_a)
        everyone = np.arange(n)
        results = []
        for case, point in enumerate(points):
            ordered = [readings[case][k] for k in range(n)]
            fit = _fit_from_lockins(ordered, frequencies, float(dc[:, case].mean()))
            results.append(self._result(point, fit, everyone, saturated, amplitudes))
        return results, records

    def _finite_differences(
        self, points: FloatArray
    ) -> tuple[list[GradientResult], list[FloatArray]]:
        n = len(self._names)
        step = self._settings.fd_step_v
        plateaus = []
        for point in points:
            plateaus.append(point)
            for index in self._indices:
                for sign in (1.0, -1.0):
                    shifted = point.copy()
                    shifted[index] += sign * step
                    plateaus.append(shifted)
        plateau_array = np.array(plateaus)
        self._check_points(plateau_array, margin=np.zeros(n))
        drive = self._drive(plateau_array, tones=None)
        acquisition = self._device.apply(drive.waveform_v, drive.sample_rate_hz)
        finite_record(acquisition)
        record = acquisition.current_a[0]
        means = np.array([drive.window_samples(record, c).mean() for c in range(len(plateaus))])
        difference_se = _fd_difference_stderr(record, drive, self._rate)
        per_point = 2 * n + 1
        results = []
        for case, point in enumerate(points):
            base = case * per_point
            plus = means[base + 1 : base + per_point : 2]
            minus = means[base + 2 : base + per_point : 2]
            se = np.array([difference_se(base + 1 + 2 * k, base + 2 + 2 * k) for k in range(n)])
            gradient = (plus - minus) / (2 * step)
            stderr = se / (2 * step)
            results.append(
                GradientResult(
                    electrodes=self._names,
                    operating_point_v=point.copy(),
                    gradient_a_per_v=gradient,
                    stderr_a_per_v=stderr,
                    quadrature_a_per_v=np.full(n, np.nan),
                    dc_current_a=float(means[base]),
                    snr=np.abs(gradient) / np.maximum(stderr, 1e-300),
                    saturated=bool(acquisition.saturated.any()),
                    phase_method=FINITE_DIFFERENCE,
                )
            )
        return results, [acquisition.current_a]

    # -- pieces ------------------------------------------------------------------------------
    def _make_plan(self) -> FrequencyPlan:
        return plan_from_settings(self._settings, self._rate, len(self._names))

    def _drive(self, points: FloatArray, tones: ToneSet | None) -> Drive:
        s = self._settings
        return device_drive(self._device, points, tones, s.window_s, s.settle_s, s.fade_periods)

    def _check_points(self, points: FloatArray, margin: FloatArray | None = None) -> None:
        amplitudes = self._amplitudes if margin is None else margin
        electrodes = self._device.electrodes
        for point in points:
            for row, electrode in enumerate(electrodes):
                pad = 0.0
                if row in self._indices:
                    pad = float(amplitudes[self._indices.index(row)])
                if not electrode.min_v + pad - 1e-12 <= point[row] <= electrode.max_v - pad + 1e-12:
                    raise ValueError(
                        f"operating point {point[row]:+.4f} V on {electrode.name!r} leaves no "
                        f"room for its {pad * 1e3:.1f} mV tone inside "
                        f"[{electrode.min_v}, {electrode.max_v}] V"
                    )

    def _curvature_frequencies(self) -> tuple[list[tuple[int, int, int]], list[float]]:
        """(i, j, sign) per extra frequency (sign +1: f_i + f_j, -1: |f_i - f_j|) and the Hz."""
        plan = self._plan
        keys: list[tuple[int, int, int]] = []
        freqs: list[float] = []
        for (i, j), values in plan.curvature_frequencies_hz().items():
            if i == j:
                keys.append((i, i, 1))
                freqs.append(values[0])
            else:
                keys.append((i, j, 1))
                freqs.append(values[0])
                keys.append((i, j, -1))
                freqs.append(values[1])
        return keys, freqs

    def _fit(self, samples: FloatArray, tones: ToneSet, start: int, curvature: bool) -> ToneFit:
        if self._settings.demodulation == "boxcar":
            return boxcar_fit(samples, self._rate, tones, start)
        extra_freqs: list[float] = []
        if curvature:
            _, extra_freqs = self._curvature_frequencies()
        fit = fit_tones(
            samples,
            self._rate,
            tones.frequencies_hz,
            phases_rad=tones.phases_rad,
            start_index=start,
            extra_frequencies_hz=extra_freqs,
        )
        return with_local_noise(fit, samples, self._rate)

    def _to_gradient(
        self, fit: ToneFit, which: np.ndarray, amplitudes_v: FloatArray | None = None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        amplitudes = (self._amplitudes if amplitudes_v is None else amplitudes_v)[which]
        frequencies = np.array(fit.frequencies_hz)
        c = np.atleast_1d(fit.complex_amplitude)
        components = np.atleast_2d(fit.stderr_components)
        if self.phase_method == PROJECTION:
            assert self._calibration is not None
            response = self._calibration.at(frequencies)
            projection = project_with_errors(
                c, amplitudes, response, components[:, 0], components[:, 1]
            )
            return projection.gradient, projection.gradient_stderr, projection.quadrature
        gradient = sign_by_phase(c, amplitudes, self._settings.phase_threshold_deg)
        stderr = np.atleast_1d(fit.stderr) / amplitudes
        return gradient, stderr, np.full(len(which), np.nan)

    def _result(
        self,
        point: FloatArray,
        fit: ToneFit,
        which: np.ndarray,
        saturated: bool,
        amplitudes_v: FloatArray | None = None,
    ) -> GradientResult:
        gradient, stderr, quadrature = self._to_gradient(fit, which, amplitudes_v)
        hessian = hessian_se = None
        if self._settings.curvature and len(fit.extra_frequencies_hz):
            hessian, hessian_se = self._hessian(fit)
        return GradientResult(
            electrodes=self._names,
            operating_point_v=point.copy(),
            gradient_a_per_v=gradient,
            stderr_a_per_v=stderr,
            quadrature_a_per_v=quadrature,
            dc_current_a=float(fit.dc),
            snr=np.abs(gradient) / np.maximum(stderr, 1e-300),
            saturated=saturated,
            hessian_a_per_v2=hessian,
            hessian_stderr_a_per_v2=hessian_se,
            phase_method=self.phase_method,
        )

    def _hessian(self, fit: ToneFit) -> tuple[FloatArray, FloatArray]:
        """Hessian from the 2f_i and f_i ± f_j bins (all drive phases are zero).

        ½ H_ii A_i² sin²(ω_i t) puts ``-¼ H_ii A_i²`` on cos(2ω_i t); H_ij A_i A_j sin·sin puts
        ``-½ H_ij A_i A_j`` on cos((ω_i + ω_j) t) and ``+½ H_ij A_i A_j`` on cos((ω_i − ω_j) t).
        """
        keys, freqs = self._curvature_frequencies()
        c = np.atleast_1d(fit.extra_complex_amplitude)
        se = np.atleast_1d(fit.extra_stderr)
        if self.phase_method == PROJECTION:
            assert self._calibration is not None
            response = self._calibration.at(np.array(freqs))
            c = c / response
            se = se / np.abs(response)
        cosine = c.imag  # the cos-component Y of X sin + Y cos
        n = len(self._names)
        a = self._amplitudes
        sums = np.zeros((n, n))
        weights = np.zeros((n, n))
        for (i, j, sign), y, s in zip(keys, cosine, se, strict=True):
            if i == j:
                value, scale = -4.0 * y / a[i] ** 2, 4.0 / a[i] ** 2
            else:
                value = (-2.0 if sign > 0 else 2.0) * y / (a[i] * a[j])
                scale = 2.0 / (a[i] * a[j])
            w = 1.0 / max((scale * s) ** 2, 1e-300)
            sums[i, j] += w * value
            weights[i, j] += w
        hessian = np.where(weights > 0, sums / np.maximum(weights, 1e-300), 0.0)
        hessian_se = np.where(weights > 0, 1.0 / np.sqrt(np.maximum(weights, 1e-300)), 0.0)
        upper = np.triu(hessian, 1)
        hessian = np.diag(np.diag(hessian)) + upper + upper.T
        upper_se = np.triu(hessian_se, 1)
        hessian_se = np.diag(np.diag(hessian_se)) + upper_se + upper_se.T
        return hessian, hessian_se


def _fd_difference_stderr(
    record: FloatArray, drive: Drive, rate_hz: float
) -> Callable[[int, int], float]:
    """Standard error (A) of ``mean(plateau a) − mean(plateau b)`` for FD plateaus of a record.

    From the noise spectrum fitted to the same record (:mod:`labctl.homodyne.fd_errors`), so
    that 1/f noise and drift between plateaus are counted; plateaus too short for a fit fall
    back to the within-plateau standard errors of the means (white noise only).
    """
    windows = [(w.start, w.stop) for w in drive.windows]
    try:
        model = fit_noise_model(record, windows, rate_hz)
    except ValueError:
        sems = [
            float(drive.window_samples(record, c).std(ddof=1)) / math.sqrt(drive.windows[c].length)
            for c in range(len(windows))
        ]
        return lambda a, b: math.hypot(sems[a], sems[b])
    length = min(stop - start for start, stop in windows)

    def stderr(a: int, b: int) -> float:
        separation = abs(windows[b][0] - windows[a][0])
        return math.sqrt(max(model.difference_variance_a2(length, separation), 0.0))

    return stderr


def _fit_from_lockins(
    readings: list[LockinReading], frequencies_hz: tuple[float, ...], dc_a: float
) -> ToneFit:
    """The lock-in readings of one point as the :class:`ToneFit` the sampled path makes."""
    components = np.array([r.stderr_components_a for r in readings], dtype=np.float64)
    return ToneFit(
        complex_amplitude=np.array([r.complex_amplitude_a for r in readings]),
        stderr=components.max(axis=1),
        stderr_components=components,
        dc=np.array(dc_a),
        drift_per_s=np.array(0.0),
        extra_complex_amplitude=np.zeros(0, dtype=np.complex128),
        extra_stderr=np.zeros(0),
        residual_rms=np.array(np.nan),
        n_samples=min(r.n_points for r in readings),
        frequencies_hz=tuple(frequencies_hz),
        extra_frequencies_hz=(),
    )


def with_local_noise(fit: ToneFit, samples: FloatArray, rate_hz: float) -> ToneFit:
    """``fit`` with standard errors from the noise spectrum next to each tone.

    Residual-based errors assume white noise; see :func:`local_noise_stderr`.
    """
    n = samples.size
    tone_bins = [round(f * n / rate_hz) for f in fit.frequencies_hz]
    extra_bins = [round(f * n / rate_hz) for f in fit.extra_frequencies_hz]
    se = local_noise_stderr(samples, tone_bins + extra_bins, sorted(product_bins(tone_bins)))
    tone_se = se[: len(tone_bins)]
    return replace(
        fit,
        stderr=tone_se,
        stderr_components=np.stack([tone_se, tone_se], axis=-1),
        extra_stderr=se[len(tone_bins) :],
    )


def lockin_fit(
    samples: FloatArray, lockin_output: np.ndarray, tones: ToneSet, rate_hz: float
) -> ToneFit:
    """A :class:`ToneFit` from a streaming lock-in's output read at the end of one window.

    The lock-in runs over the whole record and its complex output X + iY is read at the last
    sample of the window, as a hardware lock-in's output would be. (Averaging the output over a
    coherent window would cancel the beats between tones and hide exactly the leakage this
    mode exists to show.) Standard errors are those of an ideal window average, a lower bound:
    the filter's leakage from neighbouring tones is not included.
    """
    n = samples.size
    bins = [round(f * n / rate_hz) for f in tones.frequencies_hz]
    se = local_noise_stderr(samples, bins, sorted(product_bins(bins)))
    return _tones_only_fit(lockin_output[:, -1], se, samples, tones)


def boxcar_fit(samples: FloatArray, rate_hz: float, tones: ToneSet, start: int) -> ToneFit:
    """A :class:`ToneFit` from plain boxcar averages (the lab code's demodulator)."""
    c = np.atleast_1d(
        boxcar_demodulate(
            samples, rate_hz, tones.frequencies_hz, phases_rad=tones.phases_rad, start_index=start
        )
    )
    se = np.full(c.shape, np.std(samples) * math.sqrt(2.0 / samples.size))
    return _tones_only_fit(c, se, samples, tones)


def _tones_only_fit(
    complex_amplitude: np.ndarray, stderr: FloatArray, samples: FloatArray, tones: ToneSet
) -> ToneFit:
    """A :class:`ToneFit` of demodulators that give tone amplitudes only (no drift, no extras)."""
    return ToneFit(
        complex_amplitude=complex_amplitude,
        stderr=stderr,
        stderr_components=np.stack([stderr, stderr], axis=-1),
        dc=np.asarray(samples.mean()),
        drift_per_s=np.asarray(0.0),
        extra_complex_amplitude=np.zeros(0, dtype=complex),
        extra_stderr=np.zeros(0),
        residual_rms=np.asarray(np.std(samples)),
        n_samples=samples.size,
        frequencies_hz=tuple(tones.frequencies_hz),
        extra_frequencies_hz=(),
    )
