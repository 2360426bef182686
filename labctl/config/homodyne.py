"""Schema of the ``homodyne`` section (tones, plan, demodulation, calibration)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from labctl.config.setup import _Strict


class CalibrationConfig(_Strict):
    """How ``labctl calibrate`` measures the chain response, and where it is kept."""

    method: Literal["resistor"] = Field(
        "resistor", description="'resistor': a known resistor in place of the device."
    )
    electrode: str | None = Field(
        None, description="Electrode wired through the resistor (default: first control)."
    )
    resistance_ohm: float = Field(10e6, gt=0, description="Reference resistance (ohm).")
    amplitude_v: float = Field(0.02, gt=0, description="Tone amplitude during calibration (V).")
    file: Path | None = Field(
        None, description="Calibration file (default: next to the config, *.calibration.json)."
    )


class AdaptiveAmplitudeConfig(_Strict):
    """Choose each tone's amplitude for a target SNR within a curvature-bias bound."""

    target_snr: float = Field(20.0, gt=0, description="Wanted |gradient| / standard error.")
    max_bias_fraction: float = Field(
        0.02, gt=0, description="Largest allowed relative curvature bias of a gradient."
    )
    min_amplitude_v: float = Field(0.002, gt=0, description="Smallest amplitude (V).")
    max_amplitude_v: float = Field(0.05, gt=0, description="Largest amplitude (V).")


class HomodyneConfig(_Strict):
    """Homodyne gradient extraction: tones, plan, demodulation, phase handling."""

    mode: Literal["parallel", "sequential", "fd"] = Field(
        "parallel",
        description="'parallel' (all tones in one record), 'sequential' (one electrode at a "
        "time) or 'fd' (central finite differences).",
    )
    electrodes: list[str] | None = Field(
        None, description="Perturbed electrodes (default: every control)."
    )
    amplitude_v: float | dict[str, float] = Field(
        0.01, description="Tone amplitude (V), one for all or per electrode name."
    )
    frequencies_hz: list[float] | None = Field(
        None, description="Explicit tone frequencies (Hz), in electrode order; default: planned."
    )
    insist: bool = Field(False, description="Accept explicit frequencies that break a rule.")
    window_s: float = Field(0.1, gt=0, description="Measurement window per operating point (s).")
    settle_s: float = Field(0.015, ge=0, description="Settling after each transition (s).")
    band_hz: tuple[float, float] = Field(
        (150.0, 1000.0), description="Usable band (Hz): above 1/f, below the amplifier."
    )
    min_spacing_hz: float | None = Field(20.0, gt=0, description="Minimum tone spacing (Hz).")
    mains_hz: list[float] = Field([50.0, 60.0], description="Mains fundamentals to avoid (Hz).")
    mains_guard_bins: int = Field(2, ge=0, description="Distance from mains harmonics (bins).")
    max_order: Literal[2, 3] = Field(3, description="Intermodulation order kept off the tones.")
    curvature: bool = Field(False, description="Also measure the Hessian from the same record.")
    fade_periods: int = Field(2, ge=1, description="Tone fade in/out (periods of slowest tone).")
    phase: Literal["projection", "sign"] = Field(
        "projection",
        description="'projection' onto the calibrated phase, or the lab's sign-by-phase rule.",
    )
    phase_threshold_deg: float = Field(90.0, gt=0, lt=180, description="Sign-rule threshold.")
    demodulation: Literal["least_squares", "boxcar", "software_lockin"] = Field(
        "least_squares",
        description="How the sampled record is demodulated: joint least-squares fit, plain "
        "boxcar averages, or a streaming software lock-in (mix, n-th order RC low-pass, "
        "averaged over each window). The old name 'lockin' is accepted with a warning. Hardware "
        "lock-in amplifiers are instruments of the setup, not a demodulation.",
    )
    lockin_order: int = Field(
        4, ge=1, le=8, description="Software lock-in low-pass order (6 dB/oct each)."
    )
    lockin_time_constant_s: float = Field(
        0.01, gt=0, description="Software lock-in time constant of each RC section (s)."
    )

    @field_validator("demodulation", mode="before")
    @classmethod
    def _renamed_software_lockin(cls, value: object) -> object:
        if value == "lockin":
            warnings.warn(
                "homodyne.demodulation: 'lockin' is now called 'software_lockin' (the streaming "
                "software lock-in on the sampled record); write that instead. Hardware lock-in "
                "amplifiers are configured as instruments under setup.instruments.",
                FutureWarning,
                stacklevel=2,
            )
            return "software_lockin"
        return value

    fd_step_v: float = Field(0.01, gt=0, description="Finite-difference half step (V).")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    adaptive: AdaptiveAmplitudeConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> HomodyneConfig:
        if self.band_hz[0] >= self.band_hz[1]:
            raise ValueError(f"band_hz {list(self.band_hz)} must be [low, high] with low < high")
        if isinstance(self.amplitude_v, float) and self.amplitude_v <= 0:
            raise ValueError("amplitude_v must be positive")
        if isinstance(self.amplitude_v, dict):
            for name, value in self.amplitude_v.items():
                if value <= 0:
                    raise ValueError(f"amplitude_v.{name} must be positive")
        return self

    def amplitude(self, electrode: str) -> float:
        """Tone amplitude (V) on ``electrode``."""
        if isinstance(self.amplitude_v, dict):
            return float(self.amplitude_v.get(electrode, 0.01))
        return float(self.amplitude_v)
