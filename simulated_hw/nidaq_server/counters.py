"""Counter outputs of the simulated DAQ: pulse trains at a frequency (CreateCOPulseChanFreq).

A counter output task generates a square-ish pulse train on the counter's output terminal. In
labctl it is the reference of a lock-in amplifier (wired to its REF IN) whose tones the AO task
makes: armed on the AI/AO start trigger, its first rising edge comes ``initial_delay`` seconds
after the record's first sample, so the reference phase is tied to the AO waveform.

Timing: the pulse is counted in ticks of the device timebase (80 MHz on a cDAQ chassis): the
period is ``round(timebase / freq)`` ticks (at least 4), the high time ``round(period · duty)``
ticks (at least 2 each side); the frequency it really runs at is ``timebase / period``. The
counters of a cDAQ chassis are ``<chassis>/_ctr0`` … ``_ctr3`` (``<chassis>/ctr0`` is accepted
too); a stand-alone device has ``<device>/ctr0`` … ``ctr3``. C Series modules have none.

The simulation tells listeners (:attr:`SimDaq.counter_listeners`) when a pulse train starts
(counter name, running frequency, simulated time of its first rising edge) and stops
(frequency None), so that simulated instruments wired to the counter follow it.

Units: Hz, s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from nidaqmx.constants import FrequencyUnits, Level  # type: ignore[import-untyped, unused-ignore]

from simulated_hw.nidaq_server.devices import DeviceCatalog, SimDevice
from simulated_hw.nidaq_server.errors import Code, DaqmxError

COUNTERS_PER_DEVICE = 4
"""Counters of a chassis or stand-alone device (cDAQ-917x, X Series: 4)."""
MIN_TICKS = 2
"""Shortest high or low time, in timebase ticks."""

_COUNTER = re.compile(r"^(?P<device>[^/\s]+)/_?ctr(?P<index>\d+)$", re.IGNORECASE)

CounterListener = Callable[[str, float | None, float], None]
"""``listener(counter, frequency_hz, first_edge_s)``: a pulse train started (frequency in Hz,
first rising edge at that simulated time, s) or stopped (frequency None)."""


@dataclass
class CounterOutput:
    """The one counter-output channel of a task.

    Attributes:
        device: The device (chassis or stand-alone) owning the counter.
        index: Counter number.
        name: Virtual channel name.
        freq_hz: Requested frequency (Hz).
        duty_cycle: Requested duty cycle (0..1, exclusive).
        idle_high: Idle state high (else low).
        initial_delay_s: Time (s) from the start (trigger) to the first pulse.
        period_ticks: Period in timebase ticks.
        high_ticks: High time in ticks.
        first_edge_s: Simulated time (s) of the first rising edge once started (None: not
            generating).
    """

    device: SimDevice
    index: int
    name: str
    freq_hz: float
    duty_cycle: float
    idle_high: bool
    initial_delay_s: float
    period_ticks: int
    high_ticks: int
    first_edge_s: float | None = None

    @property
    def physical_name(self) -> str:
        """Canonical physical name (``cDAQ1/_ctr0`` on a chassis, ``Dev1/ctr0`` otherwise)."""
        prefix = "_ctr" if self.device.is_chassis else "ctr"
        return f"{self.device.name}/{prefix}{self.index}"

    @property
    def key(self) -> str:
        """Lookup key: ``<device>/ctr<index>``, case-folded."""
        return f"{self.device.name}/ctr{self.index}".lower()

    @property
    def actual_freq_hz(self) -> float:
        """The frequency (Hz) the pulse train runs at (timebase / period ticks)."""
        return self.device.timebase_hz / self.period_ticks

    @property
    def actual_duty_cycle(self) -> float:
        """The duty cycle it runs at."""
        return self.high_ticks / self.period_ticks


def counter_key(spec: str) -> str:
    """``"cDAQ1/_ctr0"`` or ``"cDAQ1/ctr0"`` -> ``"cdaq1/ctr0"`` ('' if not a counter)."""
    match = _COUNTER.match(spec.strip())
    if match is None:
        return ""
    return f"{match['device']}/ctr{int(match['index'])}".lower()


def make_counter_output(
    catalog: DeviceCatalog,
    counter: str,
    name: str,
    units: int,
    idle_state: int,
    initial_delay_s: float,
    freq_hz: float,
    duty_cycle: float,
) -> CounterOutput:
    """Validate a ``DAQmxCreateCOPulseChanFreq`` call and compute its ticks.

    Raises:
        DaqmxError: -200220 unknown device, -200170 no such counter (or a module's), -200086
            bad syntax, -200077 a value out of range.
    """
    match = _COUNTER.match(counter.strip())
    if match is None:
        if "/" in counter:
            catalog.device(counter.strip().split("/", 1)[0])
        raise DaqmxError(
            Code.INVALID_SYNTAX_FOR_PHYSICAL_CHANNEL_RANGE, f"Physical Channel Specified: {counter}"
        )
    device = catalog.device(match["device"])
    index = int(match["index"])
    if device.is_module or index >= COUNTERS_PER_DEVICE:
        where = device.timing_device
        prefix = "_ctr" if where.is_chassis else "ctr"
        valid = ", ".join(f"{where.name}/{prefix}{i}" for i in range(COUNTERS_PER_DEVICE))
        hint = " (C Series modules have no counters: use the chassis')" if device.is_module else ""
        raise DaqmxError(
            Code.PHYSICAL_CHAN_DOES_NOT_EXIST,
            f"Physical Channel Name: {counter}{hint}\n\nValid Physical Channels: {valid}",
        )
    if units != FrequencyUnits.HZ.value:
        raise _bad("DAQmx_CO_Pulse_Freq_Units", units, "only FrequencyUnits.HZ is simulated")
    if idle_state not in (Level.LOW.value, Level.HIGH.value):
        raise _bad("DAQmx_CO_Pulse_IdleState", idle_state, "Level.LOW or Level.HIGH")
    timebase = device.timebase_hz
    max_freq = timebase / (2 * MIN_TICKS)
    if not (math.isfinite(freq_hz) and 0 < freq_hz <= max_freq * (1 + 1e-12)):
        raise _bad(
            "DAQmx_CO_Pulse_Freq", freq_hz, f"Maximum Value: {max_freq:g}\nMinimum Value: > 0"
        )
    if not (math.isfinite(duty_cycle) and 0.0 < duty_cycle < 1.0):
        raise _bad("DAQmx_CO_Pulse_DutyCyc", duty_cycle, "Valid values: 0 < duty cycle < 1")
    if not (math.isfinite(initial_delay_s) and initial_delay_s >= 0.0):
        raise _bad("DAQmx_CO_Pulse_Freq_InitialDelay", initial_delay_s, "Minimum Value: 0")
    period = max(2 * MIN_TICKS, round(timebase / freq_hz))
    if period > 2**32:
        raise _bad(
            "DAQmx_CO_Pulse_Freq", freq_hz, f"Minimum Value: {timebase / 2**32:g} (32-bit counter)"
        )
    high = min(max(MIN_TICKS, round(period * duty_cycle)), period - MIN_TICKS)
    return CounterOutput(
        device=device,
        index=index,
        name=name.strip() or counter.strip(),
        freq_hz=float(freq_hz),
        duty_cycle=float(duty_cycle),
        idle_high=idle_state == Level.HIGH.value,
        initial_delay_s=float(initial_delay_s),
        period_ticks=int(period),
        high_ticks=int(high),
    )


def _bad(prop: str, value: object, detail: str) -> DaqmxError:
    return DaqmxError(
        Code.INVALID_ATTRIBUTE_VALUE, f"Property: {prop}\nRequested Value: {value}\n\n{detail}"
    )
