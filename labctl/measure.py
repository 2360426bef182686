"""``labctl measure``: apply an operating point or a one-electrode sweep and read the current."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.config import LabConfig
from labctl.device import FloatArray
from labctl.device.safety import SafeDevice
from labctl.homodyne.drive import device_drive


@dataclass(frozen=True)
class MeasuredPoint:
    """The output at one applied operating point.

    Attributes:
        voltages_v: Voltage of every electrode (V), in setup order.
        mean_current_a: Mean output current over the window (A), per output.
        std_current_a: Standard deviation over the window (A), per output.
        saturated: Whether the record saturated.
    """

    voltages_v: FloatArray
    mean_current_a: FloatArray
    std_current_a: FloatArray
    saturated: bool


def operating_points(config: LabConfig) -> FloatArray:
    """The operating points ``measure`` applies, shape ``(n_points, n_electrodes)`` (V)."""
    setup = config.setup
    base = np.array([e.rest_v for e in setup.electrodes])
    for name, value in config.measure.operating_point.items():
        base[setup.electrode_index(name)] = value
    sweep = config.measure.sweep
    if sweep is None:
        return base[None, :]
    points = np.repeat(base[None, :], sweep.points, axis=0)
    points[:, setup.electrode_index(sweep.electrode)] = np.linspace(
        sweep.start_v, sweep.stop_v, sweep.points
    )
    return points


def measure(device: SafeDevice, config: LabConfig) -> list[MeasuredPoint]:
    """Apply every operating point in one record (slew-limited ramps between them)."""
    points = operating_points(config)
    drive = device_drive(device, points, None, config.measure.window_s, config.measure.settle_s)
    acquisition = device.apply(drive.waveform_v, drive.sample_rate_hz)
    results = []
    for window in drive.windows:
        samples = acquisition.current_a[:, window.start : window.stop]
        results.append(
            MeasuredPoint(
                voltages_v=points[window.case_index],
                mean_current_a=samples.mean(axis=1),
                std_current_a=samples.std(axis=1),
                saturated=bool(acquisition.saturated.any()),
            )
        )
    return results
