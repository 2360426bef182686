"""Build the safe device a validated configuration describes."""

from __future__ import annotations

from labctl.config import LoadedConfig
from labctl.device.registry import get_backend
from labctl.device.safety import SafeDevice, SafetyLimits


def build_device(loaded: LoadedConfig) -> SafeDevice:
    """The configured backend behind the safety layer, not yet opened.

    Use the result as a context manager; nothing touches an instrument before ``__enter__``.
    """
    setup = loaded.setup
    spec = get_backend(setup.backend.name)
    backend = spec.factory(setup, loaded.backend_settings)
    limits = SafetyLimits(
        max_abs_v=setup.safety.max_abs_v,
        slew_v_per_s=setup.safety.slew_v_per_s,
        ramp_v_per_s=setup.safety.ramp_v_per_s,
    )
    return SafeDevice(backend, limits, setup.sample_rate_hz)
