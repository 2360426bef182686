"""``labctl devices`` for the ``nidaq`` backend: the DAQ devices a driver or server reaches.

Lists each device with its product type, its AO and AI channels, their voltage ranges and the
maximum rates; or raises :class:`~labctl.device.registry.DeviceDiscoveryError` saying exactly
why nothing can be reached (no driver installed, server unreachable at the address, TLS
refused, not an NI-DAQmx server).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from drivers.nidaq.connection import describe, diagnose, import_nidaqmx, open_channel
from drivers.nidaq.connection import session_options as make_session_options
from drivers.nidaq.errors import DRIVER_MISSING_TODO, NidaqDriverMissing, translate
from drivers.nidaq.settings import NidaqSettings
from labctl.device.registry import DeviceDiscoveryError


def list_devices(settings: NidaqSettings | None) -> str:
    """A human-readable listing of the DAQ devices the settings reach (local without them).

    Raises:
        DeviceDiscoveryError: Nothing can be reached; the message says why and what to do.
    """
    grpc_settings = settings.grpc if settings is not None else None
    where = describe(grpc_settings)
    try:
        nidaqmx = import_nidaqmx()
    except NidaqDriverMissing as exc:
        raise DeviceDiscoveryError(str(exc)) from exc
    channel: Any = None
    try:
        if grpc_settings is None:
            system = nidaqmx.system.System.local()
        else:
            diagnosis = diagnose(grpc_settings)
            if not diagnosis.ok:
                raise DeviceDiscoveryError(diagnosis.reason)
            channel = open_channel(grpc_settings)
            system = nidaqmx.system.System.remote(make_session_options(grpc_settings, channel, ""))
        devices = list(system.devices)
        if not devices:
            return f"  {where}: no DAQ devices (add or simulate one in NI MAX)"
        lines = [f"  {where}, NI-DAQmx {_driver_version(system)}:"]
        for device in devices:
            lines.extend(_describe_device(device))
        return "\n".join(lines)
    except DeviceDiscoveryError:
        raise
    except Exception as exc:
        error = translate(exc, "listing devices", where=where)
        if isinstance(error, NidaqDriverMissing):
            raise DeviceDiscoveryError(
                f"no NI-DAQmx driver installed on this computer; {DRIVER_MISSING_TODO}"
            ) from exc
        raise DeviceDiscoveryError(str(error)) from exc
    finally:
        if channel is not None:
            channel.close()


def _get(read: Callable[[], Any]) -> Any:
    """``read()``, or None when the driver or server cannot say."""
    try:
        return read()
    except Exception:
        return None


def _driver_version(system: Any) -> str:
    version = _get(lambda: system.driver_version)
    if version is None:
        return "version unknown"
    return ".".join(str(part) for part in tuple(version))


def format_ranges(flat: Sequence[float] | None) -> str:
    """DAQmx's flat [lo0, hi0, lo1, hi1, ...] ranges as "±10 V, ±5 V" (or "lo..hi V")."""
    if not flat:
        return "ranges unknown"
    values = [float(v) for v in flat]
    parts = []
    for lo, hi in zip(values[0::2], values[1::2], strict=False):
        parts.append(f"±{hi:g} V" if abs(lo + hi) < 1e-9 else f"{lo:g}..{hi:g} V")
    return ", ".join(parts)


def _rate(value: Any) -> str:
    if value is None:
        return "max rate unknown"
    rate = float(value)
    if rate >= 1e6:
        return f"max {rate / 1e6:g} MS/s"
    if rate >= 1e3:
        return f"max {rate / 1e3:g} kS/s"
    return f"max {rate:g} S/s"


def _channel_names(collection: Any) -> list[str]:
    names = _get(lambda: collection.channel_names)
    return [str(n) for n in names] if names else []


def _span(names: list[str]) -> str:
    if not names:
        return "none"
    if len(names) == 1:
        return names[0]
    last = names[-1].split("/")[-1]
    return f"{names[0]}..{last} ({len(names)})"


def _describe_device(device: Any) -> list[str]:
    name = str(_get(lambda: device.name) or "?")
    product = _get(lambda: device.product_type) or "unknown product"
    category = _get(lambda: device.product_category)
    category_name = getattr(category, "name", None)
    simulated = _get(lambda: device.is_simulated)
    serial = _get(lambda: device.serial_num)
    head = f"    {name}: {product}"
    extras = []
    if category_name:
        extras.append(category_name.lower().replace("_", " "))
    if simulated:
        extras.append("simulated")
    if serial:
        extras.append(f"serial {int(serial):X}")
    if extras:
        head += f" ({', '.join(extras)})"
    lines = [head]
    ao = _channel_names(_get(lambda: device.ao_physical_chans))
    if ao:
        lines.append(
            f"      AO {_span(ao)}: {format_ranges(_get(lambda: device.ao_voltage_rngs))}, "
            f"{_rate(_get(lambda: device.ao_max_rate))}"
        )
    ai = _channel_names(_get(lambda: device.ai_physical_chans))
    if ai:
        single = _get(lambda: device.ai_max_single_chan_rate)
        multi = _get(lambda: device.ai_max_multi_chan_rate)
        rates = _rate(single)
        if multi is not None and single is not None and float(multi) != float(single):
            rates += f" single channel, {_rate(multi)} multi-channel"
        lines.append(
            f"      AI {_span(ai)}: {format_ranges(_get(lambda: device.ai_voltage_rngs))}, {rates}"
        )
    modules = _get(lambda: device.chassis_module_devices)
    if modules:
        module_names = [str(getattr(m, "name", "?")) for m in modules]
        lines.append(f"      modules: {', '.join(module_names)}")
    return lines
