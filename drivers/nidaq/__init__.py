"""NI-DAQmx driver: the ``nidaq`` backend (voltage source + synchronised sampled readout).

One hardware-timed AO task drives every electrode and one AI task reads the transimpedance
amplifier on the same clock (AO armed on the AI start trigger, or clocked by the AI sample
clock), through a local NI-DAQmx installation or an NI gRPC Device Server (``grpc`` settings).
The simulated NI gRPC Device Server (:mod:`simulated_hw.nidaq_server`) stands behind the same
unmodified ``nidaqmx`` package, so this driver has no simulated mode of its own.

- :mod:`~drivers.nidaq.settings`: the settings model (``setup.backend.settings``).
- :mod:`~drivers.nidaq.driver`: :class:`~drivers.nidaq.driver.NidaqDevice`.
- :mod:`~drivers.nidaq.errors`: DAQmx failures as labctl ``BackendError`` subclasses.
- :mod:`~drivers.nidaq.connection`: local driver or gRPC channel (TLS), connection diagnosis.
- :mod:`~drivers.nidaq.discovery`: ``labctl devices``.
- :mod:`~drivers.nidaq.backend`: the registry's ``BackendSpec`` (``NIDAQ_BACKEND``).

Importing this package does not import ``nidaqmx``.
"""

from drivers.nidaq.errors import (
    NidaqBufferError,
    NidaqConfigurationError,
    NidaqConnectionError,
    NidaqDeviceAbsent,
    NidaqDriverMissing,
    NidaqError,
    NidaqOutOfRange,
    NidaqRecordInterrupted,
    NidaqResourceReserved,
    NidaqRoutingError,
    NidaqTimeout,
    NidaqUnsupported,
)
from drivers.nidaq.settings import GrpcSettings, GrpcTlsSettings, NidaqSettings

__all__ = [
    "GrpcSettings",
    "GrpcTlsSettings",
    "NidaqBufferError",
    "NidaqConfigurationError",
    "NidaqConnectionError",
    "NidaqDeviceAbsent",
    "NidaqDriverMissing",
    "NidaqError",
    "NidaqOutOfRange",
    "NidaqRecordInterrupted",
    "NidaqResourceReserved",
    "NidaqRoutingError",
    "NidaqSettings",
    "NidaqTimeout",
    "NidaqUnsupported",
]
