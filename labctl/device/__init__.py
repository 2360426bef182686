"""The device seam: capability protocols, composite setups, and the safety layer over them.

- :mod:`~labctl.device.types`: electrodes, outputs, acquisitions, backend errors.
- :mod:`~labctl.device.protocols`: what an instrument can do (voltage source, sampled or
  demodulated readout, sine source, reference switch, simulation oracle).
- :mod:`~labctl.device.safety`: :class:`SafeDevice`, the only object labctl drives.
- :mod:`~labctl.device.registry`: backends chosen by name through entry points.
"""

from labctl.device.types import (
    Acquisition,
    BackendError,
    BoolArray,
    CurrentOutput,
    Electrode,
    ElectrodeRole,
    FloatArray,
    RecordInterrupted,
    UnknownVoltage,
)

__all__ = [
    "Acquisition",
    "BackendError",
    "BoolArray",
    "CurrentOutput",
    "Electrode",
    "ElectrodeRole",
    "FloatArray",
    "RecordInterrupted",
    "UnknownVoltage",
]
