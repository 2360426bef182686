"""NI-DAQmx failures translated into labctl errors that say what happened and what to do.

Every exception the driver raises is a :class:`labctl.device.types.BackendError` (so a run
controller stops the run cleanly and keeps it resumable), with the DAQmx error code attached
where there is one. Failures during a record are :class:`NidaqRecordInterrupted`, which also
carries how many samples reached the electrodes.

This module imports ``nidaqmx`` only inside :func:`translate`, so it loads without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from labctl.device.types import BackendError, RecordInterrupted


class NidaqError(BackendError):
    """A DAQmx operation failed.

    Attributes:
        error_code: The NI-DAQmx error code (negative), or None when the failure did not come
            from DAQmx (no driver, no server).
        error_name: The code's name in ``nidaqmx.error_codes.DAQmxErrors`` ("" if unknown).
    """

    def __init__(self, message: str, error_code: int | None = None, error_name: str = "") -> None:
        super().__init__(message)
        self.error_code = error_code
        self.error_name = error_name


class NidaqDriverMissing(NidaqError):
    """No NI-DAQmx driver (or no ``nidaqmx`` package) on this computer."""


class NidaqConnectionError(NidaqError):
    """The NI gRPC Device Server could not be reached, refused TLS, or is not one."""


class NidaqUnsupported(NidaqError):
    """The driver or server does not support an operation (e.g. an unimplemented RPC)."""


class NidaqConfigurationError(NidaqError):
    """DAQmx rejected a channel, rate, range or terminal the configuration asked for."""


class NidaqRoutingError(NidaqConfigurationError):
    """A trigger or clock route between the AO and AI tasks does not exist."""


class NidaqResourceReserved(NidaqError):
    """Another task or program holds a channel, timing engine or route."""


class NidaqDeviceAbsent(NidaqError):
    """The device is unplugged, asleep, misnamed, or was removed."""


class NidaqTimeout(NidaqError):
    """Samples did not come in time (a trigger that never came, a stalled device)."""


class NidaqBufferError(NidaqError):
    """An AI buffer overflow or an AO buffer underflow: samples were lost or late."""


class NidaqOutOfRange(NidaqError):
    """DAQmx refused a sample outside an AO channel's limits (nothing was generated)."""


class NidaqRecordInterrupted(RecordInterrupted):
    """A record failed (or was cancelled) part-way.

    Attributes:
        error_code: The NI-DAQmx error code of the failure (None for a cancel).
        cause_kind: The :class:`NidaqError` subclass that describes the failure.
    """

    def __init__(
        self,
        message: str,
        samples_generated: int | None,
        *,
        cancelled: bool,
        error_code: int | None = None,
        cause_kind: type[NidaqError] = NidaqError,
    ) -> None:
        super().__init__(message, samples_generated, cancelled=cancelled)
        self.error_code = error_code
        self.cause_kind = cause_kind


@dataclass(frozen=True)
class _Advice:
    kind: type[NidaqError]
    what: str
    todo: str


_BY_NAME: dict[str, _Advice] = {}


def _advise(kind: type[NidaqError], what: str, todo: str, *names: str) -> None:
    for name in names:
        _BY_NAME[name] = _Advice(kind, what, todo)


_advise(
    NidaqBufferError,
    "AI buffer overflow: samples were overwritten before they were read",
    "lower sample_rate_hz or shorten the records; on USB keep other traffic off the bus",
    "SAMPLES_NO_LONGER_AVAILABLE",
    "INPUT_FIFO_OVERFLOW",
    "INPUT_FIFO_OVERFLOW_2",
    "ADC_OVERRUN",
)
_advise(
    NidaqBufferError,
    "AO buffer underflow: the output ran out of samples or could not keep up",
    "lower sample_rate_hz (the AO module's maximum rate is in `labctl devices`)",
    "GEN_STOPPED_TO_PREVENT_REGEN_OF_OLD_SAMPLES",
    "OUTPUT_FIFO_UNDERFLOW",
    "OUTPUT_FIFO_UNDERFLOW_2",
    "DAC_UNDERFLOW",
    "OUTPUT_BUFFER_EMPTY",
    "OUTPUT_BUF_SIZE_TOO_SMALL_TO_START_GEN",
    "SAMPLES_CAN_NOT_YET_BE_WRITTEN",
    "NO_MORE_SPACE",
    "CANNOT_WRITE_NOT_STARTED_AUTO_START_FALSE_NOT_ON_DEMAND_BUF_SIZE_ZERO",
    "CANNOT_WRITE_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING",
)
_advise(
    NidaqTimeout,
    "timed out waiting for samples",
    "check that the AO/AI trigger route exists (sync, trigger_device), that the device is "
    "powered, or raise timeout_s",
    "SAMPLES_NOT_YET_AVAILABLE",
    "OPERATION_TIMED_OUT",
    "WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE",
)
_advise(
    NidaqTimeout,
    "the acquisition stopped before all samples came",
    "check that nothing else stops or resets the device, and the trigger route (sync, "
    "trigger_device)",
    "SAMPLES_WILL_NEVER_BE_AVAILABLE",
)
_advise(
    NidaqOutOfRange,
    "DAQmx refused an AO sample outside the channel's limits (electrode range ± ao_margin_v); "
    "nothing of it was generated",
    "the safety layer should have refused it first: report this with the waveform; check "
    "that ao_channels are in electrode order",
    "INVALID_AO_DATA_WRITE",
)
_advise(
    NidaqResourceReserved,
    "the device's resources are reserved by another task or program",
    "close NI MAX test panels and other programs using the device (another labctl?), then "
    "retry; a crashed program's tasks are released by resetting the device in NI MAX",
    "PAL_RESOURCE_RESERVED",
    "RESOURCE_ALREADY_RESERVED",
    "RESOURCES_IN_USE_FOR_ROUTE_ROUTING",
)
_advise(
    NidaqResourceReserved,
    "a task (or server session) of that name exists already",
    "another labctl may be using this grpc.session_name: close it, or choose another session_name",
    "DUPLICATE_TASK",
)
_advise(
    NidaqDeviceAbsent,
    "the device is absent or cannot be accessed",
    "check the USB/Ethernet cable and power of the chassis, and the device names in "
    "`labctl devices` (NI MAX)",
    "DEV_CANNOT_BE_ACCESSED",
    "DEV_ABSENT_OR_UNAVAILABLE",
    "INVALID_DEVICE_ID",
    "DEVICE_REMOVED",
    "PAL_DEVICE_NOT_FOUND",
    "DEVICE_NAME_NOT_FOUND_ROUTING",
)
_advise(
    NidaqConfigurationError,
    "DAQmx rejected a channel name",
    "use the physical channel names `labctl devices` lists (e.g. cDAQ1Mod1/ao0)",
    "PHYSICAL_CHAN_DOES_NOT_EXIST",
    "PHYSICAL_CHANNEL_NOT_SPECIFIED",
    "INVALID_SYNTAX_FOR_PHYSICAL_CHANNEL_RANGE",
)
_advise(
    NidaqConfigurationError,
    "DAQmx rejected a setting (sample rate, range or timing)",
    "check sample_rate_hz against the maximum rates `labctl devices` lists, and ai_range_v",
    "INVALID_ATTRIBUTE_VALUE",
)
_advise(
    NidaqRoutingError,
    "the AO/AI trigger or clock route does not exist",
    "set trigger_device to the chassis (cDAQ: e.g. cDAQ1), or try sync: ai_sample_clock; NI "
    "MAX 'Device Routes' shows what the hardware can route",
    "TRIG_LINE_NOT_FOUND_ROUTING",
    "ROUTE_NOT_SUPPORTED_BY_HW_ROUTING",
    "INVALID_ROUTING_SOURCE_TERMINAL_NAME_ROUTING",
    "INVALID_TERM_ROUTING",
)
_advise(
    NidaqError,
    "the task was already cleared",
    "reopen the device (a bug if it persists: please report it)",
    "INVALID_TASK",
)

DRIVER_MISSING_TODO = (
    "install NI-DAQmx (`python -m nidaqmx installdriver`, or from ni.com), or set "
    "setup.backend.settings.grpc to use an NI gRPC Device Server on another machine"
)


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _detail(text: str) -> str:
    """DAQmx's message, shortened: its first line and any "Property: value" lines after it
    (the requested and allowed values), without the task name and status code."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    kept = [lines[0]]
    for line in lines[1:]:
        key, sep, _ = line.partition(": ")
        if sep and len(key) <= 40 and key not in ("Task Name", "Status Code"):
            kept.append(line)
    return " ".join(kept)


def advice_for(error_name: str) -> tuple[type[NidaqError], str, str] | None:
    """The error class, what happened and what to do for a DAQmx error name (None: unknown)."""
    advice = _BY_NAME.get(error_name)
    return None if advice is None else (advice.kind, advice.what, advice.todo)


def translate(exc: BaseException, action: str, *, where: str = "") -> NidaqError:
    """A :class:`NidaqError` (of the fitting subclass) describing ``exc``.

    Args:
        exc: What ``nidaqmx`` (or grpc) raised.
        action: What the driver was doing, e.g. "starting the AO task".
        where: Where the hardware is ("local NI-DAQmx", "NI gRPC Device Server at h:p").
    """
    if isinstance(exc, NidaqError):
        return exc
    try:
        from nidaqmx import errors as daq_errors  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - nidaqmx is a dependency of every caller
        return NidaqError(f"{action}: {exc}")
    at = f" ({where})" if where else ""
    if isinstance(exc, daq_errors.DaqNotFoundError | daq_errors.DaqNotSupportedError):
        return NidaqDriverMissing(
            f"{action}: no NI-DAQmx driver is installed on this computer ({_first_line(exc)}); "
            f"{DRIVER_MISSING_TODO}"
        )
    if isinstance(exc, daq_errors.RpcError):
        return _translate_rpc(exc, action, at)
    if isinstance(exc, daq_errors.DaqError):
        code = int(exc.error_code)
        name = getattr(exc.error_type, "name", "UNKNOWN")
        detail = _detail(str(exc))
        found = advice_for(name)
        if found is None:
            return NidaqError(f"{action}{at}: DAQmx error {code} ({name}): {detail}", code, name)
        kind, what, todo = found
        return kind(
            f"{action}{at}: {what}; {todo}. DAQmx error {code} ({name}): {detail}", code, name
        )
    if isinstance(exc, daq_errors.Error):
        return NidaqError(f"{action}{at}: {exc}")
    return NidaqError(f"{action}{at}: {type(exc).__name__}: {exc}")


def _translate_rpc(exc: BaseException, action: str, at: str) -> NidaqError:
    code = getattr(exc, "rpc_code", None)
    code_name = getattr(code, "name", str(code))
    description = getattr(exc, "description", str(exc))
    if code_name == "UNAVAILABLE":
        return NidaqConnectionError(
            f"{action}{at}: the NI gRPC Device Server is unreachable or refused the connection "
            f"({description}); start it (`labctl sim-daq --port PORT` for the simulated one), "
            "check grpc.address/port, the firewall and the TLS settings"
        )
    if code_name == "UNIMPLEMENTED":
        return NidaqUnsupported(
            f"{action}{at}: the NI gRPC Device Server does not implement this operation "
            "(upgrade the server, or report which operation to the simulated server's authors)"
        )
    if code_name == "DEADLINE_EXCEEDED":
        return NidaqTimeout(f"{action}{at}: the NI gRPC Device Server did not answer in time")
    return NidaqError(f"{action}{at}: gRPC error {code_name}: {description}")
