"""The simulated NI-DAQmx driver behind the gRPC servicer: tasks, resources, runs, I/O.

:class:`SimDaq` does what the DAQmx C API does for the calls the servicer exposes, against the
devices of :mod:`~simulated_hw.nidaq_server.devices` and one shared
:class:`~simulated_hw.bench.SimBench`. Every public method takes the one lock; methods that wait
(read, write, wait-until-done, stop) wait on its condition, which hardware-timed runs
(:mod:`~simulated_hw.nidaq_server.runner`) notify after every chunk.

Synchronisation: a task whose start trigger is another engine's ``StartTrigger`` terminal, or
whose sample clock is another engine's ``SampleClock``, is *armed* by StartTask; starting the
task that owns that engine (e.g. the AI task holding ``/cDAQ1/ai``) starts them all in one run
on one clock. A task waiting for a PFI line, or for a trigger that already happened, waits
forever (reads then time out with -200284).
"""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np
from nidaqmx.constants import (  # type: ignore[import-untyped, unused-ignore]
    AcquisitionType,
    Edge,
    FillMode,
    OverwriteMode,
    ReadRelativeTo,
    RegenerationMode,
    SampleTimingType,
    TaskMode,
    TerminalConfiguration,
    TriggerType,
    VoltageUnits,
)
from nidaqmx.utils import unflatten_channel_string  # type: ignore[import-untyped, unused-ignore]

from simulated_hw.bench import SimBench
from simulated_hw.nidaq_server.buffers import FloatArray, InputBuffer, OutputBuffer
from simulated_hw.nidaq_server.config import SimDaqConfig
from simulated_hw.nidaq_server.counters import CounterListener, make_counter_output
from simulated_hw.nidaq_server.devices import (
    ONBOARD_CLOCK,
    DeviceCatalog,
    Kind,
    PhysicalChannel,
    SimDevice,
    Terminal,
    coerce_rate,
)
from simulated_hw.nidaq_server.errors import Code, DaqmxError
from simulated_hw.nidaq_server.resources import Claim, ReservationTable
from simulated_hw.nidaq_server.runner import Participant, Run
from simulated_hw.nidaq_server.tasks import SimTask, TaskState, VirtualChannel

logger = logging.getLogger(__name__)

WAIT_INFINITELY = -1.0
_POLL_S = 0.1


class SimDaq:
    """Simulated NI-DAQmx: devices from ``config``, electrodes and amplifier on ``bench``.

    Args:
        config: The validated server configuration.
        bench: The bench the wired channels drive and read.

    Raises:
        ValueError: If the wiring names more electrodes than the bench has.
    """

    def __init__(self, config: SimDaqConfig, bench: SimBench) -> None:
        self.config = config
        self.bench = bench
        self.catalog = DeviceCatalog(config)
        self.cond = threading.Condition(threading.RLock())
        self._tasks: dict[str, SimTask] = {}
        self._unnamed = 0
        self._reservations = ReservationTable()
        self._runs: list[Run] = []
        self._armed: list[SimTask] = []
        self._rng = np.random.default_rng(config.noise_seed)
        self.electrode_of, self.output_channel = self._wiring()
        self.counter_listeners: list[CounterListener] = []
        """Called (under :attr:`cond`) when a counter output starts or stops generating."""

    # -- wiring ---------------------------------------------------------------------------

    def _wiring(self) -> tuple[dict[str, int], str | None]:
        n = self.bench.n_electrodes
        electrodes = self.config.wiring.electrodes
        if electrodes is None:
            first = next((d for d in self.catalog if d.ao is not None), None)
            names = first.physical_names("ao")[:n] if first is not None else []
            electrodes = list(names)
        if len(electrodes) > n:
            raise ValueError(
                f"wiring.electrodes lists {len(electrodes)} channels but the bench has "
                f"{n} electrodes"
            )
        mapping: dict[str, int] = {}
        for index, name in enumerate(electrodes):
            if name is not None:
                (channel,) = self.catalog.physical_channels(name, "ao")
                mapping[channel.key] = index
        output = self.config.wiring.output
        if output is None:
            first_ai = next((d for d in self.catalog if d.ai is not None), None)
            output = first_ai.physical_names("ai")[0] if first_ai is not None else None
        output_key = None
        if output is not None:
            (channel,) = self.catalog.physical_channels(output, "ai")
            output_key = channel.key
        return mapping, output_key

    def wiring_description(self) -> dict[str, object]:
        """Electrode index per AO channel name, and the AI channel reading the amplifier."""
        return {"electrodes": dict(self.electrode_of), "output": self.output_channel}

    # -- tasks ----------------------------------------------------------------------------

    def create_task(self, name: str, attach: bool | None) -> tuple[SimTask, bool]:
        """Create (or, for gRPC sessions, attach to) a task.

        Args:
            name: Task name ('' for DAQmx's ``_unnamedTask<N>``).
            attach: True: attach only; False: create only; None: attach if it exists.

        Returns:
            The task and whether it was created.
        """
        with self.cond:
            key = name.strip().lower()
            if key and key in self._tasks:
                if attach is False:
                    raise DaqmxError(Code.DUPLICATE_TASK, f"Task Name: {name}")
                return self._tasks[key], False
            if attach is True:
                raise DaqmxError(Code.INVALID_TASK, f"No session named {name!r} to attach to.")
            if not key:
                while True:
                    name = f"_unnamedTask<{self._unnamed}>"
                    self._unnamed += 1
                    if name.lower() not in self._tasks:
                        break
            task = SimTask(name=name.strip())
            self._tasks[task.name.lower()] = task
            logger.debug("created task %s", task.name)
            return task, True

    def task(self, name: str) -> SimTask:
        """The task (gRPC session) called ``name``.

        Raises:
            DaqmxError: -200088 if there is none (never created, or cleared).
        """
        with self.cond:
            task = self._tasks.get(name.strip().lower())
            if task is None:
                raise DaqmxError(
                    Code.INVALID_TASK,
                    f"Task Name: {name!r} does not exist (cleared or never created).",
                )
            return task

    def tasks(self) -> list[SimTask]:
        """Every live task."""
        with self.cond:
            return list(self._tasks.values())

    def _check(self, task: SimTask) -> None:
        if task.cleared:
            raise DaqmxError(Code.INVALID_TASK, "The task was cleared.", task_name=task.name)

    def clear_task(self, task: SimTask) -> None:
        """Abort the task and free everything it holds; later calls on it give -200088."""
        with self.cond:
            self._check(task)
            self._stop(task)
            self._reservations.release(task.name)
            self._tasks.pop(task.name.lower(), None)
            task.cleared = True
            task.out = None
            task.inp = None
            self.cond.notify_all()

    # -- configuration -------------------------------------------------------------------

    def modify(self, task: SimTask) -> None:
        """A property changes: refuse while running, else back to unverified (releasing)."""
        self._check(task)
        if task.running:
            raise DaqmxError(Code.CANNOT_SET_PROPERTY_WHEN_TASK_RUNNING, task_name=task.name)
        if task.state >= TaskState.RESERVED:
            self._reservations.release(task.name)
        task.state = TaskState.UNVERIFIED
        task.coerced_rate_hz = None
        task.divisor = None
        task.engine = None

    def add_channels(
        self,
        task: SimTask,
        kind: Kind,
        physical: str,
        name: str,
        min_v: float,
        max_v: float,
        units: int,
        term_cfg: int,
        custom_scale: str,
    ) -> list[VirtualChannel]:
        """DAQmxCreateAOVoltageChan / DAQmxCreateAIVoltageChan."""
        with self.cond:
            self._check(task)
            if task.running:
                raise DaqmxError(Code.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, task_name=task.name)
            try:
                physicals = self.catalog.physical_channels(physical, kind)
            except DaqmxError as exc:
                raise exc.for_task(task.name) from None
            if task.counter is not None or (task.kind is not None and task.kind != kind):
                raise DaqmxError(
                    Code.MULTI_CHAN_TYPES_IN_TASK,
                    f"The task has {(task.kind or 'CO').upper()} channels; {kind.upper()} channels "
                    "need a task of their own.",
                    task_name=task.name,
                )
            if not (math.isfinite(min_v) and math.isfinite(max_v)) or not min_v < max_v:
                raise DaqmxError(
                    Code.MIN_NOT_LESS_THAN_MAX,
                    f"Minimum: {min_v:g}\nMaximum: {max_v:g}",
                    task_name=task.name,
                )
            if units != VoltageUnits.VOLTS.value or custom_scale:
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    "Property: DAQmx_AO_VoltageUnits / DAQmx_AI_VoltageUnits\nOnly volts "
                    "(VoltageUnits.VOLTS, no custom scale) are simulated.",
                    task_name=task.name,
                )
            names = self._virtual_names(name, physicals)
            existing = {c.name.lower() for c in task.channels}
            used = {c.physical.key for c in task.channels}
            created = []
            for virtual, channel in zip(names, physicals, strict=True):
                if virtual.lower() in existing or channel.key in used:
                    raise DaqmxError(
                        Code.CHAN_ALREADY_IN_TASK, f"Channel: {virtual}", task_name=task.name
                    )
                existing.add(virtual.lower())
                used.add(channel.key)
                resolved = 0
                if kind == "ai":
                    resolved = self._term_cfg(task, channel.device, term_cfg)
                created.append(
                    VirtualChannel(virtual, channel, float(min_v), float(max_v), units, resolved)
                )
            self.modify(task)
            task.kind = kind
            task.channels.extend(created)
            task.out = None
            task.inp = None
            return created

    @staticmethod
    def _term_cfg(task: SimTask, device: SimDevice, term_cfg: int) -> int:
        if term_cfg == TerminalConfiguration.DEFAULT.value:
            return device.default_terminal_config()
        if term_cfg not in device.supported_terminal_configs():
            supported = [TerminalConfiguration(v).name for v in device.supported_terminal_configs()]
            raise DaqmxError(
                Code.INVALID_ATTRIBUTE_VALUE,
                f"Property: DAQmx_AI_TermCfg\nRequested Value: {term_cfg}\n"
                f"Supported by {device.product_type}: {', '.join(supported)}",
                task_name=task.name,
            )
        return term_cfg

    @staticmethod
    def _virtual_names(name: str, physicals: list[PhysicalChannel]) -> list[str]:
        if not name.strip():
            return [p.name for p in physicals]
        given = unflatten_channel_string(name)
        if len(given) == 1 and len(physicals) > 1:
            return [f"{given[0]}{i}" for i in range(len(physicals))]
        given = given[: len(physicals)]
        return given + [p.name for p in physicals[len(given) :]]

    def add_co_pulse_chan_freq(
        self,
        task: SimTask,
        counter: str,
        name: str,
        units: int,
        idle_state: int,
        initial_delay_s: float,
        freq_hz: float,
        duty_cycle: float,
    ) -> None:
        """DAQmxCreateCOPulseChanFreq (one counter per task in this simulation)."""
        with self.cond:
            self._check(task)
            if task.running:
                raise DaqmxError(Code.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, task_name=task.name)
            if task.kind is not None or task.counter is not None:
                raise DaqmxError(
                    Code.MULTI_CHAN_TYPES_IN_TASK,
                    "The task already has channels; a counter output needs a task of its own "
                    "(the simulation holds one counter per task).",
                    task_name=task.name,
                )
            try:
                output = make_counter_output(
                    self.catalog,
                    counter,
                    name,
                    units,
                    idle_state,
                    initial_delay_s,
                    freq_hz,
                    duty_cycle,
                )
            except DaqmxError as exc:
                raise exc.for_task(task.name) from None
            busy = [
                t.name
                for t in self._tasks.values()
                if t is not task and t.counter is not None and t.counter.key == output.key
            ]
            self.modify(task)
            task.counter = output
            if busy:
                logger.debug("counter %s is also in task(s) %s", output.key, busy)

    def cfg_implicit_timing(self, task: SimTask, sample_mode: int, samps_per_chan: int) -> None:
        """DAQmxCfgImplicitTiming: a counter output runs at its own pulse rate."""
        with self.cond:
            self.modify(task)
            if task.counter is None:
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    "Property: DAQmx_SampTimingType\nRequested Value: Implicit\n\nImplicit "
                    "timing is simulated for counter-output tasks only.",
                    task_name=task.name,
                )
            if sample_mode not in (AcquisitionType.FINITE.value, AcquisitionType.CONTINUOUS.value):
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    f"Property: DAQmx_SampQuant_SampMode\nRequested Value: {sample_mode}",
                    task_name=task.name,
                )
            if sample_mode == AcquisitionType.FINITE.value and samps_per_chan < 1:
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    f"Property: DAQmx_SampQuant_SampPerChan\nRequested Value: {samps_per_chan}",
                    task_name=task.name,
                )
            task.timing.timing_type = SampleTimingType.IMPLICIT.value
            task.timing.sample_mode = sample_mode
            task.timing.samps_per_chan = int(samps_per_chan)

    def _co_begin(self, task: SimTask) -> None:
        """A counter output starts generating now (simulated time): tell the listeners."""
        counter = task.counter
        assert counter is not None
        counter.first_edge_s = self.bench.timebase.now_s + counter.initial_delay_s
        task.done = False
        logger.debug(
            "counter %s: %.9g Hz from t = %.6f s",
            counter.physical_name,
            counter.actual_freq_hz,
            counter.first_edge_s,
        )
        for listener in list(self.counter_listeners):
            listener(counter.key, counter.actual_freq_hz, counter.first_edge_s)

    def _co_end(self, task: SimTask) -> None:
        counter = task.counter
        if counter is None or counter.first_edge_s is None:
            return
        counter.first_edge_s = None
        for listener in list(self.counter_listeners):
            listener(counter.key, None, 0.0)

    def _co_refresh(self, task: SimTask) -> None:
        """A finite pulse train is done once its pulses are out (in simulated time)."""
        counter = task.counter
        if counter is None or counter.first_edge_s is None or not task.timing.finite:
            return
        end_s = counter.first_edge_s + task.timing.samps_per_chan / counter.actual_freq_hz
        if self.bench.timebase.now_s >= end_s - 1e-12:
            task.done = True

    def cfg_samp_clk_timing(
        self,
        task: SimTask,
        rate_hz: float,
        source: str,
        active_edge: int,
        sample_mode: int,
        samps_per_chan: int,
    ) -> None:
        """DAQmxCfgSampClkTiming (the rate is coerced at verification)."""
        with self.cond:
            self.modify(task)
            if sample_mode not in (AcquisitionType.FINITE.value, AcquisitionType.CONTINUOUS.value):
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    f"Property: DAQmx_SampQuant_SampMode\nRequested Value: {sample_mode}\n"
                    "Simulated: FINITE and CONTINUOUS.",
                    task_name=task.name,
                )
            if active_edge not in (Edge.RISING.value, Edge.FALLING.value):
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    f"Property: DAQmx_SampClk_ActiveEdge\nRequested Value: {active_edge}",
                    task_name=task.name,
                )
            timing = task.timing
            timing.timing_type = SampleTimingType.SAMPLE_CLOCK.value
            timing.rate_hz = float(rate_hz)
            timing.source = source
            timing.active_edge = active_edge
            timing.sample_mode = sample_mode
            timing.samps_per_chan = int(samps_per_chan)

    def cfg_dig_edge_start_trig(self, task: SimTask, source: str, edge: int) -> None:
        """DAQmxCfgDigEdgeStartTrig (the terminal is resolved at verification)."""
        with self.cond:
            self.modify(task)
            if edge not in (Edge.RISING.value, Edge.FALLING.value):
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    f"Property: DAQmx_DigEdge_StartTrig_Edge\nRequested Value: {edge}",
                    task_name=task.name,
                )
            task.trigger.trig_type = TriggerType.DIGITAL_EDGE.value
            task.trigger.source = source
            task.trigger.edge = edge

    def disable_start_trig(self, task: SimTask) -> None:
        """DAQmxDisableStartTrig."""
        with self.cond:
            self.modify(task)
            task.trigger.trig_type = TriggerType.NONE.value

    def cfg_buffer(self, task: SimTask, kind: Kind, samps_per_chan: int) -> None:
        """DAQmxCfgOutputBuffer / DAQmxCfgInputBuffer."""
        with self.cond:
            self.modify(task)
            if samps_per_chan < 0:
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    f"Buffer size: {samps_per_chan}",
                    task_name=task.name,
                )
            if kind == "ao":
                task.out_buf_size = int(samps_per_chan)
                task.out = None
            else:
                task.in_buf_size = int(samps_per_chan) if samps_per_chan > 0 else None

    # -- terminals ------------------------------------------------------------------------

    def default_engine(self, task: SimTask) -> str:
        """The engine the task has (reserved) or would get (first one, as DAQmx reports)."""
        if task.engine is not None:
            return task.engine
        if task.kind == "ao":
            return "ao"
        return task.timing_device.ai_engines[0]

    def clock_terminal(self, task: SimTask) -> Terminal | None:
        """The task's sample-clock source terminal (None: onboard clock)."""
        source = task.timing.source.strip()
        if not source or source.lower() == ONBOARD_CLOCK.lower():
            return None
        return self._routable(task, source)

    def trigger_terminal(self, task: SimTask) -> Terminal | None:
        """The task's start-trigger source terminal (None: software start)."""
        if task.trigger.trig_type != TriggerType.DIGITAL_EDGE.value:
            return None
        return self._routable(task, task.trigger.source)

    def _routable(self, task: SimTask, source: str) -> Terminal:
        timing_device = task.timing_device
        try:
            terminal = self.catalog.terminal(source, timing_device)
        except DaqmxError as exc:
            raise exc.for_task(task.name) from None
        if terminal.device is not timing_device:
            raise DaqmxError(
                Code.TRIG_LINE_NOT_FOUND_ROUTING,
                f"Source Device: {terminal.device.name}\nSource Terminal: {terminal.name}\n"
                f"Destination Device: {timing_device.name}\n\nThe simulated devices share no "
                "trigger bus.",
                task_name=task.name,
            )
        return terminal

    # -- state transitions ----------------------------------------------------------------

    def max_rate_hz(self, task: SimTask) -> float:
        """Maximum sample-clock rate (S/s) of the task's channels."""
        kind = task.kind or "ai"
        counts: dict[SimDevice, int] = {}
        for channel in task.channels:
            counts[channel.device] = counts.get(channel.device, 0) + 1
        if not counts:
            raise DaqmxError(Code.CAN_NOT_PERFORM_OP_WHEN_NO_CHANS_IN_TASK, task_name=task.name)
        return min(device.max_rate_hz(kind, n) for device, n in counts.items())

    def min_rate_hz(self, task: SimTask) -> float:
        """Minimum sample-clock rate (S/s) of the task's channels."""
        kind = task.kind or "ai"
        return max((c.device.min_rate_hz(kind) for c in task.channels), default=0.0)

    def timebase_hz(self, task: SimTask) -> float:
        """The sample-clock timebase (Hz) of the task."""
        return task.channels[0].device.timebase_hz if task.channels else 0.0

    def verify(self, task: SimTask) -> None:
        """DAQmx verification: ranges, rates (coerced here), terminals."""
        with self.cond:
            self._check(task)
            if task.state >= TaskState.VERIFIED:
                return
            if task.counter is not None:
                if task.timing.timing_type not in (
                    SampleTimingType.IMPLICIT.value,
                    SampleTimingType.ON_DEMAND.value,
                ):
                    raise DaqmxError(
                        Code.INVALID_ATTRIBUTE_VALUE,
                        "Property: DAQmx_SampTimingType\n\nA counter output uses implicit "
                        "timing (task.timing.cfg_implicit_timing).",
                        task_name=task.name,
                    )
                self.trigger_terminal(task)
                task.state = TaskState.VERIFIED
                return
            if not task.channels:
                raise DaqmxError(Code.CAN_NOT_PERFORM_OP_WHEN_NO_CHANS_IN_TASK, task_name=task.name)
            for channel in task.channels:
                try:
                    channel.hw_range()
                except DaqmxError as exc:
                    raise exc.for_task(task.name) from None
            timing_device = task.timing_device
            stray = [c.name for c in task.channels if c.device.timing_device is not timing_device]
            if stray:
                raise DaqmxError(
                    Code.TRIG_LINE_NOT_FOUND_ROUTING,
                    f"Channels {', '.join(stray)} are on another device than "
                    f"{timing_device.name}: one task cannot span unsynchronised devices.",
                    task_name=task.name,
                )
            if task.timing.hw_timed:
                self._verify_timing(task)
            self.trigger_terminal(task)
            task.state = TaskState.VERIFIED

    def _verify_timing(self, task: SimTask) -> None:
        timing = task.timing
        kind = task.kind or "ai"
        max_rate = self.max_rate_hz(task)
        min_rate = self.min_rate_hz(task)
        what = (
            f"{kind.upper()} maximum with {len(task.channels)} channel(s) on "
            f"{task.channels[0].device.product_type}: {max_rate:g} S/s."
        )
        clock = self.clock_terminal(task)
        try:
            if clock is not None and clock.signal == "SampleClock":
                coerce_rate(timing.rate_hz, 1e15, min_rate, max_rate, what)
                task.coerced_rate_hz, task.divisor = timing.rate_hz, None
            elif clock is not None and clock.signal == "Timebase":
                rate = _timebase_rate(clock.name)
                coerce_rate(rate, rate, min_rate, max_rate, what)
                task.coerced_rate_hz, task.divisor = rate, 1
            elif clock is not None:
                coerce_rate(timing.rate_hz, 1e15, min_rate, max_rate, what)
                task.coerced_rate_hz, task.divisor = timing.rate_hz, None
            else:
                task.coerced_rate_hz, task.divisor = coerce_rate(
                    timing.rate_hz, self.timebase_hz(task), min_rate, max_rate, what
                )
        except DaqmxError as exc:
            raise exc.for_task(task.name) from None
        if timing.finite and timing.samps_per_chan < 1:
            raise DaqmxError(
                Code.INVALID_ATTRIBUTE_VALUE,
                f"Property: DAQmx_SampQuant_SampPerChan\nRequested Value: {timing.samps_per_chan}",
                task_name=task.name,
            )

    def reserve(self, task: SimTask) -> None:
        """DAQmx reserve: take the hardware (-50103 if another task holds it)."""
        with self.cond:
            self._check(task)
            if task.state >= TaskState.RESERVED:
                return
            self.verify(task)
            claims, engine = self._claims(task)
            self._reservations.acquire(task.name, claims)
            task.engine = engine
            task.state = TaskState.RESERVED

    def _claims(self, task: SimTask) -> tuple[list[Claim], str | None]:
        if task.counter is not None:
            counter = task.counter
            return [Claim(("ctr", counter.key), True, counter.physical_name)], None
        timing_device = task.timing_device
        hw = task.timing.hw_timed
        claims = [Claim(("chan", c.physical.key), True, c.physical.name) for c in task.channels]
        devices = list(dict.fromkeys(c.device for c in task.channels))
        td = timing_device.name.lower()
        if task.kind == "ao":
            for device in devices:
                claims.append(
                    Claim(("ao-dev", device.name.lower()), hw, f"{device.name} analog output")
                )
            if hw:
                claims.append(
                    Claim(
                        ("ao-engine", td),
                        True,
                        f"/{timing_device.name}/ao timing engine (one hardware-timed AO task "
                        "per device or chassis)",
                    )
                )
            return claims, "ao" if hw else None
        if not timing_device.is_chassis:
            claims.append(
                Claim(("ai-engine", td, "ai"), True, f"/{timing_device.name}/ai timing engine")
            )
            return claims, "ai"
        for device in devices:
            claims.append(
                Claim(
                    ("ai-dev", device.name.lower()),
                    True,
                    f"{device.name} analog input (a module's channels cannot be split across "
                    "tasks)",
                )
            )
        if not hw:
            return claims, None
        engines = list(timing_device.ai_engines)
        wanted = task.timing.engine_index
        if wanted is not None:
            if not 0 <= wanted < len(engines):
                raise DaqmxError(
                    Code.INVALID_ATTRIBUTE_VALUE,
                    f"Property: DAQmx_SampTimingEngine\nRequested Value: {wanted}\n"
                    f"Engines of {timing_device.name}: 0..{len(engines) - 1}",
                    task_name=task.name,
                )
            engines = [engines[wanted]]
        for engine in engines:
            claim = Claim(("ai-engine", td, engine), True, f"/{timing_device.name}/{engine}")
            if self._reservations.conflict(task.name, claim) is None:
                return [*claims, claim], engine
        holders = [h for e in engines for h in self._reservations.holders(("ai-engine", td, e))]
        raise DaqmxError(
            Code.PAL_RESOURCE_RESERVED,
            f"Resource: AI timing engines of {timing_device.name} "
            f"({', '.join(engines)})\nReserved by task(s): {', '.join(holders)}",
            task_name=task.name,
        )

    def commit(self, task: SimTask) -> None:
        """DAQmx commit (reserve, and program the hardware)."""
        with self.cond:
            self.reserve(task)
            if task.state < TaskState.COMMITTED:
                task.state = TaskState.COMMITTED

    def unreserve(self, task: SimTask) -> None:
        """DAQmx unreserve: release the hardware (stopping the task first)."""
        with self.cond:
            self._check(task)
            self._stop(task)
            if task.state >= TaskState.RESERVED:
                self._reservations.release(task.name)
                task.state = TaskState.VERIFIED
                task.engine = None

    def task_control(self, task: SimTask, action: int) -> None:
        """DAQmxTaskControl."""
        actions = {
            TaskMode.TASK_START.value: self.start,
            TaskMode.TASK_STOP.value: self.stop,
            TaskMode.TASK_ABORT.value: self.stop,
            TaskMode.TASK_VERIFY.value: self.verify,
            TaskMode.TASK_COMMIT.value: self.commit,
            TaskMode.TASK_RESERVE.value: self.reserve,
            TaskMode.TASK_UNRESERVE.value: self.unreserve,
        }
        handler = actions.get(action)
        if handler is None:
            raise DaqmxError(
                Code.INVALID_ATTRIBUTE_VALUE, f"Task control action: {action}", task_name=task.name
            )
        with self.cond:
            self._check(task)
            if task.running and action in (
                TaskMode.TASK_VERIFY.value,
                TaskMode.TASK_COMMIT.value,
                TaskMode.TASK_RESERVE.value,
            ):
                return
            handler(task)

    # -- start / stop ---------------------------------------------------------------------

    def start(self, task: SimTask, implicit: bool = False) -> None:
        """DAQmxStartTask: start now, or arm until the trigger/clock source starts."""
        with self.cond:
            self._check(task)
            if task.running:
                raise DaqmxError(Code.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, task_name=task.name)
            previous = task.state
            self.reserve(task)
            try:
                if task.timing.hw_timed:
                    self._check_dependency(task)
                self._prepare_buffers(task)
            except DaqmxError:
                if previous < TaskState.RESERVED:
                    self._reservations.release(task.name)
                    task.state = max(previous, TaskState.VERIFIED)
                    task.engine = None
                raise
            task.pre_start_state = max(previous, TaskState.VERIFIED)
            task.state = TaskState.RUNNING
            task.error = None
            task.done = not task.timing.hw_timed
            task.stop_requested = False
            task.generated = 0
            task.overloaded = set()
            task.implicit = implicit
            task.armed = False
            if task.counter is not None:
                task.done = False
                if self.trigger_terminal(task) is not None:
                    task.armed = True
                    self._armed.append(task)
                else:
                    self._co_begin(task)
                return
            if not task.timing.hw_timed:
                return
            self._launch_or_arm(task)

    def _prepare_buffers(self, task: SimTask) -> None:
        if not task.timing.hw_timed:
            return
        if task.kind == "ao":
            out = task.out
            if out is None or out.valid == 0 or task.out_buf_size == 0:
                raise DaqmxError(
                    Code.OUTPUT_BUFFER_EMPTY,
                    "Write samples (out_stream / task.write with auto_start=False) before "
                    "starting a hardware-timed AO task.",
                    task_name=task.name,
                )
            if out.valid < 2:
                raise DaqmxError(
                    Code.OUTPUT_BUF_SIZE_TOO_SMALL_TO_START_GEN,
                    f"Samples in the buffer: {out.valid}",
                    task_name=task.name,
                )
            out.on_start(task.write.regen_mode == RegenerationMode.ALLOW_REGENERATION.value)
        else:
            task.inp = InputBuffer(len(task.channels), task.default_input_buffer())

    def _engine_key(self, task: SimTask) -> tuple[str, str] | None:
        if task.engine is None or not task.channels:
            return None
        return (task.timing_device.name.lower(), task.engine)

    @staticmethod
    def _terminal_key(terminal: Terminal) -> tuple[str, str] | None:
        if terminal.engine is None:
            return None
        return (terminal.device.name.lower(), terminal.engine)

    def _dependency(self, task: SimTask) -> tuple[str, Terminal] | None:
        trigger = self.trigger_terminal(task)
        if trigger is not None and trigger.signal in ("StartTrigger", "SampleClock", "PFI"):
            return ("trigger", trigger)
        clock = self.clock_terminal(task)
        if clock is not None and clock.signal in ("SampleClock", "StartTrigger", "PFI"):
            return ("clock", clock)
        return None

    def _owner_of(self, key: tuple[str, str]) -> SimTask | None:
        for other in self._tasks.values():
            if other.running and self._engine_key(other) == key:
                return other
        return None

    def _check_dependency(self, task: SimTask) -> None:
        """Refuse a trigger or clock taken from the task's own engine (it would never come)."""
        dependency = self._dependency(task)
        if dependency is None:
            return
        key = self._terminal_key(dependency[1])
        if key is not None and key == self._engine_key(task):
            raise DaqmxError(
                Code.INVALID_ROUTING_SOURCE_TERMINAL_NAME_ROUTING,
                f"Source Terminal: {dependency[1].name} is this task's own signal.",
                task_name=task.name,
            )

    def _launch_or_arm(self, task: SimTask) -> None:
        dependency = self._dependency(task)
        if dependency is None:
            self._launch(task)
            return
        kind, terminal = dependency
        key = self._terminal_key(terminal)
        if kind == "clock" and key is not None:
            owner = self._owner_of(key)
            run = owner.run if owner is not None else None
            if isinstance(run, Run) and not run.over and owner is not None:
                parent = run.participant(owner)
                if parent is not None and parent.active():
                    follower = self._participant(task)
                    follower.clock_parent = parent
                    follower.rate_hz = parent.rate_hz
                    run.add(follower)
                    return
        task.armed = True
        self._armed.append(task)
        logger.debug("task %s armed, waiting for %s", task.name, terminal.name)

    def _launch(self, leader: SimTask) -> None:
        members = [leader]
        queue = [leader]
        while queue:
            current = queue.pop()
            key = self._engine_key(current)
            for armed in list(self._armed):
                dependency = self._dependency(armed)
                if dependency is None or key is None:
                    continue
                if self._terminal_key(dependency[1]) == key:
                    self._armed.remove(armed)
                    armed.armed = False
                    if armed.counter is not None:  # a pulse train: starts with the trigger
                        self._co_begin(armed)
                        continue
                    members.append(armed)
                    queue.append(armed)
        participants = [self._participant(t) for t in members]
        by_key = {self._engine_key(p.task): p for p in participants}
        for p in participants:
            clock = self.clock_terminal(p.task)
            if clock is not None and clock.signal == "SampleClock":
                parent = by_key.get(self._terminal_key(clock))
                if parent is not None and parent is not p:
                    p.clock_parent = parent
        for _ in participants:
            for p in participants:
                if p.clock_parent is not None:
                    p.rate_hz = p.clock_parent.rate_hz
        run = Run(
            self.cond,
            self.bench,
            participants,
            chunk_s=self.config.chunk_s,
            realtime=self.bench.timebase.realtime,
            noise_v=self.config.unwired_ai_noise_v,
            adc_limit_v=self._adc_limit_v(),
            rng=self._rng,
            on_end=self._run_ended,
        )
        self._runs.append(run)
        logger.debug("run of %s at %g S/s", [t.name for t in members], run.rate_hz)
        run.start()

    def _adc_limit_v(self) -> float:
        """|reading| (V) at which the bench's ADC (the NI AI) is at the end of its range."""
        settings = self.bench.chain.settings
        return settings.adc_range_v - 1.5 * settings.adc_step_v

    def _run_ended(self, run: Run) -> None:
        if run in self._runs:
            self._runs.remove(run)

    def _participant(self, task: SimTask) -> Participant:
        assert task.coerced_rate_hz is not None and task.kind is not None
        p = Participant(
            task=task,
            kind=task.kind,
            rate_hz=task.coerced_rate_hz,
            total=task.samples_per_chan_target(),
        )
        if task.kind == "ao":
            p.electrode_map = [
                (i, self.electrode_of[c.physical.key])
                for i, c in enumerate(task.channels)
                if c.physical.key in self.electrode_of
            ]
            p.regenerate = task.write.regen_mode == RegenerationMode.ALLOW_REGENERATION.value
        else:
            p.wired = [c.physical.key == self.output_channel for c in task.channels]
            p.clip_v = [c.hw_range() for c in task.channels]
            p.overwrite = task.read.overwrite == OverwriteMode.OVERWRITE_UNREAD_SAMPLES.value
        return p

    def stop(self, task: SimTask) -> None:
        """DAQmxStopTask: stop at the next chunk boundary, back to the pre-start state."""
        with self.cond:
            self._check(task)
            self._stop(task)

    def _stop(self, task: SimTask) -> None:
        if not task.running:
            return
        if task in self._armed:
            self._armed.remove(task)
        self._co_end(task)
        run = task.run
        if isinstance(run, Run):
            task.stop_requested = True
            self.cond.notify_all()
            while task.run is run and not run.over:
                self.cond.wait(_POLL_S)
        task.run = None
        task.stop_requested = False
        task.armed = False
        task.implicit = False
        if task.out is not None:
            task.out.on_stop()
        task.state = task.pre_start_state
        if task.state < TaskState.RESERVED:
            self._reservations.release(task.name)
            task.engine = None
        task.error = None
        self.cond.notify_all()

    def is_done(self, task: SimTask) -> bool:
        """DAQmxIsTaskDone (raises the error that stopped the task, if any)."""
        with self.cond:
            self._check(task)
            if task.error is not None:
                raise task.error
            self._co_refresh(task)
            return not task.running or task.done

    def wait_until_done(self, task: SimTask, timeout_s: float) -> None:
        """DAQmxWaitUntilTaskDone: -200560 if not done within ``timeout_s`` (-1: forever)."""
        deadline = _deadline(timeout_s, task)
        with self.cond:
            while True:
                self._check(task)
                if task.error is not None:
                    raise task.error
                self._co_refresh(task)
                if not task.running or task.done:
                    return
                remaining = _remaining(deadline)
                if remaining <= 0:
                    raise DaqmxError(
                        Code.WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE,
                        f"Timeout: {timeout_s:g} s; samples per channel generated or "
                        f"acquired so far: {self._progress(task)}",
                        task_name=task.name,
                    )
                self.cond.wait(min(remaining, _POLL_S))

    @staticmethod
    def _progress(task: SimTask) -> int:
        if task.kind == "ao":
            return task.generated
        return task.inp.acquired if task.inp is not None else 0

    # -- write ----------------------------------------------------------------------------

    def write(
        self,
        task: SimTask,
        n: int,
        auto_start: bool,
        timeout_s: float,
        layout: int,
        flat: FloatArray,
    ) -> int:
        """DAQmxWriteAnalogF64: returns samples per channel written."""
        deadline = _deadline(timeout_s, task)
        with self.cond:
            self._check(task)
            if task.kind != "ao":
                raise DaqmxError(
                    Code.CAN_NOT_PERFORM_OP_WHEN_NO_CHANS_IN_TASK,
                    "Write needs a task with analog output channels.",
                    task_name=task.name,
                )
            samples = self._shape(task, n, layout, flat)
            if task.error is not None:
                raise task.error
            self._check_limits(task, samples)
            if not task.timing.hw_timed:
                return self._write_on_demand(task, samples, auto_start)
            if not task.running:
                self._output_buffer(task, samples.shape[1]).write_idle(samples)
                if auto_start:
                    self.start(task)
                return samples.shape[1]
            out = task.out
            assert out is not None
            while out.space(task.generated) < samples.shape[1]:
                if task.error is not None:
                    raise task.error
                self._check(task)
                remaining = _remaining(deadline)
                if remaining <= 0 or not task.running or task.done:
                    raise DaqmxError(
                        Code.SAMPLES_CAN_NOT_YET_BE_WRITTEN,
                        f"Space available: {out.space(task.generated)} samples per channel; "
                        f"samples to write: {samples.shape[1]}",
                        task_name=task.name,
                        samps_per_chan_written=0,
                    )
                self.cond.wait(min(remaining, _POLL_S))
            out.write_running(samples)
            self.cond.notify_all()
            return samples.shape[1]

    @staticmethod
    def _shape(task: SimTask, n: int, layout: int, flat: FloatArray) -> FloatArray:
        channels = len(task.channels)
        if n < 0 or flat.size != channels * n:
            raise DaqmxError(
                Code.INCONSISTENT_NUM_SAMPLES_TO_WRITE,
                f"Samples per channel: {n}\nChannels: {channels}\nArray size: {flat.size}",
                task_name=task.name,
                samps_per_chan_written=0,
            )
        if layout == FillMode.GROUP_BY_SCAN_NUMBER.value:
            return flat.reshape(n, channels).T.copy()
        return flat.reshape(channels, n).copy()

    @staticmethod
    def _check_limits(task: SimTask, samples: FloatArray) -> None:
        if not np.all(np.isfinite(samples)):
            raise DaqmxError(
                Code.INVALID_AO_DATA_WRITE,
                "The data contains NaN or infinite values.",
                task_name=task.name,
                samps_per_chan_written=0,
            )
        for row, channel in enumerate(task.channels):
            values = samples[row]
            bad = np.flatnonzero((values < channel.min_v) | (values > channel.max_v))
            if bad.size:
                first = int(bad[0])
                raise DaqmxError(
                    Code.INVALID_AO_DATA_WRITE,
                    f"Channel Name: {channel.name}\nSample Index: {first}\nValue: "
                    f"{values[first]:g} V\nMinimum: {channel.min_v:g} V\nMaximum: "
                    f"{channel.max_v:g} V",
                    task_name=task.name,
                    samps_per_chan_written=0,
                )

    def _output_buffer(self, task: SimTask, n: int) -> OutputBuffer:
        out = task.out
        if out is not None and out.idle_pos > 0:
            return out
        channels = len(task.channels)
        if task.out_buf_size is not None:
            if out is None or not out.explicit or out.size != task.out_buf_size:
                task.out = OutputBuffer(channels, max(1, task.out_buf_size), explicit=True)
        else:
            task.out = OutputBuffer(channels, max(1, n), explicit=False)
        assert task.out is not None
        return task.out

    def _write_on_demand(self, task: SimTask, samples: FloatArray, auto_start: bool) -> int:
        started_here = False
        if not task.running:
            if not auto_start:
                raise DaqmxError(
                    Code.CANNOT_WRITE_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING,
                    task_name=task.name,
                    samps_per_chan_written=0,
                )
            self.start(task, implicit=True)
            started_here = True
        try:
            wired = [
                (i, self.electrode_of[c.physical.key])
                for i, c in enumerate(task.channels)
                if c.physical.key in self.electrode_of
            ]
            if wired and samples.shape[1] > 0:
                waveform = np.repeat(self.bench.applied_v[:, None], samples.shape[1], axis=1)
                for channel, electrode in wired:
                    waveform[electrode] = samples[channel]
                device = task.channels[0].device
                self.bench.play(waveform, device.max_rate_hz("ao", len(task.channels)))
            task.generated += samples.shape[1]
        finally:
            if started_here:
                self._stop(task)
        return samples.shape[1]

    # -- read -----------------------------------------------------------------------------

    def read(
        self, task: SimTask, n_requested: int, timeout_s: float, layout: int, array_size: int
    ) -> tuple[FloatArray, int, int]:
        """DAQmxReadAnalogF64.

        Returns:
            The flat array (``array_size`` values, channel ``c`` at ``c * n`` when grouped by
            channel), samples per channel read, and the status (0, or -200284 when the
            timeout expired first: the samples read are returned with it, as DAQmx does).
        """
        deadline = _deadline(timeout_s, task)
        with self.cond:
            self._check(task)
            if task.kind != "ai":
                raise DaqmxError(
                    Code.CAN_NOT_PERFORM_OP_WHEN_NO_CHANS_IN_TASK,
                    "Read needs a task with analog input channels.",
                    task_name=task.name,
                )
            if n_requested < -1:
                raise DaqmxError(
                    Code.INVALID_NUMBER_SAMPLES_TO_READ,
                    f"Requested: {n_requested}",
                    task_name=task.name,
                )
            rows = self._rows_to_read(task)
            if not task.timing.hw_timed:
                n = 1 if n_requested == -1 else n_requested
                data = self._read_on_demand(task, n)[rows]
                return _pack(data, n, layout, array_size, task), n, 0
            if not task.running:
                if task.read.auto_start:
                    self.start(task, implicit=True)
                else:
                    self._sleep_until(deadline)
                    raise DaqmxError(
                        Code.SAMPLES_NOT_YET_AVAILABLE,
                        "The task is not started and read auto start is off.",
                        task_name=task.name,
                        samps_per_chan_read=0,
                    )
            inp = task.inp
            assert inp is not None
            start = self._read_start(task, inp)
            total = task.samples_per_chan_target()
            if n_requested == -1:
                if total is not None and not task.read.read_all_avail_samp:
                    n = max(0, total - start)
                else:
                    n = max(0, inp.acquired - start)
            else:
                n = n_requested
            if total is not None and start + n > total:
                raise DaqmxError(
                    Code.SAMPLES_WILL_NEVER_BE_AVAILABLE,
                    f"Samples per channel of the finite task: {total}\nRead position: {start}\n"
                    f"Samples requested: {n}",
                    task_name=task.name,
                    samps_per_chan_read=0,
                )
            while inp.acquired < start + n:
                if task.error is not None:
                    raise task.error
                self._check(task)
                remaining = _remaining(deadline)
                if remaining <= 0 or not task.running:
                    break
                self.cond.wait(min(remaining, _POLL_S))
            if task.error is not None:
                raise task.error
            got = min(n, max(0, inp.acquired - start))
            try:
                data = inp.read(start, got)[rows]
            except DaqmxError as exc:
                raise exc.for_task(task.name) from None
            inp.read_pos = start + got
            status = 0 if got == n else Code.SAMPLES_NOT_YET_AVAILABLE
            if task.implicit and total is not None and inp.read_pos >= total:
                self._stop(task)
            return _pack(data, n, layout, array_size, task), got, status

    def _rows_to_read(self, task: SimTask) -> list[int]:
        names = task.read.channels_to_read
        if names is None:
            return list(range(len(task.channels)))
        return [task.channels.index(c) for c in task.find_channels(", ".join(names))]

    @staticmethod
    def _read_start(task: SimTask, inp: InputBuffer) -> int:
        relative = task.read.relative_to
        if relative == ReadRelativeTo.FIRST_SAMPLE.value:
            base = 0
        elif relative == ReadRelativeTo.MOST_RECENT_SAMPLE.value:
            base = inp.acquired
        else:
            base = inp.read_pos
        start = base + task.read.offset
        if start < 0:
            raise DaqmxError(
                Code.SAMPLES_NO_LONGER_AVAILABLE,
                f"Read position {start} is before the first sample.",
                task_name=task.name,
            )
        return start

    def _read_on_demand(self, task: SimTask, n: int) -> FloatArray:
        started_here = False
        if not task.running:
            self.start(task, implicit=True)
            started_here = True
        try:
            data = np.empty((len(task.channels), n))
            record = None
            wired = [c.physical.key == self.output_channel for c in task.channels]
            if any(wired) and n > 0:
                held = np.repeat(self.bench.applied_v[:, None], n, axis=1)
                device = task.channels[0].device
                record = self.bench.play(held, device.max_rate_hz("ai", 1))
            for row, channel in enumerate(task.channels):
                low, high = channel.hw_range()
                if wired[row] and record is not None:
                    values = np.asarray(record.adc_v, dtype=np.float64)
                else:
                    values = self._rng.normal(0.0, self.config.unwired_ai_noise_v, n)
                data[row] = np.clip(values, low, high)
            return data
        finally:
            if started_here:
                self._stop(task)

    def _sleep_until(self, deadline: float | None) -> None:
        while True:
            remaining = _remaining(deadline)
            if remaining <= 0 or remaining == math.inf:
                return
            self.cond.wait(min(remaining, _POLL_S))

    # -- devices --------------------------------------------------------------------------

    def reset_device(self, device: SimDevice) -> None:
        """DAQmxResetDevice: abort the tasks using it and set its wired AO to 0 V (a step)."""
        with self.cond:
            family = {d.name.lower() for d in device.family()}
            for task in list(self._tasks.values()):
                if any(c.device.name.lower() in family for c in task.channels):
                    self._stop(task)
                    if task.state >= TaskState.RESERVED:
                        self._reservations.release(task.name)
                        task.state = TaskState.VERIFIED
                        task.engine = None
            electrodes = [
                index for key, index in self.electrode_of.items() if key.split("/", 1)[0] in family
            ]
            if electrodes:
                held = self.bench.applied_v
                held[electrodes] = 0.0
                rate = max((d.ao.max_rate_hz for d in device.family() if d.ao), default=1e3)
                self.bench.play(held[:, None], rate)

    def shutdown(self) -> None:
        """Stop every run and clear every task (the electrodes hold their voltages)."""
        with self.cond:
            for task in list(self._tasks.values()):
                try:
                    self.clear_task(task)
                except DaqmxError:
                    logger.exception("clearing task %s at shutdown", task.name)
            runs = list(self._runs)
        for run in runs:
            run.join_thread(2.0)


def _deadline(timeout_s: float, task: SimTask) -> float | None:
    if timeout_s == WAIT_INFINITELY:
        return None
    if not math.isfinite(timeout_s) or timeout_s < 0:
        raise DaqmxError(Code.INVALID_TIMEOUT_VAL, f"Timeout: {timeout_s!r}", task_name=task.name)
    return time.monotonic() + timeout_s


def _remaining(deadline: float | None) -> float:
    if deadline is None:
        return math.inf
    return deadline - time.monotonic()


def _timebase_rate(name: str) -> float:
    label = name.rsplit("/", 1)[-1][: -len("Timebase")]
    for unit, scale in (("MHz", 1e6), ("kHz", 1e3), ("Hz", 1.0)):
        if label.endswith(unit):
            return float(label[: -len(unit)]) * scale
    raise ValueError(f"not a timebase terminal: {name}")


def _pack(data: FloatArray, n: int, layout: int, array_size: int, task: SimTask) -> FloatArray:
    channels, got = data.shape
    if array_size < channels * n:
        raise DaqmxError(
            Code.READ_BUFFER_TOO_SMALL,
            f"Array size: {array_size}\nNeeded: {channels} channels x {n} samples",
            task_name=task.name,
            samps_per_chan_read=0,
        )
    out = np.zeros(array_size)
    if layout == FillMode.GROUP_BY_SCAN_NUMBER.value:
        out[: channels * got] = data.T.reshape(-1)
    else:
        for row in range(channels):
            out[row * n : row * n + got] = data[row]
    return out
