"""The simulated NI hardware: devices, physical channels, terminals and sample-clock timebases.

Built once from :class:`~simulated_hw.nidaq_server.config.SimDaqConfig`. Device names are
case-insensitive, as in DAQmx. A C Series module's *timing device* is its chassis: trigger and
clock terminals, timing engines and the AO engine live there (``/cDAQ1/ai/StartTrigger``); a
stand-alone device is its own timing device (``/Dev1/ai/StartTrigger``).

Rates are coerced as a DAQmx sample clock derived from a timebase does it: the divisor is an
integer, ``coerced = timebase / round(timebase / requested)``, never above the maximum.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from nidaqmx.constants import (  # type: ignore[import-untyped, unused-ignore]
    BusType,
    ProductCategory,
    TerminalConfiguration,
)

from simulated_hw.nidaq_server.config import AISpec, AOSpec, DeviceConfig, SimDaqConfig
from simulated_hw.nidaq_server.errors import Code, DaqmxError

Kind = Literal["ao", "ai"]

_PHYSICAL = re.compile(r"^(?P<device>[^/\s]+)/(?P<kind>[a-z]+)(?P<index>\d+)$", re.IGNORECASE)
_RANGE = re.compile(r"^(?P<device>[^/\s]+)/(?P<kind>[a-z]+)(?P<first>\d+):(?P<last>\d+)$", re.I)
ENGINE_SIGNALS = ("StartTrigger", "SampleClock")
"""Terminals each timing engine exports (``/<dev>/<engine>/<signal>``)."""
ONBOARD_CLOCK = "OnboardClock"


def _timebase_label(rate_hz: float) -> str:
    for scale, unit in ((1e6, "MHz"), (1e3, "kHz")):
        if rate_hz >= scale and (rate_hz / scale) == int(rate_hz / scale):
            return f"{int(rate_hz / scale)}{unit}"
    return f"{rate_hz:g}Hz"


@dataclass(eq=False)
class SimDevice:
    """One simulated device: a chassis, a C Series module or a stand-alone DAQ.

    Attributes:
        name: Device name (as configured; lookups ignore case).
        product_type: e.g. ``"NI 9264"``.
        category: ``nidaqmx.constants.ProductCategory`` value.
        bus_type: ``nidaqmx.constants.BusType`` value.
        product_num: Product number.
        serial_num: Serial number.
        timebase_hz: Sample-clock timebase (Hz) of this device's channels.
        ao: AO capabilities (None: no AO).
        ai: AI capabilities (None: no AI).
        chassis: The chassis of a module (None otherwise).
        slot: Slot of a module (None otherwise).
        modules: Modules of a chassis.
        ai_engines: AI timing engines (timing devices only).
        pfi_lines: Number of PFI terminals (timing devices only).
    """

    name: str
    product_type: str
    category: int
    bus_type: int
    product_num: int
    serial_num: int
    timebase_hz: float
    ao: AOSpec | None = None
    ai: AISpec | None = None
    chassis: SimDevice | None = None
    slot: int | None = None
    modules: list[SimDevice] = field(default_factory=list)
    ai_engines: tuple[str, ...] = ("ai",)
    pfi_lines: int = 0

    @property
    def timing_device(self) -> SimDevice:
        """Where this device's timing engines and terminals are (the chassis of a module)."""
        return self.chassis if self.chassis is not None else self

    @property
    def is_chassis(self) -> bool:
        """Whether this is a cDAQ chassis."""
        return self.category == ProductCategory.COMPACT_DAQ_CHASSIS.value

    @property
    def is_module(self) -> bool:
        """Whether this is a C Series module."""
        return self.chassis is not None

    def channel_count(self, kind: Kind) -> int:
        """Number of physical channels of ``kind`` (0 when the device has none)."""
        spec = self.ao if kind == "ao" else self.ai
        return spec.channels if spec is not None else 0

    def physical_names(self, kind: Kind) -> list[str]:
        """Physical channel names of ``kind``, e.g. ``["Dev1/ao0", ...]``."""
        return [f"{self.name}/{kind}{i}" for i in range(self.channel_count(kind))]

    def has_ao_engine(self) -> bool:
        """Whether this timing device has an AO timing engine (some channel under it has AO)."""
        return any(d.ao is not None for d in self.family())

    def family(self) -> list[SimDevice]:
        """This device and its modules."""
        return [self, *self.modules]

    def min_rate_hz(self, kind: Kind) -> float:
        """Minimum sample rate (S/s) of ``kind`` on this device."""
        spec = self.ao if kind == "ao" else self.ai
        configured = spec.min_rate_hz if spec is not None else None
        return configured if configured is not None else self.timebase_hz / 2.0**32

    def max_rate_hz(self, kind: Kind, n_channels: int) -> float:
        """Maximum sample rate (S/s) of a task with ``n_channels`` channels of ``kind`` here."""
        if kind == "ao":
            if self.ao is None:
                return 0.0
            return self.ao.max_rate_for(n_channels)
        if self.ai is None:
            return 0.0
        if n_channels <= 1:
            return self.ai.max_single_chan_rate_hz
        if self.ai.simultaneous:
            return self.ai.max_multi_chan_rate_hz
        return self.ai.max_multi_chan_rate_hz / n_channels

    def terminals(self) -> list[str]:
        """Terminal names of a timing device (modules have none of their own)."""
        if self.is_module:
            return []
        names = []
        for engine in self.ai_engines:
            names += [f"/{self.name}/{engine}/{signal}" for signal in ENGINE_SIGNALS]
        if self.has_ao_engine():
            names += [f"/{self.name}/ao/{signal}" for signal in ENGINE_SIGNALS]
        names += [f"/{self.name}/PFI{i}" for i in range(self.pfi_lines)]
        for rate in sorted({self.timebase_hz, 20e6, 100e3}, reverse=True):
            names.append(f"/{self.name}/{_timebase_label(rate)}Timebase")
        return names

    def default_terminal_config(self) -> int:
        """What ``TerminalConfiguration.DEFAULT`` resolves to on this device's AI."""
        name = self.ai.default_terminal_config if self.ai is not None else "RSE"
        return int(TerminalConfiguration[name].value)

    def supported_terminal_configs(self) -> list[int]:
        """Terminal configurations (enum values) this device's AI supports."""
        names = self.ai.terminal_configs if self.ai is not None else []
        return [int(TerminalConfiguration[n].value) for n in names]


@dataclass(frozen=True)
class PhysicalChannel:
    """One physical channel (``<device>/<kind><index>``)."""

    device: SimDevice
    kind: Kind
    index: int

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``"cDAQ1Mod1/ao0"``."""
        return f"{self.device.name}/{self.kind}{self.index}"

    @property
    def key(self) -> str:
        """Case-folded name (for lookups)."""
        return self.name.lower()


@dataclass(frozen=True)
class Terminal:
    """A resolved terminal: an engine signal, a PFI line or a timebase of a timing device.

    Attributes:
        device: The timing device.
        engine: Timing engine (``"ai"``, ``"te0"``, ``"ao"``) for engine signals, else None.
        signal: ``"StartTrigger"``, ``"SampleClock"``, ``"PFI"`` or ``"Timebase"``.
        name: Canonical terminal name (``/Dev1/ai/StartTrigger``).
    """

    device: SimDevice
    engine: str | None
    signal: str
    name: str


class DeviceCatalog:
    """All simulated devices, looked up by name, and physical channel / terminal parsing."""

    def __init__(self, config: SimDaqConfig) -> None:
        self._devices: dict[str, SimDevice] = {}
        for device_config in config.devices:
            self._add(device_config)

    def _add(self, cfg: DeviceConfig) -> None:
        device = SimDevice(
            name=cfg.name,
            product_type=cfg.product_type,
            category=int(ProductCategory[cfg.category].value),
            bus_type=int(BusType[cfg.bus].value),
            product_num=cfg.product_num,
            serial_num=cfg.serial_num,
            timebase_hz=cfg.timebase_hz,
            ao=cfg.ao,
            ai=cfg.ai,
            ai_engines=tuple(cfg.ai_timing_engines),
            pfi_lines=cfg.pfi_lines,
        )
        self._devices[device.name.lower()] = device
        for mod in sorted(cfg.modules, key=lambda m: m.slot):
            module = SimDevice(
                name=mod.name,
                product_type=mod.product_type,
                category=int(ProductCategory.C_SERIES_MODULE.value),
                bus_type=int(BusType.COMPACT_DAQ.value),
                product_num=mod.product_num,
                serial_num=mod.serial_num,
                timebase_hz=mod.timebase_hz if mod.timebase_hz is not None else cfg.timebase_hz,
                ao=mod.ao,
                ai=mod.ai,
                chassis=device,
                slot=mod.slot,
            )
            device.modules.append(module)
            self._devices[module.name.lower()] = module

    def __iter__(self) -> Iterator[SimDevice]:
        return iter(self._devices.values())

    def names(self) -> list[str]:
        """Every device name, chassis before their modules (DAQmx System.Devices order)."""
        return [d.name for d in self]

    def device(self, name: str) -> SimDevice:
        """The device called ``name`` (any case).

        Raises:
            DaqmxError: -200220 (invalid device identifier) if there is none.
        """
        device = self._devices.get(name.strip().lower())
        if device is None:
            raise DaqmxError(
                Code.INVALID_DEVICE_ID,
                f"Device Specified: {name.strip()}\n\nSuggested Device(s): "
                + ", ".join(self.names()),
            )
        return device

    def physical_channels(self, spec: str, kind: Kind | None = None) -> list[PhysicalChannel]:
        """Parse a DAQmx physical-channel list (``"Dev1/ao0:3, Dev1/ao5"``).

        Args:
            spec: Comma-separated names and ranges.
            kind: Required channel kind (None: any).

        Raises:
            DaqmxError: -200220 for an unknown device, -200170 for a channel the device does
                not have (or of the wrong kind), -200086 for bad syntax.
        """
        out: list[PhysicalChannel] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            ranged = _RANGE.match(item)
            if ranged is not None:
                first, last = int(ranged["first"]), int(ranged["last"])
                step = 1 if last >= first else -1
                indices = list(range(first, last + step, step))
                device_name, kind_text = ranged["device"], ranged["kind"]
            else:
                single = _PHYSICAL.match(item)
                if single is None:
                    if "/" in item:
                        self.device(item.split("/", 1)[0])
                    raise DaqmxError(
                        Code.INVALID_SYNTAX_FOR_PHYSICAL_CHANNEL_RANGE,
                        f"Physical Channel Specified: {item}",
                    )
                indices = [int(single["index"])]
                device_name, kind_text = single["device"], single["kind"]
            device = self.device(device_name)
            kind_lower = kind_text.lower()
            for index in indices:
                name = f"{device.name}/{kind_lower}{index}"
                if kind_lower not in ("ao", "ai") or (kind is not None and kind_lower != kind):
                    raise self._no_channel(device, name, kind)
                k: Kind = "ao" if kind_lower == "ao" else "ai"
                if index >= device.channel_count(k):
                    raise self._no_channel(device, name, kind)
                out.append(PhysicalChannel(device, k, index))
        if not out:
            raise DaqmxError(
                Code.PHYSICAL_CHAN_DOES_NOT_EXIST, f"Physical Channel Specified: {spec!r}"
            )
        return out

    @staticmethod
    def _no_channel(device: SimDevice, name: str, kind: Kind | None) -> DaqmxError:
        kinds: list[Kind] = [kind] if kind is not None else ["ao", "ai"]
        available = [n for k in kinds for n in device.physical_names(k)]
        listing = ", ".join(available[:8]) + (", ..." if len(available) > 8 else "")
        return DaqmxError(
            Code.PHYSICAL_CHAN_DOES_NOT_EXIST,
            f"Physical Channel Name: {name}\n\nValid Physical Channels: {listing or '(none)'}\n\n"
            f"Device: {device.name}",
        )

    def terminal(self, text: str, relative_to: SimDevice) -> Terminal:
        """Resolve a terminal name (``/Dev1/ai/StartTrigger``, or relative ``ai/StartTrigger``).

        Args:
            text: The terminal as given to DAQmx (leading ``/`` optional for relative names).
            relative_to: The task's timing device, for names without a device.

        Raises:
            DaqmxError: -89120 if the terminal does not exist (a misspelt name, or a module
                terminal where the chassis has it).
        """
        raw = text.strip()
        parts = [p for p in raw.split("/") if p]
        device = relative_to
        if parts and parts[0].lower() in self._devices and (raw.startswith("/") or len(parts) > 2):
            device = self._devices[parts[0].lower()]
            parts = parts[1:]
        canonical = "/" + "/".join([device.name, *parts])
        for name in device.terminals():
            if name.lower() == canonical.lower():
                return self._describe_terminal(device, name)
        suggestion = ""
        if device.is_module:
            suggestion = (
                f"\n\nC Series modules have no terminals of their own: use the chassis "
                f"terminal /{device.timing_device.name}/{'/'.join(parts)}"
            )
        raise DaqmxError(
            Code.INVALID_ROUTING_SOURCE_TERMINAL_NAME_ROUTING,
            f"Source Terminal: {raw}{suggestion}\n\nValid terminals on {device.name}: "
            + ", ".join(device.terminals()[:12]),
        )

    @staticmethod
    def _describe_terminal(device: SimDevice, name: str) -> Terminal:
        tail = name.split("/")[2:]
        if len(tail) == 2:
            return Terminal(device, tail[0], tail[1], name)
        if tail[0].startswith("PFI"):
            return Terminal(device, None, "PFI", name)
        return Terminal(device, None, "Timebase", name)


def coerce_rate(
    requested_hz: float, timebase_hz: float, min_hz: float, max_hz: float, what: str
) -> tuple[float, int]:
    """The rate (S/s) a sample clock derived from ``timebase_hz`` runs at, and its divisor.

    ``coerced = timebase / round(timebase / requested)``; the divisor grows by one where
    rounding would exceed ``max_hz``.

    Raises:
        DaqmxError: -200077 (invalid property value) when ``requested_hz`` is outside
            ``[min_hz, max_hz]``, naming the property, the value and the limit.
    """
    if not (math.isfinite(requested_hz) and requested_hz > 0):
        raise DaqmxError(
            Code.INVALID_ATTRIBUTE_VALUE,
            f"Property: DAQmx_SampClk_Rate\nRequested Value: {requested_hz:g}\n\n{what}",
        )
    if requested_hz > max_hz * (1.0 + 1e-12):
        raise DaqmxError(
            Code.INVALID_ATTRIBUTE_VALUE,
            f"Property: DAQmx_SampClk_Rate\nRequested Value: {requested_hz:g}\n"
            f"Maximum Value: {max_hz:g}\nMinimum Value: {min_hz:g}\n\n{what}",
        )
    if requested_hz < min_hz * (1.0 - 1e-12):
        raise DaqmxError(
            Code.INVALID_ATTRIBUTE_VALUE,
            f"Property: DAQmx_SampClk_Rate\nRequested Value: {requested_hz:g}\n"
            f"Maximum Value: {max_hz:g}\nMinimum Value: {min_hz:g}\n\n{what}",
        )
    divisor = max(1, round(timebase_hz / requested_hz))
    while timebase_hz / divisor > max_hz * (1.0 + 1e-12):
        divisor += 1
    return timebase_hz / divisor, divisor
