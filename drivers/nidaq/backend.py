"""The ``nidaq`` backend spec: settings model, factory, setup cross-checks, device listing.

Registered through the ``labctl.backends`` entry point as
``nidaq = "drivers.nidaq.backend:NIDAQ_BACKEND"``. Loading it imports no ``nidaqmx``: a
configuration validates on a computer without NI software, and the factory touches no
hardware (the tasks are created in :meth:`~drivers.nidaq.driver.NidaqDevice.open`).
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.nidaq.discovery import list_devices
from drivers.nidaq.driver import NidaqDevice
from drivers.nidaq.settings import NidaqSettings
from labctl.config import HARD_VOLTAGE_CEILING_V, SetupConfig
from labctl.device.registry import BackendSpec

AO_FULL_SCALE_V = 10.0
"""Widest AO range of NI's voltage-output devices (V): channel limits must lie inside it."""


def _duplicates(channels: list[str]) -> list[str]:
    """Channels named more than once (DAQmx names are case-insensitive)."""
    seen: dict[str, str] = {}
    repeated: list[str] = []
    for channel in channels:
        key = channel.strip().strip("/").lower()
        if key in seen and channel not in repeated:
            repeated.append(channel)
        seen.setdefault(key, channel)
    return repeated


def check_setup(setup: SetupConfig, settings: NidaqSettings) -> list[str]:
    """Cross-checks of the setup against the DAQ settings; no side effects, no hardware."""
    problems: list[str] = []
    where = "backend.settings"
    n_ao, n_electrodes = len(settings.ao_channels), len(setup.electrodes)
    if n_ao != n_electrodes:
        problems.append(
            f"{where}.ao_channels: {n_ao} AO channels for {n_electrodes} electrodes; give one "
            "AO channel per electrode, in the order of setup.electrodes"
        )
    for channel in _duplicates(settings.ao_channels):
        problems.append(
            f"{where}.ao_channels: {channel} is listed more than once; every electrode needs "
            "its own AO channel"
        )
    ai = settings.ai_channel_list
    for channel in _duplicates(ai):
        problems.append(f"{where}.ai_channels: {channel} is listed more than once")
    if len(ai) != len(setup.outputs):
        field = "ai_channels" if settings.ai_channels is not None else "ai_channel"
        problems.append(
            f"{where}.{field}: {len(ai)} AI channel(s) for {len(setup.outputs)} current "
            "output(s) in setup.outputs; give one AI channel per output, in the same order"
        )
    swing = setup.amplifier.output_swing_v
    if settings.ai_range_v < swing:
        problems.append(
            f"{where}.ai_range_v: ±{settings.ai_range_v:g} V is below the amplifier's output "
            f"swing (±{swing:g} V, setup.amplifier.output_swing_v): the ADC would clip before "
            f"the amplifier saturates; set ai_range_v to at least {swing:g} V"
        )
    margin = settings.ao_margin_v
    ceiling = min(AO_FULL_SCALE_V, HARD_VOLTAGE_CEILING_V)
    for electrode in setup.electrodes:
        lo, hi = electrode.min_v - margin, electrode.max_v + margin
        if max(abs(lo), abs(hi)) > ceiling:
            problems.append(
                f"{where}.ao_margin_v: electrode {electrode.name}'s AO limits "
                f"[{lo:g}, {hi:g}] V (range ± {margin:g} V) leave the ±{ceiling:g} V the AO "
                "hardware offers; lower ao_margin_v or narrow the range"
            )
    if settings.trigger_device is not None and "/" in settings.trigger_device.strip("/"):
        problems.append(
            f"{where}.trigger_device: {settings.trigger_device!r} is a channel or terminal; "
            "give the device (chassis) name, e.g. cDAQ1 or Dev1"
        )
    return problems


def _factory(
    setup: SetupConfig, settings: NidaqSettings, built: Mapping[str, object]
) -> NidaqDevice:
    return NidaqDevice(setup, settings)


NIDAQ_BACKEND = BackendSpec(
    name="nidaq",
    description="NI-DAQmx DAQ (cDAQ, X Series) through local NI-DAQmx or an NI gRPC Device Server",
    settings_model=NidaqSettings,
    factory=_factory,
    check_setup=check_setup,
    list_devices=list_devices,
    max_sample_rate_hz=lambda settings: settings.rate_ceiling_hz,
)
