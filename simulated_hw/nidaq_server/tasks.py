"""The state of one simulated DAQmx task: channels, timing, trigger, buffers, run status.

Plain data with a few derived properties; all behaviour (verification, reservation, runs,
reads and writes) lives in :mod:`simulated_hw.nidaq_server.daq`, under its lock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
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
    VoltageUnits,
    WriteRelativeTo,
)
from nidaqmx.utils import unflatten_channel_string  # type: ignore[import-untyped, unused-ignore]

from simulated_hw.nidaq_server.buffers import InputBuffer, OutputBuffer
from simulated_hw.nidaq_server.devices import Kind, PhysicalChannel, SimDevice
from simulated_hw.nidaq_server.errors import Code, DaqmxError


class TaskState(enum.IntEnum):
    """DAQmx task states, in order."""

    UNVERIFIED = 0
    VERIFIED = 1
    RESERVED = 2
    COMMITTED = 3
    RUNNING = 4


@dataclass
class VirtualChannel:
    """A virtual channel of a task (voltage AO or AI).

    Attributes:
        name: Virtual channel name.
        physical: The physical channel it uses.
        min_v: Channel minimum (V); AO writes below it are refused (-200561).
        max_v: Channel maximum (V).
        units: ``VoltageUnits`` value.
        term_cfg: AI terminal configuration (``TerminalConfiguration`` value, resolved).
        description: User description.
        extra: Other settable channel properties, by attribute id.
    """

    name: str
    physical: PhysicalChannel
    min_v: float
    max_v: float
    units: int = VoltageUnits.VOLTS.value
    term_cfg: int = 0
    description: str = ""
    extra: dict[int, Any] = field(default_factory=dict)

    @property
    def device(self) -> SimDevice:
        """The device (module) of the physical channel."""
        return self.physical.device

    def hw_range(self) -> tuple[float, float]:
        """The device range DAQmx selects: the smallest one holding ``[min_v, max_v]`` (V).

        Raises:
            DaqmxError: -200077 if no range of the device holds it.
        """
        spec = self.device.ao if self.physical.kind == "ao" else self.device.ai
        ranges = spec.ranges_v if spec is not None else []
        for low, high in ranges:
            if low <= self.min_v + 1e-12 and self.max_v - 1e-12 <= high:
                return (low, high)
        prop = "DAQmx_AO_Max" if self.physical.kind == "ao" else "DAQmx_AI_Max"
        limits = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in ranges)
        raise DaqmxError(
            Code.INVALID_ATTRIBUTE_VALUE,
            f"Property: {prop}\nRequested Value: [{self.min_v:g}, {self.max_v:g}] V\n"
            f"Ranges supported by {self.device.name}: {limits} V\n\nChannel Name: {self.name}",
        )


@dataclass
class Timing:
    """Timing configuration as the user set it (rates are coerced at verification)."""

    timing_type: int = SampleTimingType.ON_DEMAND.value
    rate_hz: float = 1000.0
    source: str = ""
    active_edge: int = Edge.RISING.value
    sample_mode: int = AcquisitionType.FINITE.value
    samps_per_chan: int = 1000
    engine_index: int | None = None
    underflow: int = UnderflowBehavior.HALT_OUTPUT_AND_ERROR.value
    extra: dict[int, Any] = field(default_factory=dict)

    @property
    def hw_timed(self) -> bool:
        """Whether the task uses a sample clock."""
        return self.timing_type == SampleTimingType.SAMPLE_CLOCK.value

    @property
    def finite(self) -> bool:
        """Whether the task generates/acquires exactly ``samps_per_chan`` samples."""
        return self.sample_mode == AcquisitionType.FINITE.value


@dataclass
class StartTrigger:
    """Start-trigger configuration."""

    trig_type: int = TriggerType.NONE.value
    source: str = ""
    edge: int = Edge.RISING.value
    retriggerable: bool = False
    extra: dict[int, Any] = field(default_factory=dict)


@dataclass
class ReadSettings:
    """DAQmx Read properties of an AI task."""

    auto_start: bool = True
    read_all_avail_samp: bool = False
    overwrite: int = OverwriteMode.DO_NOT_OVERWRITE_UNREAD_SAMPLES.value
    relative_to: int = ReadRelativeTo.CURRENT_READ_POSITION.value
    offset: int = 0
    channels_to_read: list[str] | None = None
    extra: dict[int, Any] = field(default_factory=dict)


@dataclass
class WriteSettings:
    """DAQmx Write properties of an AO task."""

    regen_mode: int = RegenerationMode.ALLOW_REGENERATION.value
    relative_to: int = WriteRelativeTo.CURRENT_WRITE_POSITION.value
    offset: int = 0
    extra: dict[int, Any] = field(default_factory=dict)


@dataclass(eq=False)
class SimTask:
    """One DAQmx task on the simulated server.

    Attributes:
        name: Task (and gRPC session) name.
        kind: ``"ao"`` or ``"ai"`` once it has channels (one I/O type per task).
        channels: Virtual channels in creation order.
        state: DAQmx state; ``pre_start_state`` is what Stop returns to.
        coerced_rate_hz: Sample-clock rate after verification (S/s).
        divisor: Timebase divisor of the coerced rate.
        engine: Timing engine name once reserved (``"ai"``, ``"te0"``, ``"ao"``).
        out: AO buffer; ``out_buf_size`` the configured size (None: from the first write).
        inp: AI buffer; ``in_buf_size`` the configured size (None: DAQmx default).
        armed: Started, waiting for a start trigger or an external clock.
        done: Finite operation complete (or on-demand task running).
        error: Error that stopped the operation (reported by IsTaskDone, Wait, Read, Write).
        implicit: Started implicitly by Read/Write (stopped again when it is finished).
        generated: AO samples per channel generated since start.
        overloaded: AI channels that clipped at their range since start (virtual names).
    """

    name: str
    kind: Kind | None = None
    channels: list[VirtualChannel] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    trigger: StartTrigger = field(default_factory=StartTrigger)
    read: ReadSettings = field(default_factory=ReadSettings)
    write: WriteSettings = field(default_factory=WriteSettings)
    state: TaskState = TaskState.UNVERIFIED
    pre_start_state: TaskState = TaskState.UNVERIFIED
    coerced_rate_hz: float | None = None
    divisor: int | None = None
    engine: str | None = None
    out: OutputBuffer | None = None
    out_buf_size: int | None = None
    inp: InputBuffer | None = None
    in_buf_size: int | None = None
    armed: bool = False
    done: bool = False
    error: DaqmxError | None = None
    implicit: bool = False
    generated: int = 0
    overloaded: set[str] = field(default_factory=set)
    stop_requested: bool = False
    cleared: bool = False
    run: Any = None
    counter: Any = None
    """The counter-output channel of a CO task (a :class:`~simulated_hw.nidaq_server.counters.
    CounterOutput`; None for AO/AI tasks)."""

    @property
    def running(self) -> bool:
        """Whether the task is started (possibly armed, or finished but not stopped)."""
        return self.state == TaskState.RUNNING

    @property
    def timing_device(self) -> SimDevice:
        """The timing device of the task's channels (chassis for C Series modules).

        Raises:
            DaqmxError: -200478 when the task has no channels.
        """
        if self.counter is not None:
            return self.counter.device.timing_device
        if not self.channels:
            raise DaqmxError(Code.CAN_NOT_PERFORM_OP_WHEN_NO_CHANS_IN_TASK, task_name=self.name)
        return self.channels[0].device.timing_device

    def devices(self) -> list[SimDevice]:
        """Devices of the channels in order, then their timing devices (chassis) if different."""
        seen: list[SimDevice] = []
        for channel in self.channels:
            if channel.device not in seen:
                seen.append(channel.device)
        for channel in self.channels:
            timing = channel.device.timing_device
            if timing not in seen:
                seen.append(timing)
        return seen

    def channel_names(self) -> list[str]:
        """Virtual channel names in order."""
        return [c.name for c in self.channels]

    def find_channels(self, spec: str) -> list[VirtualChannel]:
        """Channels named by a (flattened) list of virtual or physical names; '' = all.

        Raises:
            DaqmxError: -200170 naming a channel that is not in the task.
        """
        if not spec.strip():
            return list(self.channels)
        found: list[VirtualChannel] = []
        for name in unflatten_channel_string(spec):
            key = name.strip().lower()
            match = next(
                (c for c in self.channels if key in (c.name.lower(), c.physical.key)), None
            )
            if match is None:
                raise DaqmxError(
                    Code.PHYSICAL_CHAN_DOES_NOT_EXIST,
                    f"Channel Name: {name}\n\nChannels in the task: "
                    + ", ".join(self.channel_names()),
                    task_name=self.name,
                )
            found.append(match)
        return found

    def samples_per_chan_target(self) -> int | None:
        """Samples per channel of a finite hardware-timed operation (None: continuous)."""
        return self.timing.samps_per_chan if self.timing.finite else None

    def default_input_buffer(self) -> int:
        """DAQmx's default AI buffer size (samples per channel) for the configured timing."""
        if self.in_buf_size is not None:
            return self.in_buf_size
        if self.timing.finite:
            return max(1, self.timing.samps_per_chan)
        rate = self.coerced_rate_hz or self.timing.rate_hz
        if rate <= 100:
            default = 1_000
        elif rate <= 10_000:
            default = 10_000
        elif rate <= 1_000_000:
            default = 100_000
        else:
            default = 1_000_000
        return max(default, self.timing.samps_per_chan)
