"""Set up a gradient engine for a validated configuration on an open device."""

from __future__ import annotations

from labctl.config import LoadedConfig
from labctl.device.safety import SafeDevice
from labctl.homodyne.calibrate import load_calibration_if_valid
from labctl.homodyne.engine import GradientEngine


def open_engine(
    device: SafeDevice,
    loaded: LoadedConfig,
    *,
    curvature: bool = False,
    use_calibration: bool = True,
) -> tuple[GradientEngine, str]:
    """The engine the configuration describes, and a note on which calibration it uses.

    Args:
        device: The opened safe device.
        loaded: The validated configuration.
        curvature: Force curvature measurement on (plan with clean curvature bins).
        use_calibration: Load the stored chain calibration when the phase mode wants it.
    """
    config = loaded.config
    settings = config.homodyne
    if curvature and not settings.curvature:
        settings = settings.model_copy(update={"curvature": True})
    calibration = None
    note = "sign-by-phase rule (phase: sign)"
    if settings.phase == "projection":
        if use_calibration:
            calibration, note = load_calibration_if_valid(loaded)
            if calibration is None:
                note = f"uncalibrated, sign-by-phase fallback: {note}"
        else:
            note = "calibration run"
    engine = GradientEngine(
        device, loaded.setup, settings, config.perturbed_electrodes(), calibration
    )
    return engine, note
