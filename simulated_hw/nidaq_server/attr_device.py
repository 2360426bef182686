"""Device, physical-channel and system attributes."""

from __future__ import annotations

from typing import Any

from nidaqmx.constants import (  # type: ignore[import-untyped, unused-ignore]
    AcquisitionType,
    TerminalConfiguration,
    UsageTypeAI,
    UsageTypeAO,
)

from simulated_hw.nidaq_server.attributes import Attr, Ctx, Group, Registry, unsupported
from simulated_hw.nidaq_server.config import AISpec, AOSpec
from simulated_hw.nidaq_server.devices import SimDevice

_TRIGGER_USAGE_START = 8
"""DAQmx trigger-usage bit field: start triggers only."""
_TERM_CFG_BITS = {
    TerminalConfiguration.RSE.value: 1,
    TerminalConfiguration.NRSE.value: 2,
    TerminalConfiguration.DIFF.value: 4,
    TerminalConfiguration.PSEUDO_DIFF.value: 8,
}
_SAMPLE_MODES = [AcquisitionType.FINITE.value, AcquisitionType.CONTINUOUS.value]


def _ao(device: SimDevice, name: str) -> AOSpec:
    if device.ao is None:
        raise unsupported(f"Property: DAQmx_Dev_{name}\n{device.name} has no analog outputs.")
    return device.ao


def _ai(device: SimDevice, name: str) -> AISpec:
    if device.ai is None:
        raise unsupported(f"Property: DAQmx_Dev_{name}\n{device.name} has no analog inputs.")
    return device.ai


def _min_rate(kind: str) -> Any:
    def get(c: Ctx) -> float:
        if kind == "ao":
            _ao(c.dev, "AO_MinRate")
            return c.dev.min_rate_hz("ao")
        _ai(c.dev, "AI_MinRate")
        return c.dev.min_rate_hz("ai")

    return get


def _flat(ranges: list[tuple[float, float]]) -> list[float]:
    return [float(v) for pair in ranges for v in pair]


def _device_attrs() -> list[Attr]:
    def chassis_modules(c: Ctx) -> str:
        if not c.dev.is_chassis:
            raise unsupported(f"Property: DAQmx_Dev_Chassis_ModuleDevNames\n{c.dev.name}")
        return ", ".join(m.name for m in c.dev.modules)

    def chassis_of(c: Ctx) -> str:
        if c.dev.chassis is None:
            raise unsupported(f"Property: DAQmx_Dev_CompactDAQ_ChassisDevName\n{c.dev.name}")
        return c.dev.chassis.name

    def slot(c: Ctx) -> int:
        if c.dev.slot is None:
            raise unsupported(f"Property: DAQmx_Dev_CompactDAQ_SlotNum\n{c.dev.name}")
        return c.dev.slot

    def empty(_: Ctx) -> str:
        return ""

    def ai_engines(c: Ctx) -> int:
        return (
            len(c.dev.timing_device.ai_engines) if c.dev.ai is not None or c.dev.is_chassis else 0
        )

    def ao_engines(c: Ctx) -> int:
        return 1 if c.dev.timing_device.has_ao_engine() and (c.dev.ao or c.dev.is_chassis) else 0

    def io(kind: str) -> Any:
        def get(c: Ctx) -> str:
            return ", ".join(c.dev.physical_names("ao" if kind == "ao" else "ai"))

        return get

    return [
        Attr(0x631, "Dev_ProductType", "String", lambda c: c.dev.product_type),
        Attr(0x29A9, "Dev_ProductCategory", "Int32", lambda c: c.dev.category),
        Attr(0x231D, "Dev_ProductNum", "UInt32", lambda c: c.dev.product_num),
        Attr(0x632, "Dev_SerialNum", "UInt32", lambda c: c.dev.serial_num),
        Attr(0x22CA, "Dev_IsSimulated", "Bool", lambda c: True),
        Attr(0x2326, "Dev_BusType", "Int32", lambda c: c.dev.bus_type),
        Attr(0x29B6, "Dev_Chassis_ModuleDevNames", "String", chassis_modules),
        Attr(0x29B7, "Dev_CompactDAQ_ChassisDevName", "String", chassis_of),
        Attr(0x29B8, "Dev_CompactDAQ_SlotNum", "UInt32", slot),
        Attr(0x231E, "Dev_AI_PhysicalChans", "String", io("ai")),
        Attr(0x231F, "Dev_AO_PhysicalChans", "String", io("ao")),
        Attr(0x2320, "Dev_DI_Lines", "String", empty),
        Attr(0x2321, "Dev_DO_Lines", "String", empty),
        Attr(0x2322, "Dev_DI_Ports", "String", empty),
        Attr(0x2323, "Dev_DO_Ports", "String", empty),
        Attr(0x2324, "Dev_CI_PhysicalChans", "String", empty),
        Attr(0x2325, "Dev_CO_PhysicalChans", "String", empty),
        Attr(0x2A40, "Dev_Terminals", "String", lambda c: ", ".join(c.dev.terminals())),
        Attr(0x2F6D, "Dev_AccessoryProductTypes", "String", empty),
        Attr(
            0x298C,
            "Dev_AI_MaxSingleChanRate",
            "Double",
            lambda c: _ai(c.dev, "AI_MaxSingleChanRate").max_single_chan_rate_hz,
        ),
        Attr(
            0x298D,
            "Dev_AI_MaxMultiChanRate",
            "Double",
            lambda c: _ai(c.dev, "AI_MaxMultiChanRate").max_multi_chan_rate_hz,
        ),
        Attr(0x298E, "Dev_AI_MinRate", "Double", _min_rate("ai")),
        Attr(
            0x298F,
            "Dev_AI_SimultaneousSamplingSupported",
            "Bool",
            lambda c: _ai(c.dev, "AI_SimultaneousSamplingSupported").simultaneous,
        ),
        Attr(
            0x2990,
            "Dev_AI_VoltageRngs",
            "DoubleArray",
            lambda c: _flat(_ai(c.dev, "AI_VoltageRngs").ranges_v),
        ),
        Attr(
            0x2FD2,
            "Dev_AI_SupportedMeasTypes",
            "Int32Array",
            lambda c: [UsageTypeAI.VOLTAGE.value] if c.dev.ai is not None else [],
        ),
        Attr(
            0x2FDC,
            "Dev_AI_SampModes",
            "Int32Array",
            lambda c: _SAMPLE_MODES if c.dev.ai is not None else [],
        ),
        Attr(
            0x2986,
            "Dev_AI_TrigUsage",
            "Int32",
            lambda c: _TRIGGER_USAGE_START if c.dev.ai is not None else 0,
        ),
        Attr(0x3163, "Dev_AI_NumSampTimingEngines", "UInt32", ai_engines),
        Attr(0x2997, "Dev_AO_MaxRate", "Double", lambda c: _ao(c.dev, "AO_MaxRate").max_rate_hz),
        Attr(0x2998, "Dev_AO_MinRate", "Double", _min_rate("ao")),
        Attr(
            0x299B,
            "Dev_AO_VoltageRngs",
            "DoubleArray",
            lambda c: _flat(_ao(c.dev, "AO_VoltageRngs").ranges_v),
        ),
        Attr(0x2996, "Dev_AO_SampClkSupported", "Bool", lambda c: c.dev.ao is not None),
        Attr(
            0x2FD3,
            "Dev_AO_SupportedOutputTypes",
            "Int32Array",
            lambda c: [UsageTypeAO.VOLTAGE.value] if c.dev.ao is not None else [],
        ),
        Attr(
            0x2FDD,
            "Dev_AO_SampModes",
            "Int32Array",
            lambda c: _SAMPLE_MODES if c.dev.ao is not None else [],
        ),
        Attr(
            0x2987,
            "Dev_AO_TrigUsage",
            "Int32",
            lambda c: _TRIGGER_USAGE_START if c.dev.ao is not None else 0,
        ),
        Attr(0x3165, "Dev_AO_NumSampTimingEngines", "UInt32", ao_engines),
        Attr(0x2984, "Dev_AnlgTrigSupported", "Bool", lambda c: False),
        Attr(0x2985, "Dev_DigTrigSupported", "Bool", lambda c: not c.dev.is_module),
    ]


def _physical_attrs() -> list[Attr]:
    def ai_term_cfgs(c: Ctx) -> int:
        if c.phys.kind != "ai":
            raise unsupported(f"Property: DAQmx_PhysicalChan_AI_TermCfgs\n{c.phys.name}")
        return sum(_TERM_CFG_BITS[v] for v in c.phys.device.supported_terminal_configs())

    def ao_term_cfgs(c: Ctx) -> int:
        if c.phys.kind != "ao":
            raise unsupported(f"Property: DAQmx_PhysicalChan_AO_TermCfgs\n{c.phys.name}")
        return _TERM_CFG_BITS[TerminalConfiguration.RSE.value]

    return [
        Attr(0x2342, "PhysicalChan_AI_TermCfgs", "Int32", ai_term_cfgs),
        Attr(0x29A3, "PhysicalChan_AO_TermCfgs", "Int32", ao_term_cfgs),
        Attr(
            0x2FD7,
            "PhysicalChan_AI_SupportedMeasTypes",
            "Int32Array",
            lambda c: [UsageTypeAI.VOLTAGE.value] if c.phys.kind == "ai" else [],
        ),
        Attr(
            0x2FD9,
            "PhysicalChan_AO_SupportedOutputTypes",
            "Int32Array",
            lambda c: [UsageTypeAO.VOLTAGE.value] if c.phys.kind == "ao" else [],
        ),
    ]


def _system_attrs() -> list[Attr]:
    def version(index: int) -> Any:
        return lambda c: c.daq.config.driver_version[index]

    return [
        Attr(0x1272, "Sys_NIDAQMajorVersion", "UInt32", version(0)),
        Attr(0x1923, "Sys_NIDAQMinorVersion", "UInt32", version(1)),
        Attr(0x2F22, "Sys_NIDAQUpdateVersion", "UInt32", version(2)),
        Attr(0x193B, "Sys_DevNames", "String", lambda c: ", ".join(c.daq.catalog.names())),
        Attr(0x1265, "Sys_GlobalChans", "String", lambda c: ""),
        Attr(0x1266, "Sys_Scales", "String", lambda c: ""),
        Attr(0x1267, "Sys_Tasks", "String", lambda c: ""),
    ]


def register(registry: Registry) -> None:
    """Register the device, physical-channel and system groups."""
    registry.add(Group.DEVICE, *_device_attrs())
    registry.add(Group.PHYSICAL, *_physical_attrs())
    registry.add(Group.SYSTEM, *_system_attrs())
