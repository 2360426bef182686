"""Channel attributes (common, AO voltage, AI voltage).

A Get on a list of channels returns the first channel's value; a Set applies to all of them.
"""

from __future__ import annotations

from typing import Any

from nidaqmx.constants import (  # type: ignore[import-untyped, unused-ignore]
    AOIdleOutputBehavior,
    ChannelType,
    Coupling,
    DataTransferActiveTransferMode,
    DigitalWidthUnits,
    OutputDataTransferCondition,
    ResolutionType,
    TerminalConfiguration,
    UsageTypeAI,
    UsageTypeAO,
    VoltageUnits,
)

from simulated_hw.nidaq_server.attributes import (
    Attr,
    Ctx,
    Group,
    Registry,
    invalid_value,
    unsupported,
)
from simulated_hw.nidaq_server.tasks import VirtualChannel

_TRANSFER = {
    "DMA": DataTransferActiveTransferMode.DMA.value,
    "USB_BULK": DataTransferActiveTransferMode.USB_BULK.value,
    "INTERRUPT": DataTransferActiveTransferMode.INTERRUPT.value,
}


def _kind(ctx: Ctx, kind: str, name: str) -> VirtualChannel:
    channel = ctx.ch
    if channel.physical.kind != kind:
        raise unsupported(
            f"Property: DAQmx_{name}\nChannel Name: {channel.name} is an "
            f"{channel.physical.kind.upper()} channel."
        )
    return channel


def _const(kind: str, name: str, value: Any) -> Any:
    """A getter returning ``value`` for channels of ``kind`` (-200452 for the others)."""

    def get(c: Ctx) -> Any:
        _kind(c, kind, name)
        return value

    return get


def _each(ctx: Ctx, kind: str | None, name: str) -> list[VirtualChannel]:
    assert ctx.channels is not None
    if kind is not None:
        for channel in ctx.channels:
            if channel.physical.kind != kind:
                raise unsupported(f"Property: DAQmx_{name}\nChannel Name: {channel.name}")
    return ctx.channels


def _limit(kind: str, which: str) -> tuple[Any, Any]:
    name = f"{kind.upper()}_{'Max' if which == 'max' else 'Min'}"

    def get(c: Ctx) -> float:
        channel = _kind(c, kind, name)
        return channel.max_v if which == "max" else channel.min_v

    def put(c: Ctx, v: float) -> None:
        for channel in _each(c, kind, name):
            if which == "max":
                channel.max_v = float(v)
            else:
                channel.min_v = float(v)

    return get, put


def _range(kind: str, high: bool, name: str) -> Any:
    def get(c: Ctx) -> float:
        low_v, high_v = _kind(c, kind, name).hw_range()
        return high_v if high else low_v

    return get


def _resolution(kind: str, name: str) -> Any:
    def get(c: Ctx) -> float:
        channel = _kind(c, kind, name)
        spec = channel.device.ao if kind == "ao" else channel.device.ai
        assert spec is not None
        return float(spec.resolution_bits)

    return get


def _transfer(kind: str, name: str) -> Any:
    def get(c: Ctx) -> int:
        channel = _kind(c, kind, name)
        spec = channel.device.ao if kind == "ao" else channel.device.ai
        assert spec is not None
        return _TRANSFER[spec.data_transfer]

    return get


def _stored(attr_id: int, kind: str, name: str, default: Any, allowed: list[Any] | None) -> Any:
    def get(c: Ctx) -> Any:
        return _kind(c, kind, name).extra.get(attr_id, default)

    def put(c: Ctx, v: Any) -> None:
        if allowed is not None and v not in allowed:
            raise invalid_value(name, v, ", ".join(map(str, allowed)))
        for channel in _each(c, kind, name):
            channel.extra[attr_id] = v

    return get, put


def _common() -> list[Attr]:
    def chan_type(c: Ctx) -> int:
        if c.ch.physical.kind == "ao":
            return ChannelType.ANALOG_OUTPUT.value
        return ChannelType.ANALOG_INPUT.value

    def set_descr(c: Ctx, v: str) -> None:
        for channel in _each(c, None, "ChanDescr"):
            channel.description = v

    return [
        Attr(0x187F, "ChanType", "Int32", chan_type),
        Attr(0x18F5, "PhysicalChanName", "String", lambda c: c.ch.physical.name),
        Attr(
            0x1926,
            "ChanDescr",
            "String",
            lambda c: c.ch.description,
            set_descr,
            "",
            running_ok=True,
        ),
        Attr(0x2304, "ChanIsGlobal", "Bool", lambda c: False),
    ]


def _ao() -> list[Attr]:
    max_get, max_put = _limit("ao", "max")
    min_get, min_put = _limit("ao", "min")
    maintain = AOIdleOutputBehavior.MAINTAIN_EXISTING_VALUE.value
    idle_get, idle_put = _stored(0x2240, "ao", "AO_IdleOutputBehavior", maintain, [maintain])
    board_get, board_put = _stored(0x183A, "ao", "AO_UseOnlyOnBrdMem", False, [True, False])
    conds = [c.value for c in OutputDataTransferCondition]
    cond_default = OutputDataTransferCondition.ON_BOARD_MEMORY_LESS_THAN_FULL.value
    cond_get, cond_put = _stored(0x183C, "ao", "AO_DataXferReqCond", cond_default, conds)
    return [
        Attr(
            0x1108,
            "AO_OutputType",
            "Int32",
            _const("ao", "AO_OutputType", UsageTypeAO.VOLTAGE.value),
        ),
        Attr(0x1186, "AO_Max", "Double", max_get, max_put),
        Attr(0x1187, "AO_Min", "Double", min_get, min_put),
        Attr(0x1184, "AO_VoltageUnits", "Int32", lambda c: _kind(c, "ao", "AO_VoltageUnits").units),
        Attr(0x182E, "AO_DAC_Rng_High", "Double", _range("ao", True, "AO_DAC_Rng_High")),
        Attr(0x182D, "AO_DAC_Rng_Low", "Double", _range("ao", False, "AO_DAC_Rng_Low")),
        Attr(0x182C, "AO_Resolution", "Double", _resolution("ao", "AO_Resolution")),
        Attr(
            0x182B,
            "AO_ResolutionUnits",
            "Int32",
            _const("ao", "AO_ResolutionUnits", ResolutionType.BITS.value),
        ),
        Attr(
            0x188E,
            "AO_TermCfg",
            "Int32",
            _const("ao", "AO_TermCfg", TerminalConfiguration.RSE.value),
        ),
        Attr(0x2240, "AO_IdleOutputBehavior", "Int32", idle_get, idle_put, maintain),
        Attr(0x183A, "AO_UseOnlyOnBrdMem", "Bool", board_get, board_put, False),
        Attr(0x134, "AO_DataXferMech", "Int32", _transfer("ao", "AO_DataXferMech")),
        Attr(0x183C, "AO_DataXferReqCond", "Int32", cond_get, cond_put, cond_default),
        Attr(0x118, "AO_Gain", "Double", _const("ao", "AO_Gain", 0.0)),
    ]


def _filter_delay(c: Ctx) -> float:
    channel = _kind(c, "ai", "AI_FilterDelay")
    spec = channel.device.ai
    assert spec is not None
    if not spec.filtered:
        raise unsupported(
            f"Property: DAQmx_AI_FilterDelay\n{channel.device.product_type} has no filter delay."
        )
    delay_samples = float(c.daq.bench.chain.settings.adc_delay_samples)
    units = channel.extra.get(0x3071, DigitalWidthUnits.SECONDS.value)
    if units == DigitalWidthUnits.SAMPLE_CLOCK_PERIODS.value:
        return delay_samples
    rate = c.t.coerced_rate_hz or c.t.timing.rate_hz
    return delay_samples / rate


def _ai() -> list[Attr]:
    max_get, max_put = _limit("ai", "max")
    min_get, min_put = _limit("ai", "min")
    units = [DigitalWidthUnits.SECONDS.value, DigitalWidthUnits.SAMPLE_CLOCK_PERIODS.value]
    units_get, units_put = _stored(0x3071, "ai", "AI_FilterDelayUnits", units[0], units)

    def term_get(c: Ctx) -> int:
        return _kind(c, "ai", "AI_TermCfg").term_cfg

    def term_put(c: Ctx, v: int) -> None:
        for channel in _each(c, "ai", "AI_TermCfg"):
            if v not in channel.device.supported_terminal_configs():
                raise invalid_value(
                    "AI_TermCfg", v, str(channel.device.supported_terminal_configs())
                )
            channel.term_cfg = int(v)

    def remove_delay(c: Ctx, v: bool) -> None:
        if v:
            raise unsupported(
                "Property: DAQmx_AI_RemoveFilterDelay\nThe simulated module does not remove the "
                "filter delay; read ai_filter_delay and correct for it."
            )

    return [
        Attr(0x695, "AI_MeasType", "Int32", _const("ai", "AI_MeasType", UsageTypeAI.VOLTAGE.value)),
        Attr(0x17DD, "AI_Max", "Double", max_get, max_put),
        Attr(0x17DE, "AI_Min", "Double", min_get, min_put),
        Attr(
            0x1094,
            "AI_Voltage_Units",
            "Int32",
            _const("ai", "AI_Voltage_Units", VoltageUnits.VOLTS.value),
        ),
        Attr(0x1097, "AI_TermCfg", "Int32", term_get, term_put),
        Attr(0x1815, "AI_Rng_High", "Double", _range("ai", True, "AI_Rng_High")),
        Attr(0x1816, "AI_Rng_Low", "Double", _range("ai", False, "AI_Rng_Low")),
        Attr(0x1818, "AI_Gain", "Double", _const("ai", "AI_Gain", 0.0)),
        Attr(0x1765, "AI_Resolution", "Double", _resolution("ai", "AI_Resolution")),
        Attr(
            0x1764,
            "AI_ResolutionUnits",
            "Int32",
            _const("ai", "AI_ResolutionUnits", ResolutionType.BITS.value),
        ),
        Attr(0x64, "AI_Coupling", "Int32", _const("ai", "AI_Coupling", Coupling.DC.value)),
        Attr(0x2FED, "AI_FilterDelay", "Double", _filter_delay),
        Attr(0x3071, "AI_FilterDelayUnits", "Int32", units_get, units_put, units[0]),
        Attr(
            0x2FBD,
            "AI_RemoveFilterDelay",
            "Bool",
            _const("ai", "AI_RemoveFilterDelay", False),
            remove_delay,
            False,
        ),
        Attr(0x1821, "AI_DataXferMech", "Int32", _transfer("ai", "AI_DataXferMech")),
    ]


def register(registry: Registry) -> None:
    """Register the channel group."""
    registry.add(Group.CHAN, *_common(), *_ao(), *_ai())
