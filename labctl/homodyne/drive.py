"""Drive synthesis for homodyne gradient extraction: DC plateaus plus small tones in one record.

One record visits every input case (e.g. the four cases of a Boolean gate) in turn::

    rest -> ramp -> case 0 -> fade tones in -> settle -> window 0
         -> ramp (tones running) -> case 1 -> settle -> window 1 -> ...
         -> fade tones out -> ramp -> rest

Conventions shared with the demodulator:

* Tone ``k`` on electrode ``e_k`` is ``A_k * sin(2*pi*f_k*t + phi_k)`` with ``t = n / f_s`` and
  ``n`` the sample index counted from the first sample of the whole waveform (the *tone origin*).
* A measurement window is given by its start index and its length, so its tone phases can be
  referenced to the tone origin with the start index.

Safety: the waveform starts and ends exactly on the resting voltages, and no per-sample step on
any electrode exceeds ``slew_v_per_s / f_s``. DC ramps run at the slew limit minus the slew the
tones on that electrode already use (``sum 2*pi*f*A``); the finished waveform is checked once more
before it is returned.

Units: volts, seconds, hertz, radians.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labctl.device.checks import ramp_length

if TYPE_CHECKING:  # the safe device only annotates here
    from labctl.device import Acquisition
    from labctl.device.safety import SafeDevice

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

RampShape = Literal["linear", "raised_cosine"]

logger = logging.getLogger(__name__)

_SLEW_MARGIN = 1e-4
"""Relative margin kept below the slew limit when sizing ramps, so rounding never crosses it."""


@dataclass(frozen=True)
class ToneSet:
    """The perturbation tones: one sinusoid per perturbed electrode.

    Attributes:
        electrode_indices: Waveform row of each tone's electrode; all distinct, >= 0.
        frequencies_hz: Tone frequencies (Hz), > 0.
        amplitudes_v: Tone amplitudes (V, zero-to-peak), > 0.
        phases_rad: Tone phases (rad) at the tone origin; zeros when omitted.
    """

    electrode_indices: tuple[int, ...]
    frequencies_hz: tuple[float, ...]
    amplitudes_v: tuple[float, ...]
    phases_rad: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        electrodes = tuple(int(e) for e in self.electrode_indices)
        freqs = tuple(float(f) for f in self.frequencies_hz)
        amps = tuple(float(a) for a in self.amplitudes_v)
        phases = tuple(float(p) for p in self.phases_rad) if len(self.phases_rad) else ()
        n = len(electrodes)
        if n == 0:
            raise ValueError("ToneSet needs at least one tone; pass tones=None for a DC-only drive")
        if len(freqs) != n or len(amps) != n:
            raise ValueError(
                f"ToneSet lengths differ: {n} electrode_indices, {len(freqs)} frequencies_hz, "
                f"{len(amps)} amplitudes_v; give one entry per tone in each"
            )
        if not phases:
            phases = (0.0,) * n
        if len(phases) != n:
            raise ValueError(
                f"ToneSet has {len(phases)} phases_rad for {n} tones; give one per tone or none"
            )
        if any(e < 0 for e in electrodes):
            raise ValueError(f"electrode_indices must be >= 0, got {electrodes}")
        if len(set(electrodes)) != n:
            raise ValueError(
                f"electrode_indices must be distinct (one tone per electrode), got {electrodes}"
            )
        for k, f in enumerate(freqs):
            if not (math.isfinite(f) and f > 0.0):
                raise ValueError(f"tone {k}: frequency must be finite and > 0 Hz, got {f}")
        for k, a in enumerate(amps):
            if not (math.isfinite(a) and a > 0.0):
                raise ValueError(f"tone {k}: amplitude must be finite and > 0 V, got {a}")
        for k, p in enumerate(phases):
            if not math.isfinite(p):
                raise ValueError(f"tone {k}: phase must be finite, got {p}")
        object.__setattr__(self, "electrode_indices", electrodes)
        object.__setattr__(self, "frequencies_hz", freqs)
        object.__setattr__(self, "amplitudes_v", amps)
        object.__setattr__(self, "phases_rad", phases)

    @property
    def n_tones(self) -> int:
        """Number of tones."""
        return len(self.electrode_indices)

    @property
    def slowest_hz(self) -> float:
        """Lowest tone frequency (Hz)."""
        return min(self.frequencies_hz)

    def _check_electrodes(self, n_electrodes: int) -> None:
        bad = [e for e in self.electrode_indices if e >= n_electrodes]
        if bad:
            raise ValueError(
                f"tone electrode indices {bad} do not exist: the waveform has {n_electrodes} "
                f"electrodes (rows 0..{n_electrodes - 1})"
            )

    def slew_v_per_s(self, n_electrodes: int) -> FloatArray:
        """Per electrode, the peak slew rate its tones use, ``sum 2*pi*f*A`` (V/s)."""
        self._check_electrodes(n_electrodes)
        out = np.zeros(n_electrodes)
        rates = 2.0 * np.pi * np.asarray(self.frequencies_hz) * np.abs(self.amplitudes_v)
        np.add.at(out, list(self.electrode_indices), rates)
        return out

    def evaluate(
        self, sample_index: ArrayLike, sample_rate_hz: float, n_electrodes: int
    ) -> FloatArray:
        """Full-amplitude tones at the given sample indices (counted from the tone origin).

        Returns shape ``(n_electrodes, len(sample_index))`` (V); rows without a tone are zero.
        """
        self._check_electrodes(n_electrodes)
        n = np.asarray(sample_index, dtype=np.float64)
        out = np.zeros((n_electrodes, n.size))
        for e, f, a, p in zip(
            self.electrode_indices,
            self.frequencies_hz,
            self.amplitudes_v,
            self.phases_rad,
            strict=True,
        ):
            out[e] += a * np.sin(2.0 * np.pi * f * n / sample_rate_hz + p)
        return out


@dataclass(frozen=True)
class Window:
    """One measurement window: samples ``start`` (inclusive) to ``stop`` (exclusive) of case
    ``case_index``."""

    case_index: int
    start: int
    stop: int

    @property
    def length(self) -> int:
        """Number of samples in the window."""
        return self.stop - self.start


@dataclass(frozen=True)
class Segment:
    """A stretch of the waveform: ``kind`` is one of ``"rest"`` (the first and the last sample),
    ``"ramp"``, ``"fade_in"``, ``"settle"``, ``"window"``, ``"fade_out"``; samples ``start``
    (inclusive) to ``stop`` (exclusive)."""

    kind: str
    start: int
    stop: int


@dataclass(frozen=True, eq=False)
class Drive:
    """A synthesised multi-electrode drive record.

    Attributes:
        waveform_v: Voltages, shape ``(n_electrodes, n_samples)`` (V); read-only.
        sample_rate_hz: Sample rate (Hz) the waveform was built for.
        windows: Measurement windows, one per input case, in case order.
        mask: Shape ``(n_samples,)``, True inside a window.
        case_of_sample: Shape ``(n_samples,)``, the case index inside windows, -1 elsewhere.
        segments: The whole timeline (ramps, fades, settles, windows), contiguous and in order.
        tones: The tones (None for a DC-only record).
        rest_v: Resting voltages (V), shape ``(n_electrodes,)``.
        operating_points_v: DC operating points (V), shape ``(n_cases, n_electrodes)``.
        fade_s: Duration (s) of each tone fade; 0 for a DC-only record.
    """

    waveform_v: FloatArray
    sample_rate_hz: float
    windows: tuple[Window, ...]
    mask: BoolArray
    case_of_sample: IntArray
    segments: tuple[Segment, ...]
    tones: ToneSet | None
    rest_v: FloatArray
    operating_points_v: FloatArray
    fade_s: float

    @property
    def n_samples(self) -> int:
        """Number of samples per electrode."""
        return int(self.waveform_v.shape[1])

    @property
    def n_electrodes(self) -> int:
        """Number of electrodes (waveform rows)."""
        return int(self.waveform_v.shape[0])

    @property
    def n_cases(self) -> int:
        """Number of input cases (= number of windows)."""
        return len(self.windows)

    @property
    def duration_s(self) -> float:
        """Duration of the record (s): ``n_samples / sample_rate_hz``."""
        return self.n_samples / self.sample_rate_hz

    def window_samples(self, record: ArrayLike, case: int) -> FloatArray:
        """The samples of ``record`` inside the window of input case ``case``.

        Args:
            record: Shape ``(n_samples,)`` or ``(n_outputs, n_samples)``, sampled synchronously
                with :attr:`waveform_v`.
            case: Input case index, ``0 <= case < n_cases``.

        Returns:
            ``record[..., start:stop]`` for that window.
        """
        arr = np.asarray(record)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.n_samples:
            raise ValueError(
                f"record has shape {arr.shape}; expected ({self.n_samples},) or "
                f"(n_outputs, {self.n_samples}) to match this drive"
            )
        if not 0 <= case < self.n_cases:
            raise IndexError(f"case {case} does not exist: this drive has {self.n_cases} cases")
        w = self.windows[case]
        return arr[..., w.start : w.stop]


def _ramp_profile(n: int, shape: RampShape) -> FloatArray:
    """Ramp fractions for samples 1..n of an n-sample ramp (ends exactly on 1.0)."""
    k = np.arange(1, n + 1, dtype=np.float64) / n
    prof = k if shape == "linear" else 0.5 * (1.0 - np.cos(np.pi * k))
    prof[-1] = 1.0
    return prof


def _ramp_samples(
    delta_v: FloatArray, rate_v_per_s: FloatArray, sample_rate_hz: float, shape: RampShape
) -> int:
    """Samples needed so no electrode's DC step exceeds ``rate * (1 - margin) / f_s``.

    A raised-cosine ramp peaks at π/2 times the mean rate of a linear one, so it needs that
    many more samples; the count itself is :func:`labctl.device.checks.ramp_length`.
    """
    peak_factor = 1.0 if shape == "linear" else np.pi / 2.0
    return max(
        (
            ramp_length(peak_factor * abs(float(d)), sample_rate_hz, float(r) * (1 - _SLEW_MARGIN))
            for d, r in zip(delta_v, rate_v_per_s, strict=True)
            if d != 0.0
        ),
        default=0,
    )


def _fade_envelope(n: int, fade_samples_exact: float) -> FloatArray:
    """Raised-cosine envelope rising from 0 at sample 0 to 1 at ``fade_samples_exact``."""
    x = np.minimum(np.arange(n, dtype=np.float64) / fade_samples_exact, 1.0)
    return 0.5 * (1.0 - np.cos(np.pi * x))


def synthesise_drive(
    *,
    rest_v: ArrayLike,
    operating_points_v: ArrayLike,
    tones: ToneSet | None,
    sample_rate_hz: float,
    window_s: float,
    settle_s: float,
    slew_v_per_s: float,
    fade_periods: int = 2,
    ramp_shape: RampShape = "linear",
    dc_ramp_v_per_s: float | None = None,
) -> Drive:
    """Build one record that visits every operating point with the tones running.

    Args:
        rest_v: Resting voltages (V), shape ``(n_electrodes,)``; the first and last sample.
        operating_points_v: DC operating points (V), shape ``(n_cases, n_electrodes)`` (a 1-D
            array is taken as a single case), visited in order.
        tones: Tones added on top of the DC (faded in after the first ramp, faded out before the
            last), or None for a plain DC record.
        sample_rate_hz: Sample rate (Hz); use the coerced rate the hardware really runs at.
        window_s: Window duration (s); each window has exactly ``round(window_s * f_s)`` samples.
        settle_s: Wait (s) after each DC change (and after the fade-in) before a window;
            rounded up to whole samples.
        slew_v_per_s: Maximum allowed rate of change of any electrode (V/s); no per-sample step
            exceeds ``slew_v_per_s / sample_rate_hz``.
        fade_periods: Tone fade-in/out duration in whole periods of the slowest tone (>= 1).
        ramp_shape: DC ramp profile, ``"linear"`` or ``"raised_cosine"``.
        dc_ramp_v_per_s: Optional extra cap (V/s) on the DC ramp rate (peak rate for a
            raised-cosine ramp), for electrodes that want slower DC changes than the slew limit
            the tones need. None: DC ramps as fast as the slew limit allows.

    Returns:
        The :class:`Drive`.

    Raises:
        ValueError: On inconsistent shapes or values, tones above Nyquist, tones that alone use
            up the slew limit of their electrode. The result respects the slew limit by
            construction; the safety layer checks every sample again before it is sent.
    """
    fs = float(sample_rate_hz)
    if not (math.isfinite(fs) and fs > 0.0):
        raise ValueError(f"sample_rate_hz must be finite and > 0, got {sample_rate_hz}")
    slew = float(slew_v_per_s)
    if not (math.isfinite(slew) and slew > 0.0):
        raise ValueError(f"slew_v_per_s must be finite and > 0, got {slew_v_per_s}")
    if not (math.isfinite(window_s) and window_s > 0.0):
        raise ValueError(f"window_s must be finite and > 0 s, got {window_s}")
    if not (math.isfinite(settle_s) and settle_s >= 0.0):
        raise ValueError(f"settle_s must be finite and >= 0 s, got {settle_s}")
    if ramp_shape not in ("linear", "raised_cosine"):
        raise ValueError(f"ramp_shape must be 'linear' or 'raised_cosine', got {ramp_shape!r}")
    if isinstance(fade_periods, bool) or int(fade_periods) != fade_periods or fade_periods < 1:
        raise ValueError(f"fade_periods must be a whole number >= 1, got {fade_periods}")
    fade_periods = int(fade_periods)

    rest = np.array(rest_v, dtype=np.float64)
    if rest.ndim != 1 or rest.size == 0:
        raise ValueError(f"rest_v must have shape (n_electrodes,), got {rest.shape}")
    n_el = rest.size
    ops = np.array(operating_points_v, dtype=np.float64)
    if ops.ndim == 1:
        ops = ops[np.newaxis, :]
    if ops.ndim != 2 or ops.shape[1] != n_el or ops.shape[0] == 0:
        raise ValueError(
            f"operating_points_v must have shape (n_cases, {n_el}) to match rest_v, got {ops.shape}"
        )
    if not (np.all(np.isfinite(rest)) and np.all(np.isfinite(ops))):
        raise ValueError("rest_v and operating_points_v must be finite")

    n_window = round(window_s * fs)
    if n_window < 1:
        raise ValueError(
            f"window_s={window_s} s is shorter than one sample at {fs} Hz; lengthen the window"
        )
    n_settle = math.ceil(settle_s * fs - 1e-9)

    dc_cap = slew
    if dc_ramp_v_per_s is not None:
        if not (math.isfinite(dc_ramp_v_per_s) and dc_ramp_v_per_s > 0.0):
            raise ValueError(f"dc_ramp_v_per_s must be finite and > 0, got {dc_ramp_v_per_s}")
        dc_cap = min(slew, float(dc_ramp_v_per_s))
    full_rate = np.full(n_el, dc_cap)
    if tones is not None:
        too_fast = [f for f in tones.frequencies_hz if f >= fs / 2.0]
        if too_fast:
            raise ValueError(
                f"tone frequencies {too_fast} Hz are not below Nyquist ({fs / 2.0} Hz at "
                f"f_s = {fs} Hz); raise the sample rate or lower the tones"
            )
        tone_rate = tones.slew_v_per_s(n_el)
        for e in range(n_el):
            if tone_rate[e] >= slew * (1.0 - _SLEW_MARGIN):
                raise ValueError(
                    f"electrode {e}: its tones alone slew at sum(2*pi*f*A) = {tone_rate[e]:.6g} "
                    f"V/s, which leaves no room under the slew limit {slew:.6g} V/s; lower the "
                    "tone amplitude or frequency, or raise slew_v_per_s"
                )
        running_rate = np.minimum(full_rate, slew - tone_rate)
        fade_samples_exact = fade_periods * fs / tones.slowest_hz
        n_fade = math.ceil(fade_samples_exact - 1e-9)
    else:
        running_rate = full_rate
        fade_samples_exact = 0.0
        n_fade = 0

    # Walk the timeline, building the DC part block by block.
    dc_parts: list[FloatArray] = []
    segments: list[Segment] = []
    windows: list[Window] = []
    cursor = 0

    def add(kind: str, block: FloatArray) -> int:
        nonlocal cursor
        start = cursor
        n = block.shape[1]
        if n:
            dc_parts.append(block)
            segments.append(Segment(kind, start, start + n))
            cursor += n
        return start

    def ramp(v0: FloatArray, v1: FloatArray, rate: FloatArray) -> None:
        n = _ramp_samples(v1 - v0, rate, fs, ramp_shape)
        if n == 0:
            return
        block = v0[:, None] + (v1 - v0)[:, None] * _ramp_profile(n, ramp_shape)[None, :]
        block[:, -1] = v1
        add("ramp", block)

    def hold(kind: str, v: FloatArray, n: int) -> int:
        return add(kind, np.repeat(v[:, None], n, axis=1))

    # Sample 0 is exactly rest; the ramp to case 0 (tones off) follows.
    hold("rest", rest, 1)
    ramp(rest, ops[0], full_rate)
    fade_in_start = cursor
    hold("fade_in", ops[0], n_fade)
    for c in range(ops.shape[0]):
        if c > 0:
            ramp(ops[c - 1], ops[c], running_rate)
        hold("settle", ops[c], n_settle)
        start = hold("window", ops[c], n_window)
        windows.append(Window(c, start, start + n_window))
    fade_out_start = cursor
    hold("fade_out", ops[-1], n_fade)
    ramp(ops[-1], rest, full_rate)
    hold("rest", rest, 1)

    waveform = np.concatenate(dc_parts, axis=1)
    n_total = waveform.shape[1]

    if tones is not None:
        envelope = np.zeros(n_total)
        envelope[fade_in_start:fade_out_start] = 1.0
        rise = _fade_envelope(n_fade, fade_samples_exact)
        envelope[fade_in_start : fade_in_start + n_fade] = rise
        # The fade-out is the fade-in reversed in time: its last sample has envelope 0, so the
        # tones are fully off before the DC ramp back to rest starts moving.
        envelope[fade_out_start : fade_out_start + n_fade] = rise[::-1]
        tone_wave = tones.evaluate(np.arange(n_total), fs, n_el)
        for e in set(tones.electrode_indices):
            waveform[e] += envelope * tone_wave[e]

    mask = np.zeros(n_total, dtype=bool)
    case_of_sample = np.full(n_total, -1, dtype=np.int64)
    for w in windows:
        mask[w.start : w.stop] = True
        case_of_sample[w.start : w.stop] = w.case_index

    for arr in (waveform, mask, case_of_sample, rest, ops):
        arr.setflags(write=False)
    drive = Drive(
        waveform_v=waveform,
        sample_rate_hz=fs,
        windows=tuple(windows),
        mask=mask,
        case_of_sample=case_of_sample,
        segments=tuple(segments),
        tones=tones,
        rest_v=rest,
        operating_points_v=ops,
        fade_s=fade_samples_exact / fs,
    )
    logger.debug(
        "synthesised drive: %d electrodes, %d cases, %d samples (%.4g s)",
        n_el,
        ops.shape[0],
        n_total,
        drive.duration_s,
    )
    return drive


def device_drive(
    device: SafeDevice,
    points_v: ArrayLike,
    tones: ToneSet | None,
    window_s: float,
    settle_s: float,
    fade_periods: int = 2,
) -> Drive:
    """One record visiting ``points_v`` on ``device``, within its slew and ramp limits.

    The record starts and ends on the device's rest voltages and runs at its sample rate; the
    device's slew limit bounds every sample and its ramp rate caps the DC ramps (see
    :func:`synthesise_drive`).

    Args:
        device: The safe device (its rest voltages, rate and limits shape the drive).
        points_v: Operating points, shape ``(n_points, n_electrodes)`` (V).
        tones: Tones to run through the record, or None for plain DC plateaus.
        window_s: Measurement window per point (s).
        settle_s: Settling after each transition (s).
        fade_periods: Tone fade in/out, in periods of the slowest tone.
    """
    limits = device.limits
    return synthesise_drive(
        rest_v=device.rest_voltages(),
        operating_points_v=points_v,
        tones=tones,
        sample_rate_hz=device.sample_rate_hz,
        window_s=window_s,
        settle_s=settle_s,
        slew_v_per_s=limits.slew_v_per_s,
        fade_periods=fade_periods,
        dc_ramp_v_per_s=limits.ramp_v_per_s,
    )


def finite_record(acquisition: Acquisition) -> FloatArray:
    """The acquisition's current record, refused when any sample is NaN or infinite."""
    record = acquisition.current_a
    bad = int(np.count_nonzero(~np.isfinite(record)))
    if bad:
        raise ValueError(
            f"the readout returned {bad} NaN or inf samples in a record of {record.size}: the "
            "readout instrument or its connection failed (nothing can be demodulated from that). "
            "Check the amplifier, the ADC wiring and the readout instrument, then measure again "
            "(labctl train --resume RUN_DIR continues a run)"
        )
    return record
