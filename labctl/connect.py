"""Build the safe device a validated configuration describes."""

from __future__ import annotations

from labctl.config import LoadedConfig
from labctl.device.composite import build_composite
from labctl.device.safety import SafeDevice, SafetyLimits
from labctl.device.state import VoltageStateFile


def build_device(loaded: LoadedConfig) -> SafeDevice:
    """The configured setup behind the safety layer, not yet opened.

    Use the result as a context manager; nothing touches an instrument before ``__enter__``.
    """
    setup = loaded.setup
    limits = SafetyLimits(
        max_abs_v=setup.safety.max_abs_v,
        slew_v_per_s=setup.safety.slew_v_per_s,
        ramp_v_per_s=setup.safety.ramp_v_per_s,
    )
    state = VoltageStateFile(loaded.state_file(), tuple(e.name for e in setup.electrodes))
    return SafeDevice(build_composite(loaded), limits, setup.sample_rate_hz, state_file=state)
