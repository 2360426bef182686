"""Summaries of a gradient measurement for the CLI (table or JSON)."""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.device.safety import SafeDevice
from labctl.homodyne.engine import GradientBatch, GradientEngine

MEASURABLE_SNR = 2.0
"""A gradient is measurable when ``|g| >= MEASURABLE_SNR * stderr`` (about 95 % confidence that
its sign is right); below that it is reported as below the noise."""


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """cos of the angle between two vectors (1 = same direction)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else float("nan")


def gradient_report(
    device: SafeDevice, engine: GradientEngine, batch: GradientBatch, calibration_note: str
) -> dict[str, Any]:
    """A JSON-ready summary of the first point of ``batch``, with the model truth if known."""
    result = batch.results[0]
    indices = list(engine.electrode_indices)
    report: dict[str, Any] = {
        "mode": batch.mode,
        "demodulation": "finite differences at DC" if batch.mode == "fd" else engine.demodulation,
        "phase_method": result.phase_method,
        "calibration": calibration_note,
        "operating_point_v": dict(
            zip(device.electrode_names, map(float, result.operating_point_v), strict=True)
        ),
        "electrodes": list(result.electrodes),
        "frequencies_hz": list(batch.plan.frequencies_hz) if batch.plan is not None else None,
        "amplitudes_v": [float(a) for a in batch.amplitudes_v],
        "gradient_a_per_v": [float(g) for g in result.gradient_a_per_v],
        "stderr_a_per_v": [float(s) for s in result.stderr_a_per_v],
        "quadrature_a_per_v": [float(q) for q in result.quadrature_a_per_v],
        "snr": [float(x) for x in result.snr],
        "below_noise": [bool(not x >= MEASURABLE_SNR) for x in result.snr],
        "dc_current_a": result.dc_current_a,
        "saturated": result.saturated,
        "device_seconds": batch.device_seconds,
    }
    if result.hessian_a_per_v2 is not None:
        report["hessian_a_per_v2"] = result.hessian_a_per_v2.tolist()
        report["hessian_stderr_a_per_v2"] = (
            result.hessian_stderr_a_per_v2.tolist()
            if result.hessian_stderr_a_per_v2 is not None
            else None
        )
    truth = device.reference_gradient(result.operating_point_v)
    if truth is not None:
        exact = truth[indices]
        measured = result.gradient_a_per_v
        report["model_gradient_a_per_v"] = [float(g) for g in exact]
        report["cosine_similarity"] = cosine_similarity(measured, exact)
        report["relative_error"] = float(
            np.linalg.norm(measured - exact) / max(float(np.linalg.norm(exact)), 1e-300)
        )
        if result.hessian_a_per_v2 is not None:
            hessian = device.reference_hessian(result.operating_point_v)
            if hessian is not None:
                exact_h = hessian[np.ix_(indices, indices)]
                report["model_hessian_a_per_v2"] = exact_h.tolist()
                report["hessian_relative_error"] = float(
                    np.linalg.norm(result.hessian_a_per_v2 - exact_h)
                    / max(float(np.linalg.norm(exact_h)), 1e-300)
                )
    return report


def below_noise(report: dict[str, Any]) -> list[str]:
    """Electrodes of ``report`` whose gradient is below the noise (SNR < MEASURABLE_SNR)."""
    return [
        name
        for name, snr in zip(report["electrodes"], report["snr"], strict=True)
        if not snr >= MEASURABLE_SNR
    ]


def noise_warning(names: list[str], n_electrodes: int) -> str:
    """What to tell the user when the gradients of ``names`` are below the noise."""
    which = "every gradient is" if len(names) == n_electrodes else f"{', '.join(names)}:"
    return (
        f"below the noise: {which} smaller than {MEASURABLE_SNR:g} standard errors (SNR < "
        f"{MEASURABLE_SNR:g}), so its size and sign are not measured; comparisons with a model "
        "mean little there. Move the operating point (--at ELECTRODE=V) to where the current "
        "responds, lengthen homodyne.window_s, or raise homodyne.amplitude_v"
    )


def print_gradient_report(report: dict[str, Any]) -> None:
    """Print the report as a table (nA/V)."""
    print(
        f"mode {report['mode']}, phase {report['phase_method']} ({report['calibration']}), "
        f"device time {report['device_seconds']:.3f} s"
    )
    print(f"read by {report['demodulation']}")
    print(
        f"I(operating point) = {report['dc_current_a'] * 1e9:+.3f} nA"
        + ("  SATURATED" if report["saturated"] else "")
    )
    has_model = "model_gradient_a_per_v" in report
    header = f"{'electrode':>9} {'f (Hz)':>8} {'A (mV)':>7} {'dI/dV (nA/V)':>14} {'+/-':>7} "
    header += f"{'quad.':>8} {'SNR':>7}" + (f" {'model':>10}" if has_model else "")
    print(header)
    below = below_noise(report)
    freqs = report["frequencies_hz"] or [float("nan")] * len(report["electrodes"])
    for k, name in enumerate(report["electrodes"]):
        line = (
            f"{name:>9} {freqs[k]:8.1f} {report['amplitudes_v'][k] * 1e3:7.2f} "
            f"{report['gradient_a_per_v'][k] * 1e9:14.4f} {report['stderr_a_per_v'][k] * 1e9:7.4f} "
            f"{report['quadrature_a_per_v'][k] * 1e9:8.3f} {report['snr'][k]:7.1f}"
        )
        if has_model:
            line += f" {report['model_gradient_a_per_v'][k] * 1e9:10.4f}"
        if report["electrodes"][k] in below:
            line += "  below noise"
        print(line)
    if has_model:
        print(
            f"vs. model: cosine similarity {report['cosine_similarity']:.6f}, "
            f"relative error {report['relative_error']:.4f}"
        )
    if below:
        print(noise_warning(below, len(report["electrodes"])))
    if "hessian_a_per_v2" in report:
        print("Hessian (nA/V^2):")
        for row in report["hessian_a_per_v2"]:
            print("  " + " ".join(f"{v * 1e9:9.3f}" for v in row))
        if "hessian_relative_error" in report:
            print(f"vs. model: relative Frobenius error {report['hessian_relative_error']:.4f}")
