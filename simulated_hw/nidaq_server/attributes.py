"""DAQmx attribute (property) registry: ids, value types, getters and setters.

Every Get/Set/Reset*Attribute* RPC of the servicer looks its attribute id up here, in the table
of its group (task, channel, timing, trigger, read, write, buffer, device, physical channel,
system). An id that is not in the table is DAQmx error -200197 (the message names it in hex);
an id that is known but does not apply to the task, channel or device is -200452, as DAQmx
reports for a property a device does not support.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simulated_hw.nidaq_server.errors import Code, DaqmxError

if TYPE_CHECKING:
    from simulated_hw.nidaq_server.daq import SimDaq
    from simulated_hw.nidaq_server.devices import PhysicalChannel, SimDevice
    from simulated_hw.nidaq_server.tasks import SimTask, VirtualChannel


class Group(enum.Enum):
    """Attribute groups, named as in the RPCs (``Get<Group>Attribute<Type>``)."""

    TASK = "Task"
    CHAN = "Chan"
    TIMING = "Timing"
    TRIG = "Trig"
    READ = "Read"
    WRITE = "Write"
    BUFFER = "Buffer"
    DEVICE = "Device"
    PHYSICAL = "PhysicalChan"
    SYSTEM = "SystemInfo"


VALUE_TYPES = (
    "Bool",
    "Double",
    "DoubleArray",
    "Int32",
    "Int32Array",
    "String",
    "UInt32",
    "UInt32Array",
    "UInt64",
)
"""Value types as they appear in the RPC names."""


@dataclass
class Ctx:
    """What an attribute call is about (the fields its group needs are set).

    Attributes:
        daq: The simulated driver.
        task: The task (task-level groups and channels).
        channels: The channels addressed (channel group).
        device: The device (device group).
        physical: The physical channel (physical-channel group).
    """

    daq: SimDaq
    task: SimTask | None = None
    channels: list[VirtualChannel] | None = None
    device: SimDevice | None = None
    physical: PhysicalChannel | None = None

    @property
    def t(self) -> SimTask:
        """The task (asserted present)."""
        assert self.task is not None
        return self.task

    @property
    def ch(self) -> VirtualChannel:
        """The first addressed channel (DAQmx returns one value for a channel list)."""
        assert self.channels
        return self.channels[0]

    @property
    def dev(self) -> SimDevice:
        """The device (asserted present)."""
        assert self.device is not None
        return self.device

    @property
    def phys(self) -> PhysicalChannel:
        """The physical channel (asserted present)."""
        assert self.physical is not None
        return self.physical


Getter = Callable[[Ctx], Any]
Setter = Callable[[Ctx, Any], None]
_NO_DEFAULT = object()


@dataclass(frozen=True)
class Attr:
    """One DAQmx attribute.

    Attributes:
        id: DAQmx attribute id (``attribute_raw`` in the requests).
        name: DAQmx property name without the ``DAQmx_`` prefix (for messages).
        type: Value type (one of :data:`VALUE_TYPES`).
        get: Returns the value (may raise :class:`DaqmxError`).
        set: Applies a value (None: read-only).
        default: Value a Reset applies (through ``set``).
        running_ok: May be set while the task runs (else -200557 then).
    """

    id: int
    name: str
    type: str
    get: Getter
    set: Setter | None = None
    default: Any = _NO_DEFAULT
    running_ok: bool = False

    def has_default(self) -> bool:
        """Whether Reset is supported."""
        return self.default is not _NO_DEFAULT


def unsupported(what: str) -> DaqmxError:
    """-200452: the property does not apply to this device/task."""
    return DaqmxError(Code.ATTRIBUTE_NOT_SUPPORTED_IN_TASK_CONTEXT, what)


def invalid_value(name: str, value: object, allowed: str) -> DaqmxError:
    """-200077: the value is not one this (simulated) property accepts."""
    return DaqmxError(
        Code.INVALID_ATTRIBUTE_VALUE,
        f"Property: DAQmx_{name}\nRequested Value: {value!r}\nSupported: {allowed}",
    )


class Registry:
    """Attribute tables of every group."""

    def __init__(self) -> None:
        self._tables: dict[Group, dict[int, Attr]] = {g: {} for g in Group}

    def add(self, group: Group, *attrs: Attr) -> None:
        """Register attributes of ``group``."""
        for attr in attrs:
            if attr.type not in VALUE_TYPES:
                raise ValueError(f"attribute {attr.name}: unknown type {attr.type}")
            self._tables[group][attr.id] = attr

    def lookup(self, group: Group, attr_id: int, value_type: str | None) -> Attr:
        """The attribute ``attr_id`` of ``group`` (of ``value_type``, if given).

        Raises:
            DaqmxError: -200197 naming the id in hex when the server does not know it.
        """
        attr = self._tables[group].get(attr_id)
        if attr is None or (value_type is not None and attr.type != value_type):
            kind = f"{group.value} attribute" + (f" of type {value_type}" if value_type else "")
            raise DaqmxError(
                Code.ATTR_NOT_SUPPORTED,
                f"Property ID: 0x{attr_id:X} ({kind}) is not supported by the simulated "
                "NI-DAQmx server.",
            )
        return attr

    def ids(self, group: Group) -> list[int]:
        """Known attribute ids of ``group``."""
        return sorted(self._tables[group])


def build_registry() -> Registry:
    """Every attribute this server implements."""
    from simulated_hw.nidaq_server import attr_channel, attr_device, attr_task

    registry = Registry()
    attr_task.register(registry)
    attr_channel.register(registry)
    attr_device.register(registry)
    return registry
