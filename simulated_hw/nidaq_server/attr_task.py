"""Task, timing, trigger, read, write and buffer attributes."""

from __future__ import annotations

from typing import Any

from nidaqmx.constants import (  # type: ignore[import-untyped, unused-ignore]
    AcquisitionType,
    Edge,
    OverwriteMode,
    ReadRelativeTo,
    RegenerationMode,
    SampleTimingType,
    TriggerType,
    UnderflowBehavior,
    WaitMode,
    WriteRelativeTo,
)

from simulated_hw.nidaq_server.attributes import (
    Attr,
    Ctx,
    Group,
    Registry,
    invalid_value,
    unsupported,
)
from simulated_hw.nidaq_server.devices import ONBOARD_CLOCK, _timebase_label
from simulated_hw.nidaq_server.tasks import SimTask


def _choice(name: str, allowed: list[Any], store: Any) -> Any:
    """A setter that accepts only ``allowed`` values and stores them with ``store``."""

    def setter(ctx: Ctx, value: Any) -> None:
        if value not in allowed:
            raise invalid_value(name, value, ", ".join(str(a) for a in allowed))
        store(ctx.t, value)

    return setter


def _need_kind(task: SimTask, kind: str, what: str) -> None:
    if task.kind != kind:
        raise unsupported(f"Property: DAQmx_{what}\nIt applies to {kind.upper()} tasks only.")


# -- task ---------------------------------------------------------------------------------


def _task_attrs() -> list[Attr]:
    return [
        Attr(0x1276, "Task_Name", "String", lambda c: c.t.name),
        Attr(0x1273, "Task_Channels", "String", lambda c: ", ".join(c.t.channel_names())),
        Attr(0x2181, "Task_NumChans", "UInt32", lambda c: len(c.t.channels)),
        Attr(0x230E, "Task_Devices", "String", lambda c: ", ".join(d.name for d in c.t.devices())),
        Attr(0x29BA, "Task_NumDevices", "UInt32", lambda c: len(c.t.devices())),
        Attr(0x1274, "Task_Complete", "Bool", lambda c: c.daq.is_done(c.t)),
    ]


# -- timing -------------------------------------------------------------------------------


def _rate(ctx: Ctx) -> float:
    task = ctx.t
    if task.timing.hw_timed and task.channels:
        ctx.daq.verify(task)
        assert task.coerced_rate_hz is not None
        return task.coerced_rate_hz
    return task.timing.rate_hz


def _set_rate(ctx: Ctx, value: float) -> None:
    ctx.t.timing.rate_hz = float(value)


def _divisor(ctx: Ctx) -> int:
    task = ctx.t
    if not task.timing.hw_timed:
        raise unsupported("Property: DAQmx_SampClk_TimebaseDiv\nThe task has no sample clock.")
    ctx.daq.verify(task)
    return task.divisor or 1


def _clock_term(ctx: Ctx) -> str:
    task = ctx.t
    return f"/{task.timing_device.name}/{ctx.daq.default_engine(task)}/SampleClock"


def _timebase_src(ctx: Ctx) -> str:
    task = ctx.t
    return f"/{task.timing_device.name}/{_timebase_label(ctx.daq.timebase_hz(task))}Timebase"


def _set_engine(ctx: Ctx, value: int) -> None:
    engines = ctx.t.timing_device.ai_engines if ctx.t.kind == "ai" else ("ao",)
    if not 0 <= value < len(engines):
        raise invalid_value("SampTimingEngine", value, f"0..{len(engines) - 1}")
    ctx.t.timing.engine_index = int(value)


def _engine(ctx: Ctx) -> int:
    task = ctx.t
    engines = task.timing_device.ai_engines if task.kind == "ai" else ("ao",)
    name = ctx.daq.default_engine(task)
    return engines.index(name) if name in engines else 0


def _timing_attrs() -> list[Attr]:
    sample_clock, on_demand = SampleTimingType.SAMPLE_CLOCK.value, SampleTimingType.ON_DEMAND.value
    finite, continuous = AcquisitionType.FINITE.value, AcquisitionType.CONTINUOUS.value
    edges = [Edge.RISING.value, Edge.FALLING.value]
    underflows = [u.value for u in UnderflowBehavior]

    def set_type(t: SimTask, v: int) -> None:
        t.timing.timing_type = v

    def set_mode(t: SimTask, v: int) -> None:
        t.timing.sample_mode = v

    def set_edge(t: SimTask, v: int) -> None:
        t.timing.active_edge = v

    def set_underflow(t: SimTask, v: int) -> None:
        t.timing.underflow = v

    def set_source(c: Ctx, v: str) -> None:
        c.t.timing.source = v

    def set_samps(c: Ctx, v: int) -> None:
        c.t.timing.samps_per_chan = int(v)

    def underflow(c: Ctx) -> int:
        _need_kind(c.t, "ao", "SampClk_UnderflowBehavior")
        return c.t.timing.underflow

    return [
        Attr(
            0x1347,
            "SampTimingType",
            "Int32",
            lambda c: c.t.timing.timing_type,
            _choice("SampTimingType", [sample_clock, on_demand], set_type),
            default=on_demand,
        ),
        Attr(
            0x1300,
            "SampQuant_SampMode",
            "Int32",
            lambda c: c.t.timing.sample_mode,
            _choice("SampQuant_SampMode", [finite, continuous], set_mode),
            default=finite,
        ),
        Attr(
            0x1310,
            "SampQuant_SampPerChan",
            "UInt64",
            lambda c: c.t.timing.samps_per_chan,
            set_samps,
            default=1000,
        ),
        Attr(0x1344, "SampClk_Rate", "Double", _rate, _set_rate, default=1000.0),
        Attr(0x22C8, "SampClk_MaxRate", "Double", lambda c: c.daq.max_rate_hz(c.t)),
        Attr(
            0x1852,
            "SampClk_Src",
            "String",
            lambda c: c.t.timing.source or ONBOARD_CLOCK,
            set_source,
            default="",
        ),
        Attr(0x2F1B, "SampClk_Term", "String", _clock_term),
        Attr(
            0x1301,
            "SampClk_ActiveEdge",
            "Int32",
            lambda c: c.t.timing.active_edge,
            _choice("SampClk_ActiveEdge", edges, set_edge),
            default=Edge.RISING.value,
        ),
        Attr(0x1303, "SampClk_Timebase_Rate", "Double", lambda c: c.daq.timebase_hz(c.t)),
        Attr(0x1308, "SampClk_Timebase_Src", "String", _timebase_src),
        Attr(0x2F1C, "SampClk_Timebase_Term", "String", _timebase_src),
        Attr(0x18EB, "SampClk_TimebaseDiv", "UInt32", _divisor),
        Attr(0x1495, "MasterTimebase_Rate", "Double", lambda c: c.daq.timebase_hz(c.t)),
        Attr(0x1343, "MasterTimebase_Src", "String", _timebase_src),
        Attr(0x2A26, "SampTimingEngine", "UInt32", _engine, _set_engine),
        Attr(
            0x2961,
            "SampClk_UnderflowBehavior",
            "Int32",
            underflow,
            _choice("SampClk_UnderflowBehavior", underflows, set_underflow),
            default=UnderflowBehavior.HALT_OUTPUT_AND_ERROR.value,
        ),
    ]


# -- trigger ------------------------------------------------------------------------------


def _start_term(ctx: Ctx) -> str:
    task = ctx.t
    return f"/{task.timing_device.name}/{ctx.daq.default_engine(task)}/StartTrigger"


def _trig_src(ctx: Ctx) -> str:
    task = ctx.t
    if not task.trigger.source:
        return ""
    try:
        terminal = ctx.daq.trigger_terminal(task)
    except Exception:
        return task.trigger.source
    return terminal.name if terminal is not None else task.trigger.source


def _trig_attrs() -> list[Attr]:
    types = [TriggerType.NONE.value, TriggerType.DIGITAL_EDGE.value]
    edges = [Edge.RISING.value, Edge.FALLING.value]

    def set_type(t: SimTask, v: int) -> None:
        t.trigger.trig_type = v

    def set_edge(t: SimTask, v: int) -> None:
        t.trigger.edge = v

    def set_src(c: Ctx, v: str) -> None:
        c.t.trigger.source = v

    def no_retrigger(c: Ctx, v: bool) -> None:
        if v:
            raise unsupported(
                "Property: DAQmx_StartTrig_Retriggerable\nRetriggering is not simulated."
            )

    def no_delay(c: Ctx, v: float) -> None:
        if v != 0.0:
            raise unsupported("Property: DAQmx_StartTrig_Delay\nTrigger delays are not simulated.")

    return [
        Attr(
            0x1393,
            "StartTrig_Type",
            "Int32",
            lambda c: c.t.trigger.trig_type,
            _choice("StartTrig_Type", types, set_type),
            default=TriggerType.NONE.value,
        ),
        Attr(0x1407, "DigEdge_StartTrig_Src", "String", _trig_src, set_src, default=""),
        Attr(
            0x1404,
            "DigEdge_StartTrig_Edge",
            "Int32",
            lambda c: c.t.trigger.edge,
            _choice("DigEdge_StartTrig_Edge", edges, set_edge),
            default=Edge.RISING.value,
        ),
        Attr(0x2F1E, "StartTrig_Term", "String", _start_term),
        Attr(0x190F, "StartTrig_Retriggerable", "Bool", lambda c: False, no_retrigger, False),
        Attr(0x1856, "StartTrig_Delay", "Double", lambda c: 0.0, no_delay, 0.0),
    ]


# -- read ---------------------------------------------------------------------------------


def _inp_available(ctx: Ctx) -> int:
    task = ctx.t
    inp = task.inp
    if inp is None or not task.timing.hw_timed:
        return 0
    return max(0, inp.acquired - inp.read_pos)


def _default_to_read(ctx: Ctx) -> int:
    task = ctx.t
    total = task.samples_per_chan_target()
    inp = task.inp
    read_pos = inp.read_pos if inp is not None and task.running else 0
    if not task.timing.hw_timed:
        return 1
    if total is not None and not task.read.read_all_avail_samp:
        return max(0, total - read_pos)
    return _inp_available(ctx) if task.running else 0


def _overloaded_chans(ctx: Ctx) -> str:
    names = ", ".join(sorted(ctx.t.overloaded))
    ctx.t.overloaded.clear()
    return names


def _read_attrs() -> list[Attr]:
    overwrite = [m.value for m in OverwriteMode]
    relative = [
        ReadRelativeTo.FIRST_SAMPLE.value,
        ReadRelativeTo.CURRENT_READ_POSITION.value,
        ReadRelativeTo.MOST_RECENT_SAMPLE.value,
    ]
    waits = [w.value for w in WaitMode]

    def rows(c: Ctx) -> list[str]:
        names = c.t.read.channels_to_read
        return names if names is not None else c.t.channel_names()

    def set_channels(c: Ctx, v: str) -> None:
        c.t.read.channels_to_read = [ch.name for ch in c.t.find_channels(v)] if v else None

    def set_auto(c: Ctx, v: bool) -> None:
        c.t.read.auto_start = bool(v)

    def set_all(c: Ctx, v: bool) -> None:
        c.t.read.read_all_avail_samp = bool(v)

    def set_overwrite(t: SimTask, v: int) -> None:
        t.read.overwrite = v

    def set_relative(t: SimTask, v: int) -> None:
        t.read.relative_to = v

    def set_offset(c: Ctx, v: int) -> None:
        c.t.read.offset = int(v)

    def stored(attr_id: int, default: Any) -> tuple[Any, Any]:
        def get(c: Ctx) -> Any:
            return c.t.read.extra.get(attr_id, default)

        def put(c: Ctx, v: Any) -> None:
            c.t.read.extra[attr_id] = v

        return get, put

    wait_get, wait_put = stored(0x2232, WaitMode.WAIT_FOR_INTERRUPT.value)
    sleep_get, sleep_put = stored(0x22B0, 0.001)

    def checked_wait(c: Ctx, v: int) -> None:
        if v not in waits:
            raise invalid_value("Read_WaitMode", v, ", ".join(map(str, waits)))
        wait_put(c, v)

    return [
        Attr(
            0x1823,
            "Read_ChannelsToRead",
            "String",
            lambda c: ", ".join(rows(c)),
            set_channels,
            default="",
            running_ok=True,
        ),
        Attr(0x217B, "Read_NumChans", "UInt32", lambda c: len(rows(c))),
        Attr(0x1223, "Read_AvailSampPerChan", "UInt32", _inp_available),
        Attr(
            0x192A,
            "Read_TotalSampPerChanAcquired",
            "UInt64",
            lambda c: c.t.inp.acquired if c.t.inp is not None else 0,
        ),
        Attr(
            0x1221,
            "Read_CurrReadPos",
            "UInt64",
            lambda c: c.t.inp.read_pos if c.t.inp is not None else 0,
        ),
        Attr(
            0x1826,
            "Read_AutoStart",
            "Bool",
            lambda c: c.t.read.auto_start,
            set_auto,
            True,
            running_ok=True,
        ),
        Attr(
            0x1215,
            "Read_ReadAllAvailSamp",
            "Bool",
            lambda c: c.t.read.read_all_avail_samp,
            set_all,
            False,
            running_ok=True,
        ),
        Attr(
            0x1211,
            "Read_OverWrite",
            "Int32",
            lambda c: c.t.read.overwrite,
            _choice("Read_OverWrite", overwrite, set_overwrite),
            OverwriteMode.DO_NOT_OVERWRITE_UNREAD_SAMPLES.value,
        ),
        Attr(
            0x190A,
            "Read_RelativeTo",
            "Int32",
            lambda c: c.t.read.relative_to,
            _choice("Read_RelativeTo", relative, set_relative),
            ReadRelativeTo.CURRENT_READ_POSITION.value,
            running_ok=True,
        ),
        Attr(
            0x190B,
            "Read_Offset",
            "Int32",
            lambda c: c.t.read.offset,
            set_offset,
            0,
            running_ok=True,
        ),
        Attr(0x217A, "Read_RawDataWidth", "UInt32", lambda c: _raw_width(c.t)),
        Attr(0x31E8, "Read_DefaultNumSampsToRead", "UInt32", _default_to_read),
        Attr(0x2174, "Read_OverloadedChansExist", "Bool", lambda c: bool(c.t.overloaded)),
        Attr(0x2175, "Read_OverloadedChans", "String", _overloaded_chans),
        Attr(
            0x2232,
            "Read_WaitMode",
            "Int32",
            wait_get,
            checked_wait,
            WaitMode.WAIT_FOR_INTERRUPT.value,
            running_ok=True,
        ),
        Attr(0x22B0, "Read_SleepTime", "Double", sleep_get, sleep_put, 0.001, running_ok=True),
    ]


def _raw_width(task: SimTask) -> int:
    if not task.channels:
        return 2
    device = task.channels[0].device
    spec = device.ai if task.kind == "ai" else device.ao
    bits = spec.resolution_bits if spec is not None else 16
    return 2 if bits <= 16 else 4


# -- write --------------------------------------------------------------------------------


def _space(ctx: Ctx) -> int:
    task = ctx.t
    out = task.out
    if out is None:
        return 0
    if task.running:
        return out.space(task.generated)
    return out.size - out.idle_pos


def _write_attrs() -> list[Attr]:
    regen = [m.value for m in RegenerationMode]
    waits = [w.value for w in WaitMode]

    def set_regen(t: SimTask, v: int) -> None:
        t.write.regen_mode = v

    def only_default(name: str, default: Any) -> Any:
        def setter(c: Ctx, v: Any) -> None:
            if v != default:
                raise unsupported(f"Property: DAQmx_{name}\nOnly {default!r} is simulated.")

        return setter

    def set_wait(c: Ctx, v: int) -> None:
        if v not in waits:
            raise invalid_value("Write_WaitMode", v, ", ".join(map(str, waits)))
        c.t.write.extra[0x22B1] = v

    def set_sleep(c: Ctx, v: float) -> None:
        c.t.write.extra[0x22B2] = float(v)

    def regen_get(c: Ctx) -> int:
        return c.t.write.regen_mode

    return [
        Attr(0x217E, "Write_NumChans", "UInt32", lambda c: len(c.t.channels)),
        Attr(
            0x1453,
            "Write_RegenMode",
            "Int32",
            regen_get,
            _choice("Write_RegenMode", regen, set_regen),
            RegenerationMode.ALLOW_REGENERATION.value,
        ),
        Attr(0x192B, "Write_TotalSampPerChanGenerated", "UInt64", lambda c: c.t.generated),
        Attr(
            0x1458,
            "Write_CurrWritePos",
            "UInt64",
            lambda c: (
                0 if c.t.out is None else (c.t.out.write_abs if c.t.running else c.t.out.idle_pos)
            ),
        ),
        Attr(0x1460, "Write_SpaceAvail", "UInt32", _space),
        Attr(0x217D, "Write_RawDataWidth", "UInt32", lambda c: _raw_width(c.t)),
        Attr(
            0x190C,
            "Write_RelativeTo",
            "Int32",
            lambda c: c.t.write.relative_to,
            only_default("Write_RelativeTo", WriteRelativeTo.CURRENT_WRITE_POSITION.value),
            WriteRelativeTo.CURRENT_WRITE_POSITION.value,
        ),
        Attr(0x190D, "Write_Offset", "Int32", lambda c: 0, only_default("Write_Offset", 0), 0),
        Attr(
            0x22B1,
            "Write_WaitMode",
            "Int32",
            lambda c: c.t.write.extra.get(0x22B1, WaitMode.WAIT_FOR_INTERRUPT.value),
            set_wait,
            WaitMode.WAIT_FOR_INTERRUPT.value,
            running_ok=True,
        ),
        Attr(
            0x22B2,
            "Write_SleepTime",
            "Double",
            lambda c: c.t.write.extra.get(0x22B2, 0.001),
            set_sleep,
            0.001,
            running_ok=True,
        ),
    ]


# -- buffer -------------------------------------------------------------------------------


def _buffer_attrs() -> list[Attr]:
    def in_size(c: Ctx) -> int:
        _need_kind(c.t, "ai", "Buf_Input_BufSize")
        if c.t.inp is not None and c.t.running:
            return c.t.inp.size
        return c.t.default_input_buffer() if c.t.timing.hw_timed else 0

    def set_in(c: Ctx, v: int) -> None:
        _need_kind(c.t, "ai", "Buf_Input_BufSize")
        c.t.in_buf_size = int(v) if v > 0 else None

    def out_size(c: Ctx) -> int:
        _need_kind(c.t, "ao", "Buf_Output_BufSize")
        if c.t.out is not None:
            return c.t.out.size
        return c.t.out_buf_size or 0

    def set_out(c: Ctx, v: int | None) -> None:
        """Set the AO buffer size; None (Reset) returns to sizing by the first write."""
        _need_kind(c.t, "ao", "Buf_Output_BufSize")
        c.t.out_buf_size = None if v is None else int(v)
        c.t.out = None

    def onboard(kind: str) -> Any:
        def get(c: Ctx) -> int:
            _need_kind(c.t, kind, f"Buf_{'Input' if kind == 'ai' else 'Output'}_OnbrdBufSize")
            device = c.t.channels[0].device
            spec = device.ai if kind == "ai" else device.ao
            assert spec is not None
            return spec.onboard_buffer_samples

        return get

    return [
        Attr(0x186C, "Buf_Input_BufSize", "UInt32", in_size, set_in, 0),
        Attr(0x186D, "Buf_Output_BufSize", "UInt32", out_size, set_out, None),
        Attr(0x230A, "Buf_Input_OnbrdBufSize", "UInt32", onboard("ai")),
        Attr(0x230B, "Buf_Output_OnbrdBufSize", "UInt32", onboard("ao")),
    ]


def register(registry: Registry) -> None:
    """Register the task-level groups."""
    registry.add(Group.TASK, *_task_attrs())
    registry.add(Group.TIMING, *_timing_attrs())
    registry.add(Group.TRIG, *_trig_attrs())
    registry.add(Group.READ, *_read_attrs())
    registry.add(Group.WRITE, *_write_attrs())
    registry.add(Group.BUFFER, *_buffer_attrs())
