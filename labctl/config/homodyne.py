"""Schema of the ``homodyne`` section (tones, plan, demodulation, calibration)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from labctl.config.setup import RolesConfig, _Strict

REFERENCE_OUTPUT_BACKENDS = ("nidaq",)
"""Voltage-source backends with a lock-in reference output (a counter pulse train)."""


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


class HardwareLockinConfig(_Strict):
    """Gradient extraction with hardware lock-in amplifiers (``demodulation: hardware_lockin``).

    Each perturbed electrode's tone comes from the sine output of the lock-in wired to it
    (``setup.roles.sine_sources``), which also reads the output current at that tone: one
    lock-in per electrode in ``parallel`` mode, the same lock-ins one at a time in
    ``sequential`` mode. The DAQ holds the operating points; the lock-ins store X/Y from the
    record's start trigger, and each operating point is read after the filter has settled.
    """

    time_constant_s: float = Field(
        0.03,
        gt=0,
        description="Output filter time constant (s); the instrument's smallest entry at or "
        "above it is used. Tones closer than a few 1/(2π τ) leak into each other's readings.",
    )
    slope_db_per_oct: Literal[6, 12, 18, 24] = Field(
        24, description="Output filter roll-off (dB/octave)."
    )
    sensitivity_a: float = Field(
        10e-9,
        gt=0,
        description="Full-scale current (A rms): the instrument's smallest entry at or above "
        "it. Readings above it overload (the result is flagged saturated).",
    )
    settle_time_constants: float | None = Field(
        None,
        gt=0,
        description="Settling after each operating point, in time constants (default: the "
        "instrument's rule, 5/7/9/10 τ for 6/12/18/24 dB/oct).",
    )
    max_trace_rate_hz: float = Field(
        512.0, gt=0, description="Highest X/Y storage rate to use (Hz)."
    )
    tones: Literal["lockin_sine", "daq"] = Field(
        "lockin_sine",
        description="Who makes the tones: 'lockin_sine' (each electrode's lock-in, its sine "
        "output wired there: setup.roles.sine_sources) or 'daq' (the DAQ's AO, in the same "
        "waveform as the DC; one lock-in, `lockin`, reads every tone in turn, referenced to "
        "the DAQ counter output `reference_counter` wired to its REF IN; mode: sequential).",
    )
    lockin: str | None = Field(
        None, description="tones: daq: the one lock-in (a setup.roles.demodulated_readouts name)."
    )
    reference_counter: str | None = Field(
        None,
        description="tones: daq: the DAQ counter output wired to the lock-in's REF IN, e.g. "
        "'cDAQ1/_ctr0' (cDAQ chassis) or 'Dev1/ctr0'; armed on the record's start trigger.",
    )
    harmonics: bool | None = Field(
        None,
        description="tones: daq: tones at harmonics n_k·f0 of one reference f0 (the lock-in "
        "switches harmonic between electrodes, the reference never moves; default) or false: "
        "one reference per tone (the counter and the lock-in's lock move every electrode).",
    )
    max_harmonic: int = Field(
        40, ge=2, le=99, description="tones: daq: highest harmonic the plan may use."
    )

    @model_validator(mode="after")
    def _tone_source(self) -> HardwareLockinConfig:
        if self.tones == "daq":
            for name in ("lockin", "reference_counter"):
                if getattr(self, name) is None:
                    raise ValueError(
                        f"homodyne.hardware_lockin.{name} is needed with tones: daq (one "
                        "lock-in, referenced to a DAQ counter output wired to its REF IN)"
                    )
            assert self.reference_counter is not None
            if not COUNTER_PATTERN.match(self.reference_counter):
                raise ValueError(
                    f"homodyne.hardware_lockin.reference_counter {self.reference_counter!r}: "
                    "write a DAQmx counter, '<device>/ctrN' or '<chassis>/_ctrN'"
                )
            return self
        for name in ("lockin", "reference_counter", "harmonics"):
            if getattr(self, name) is not None:
                raise ValueError(
                    f"homodyne.hardware_lockin.{name} applies to tones: daq only (tones: "
                    "lockin_sine: each lock-in's sine output is its own reference)"
                )
        return self

    @property
    def use_harmonics(self) -> bool:
        """Whether the tones are harmonics of one reference (tones: daq)."""
        return self.tones == "daq" and self.harmonics is not False


COUNTER_PATTERN = re.compile(r"^/?[A-Za-z0-9_\-]+/_?ctr\d+$")
"""A DAQmx counter's physical name (``cDAQ1/_ctr0``, ``Dev1/ctr1``)."""


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
    demodulation: Literal["least_squares", "boxcar", "software_lockin", "hardware_lockin"] = Field(
        "least_squares",
        description="How the output is demodulated: joint least-squares fit of the sampled "
        "record, plain boxcar averages, a streaming software lock-in (mix, n-th order RC "
        "low-pass, averaged over each window), or 'hardware_lockin': lock-in amplifiers of "
        "the setup drive the tones and read the responses (see hardware_lockin). The old "
        "name 'lockin' (the software lock-in) is accepted with a warning.",
    )
    hardware_lockin: HardwareLockinConfig = Field(
        default_factory=HardwareLockinConfig,
        description="Lock-in settings for demodulation: hardware_lockin.",
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
                "amplifiers are 'hardware_lockin'.",
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
        if self.demodulation == "hardware_lockin":
            if self.mode == "fd":
                raise ValueError(
                    "homodyne.mode 'fd' measures at DC: it needs no lock-in; use parallel or "
                    "sequential with demodulation: hardware_lockin"
                )
            if self.curvature:
                raise ValueError(
                    "homodyne.curvature needs the sampled record (sum and difference "
                    "frequencies); lock-ins read only their own tone: set curvature: false"
                )
            hardware = self.hardware_lockin
            if hardware.tones == "daq" and self.mode != "sequential":
                raise ValueError(
                    f"homodyne.mode {self.mode!r} with hardware_lockin.tones: daq: one lock-in "
                    "reads one tone at a time; use mode: sequential"
                )
            if hardware.use_harmonics and self.frequencies_hz is not None:
                raise ValueError(
                    "homodyne.frequencies_hz with hardware_lockin.tones: daq and harmonics: the "
                    "harmonic plan picks the tones; set hardware_lockin.harmonics: false to give "
                    "them yourself"
                )
        elif self.hardware_lockin.tones == "daq":
            raise ValueError(
                "homodyne.hardware_lockin.tones: daq needs demodulation: hardware_lockin"
            )
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


def hardware_lockin_problems(
    perturbed: list[str],
    roles: RolesConfig | None,
    hardware: HardwareLockinConfig | None = None,
    source_backend: str | None = None,
) -> list[str]:
    """What keeps ``demodulation: hardware_lockin`` from running on a setup; empty when fine.

    With ``hardware.tones: daq`` the one lock-in must be a demodulated readout and the voltage
    source a backend with a reference output (``nidaq``); no sine sources are needed.

    Every perturbed electrode needs a lock-in that drives its tone (``setup.roles.sine_sources``)
    and reads it (the same instrument in ``setup.roles.demodulated_readouts``), and no lock-in
    may serve two electrodes (its sine output is one tone on one electrode).
    """
    if roles is None:
        return ["setup.roles: lock-in mode needs a setup of instruments with roles"]
    sine_sources, demodulated_readouts = roles.sine_sources, roles.demodulated_readouts
    if hardware is not None and hardware.tones == "daq":
        problems = []
        if hardware.lockin not in demodulated_readouts:
            problems.append(
                f"homodyne.hardware_lockin.lockin {hardware.lockin!r} is not in "
                f"setup.roles.demodulated_readouts ({', '.join(demodulated_readouts) or 'none'})"
            )
        if source_backend is not None and source_backend not in REFERENCE_OUTPUT_BACKENDS:
            problems.append(
                f"homodyne.hardware_lockin.tones: daq: the voltage source {roles.source!r} "
                f"(backend {source_backend!r}) has no counter output to reference the lock-in; "
                f"use a {' or '.join(REFERENCE_OUTPUT_BACKENDS)} source"
            )
        return problems
    problems = []
    owners: dict[str, str] = {}
    for electrode in perturbed:
        instrument = sine_sources.get(electrode)
        if instrument is None:
            problems.append(
                f"setup.roles.sine_sources has no lock-in for perturbed electrode {electrode!r}: "
                "wire a lock-in's sine output to it and name that instrument there"
            )
            continue
        if instrument not in demodulated_readouts:
            problems.append(
                f"setup.roles.sine_sources.{electrode}: {instrument!r} drives the tone but is "
                "not in setup.roles.demodulated_readouts, so nothing reads it"
            )
        if instrument in owners:
            problems.append(
                f"setup.roles.sine_sources: {instrument!r} is wired to both "
                f"{owners[instrument]!r} and {electrode!r}; one sine output makes one tone"
            )
        owners.setdefault(instrument, electrode)
    return problems
