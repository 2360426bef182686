"""Measurement-chain calibration and sign/phase handling for homodyne gradient extraction.

The chain between a drive tone and its demodulated response (DAQ output, cabling, device
capacitance, transimpedance amplifier, ADC) scales and delays every tone. Its complex response
``C(f) = |C| e^{i psi(f)}`` is measured once per setting, with a known resistor in place of the
device (expected current ``A/R`` in phase with the drive) or with the output looped back into the
input (expected voltage ``A``). A demodulated response ``c = X + iY`` (a response
``a sin(w t + phi + theta)`` to the tone ``A sin(w t + phi)`` has ``c = a e^{i theta}``) then gives

* the calibrated projection ``g = Re[c e^{-i psi}] / (A |C|)``, with the quadrature
  ``Im[c e^{-i psi}] / (A |C|)`` as a diagnostic (recommended: unbiased at any SNR, sign-safe),
* or the lab rule ``g = s |c| / A`` with ``s = +1`` if ``|theta| < 90 deg`` else ``-1``.

Only the mathematics lives here; the routine that drives a device through a calibration is
elsewhere. Units: SI (V, A, Hz, rad); a gradient has the unit of ``c`` per volt (A/V for a current).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

CalibrationMethod = Literal["resistor", "loopback"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ChainResponse:
    """The measured complex response of the measurement chain, per frequency.

    Attributes:
        frequencies_hz: Calibration frequencies (Hz), strictly increasing (sorted on creation).
        response: Complex response per frequency: measured complex amplitude divided by the
            expected one (dimensionless; ``|C| ~ 1``; ``angle(C)`` is the chain phase, negative
            for a lag).
        method: How it was measured, ``"resistor"`` or ``"loopback"``.
        metadata: Anything worth keeping with it (resistor value, amplifier gain, sample rate,
            date); must be JSON/YAML-safe for :meth:`to_dict`.
    """

    frequencies_hz: FloatArray
    response: ComplexArray
    method: CalibrationMethod
    metadata: dict[str, Any] = field(default_factory=dict)

    SPAN_RTOL = 1e-6
    """Relative tolerance on the calibrated span: frequencies this close outside it are accepted."""

    def __post_init__(self) -> None:
        freqs = np.array(self.frequencies_hz, dtype=np.float64).reshape(-1)
        resp = np.array(self.response, dtype=np.complex128).reshape(-1)
        if freqs.size == 0:
            raise ValueError("a ChainResponse needs at least one frequency")
        if freqs.size != resp.size:
            raise ValueError(
                f"{freqs.size} frequencies but {resp.size} responses; "
                "give one response per frequency"
            )
        if not np.all(np.isfinite(freqs) & (freqs > 0.0)):
            raise ValueError(f"frequencies_hz must be finite and > 0 Hz, got {freqs.tolist()}")
        if not np.all(np.isfinite(resp)) or np.any(resp == 0.0):
            raise ValueError("response must be finite and non-zero at every frequency")
        if self.method not in ("resistor", "loopback"):
            raise ValueError(f"method must be 'resistor' or 'loopback', got {self.method!r}")
        order = np.argsort(freqs, kind="stable")
        freqs, resp = freqs[order], resp[order]
        if np.any(np.diff(freqs) <= 0.0):
            raise ValueError(
                f"frequencies_hz contain duplicates: {freqs.tolist()}; average repeated "
                "measurements before building a ChainResponse"
            )
        freqs.setflags(write=False)
        resp.setflags(write=False)
        object.__setattr__(self, "frequencies_hz", freqs)
        object.__setattr__(self, "response", resp)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def magnitude(self) -> FloatArray:
        """``|C|`` per calibration frequency (dimensionless)."""
        return np.abs(self.response)

    @property
    def phase_rad(self) -> FloatArray:
        """Chain phase per calibration frequency (rad), unwrapped along frequency."""
        return np.unwrap(np.angle(self.response))

    def at(self, frequencies_hz: ArrayLike) -> ComplexArray:
        """The chain response at ``frequencies_hz`` (Hz), any shape.

        Interpolates ``|C|`` linearly and the unwrapped phase linearly between calibration
        frequencies (the phase is unwrapped along frequency, so it must change by less than pi
        between neighbouring calibration points). Frequencies within :attr:`SPAN_RTOL` outside
        the calibrated span take the edge value.

        Raises:
            ValueError: If a frequency lies outside the calibrated span.
        """
        f = np.asarray(frequencies_hz, dtype=np.float64)
        lo, hi = float(self.frequencies_hz[0]), float(self.frequencies_hz[-1])
        outside = (f < lo * (1.0 - self.SPAN_RTOL)) | (f > hi * (1.0 + self.SPAN_RTOL))
        if np.any(outside) or not np.all(np.isfinite(f)):
            bad = f[outside | ~np.isfinite(f)].reshape(-1)
            raise ValueError(
                f"frequency {float(bad[0])} Hz is outside the calibrated span [{lo}, {hi}] Hz; "
                "recalibrate over a span that covers every tone and bin: `labctl calibrate "
                "CONFIG`, with `--curvature` when the curvature (Hessian) bins are measured"
            )
        fc = np.clip(f, lo, hi)
        mag = np.interp(fc, self.frequencies_hz, self.magnitude)
        phase = np.interp(fc, self.frequencies_hz, self.phase_rad)
        return (mag * np.exp(1j * phase)).astype(np.complex128)

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-safe dict (plain floats and lists; real and imaginary parts separate)."""
        return {
            "method": str(self.method),
            "frequencies_hz": [float(x) for x in self.frequencies_hz],
            "response_re": [float(x) for x in self.response.real],
            "response_im": [float(x) for x in self.response.imag],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChainResponse:
        """Rebuild from :meth:`to_dict` output (e.g. loaded from a setup file)."""
        required = ("method", "frequencies_hz", "response_re", "response_im")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(
                f"chain response is missing {missing}; expected keys {list(required)} "
                "(+ optional 'metadata')"
            )
        re = np.asarray(data["response_re"], dtype=np.float64)
        im = np.asarray(data["response_im"], dtype=np.float64)
        if re.shape != im.shape:
            raise ValueError(
                f"response_re has {re.size} values but response_im has {im.size}; they must match"
            )
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValueError(f"metadata must be a mapping, got {type(metadata).__name__}")
        return cls(
            frequencies_hz=np.asarray(data["frequencies_hz"], dtype=np.float64),
            response=re + 1j * im,
            method=data["method"],
            metadata=dict(metadata),
        )


def _tone_vectors(
    complex_amplitude: ArrayLike, tone_amplitudes_v: ArrayLike, frequencies_hz: ArrayLike | None
) -> tuple[ComplexArray, FloatArray]:
    c = np.asarray(complex_amplitude, dtype=np.complex128)
    a = np.asarray(tone_amplitudes_v, dtype=np.float64)
    if c.ndim == 0 or a.ndim != 1 or c.shape[-1] != a.size:
        raise ValueError(
            f"complex amplitudes of shape {c.shape} do not match {a.size} tone amplitudes; the "
            "last axis must hold one value per tone"
        )
    if not np.all(np.isfinite(a) & (a > 0.0)):
        raise ValueError(f"tone amplitudes must be finite and > 0 V, got {a.tolist()}")
    if frequencies_hz is not None:
        f = np.asarray(frequencies_hz, dtype=np.float64)
        if f.shape != a.shape:
            raise ValueError(f"{f.size} frequencies for {a.size} tones; give one per tone")
    return c, a


def response_from_resistor(
    complex_amplitude_a: ArrayLike,
    tone_amplitudes_v: ArrayLike,
    resistance_ohm: float,
    frequencies_hz: ArrayLike,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> ChainResponse:
    """Chain response from a known resistor in place of the device.

    The expected current at tone ``k`` is ``A_k / R`` in phase with the drive, so
    ``C_k = c_k / (A_k / R)``.

    Args:
        complex_amplitude_a: Demodulated current per tone (A), shape ``(n_tones,)``.
        tone_amplitudes_v: Drive amplitude per tone (V), shape ``(n_tones,)``.
        resistance_ohm: The calibration resistor (ohm), > 0.
        frequencies_hz: Tone frequencies (Hz), shape ``(n_tones,)``, distinct.
        metadata: Extra items to store; ``resistance_ohm`` is added.
    """
    if not (math.isfinite(resistance_ohm) and resistance_ohm > 0.0):
        raise ValueError(f"resistance_ohm must be finite and > 0, got {resistance_ohm}")
    c, a = _tone_vectors(complex_amplitude_a, tone_amplitudes_v, frequencies_hz)
    if c.ndim != 1:
        raise ValueError(f"complex_amplitude_a must be 1-D (one value per tone), got {c.shape}")
    meta = {**dict(metadata or {}), "resistance_ohm": float(resistance_ohm)}
    return ChainResponse(
        frequencies_hz=np.asarray(frequencies_hz, dtype=np.float64),
        response=c / (a / resistance_ohm),
        method="resistor",
        metadata=meta,
    )


def response_from_loopback(
    complex_amplitude_v: ArrayLike,
    tone_amplitudes_v: ArrayLike,
    frequencies_hz: ArrayLike,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> ChainResponse:
    """Chain response from the drive looped straight back into the input: ``C_k = c_k / A_k``.

    Args:
        complex_amplitude_v: Demodulated voltage per tone (V), shape ``(n_tones,)``.
        tone_amplitudes_v: Drive amplitude per tone (V), shape ``(n_tones,)``.
        frequencies_hz: Tone frequencies (Hz), shape ``(n_tones,)``, distinct.
        metadata: Extra items to store.
    """
    c, a = _tone_vectors(complex_amplitude_v, tone_amplitudes_v, frequencies_hz)
    if c.ndim != 1:
        raise ValueError(f"complex_amplitude_v must be 1-D (one value per tone), got {c.shape}")
    return ChainResponse(
        frequencies_hz=np.asarray(frequencies_hz, dtype=np.float64),
        response=c / a,
        method="loopback",
        metadata=dict(metadata or {}),
    )


class Projection(NamedTuple):
    """Calibrated gradients with their standard errors (units of ``c`` per volt)."""

    gradient: FloatArray
    quadrature: FloatArray
    gradient_stderr: FloatArray
    quadrature_stderr: FloatArray


def _response_vector(response_at_f: ArrayLike, n_tones: int) -> ComplexArray:
    r = np.asarray(response_at_f, dtype=np.complex128)
    if r.shape != (n_tones,):
        raise ValueError(
            f"response_at_f has shape {r.shape}; expected ({n_tones},), one chain response per "
            "tone (use ChainResponse.at(frequencies))"
        )
    if not np.all(np.isfinite(r)) or np.any(r == 0.0):
        raise ValueError("response_at_f must be finite and non-zero")
    return r


def project_gradient(
    complex_amplitude: ArrayLike, tone_amplitudes_v: ArrayLike, response_at_f: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Calibrated projection of demodulated responses onto the drive phase.

    ``g = Re[c e^{-i psi}] / (A |C|)`` and ``quadrature = Im[c e^{-i psi}] / (A |C|)``, i.e.
    ``c / (A C)`` split into real and imaginary parts.

    Args:
        complex_amplitude: ``X + iY`` per tone, shape ``(..., n_tones)`` (e.g. ``(n_outputs,
            n_tones)`` or ``(n_cases, n_outputs, n_tones)``).
        tone_amplitudes_v: Drive amplitude per tone (V), shape ``(n_tones,)``.
        response_at_f: Chain response at each tone frequency, shape ``(n_tones,)``.

    Returns:
        ``(gradient, quadrature)``, each with the shape of ``complex_amplitude``.
    """
    c, a = _tone_vectors(complex_amplitude, tone_amplitudes_v, None)
    r = _response_vector(response_at_f, a.size)
    z = c / (a * r)
    return z.real.astype(np.float64), z.imag.astype(np.float64)


def project_with_errors(
    complex_amplitude: ArrayLike,
    tone_amplitudes_v: ArrayLike,
    response_at_f: ArrayLike,
    x_stderr: ArrayLike,
    y_stderr: ArrayLike,
    xy_covariance: ArrayLike | None = None,
) -> Projection:
    """:func:`project_gradient` plus standard errors propagated from those of ``X`` and ``Y``.

    With ``psi = angle(C)`` and ``s = A |C|``:
    ``var g = (sx^2 cos^2 psi + sy^2 sin^2 psi + 2 cov sin psi cos psi) / s^2`` and
    ``var q = (sx^2 sin^2 psi + sy^2 cos^2 psi - 2 cov sin psi cos psi) / s^2``.
    The chain response is treated as exact (its error is systematic, shared by all iterations).

    Args:
        complex_amplitude: ``X + iY`` per tone, shape ``(..., n_tones)``.
        tone_amplitudes_v: Drive amplitude per tone (V), shape ``(n_tones,)``.
        response_at_f: Chain response per tone, shape ``(n_tones,)``.
        x_stderr: Standard error of ``X``, broadcastable to ``complex_amplitude``.
        y_stderr: Standard error of ``Y``, broadcastable to ``complex_amplitude``.
        xy_covariance: Covariance of ``X`` and ``Y`` (default 0: uncorrelated).
    """
    gradient, quadrature = project_gradient(complex_amplitude, tone_amplitudes_v, response_at_f)
    a = np.asarray(tone_amplitudes_v, dtype=np.float64)
    r = np.asarray(response_at_f, dtype=np.complex128)
    sx = np.asarray(x_stderr, dtype=np.float64)
    sy = np.asarray(y_stderr, dtype=np.float64)
    cov = np.zeros(()) if xy_covariance is None else np.asarray(xy_covariance, dtype=np.float64)
    if np.any(sx < 0.0) or np.any(sy < 0.0):
        raise ValueError("x_stderr and y_stderr must be >= 0")
    try:
        np.broadcast_shapes(sx.shape, sy.shape, cov.shape, gradient.shape)
    except ValueError as exc:
        raise ValueError(
            f"stderr shapes {sx.shape}, {sy.shape}, {cov.shape} do not broadcast to the "
            f"amplitude shape {gradient.shape}"
        ) from exc
    cos_psi, sin_psi = np.cos(np.angle(r)), np.sin(np.angle(r))
    scale2 = (a * np.abs(r)) ** 2
    var_g = (sx**2 * cos_psi**2 + sy**2 * sin_psi**2 + 2.0 * cov * sin_psi * cos_psi) / scale2
    var_q = (sx**2 * sin_psi**2 + sy**2 * cos_psi**2 - 2.0 * cov * sin_psi * cos_psi) / scale2
    shape = gradient.shape
    return Projection(
        gradient=gradient,
        quadrature=quadrature,
        gradient_stderr=np.broadcast_to(np.sqrt(np.maximum(var_g, 0.0)), shape).copy(),
        quadrature_stderr=np.broadcast_to(np.sqrt(np.maximum(var_q, 0.0)), shape).copy(),
    )


def sign_by_phase(
    complex_amplitude: ArrayLike, tone_amplitudes_v: ArrayLike, threshold_deg: float = 90.0
) -> FloatArray:
    """The lab sign rule: ``g = s |c| / A`` with ``s = +1`` if ``|angle(c)| < threshold`` else -1.

    Needs no calibration but fails once the chain lag reaches the threshold, and at low SNR its
    magnitude is biased upward and its sign is a coin flip.

    Args:
        complex_amplitude: ``X + iY`` per tone, shape ``(..., n_tones)``.
        tone_amplitudes_v: Drive amplitude per tone (V), shape ``(n_tones,)``.
        threshold_deg: Phase threshold (degrees), in ``(0, 180]``.

    Returns:
        The signed gradient, with the shape of ``complex_amplitude``.
    """
    if not (0.0 < threshold_deg <= 180.0):
        raise ValueError(f"threshold_deg must be in (0, 180] degrees, got {threshold_deg}")
    c, a = _tone_vectors(complex_amplitude, tone_amplitudes_v, None)
    theta_deg = np.degrees(np.abs(np.angle(c)))
    sign = np.where(theta_deg < threshold_deg, 1.0, -1.0)
    return (sign * np.abs(c) / a).astype(np.float64)
