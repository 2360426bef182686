# RPC method names are fixed by the NiDAQmx proto (CamelCase).
# ruff: noqa: N802
"""The NiDAQmx gRPC servicer: requests in, :class:`~simulated_hw.nidaq_server.daq.SimDaq` calls,
replies (or DAQmx errors) out.

Conventions of the NI gRPC Device Server that the nidaqmx client relies on:

- a DAQmx error aborts the RPC (status UNKNOWN, the extended error text as details) with
  trailing metadata ``ni-error`` = the code, plus ``ni-samps-per-chan-read``/``-written`` when
  known; the client raises :class:`nidaqmx.errors.DaqError` (``DaqReadError``/``DaqWriteError``);
- a read that times out (-200284) is *answered*, with the samples read so far and ``status``
  set, as the client's partial-read path expects;
- attribute ids arrive in ``attribute_raw`` and enum inputs in ``*_raw`` fields (oneofs with the
  enum field); int32 replies go in ``value_raw``;
- every RPC this server does not implement aborts with UNIMPLEMENTED and a message naming the
  call (logged once per call).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import session_pb2
from nidaqmx._stubs import nidaqmx_pb2 as pb  # type: ignore[import-untyped, unused-ignore]
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc  # type: ignore[import-untyped, unused-ignore]
from nidaqmx.constants import (  # type: ignore[import-untyped, unused-ignore]
    FillMode,
    FrequencyUnits,
    Level,
    TerminalConfiguration,
    VoltageUnits,
)
from nidaqmx.error_codes import DAQmxErrors  # type: ignore[import-untyped, unused-ignore]

from simulated_hw.nidaq_server.attributes import VALUE_TYPES, Ctx, Group, build_registry
from simulated_hw.nidaq_server.daq import SimDaq
from simulated_hw.nidaq_server.errors import Code, DaqmxError, describe
from simulated_hw.nidaq_server.tasks import SimTask

logger = logging.getLogger(__name__)

_TASK_GROUPS = (Group.TASK, Group.TIMING, Group.TRIG, Group.READ, Group.WRITE, Group.BUFFER)
_INIT_ATTACH = {0: None, 1: False, 2: True}
"""SessionInitializationBehavior -> attach (None: auto, False: create only, True: attach)."""

Method = Callable[[Any, Any, Any], Any]


def _enum(request: Any, field: str) -> int:
    """An enum input sent either as the enum field or as ``<field>_raw`` (a oneof)."""
    which = request.WhichOneof(f"{field}_enum")
    return int(getattr(request, which)) if which else 0


def _rpc(method: Method) -> Method:
    """Turn :class:`DaqmxError` into an aborted RPC with ``ni-error`` metadata."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: SimDaqServicer, request: Any, context: Any) -> Any:
        self.calls.append(name)
        try:
            return method(self, request, context)
        except DaqmxError as exc:
            self.abort(context, exc, name)
        except Exception as exc:
            logger.exception("simulated NI-DAQmx server: %s failed", name)
            context.abort(
                grpc.StatusCode.INTERNAL, f"simulated NI-DAQmx server error in {name}: {exc!r}"
            )
        return None  # pragma: no cover - abort raises

    return wrapper


class SimDaqServicer(pb_grpc.NiDAQmxServicer):  # type: ignore[misc, unused-ignore]
    """NiDAQmx service on a :class:`SimDaq`.

    Args:
        daq: The simulated driver.
    """

    def __init__(self, daq: SimDaq) -> None:
        self._daq = daq
        self.calls: list[str] = []
        """Name of every RPC received, in order (the server's command log)."""
        self._registry = build_registry()
        self._logged: set[tuple[str, int]] = set()
        self._log_lock = threading.Lock()

    # -- helpers --------------------------------------------------------------------------

    def log_once(self, key: tuple[str, int], message: str, *args: object) -> None:
        """Log ``message`` at WARNING the first time ``key`` is seen."""
        with self._log_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        logger.warning(message, *args)

    def abort(self, context: Any, exc: DaqmxError, rpc: str) -> None:
        """Abort the RPC as the NI gRPC Device Server reports a DAQmx error."""
        metadata = [("ni-error", str(exc.code))]
        if exc.samps_per_chan_read is not None:
            metadata.append(("ni-samps-per-chan-read", str(exc.samps_per_chan_read)))
        if exc.samps_per_chan_written is not None:
            metadata.append(("ni-samps-per-chan-written", str(exc.samps_per_chan_written)))
        logger.debug("%s -> DAQmx error %d", rpc, exc.code)
        context.set_trailing_metadata(tuple(metadata))
        context.abort(grpc.StatusCode.UNKNOWN, exc.message)

    def _task(self, request: Any) -> SimTask:
        return self._daq.task(request.task.name)

    # -- system, errors, devices ------------------------------------------------------------

    @_rpc
    def GetErrorString(self, request: Any, context: Any) -> Any:
        code = int(request.error_code)
        text = describe(code)
        if not text:
            try:
                text = DAQmxErrors(code).name.replace("_", " ").capitalize() + "."
            except ValueError:
                text = ""
        return pb.GetErrorStringResponse(status=0, error_string=text)

    @_rpc
    def ResetDevice(self, request: Any, context: Any) -> Any:
        self._daq.reset_device(self._daq.catalog.device(request.device_name))
        return pb.ResetDeviceResponse(status=0)

    @_rpc
    def SelfTestDevice(self, request: Any, context: Any) -> Any:
        self._daq.catalog.device(request.device_name)
        return pb.SelfTestDeviceResponse(status=0)

    # -- tasks ----------------------------------------------------------------------------

    @_rpc
    def CreateTask(self, request: Any, context: Any) -> Any:
        behavior = int(request.initialization_behavior)
        task, created = self._daq.create_task(request.session_name, _INIT_ATTACH.get(behavior))
        return pb.CreateTaskResponse(
            status=0, task=session_pb2.Session(name=task.name), new_session_initialized=created
        )

    @_rpc
    def ClearTask(self, request: Any, context: Any) -> Any:
        self._daq.clear_task(self._task(request))
        return pb.ClearTaskResponse(status=0)

    @_rpc
    def StartTask(self, request: Any, context: Any) -> Any:
        self._daq.start(self._task(request))
        return pb.StartTaskResponse(status=0)

    @_rpc
    def StopTask(self, request: Any, context: Any) -> Any:
        self._daq.stop(self._task(request))
        return pb.StopTaskResponse(status=0)

    @_rpc
    def TaskControl(self, request: Any, context: Any) -> Any:
        self._daq.task_control(self._task(request), _enum(request, "action"))
        return pb.TaskControlResponse(status=0)

    @_rpc
    def IsTaskDone(self, request: Any, context: Any) -> Any:
        done = self._daq.is_done(self._task(request))
        return pb.IsTaskDoneResponse(status=0, is_task_done=done)

    @_rpc
    def WaitUntilTaskDone(self, request: Any, context: Any) -> Any:
        self._daq.wait_until_done(self._task(request), float(request.time_to_wait))
        return pb.WaitUntilTaskDoneResponse(status=0)

    # -- channels, timing, triggers, buffers ----------------------------------------------

    @_rpc
    def CreateAOVoltageChan(self, request: Any, context: Any) -> Any:
        units = _enum(request, "units") or VoltageUnits.VOLTS.value
        self._daq.add_channels(
            self._task(request),
            "ao",
            request.physical_channel,
            request.name_to_assign_to_channel,
            request.min_val,
            request.max_val,
            units,
            0,
            request.custom_scale_name,
        )
        return pb.CreateAOVoltageChanResponse(status=0)

    @_rpc
    def CreateAIVoltageChan(self, request: Any, context: Any) -> Any:
        units = _enum(request, "units") or VoltageUnits.VOLTS.value
        term = _enum(request, "terminal_config") or TerminalConfiguration.DEFAULT.value
        self._daq.add_channels(
            self._task(request),
            "ai",
            request.physical_channel,
            request.name_to_assign_to_channel,
            request.min_val,
            request.max_val,
            units,
            term,
            request.custom_scale_name,
        )
        return pb.CreateAIVoltageChanResponse(status=0)

    @_rpc
    def CfgSampClkTiming(self, request: Any, context: Any) -> Any:
        self._daq.cfg_samp_clk_timing(
            self._task(request),
            float(request.rate),
            request.source,
            _enum(request, "active_edge"),
            _enum(request, "sample_mode"),
            int(request.samps_per_chan),
        )
        return pb.CfgSampClkTimingResponse(status=0)

    @_rpc
    def CreateCOPulseChanFreq(self, request: Any, context: Any) -> Any:
        self._daq.add_co_pulse_chan_freq(
            self._task(request),
            request.counter,
            request.name_to_assign_to_channel,
            _enum(request, "units") or FrequencyUnits.HZ.value,
            _enum(request, "idle_state") or Level.LOW.value,
            float(request.initial_delay),
            float(request.freq),
            float(request.duty_cycle),
        )
        return pb.CreateCOPulseChanFreqResponse(status=0)

    @_rpc
    def CfgImplicitTiming(self, request: Any, context: Any) -> Any:
        self._daq.cfg_implicit_timing(
            self._task(request), _enum(request, "sample_mode"), int(request.samps_per_chan)
        )
        return pb.CfgImplicitTimingResponse(status=0)

    @_rpc
    def CfgDigEdgeStartTrig(self, request: Any, context: Any) -> Any:
        self._daq.cfg_dig_edge_start_trig(
            self._task(request), request.trigger_source, _enum(request, "trigger_edge")
        )
        return pb.CfgDigEdgeStartTrigResponse(status=0)

    @_rpc
    def DisableStartTrig(self, request: Any, context: Any) -> Any:
        self._daq.disable_start_trig(self._task(request))
        return pb.DisableStartTrigResponse(status=0)

    @_rpc
    def CfgInputBuffer(self, request: Any, context: Any) -> Any:
        self._daq.cfg_buffer(self._task(request), "ai", int(request.num_samps_per_chan))
        return pb.CfgInputBufferResponse(status=0)

    @_rpc
    def CfgOutputBuffer(self, request: Any, context: Any) -> Any:
        self._daq.cfg_buffer(self._task(request), "ao", int(request.num_samps_per_chan))
        return pb.CfgOutputBufferResponse(status=0)

    # -- write / read ---------------------------------------------------------------------

    @_rpc
    def WriteAnalogF64(self, request: Any, context: Any) -> Any:
        written = self._daq.write(
            self._task(request),
            int(request.num_samps_per_chan),
            bool(request.auto_start),
            float(request.timeout),
            _enum(request, "data_layout"),
            np.asarray(request.write_array, dtype=np.float64),
        )
        return pb.WriteAnalogF64Response(status=0, samps_per_chan_written=written)

    @_rpc
    def WriteAnalogScalarF64(self, request: Any, context: Any) -> Any:
        self._daq.write(
            self._task(request),
            1,
            bool(request.auto_start),
            float(request.timeout),
            FillMode.GROUP_BY_CHANNEL.value,
            np.array([request.value], dtype=np.float64),
        )
        return pb.WriteAnalogScalarF64Response(status=0)

    @_rpc
    def ReadAnalogF64(self, request: Any, context: Any) -> Any:
        data, read, status = self._daq.read(
            self._task(request),
            int(request.num_samps_per_chan),
            float(request.timeout),
            _enum(request, "fill_mode"),
            int(request.array_size_in_samps),
        )
        return pb.ReadAnalogF64Response(
            status=status, read_array=data.tolist(), samps_per_chan_read=read
        )

    @_rpc
    def ReadAnalogScalarF64(self, request: Any, context: Any) -> Any:
        task = self._task(request)
        if len(task.channels) != 1:
            raise DaqmxError(
                Code.READ_BUFFER_TOO_SMALL,
                f"ReadAnalogScalarF64 reads one channel; the task has {len(task.channels)}.",
                task_name=task.name,
            )
        data, read, status = self._daq.read(
            task, 1, float(request.timeout), FillMode.GROUP_BY_CHANNEL.value, 1
        )
        if status:
            raise DaqmxError(status, task_name=task.name, samps_per_chan_read=read)
        return pb.ReadAnalogScalarF64Response(status=0, value=float(data[0]))

    # -- attributes -----------------------------------------------------------------------

    def _context(self, group: Group, request: Any) -> Ctx:
        daq = self._daq
        if group in _TASK_GROUPS:
            return Ctx(daq, task=self._task(request))
        if group == Group.CHAN:
            task = self._task(request)
            return Ctx(daq, task=task, channels=task.find_channels(request.channel))
        if group == Group.DEVICE:
            return Ctx(daq, device=daq.catalog.device(request.device_name))
        if group == Group.PHYSICAL:
            (physical,) = daq.catalog.physical_channels(request.physical_channel)[:1]
            return Ctx(daq, physical=physical)
        return Ctx(daq)

    def _lookup(self, rpc: str, group: Group, attr_id: int, value_type: str | None) -> Any:
        try:
            return self._registry.lookup(group, attr_id, value_type)
        except DaqmxError:
            self.log_once((rpc, attr_id), "%s: unknown attribute id 0x%X", rpc, attr_id)
            raise

    def get_attribute(self, rpc: str, group: Group, value_type: str, request: Any) -> Any:
        """Serve ``Get<group>Attribute<value_type>``."""
        attr_id = _enum(request, "attribute")
        with self._daq.cond:
            attr = self._lookup(rpc, group, attr_id, value_type)
            ctx = self._context(group, request)
            try:
                value = attr.get(ctx)
            except DaqmxError as exc:
                raise exc.for_task(ctx.task.name) if ctx.task is not None else exc from None
        response = getattr(pb, f"{rpc}Response")
        if value_type == "Int32":
            return response(status=0, value_raw=int(value))
        if value_type == "Int32Array":
            return response(status=0, value_raw=[int(v) for v in value])
        return response(status=0, value=value)

    def set_attribute(self, rpc: str, group: Group, value_type: str | None, request: Any) -> Any:
        """Serve ``Set<group>Attribute<value_type>`` (``value_type`` None: ``Reset...``)."""
        attr_id = _enum(request, "attribute")
        with self._daq.cond:
            attr = self._lookup(rpc, group, attr_id, value_type)
            if value_type is None:
                if not attr.has_default():
                    raise DaqmxError(
                        Code.ATTRIBUTE_NOT_SUPPORTED_IN_TASK_CONTEXT,
                        f"Property: DAQmx_{attr.name} cannot be reset.",
                    )
                value = attr.default
            elif value_type == "Int32":
                value = _enum(request, "value")
            elif value_type.endswith("Array"):
                value = list(request.value)
            else:
                value = request.value
            if attr.set is None:
                raise DaqmxError(
                    Code.ATTR_NOT_SUPPORTED, f"Property: DAQmx_{attr.name} is read-only."
                )
            ctx = self._context(group, request)
            try:
                if ctx.task is not None and not attr.running_ok:
                    self._daq.modify(ctx.task)
                attr.set(ctx, value)
            except DaqmxError as exc:
                raise exc.for_task(ctx.task.name) if ctx.task is not None else exc from None
        return getattr(pb, f"{rpc}Response")(status=0)


def _attribute_rpc(rpc: str, group: Group, value_type: str | None, op: str) -> Method:
    if op == "get":
        assert value_type is not None

        def method(self: SimDaqServicer, request: Any, context: Any) -> Any:
            return self.get_attribute(rpc, group, value_type, request)

    else:

        def method(self: SimDaqServicer, request: Any, context: Any) -> Any:
            return self.set_attribute(rpc, group, value_type, request)

    method.__name__ = rpc
    method.__qualname__ = f"SimDaqServicer.{rpc}"
    method.__doc__ = f"{rpc} (attribute RPC generated from the registry)."
    return _rpc(method)


def _unimplemented_rpc(rpc: str) -> Method:
    def method(self: SimDaqServicer, request: Any, context: Any) -> Any:
        self.log_once((rpc, 0), "unimplemented RPC %s called", rpc)
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{rpc} is not implemented by the simulated NI gRPC Device Server "
            "(simulated_hw.nidaq_server).",
        )

    method.__name__ = rpc
    method.__qualname__ = f"SimDaqServicer.{rpc}"
    method.__doc__ = f"{rpc}: not simulated (UNIMPLEMENTED)."
    return method


def _install() -> list[str]:
    """Add the attribute RPCs and UNIMPLEMENTED stand-ins; return the implemented RPC names."""
    base = pb_grpc.NiDAQmxServicer
    names = [n for n, v in vars(base).items() if not n.startswith("_") and callable(v)]
    for group in Group:
        for value_type in VALUE_TYPES:
            for op, prefix in (("get", "Get"), ("set", "Set")):
                rpc = f"{prefix}{group.value}Attribute{value_type}"
                if rpc in names and rpc not in vars(SimDaqServicer):
                    setattr(SimDaqServicer, rpc, _attribute_rpc(rpc, group, value_type, op))
        reset = f"Reset{group.value}Attribute"
        if reset in names and reset not in vars(SimDaqServicer):
            setattr(SimDaqServicer, reset, _attribute_rpc(reset, group, None, "reset"))
    implemented = [n for n in names if n in vars(SimDaqServicer)]
    for rpc in names:
        if rpc not in vars(SimDaqServicer):
            setattr(SimDaqServicer, rpc, _unimplemented_rpc(rpc))
    return sorted(implemented)


IMPLEMENTED_RPCS: list[str] = _install()
"""Names of the RPCs this server implements (the rest answer UNIMPLEMENTED)."""
