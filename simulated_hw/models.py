"""The device-model contract shared by every simulated DNPU model.

A device model maps the seven electrode voltages to the output current of an ideal device
(no amplifier, noise or ADC: that is :mod:`simulated_hw.chain`). It is quasi-static: the current
at a sample depends only on the voltages at that sample.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@runtime_checkable
class DeviceModel(Protocol):
    """A quasi-static model of a device: electrode voltages (V) in, output current (A) out."""

    @property
    def n_electrodes(self) -> int:
        """Number of voltage electrodes (inputs of the model)."""
        ...

    @property
    def voltage_ranges_v(self) -> FloatArray:
        """Recommended ``[min, max]`` voltage (V) per electrode, shape ``(n_electrodes, 2)``."""
        ...

    def current_a(self, voltages_v: FloatArray) -> FloatArray:
        """Output current (A) for each row of ``voltages_v``.

        Args:
            voltages_v: Shape ``(n_samples, n_electrodes)`` (V); a 1-D array is one sample.

        Returns:
            Shape ``(n_samples,)`` (A); a scalar-shaped ``(1,)`` result for a 1-D input.
        """
        ...


def gradient_fd(model: DeviceModel, voltages_v: FloatArray, step_v: float = 1e-4) -> FloatArray:
    """Central finite-difference gradient dI/dV (A/V) of ``model`` at one operating point."""
    v0 = np.asarray(voltages_v, dtype=np.float64)
    n = v0.size
    points = np.repeat(v0[None, :], 2 * n, axis=0)
    for k in range(n):
        points[2 * k, k] += step_v
        points[2 * k + 1, k] -= step_v
    currents = model.current_a(points)
    return (currents[0::2] - currents[1::2]) / (2 * step_v)


def hessian_fd(model: DeviceModel, voltages_v: FloatArray, step_v: float = 1e-3) -> FloatArray:
    """Central finite-difference Hessian d²I/dV² (A/V²) of ``model`` at one operating point."""
    v0 = np.asarray(voltages_v, dtype=np.float64)
    n = v0.size
    eye = np.eye(n) * step_v
    points = []
    for j in range(n):
        for k in range(n):
            for sj, sk in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                points.append(v0 + sj * eye[j] + sk * eye[k])
    currents = model.current_a(np.array(points)).reshape(n, n, 4)
    return (currents[..., 0] - currents[..., 1] - currents[..., 2] + currents[..., 3]) / (
        4 * step_v**2
    )


class ResistorModel:
    """A known resistor between one voltage electrode and the grounded output.

    Used as the reference device of a chain calibration: the current is exactly
    ``V[electrode] / resistance_ohm``, in phase with the drive.
    """

    def __init__(self, n_electrodes: int, electrode_index: int, resistance_ohm: float) -> None:
        if not 0 <= electrode_index < n_electrodes:
            raise ValueError(f"electrode_index {electrode_index} outside 0..{n_electrodes - 1}")
        if not resistance_ohm > 0:
            raise ValueError(f"resistance_ohm must be positive, got {resistance_ohm}")
        self._n = n_electrodes
        self._index = electrode_index
        self._resistance = float(resistance_ohm)

    @property
    def n_electrodes(self) -> int:
        """Number of voltage electrodes."""
        return self._n

    @property
    def voltage_ranges_v(self) -> FloatArray:
        """No preferred range: +/-10 V on every electrode."""
        return np.tile([-10.0, 10.0], (self._n, 1))

    def current_a(self, voltages_v: FloatArray) -> FloatArray:
        """``V[electrode] / R`` (A) per sample."""
        v = np.atleast_2d(np.asarray(voltages_v, dtype=np.float64))
        return v[:, self._index] / self._resistance
