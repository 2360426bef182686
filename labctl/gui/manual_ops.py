"""What the manual panel does on the device: ``labctl measure`` and ``labctl gradient``.

Qt-free functions that run in the device session's worker thread on an open
:class:`~labctl.device.safety.SafeDevice`, through the safety layer like every other record:

- :func:`readout`: one short record at an operating point → the output current;
- :func:`sweep`: an I–V sweep of one electrode (the ``measure.sweep`` of ``labctl measure``);
- :func:`gradient`: ∂I/∂V (and, on request, the Hessian) at a point, as ``labctl gradient``
  reports it (with the model's exact gradient on a simulated device).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.config import LoadedConfig, MeasureConfig, SweepConfig
from labctl.device.safety import SafeDevice
from labctl.homodyne.report import gradient_report
from labctl.homodyne.session import open_engine
from labctl.measure import MeasuredPoint, measure


@dataclass(frozen=True)
class Readout:
    """One live reading: the mean and spread of the output current over the window (A)."""

    voltages_v: tuple[float, ...]
    mean_a: float
    std_a: float
    saturated: bool
    device_seconds: float


def _config_with(loaded: LoadedConfig, measure_config: MeasureConfig) -> Any:
    return loaded.config.model_copy(update={"measure": measure_config})


def _point_mapping(names: Sequence[str], point_v: Sequence[float]) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, point_v, strict=True)}


def readout(
    device: SafeDevice,
    loaded: LoadedConfig,
    point_v: Sequence[float],
    window_s: float = 0.02,
    settle_s: float = 0.005,
) -> Readout:
    """Apply ``point_v`` (V, every electrode in setup order) for one short record; read I."""
    names = device.electrode_names
    config = _config_with(
        loaded,
        MeasureConfig(
            operating_point=_point_mapping(names, point_v), window_s=window_s, settle_s=settle_s
        ),
    )
    start = device.device_seconds
    (result,) = measure(device, config)
    return Readout(
        voltages_v=tuple(float(v) for v in point_v),
        mean_a=float(result.mean_current_a[0]),
        std_a=float(result.std_current_a[0]),
        saturated=result.saturated,
        device_seconds=device.device_seconds - start,
    )


@dataclass(frozen=True)
class SweepResult:
    """An I–V sweep: the swept voltages (V) and the current's mean and spread (A)."""

    electrode: str
    voltages_v: np.ndarray
    mean_a: np.ndarray
    std_a: np.ndarray
    saturated: bool


def sweep(
    device: SafeDevice,
    loaded: LoadedConfig,
    point_v: Sequence[float],
    electrode: str,
    start_v: float,
    stop_v: float,
    points: int,
    window_s: float = 0.02,
    settle_s: float = 0.005,
) -> SweepResult:
    """Sweep ``electrode`` from ``start_v`` to ``stop_v`` (V) with the others at ``point_v``.

    One record visits every point (slew-limited ramps between them), as ``labctl measure``
    does with ``measure.sweep``.
    """
    names = device.electrode_names
    fixed = {n: v for n, v in _point_mapping(names, point_v).items() if n != electrode}
    config = _config_with(
        loaded,
        MeasureConfig(
            operating_point=fixed,
            sweep=SweepConfig(electrode=electrode, start_v=start_v, stop_v=stop_v, points=points),
            window_s=window_s,
            settle_s=settle_s,
        ),
    )
    results: list[MeasuredPoint] = measure(device, config)
    row = names.index(electrode)
    return SweepResult(
        electrode=electrode,
        voltages_v=np.array([p.voltages_v[row] for p in results]),
        mean_a=np.array([p.mean_current_a[0] for p in results]),
        std_a=np.array([p.std_current_a[0] for p in results]),
        saturated=any(p.saturated for p in results),
    )


def gradient(
    device: SafeDevice,
    loaded: LoadedConfig,
    point_v: Sequence[float],
    mode: str | None = None,
    curvature: bool = False,
) -> Mapping[str, Any]:
    """Measure ∂I/∂V at ``point_v`` as ``labctl gradient`` does; its JSON-ready report.

    Keys as :func:`labctl.homodyne.report.gradient_report` (``gradient_a_per_v``,
    ``stderr_a_per_v``, ``hessian_a_per_v2`` with ``curvature``, ``model_gradient_a_per_v``
    on a simulated device, ...).
    """
    engine, note = open_engine(device, loaded, curvature=curvature)
    batch = engine.measure(np.array([list(point_v)], dtype=np.float64), mode=mode)
    return gradient_report(device, engine, batch, note)
