"""Schema of the ``setup`` section (backend, electrodes, amplifier, safety) and ``measure``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from labctl.device import CurrentOutput, Electrode, ElectrodeRole

HARD_VOLTAGE_CEILING_V = 10.0
"""No configuration may allow more than this on any electrode (V), whatever it says."""


DEFAULT_RECORD_BUDGET_MIB = 512.0
"""Default memory budget of one record (MiB): drive plus readout, float64 (see
``SetupConfig.record_budget_mib``)."""


class _Strict(BaseModel):
    # NaN and infinities are refused in every float field: no quantity of a setup is either
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BackendConfig(_Strict):
    """Which backend drives the electrodes, and its own settings."""

    name: str = Field(description="Registry name of the backend, e.g. 'simulated'.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Backend-specific settings (validated by the backend)."
    )


class InstrumentConfig(_Strict):
    """One named instrument of a composite setup."""

    backend: str = Field(description="Registry name of the instrument's backend.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Backend-specific settings (validated by the backend)."
    )


class RolesConfig(_Strict):
    """Which instrument of ``setup.instruments`` does what."""

    source: str = Field(description="Instrument that drives the electrodes (sampled AO).")
    sampled_readout: str | None = Field(
        None, description="Instrument that samples the output current on the source's clock."
    )
    demodulated_readouts: list[str] = Field(
        default_factory=list, description="Instruments that read X/Y at a reference (lock-ins)."
    )
    sine_sources: dict[str, str] = Field(
        default_factory=dict,
        description="Electrode name -> instrument that adds its own sine on that electrode.",
    )
    reference_switch: str | None = Field(
        None, description="Instrument that can put a reference resistor in place of the device."
    )
    oracle: str | None = Field(None, description="Simulated instrument that knows true gradients.")

    def named(self) -> list[tuple[str, str]]:
        """Every (role, instrument name) pair, for cross-checks."""
        pairs = [("roles.source", self.source)]
        for role in ("sampled_readout", "reference_switch", "oracle"):
            value = getattr(self, role)
            if value is not None:
                pairs.append((f"roles.{role}", value))
        pairs += [
            (f"roles.demodulated_readouts[{i}]", n) for i, n in enumerate(self.demodulated_readouts)
        ]
        pairs += [(f"roles.sine_sources.{e}", n) for e, n in self.sine_sources.items()]
        return pairs


class ElectrodeConfig(_Strict):
    """One voltage electrode."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Unique name.")
    role: ElectrodeRole = Field(description="'input' (data) or 'control' (trainable).")
    min_v: float = Field(description="Lowest allowed voltage (V).")
    max_v: float = Field(description="Highest allowed voltage (V).")
    rest_v: float = Field(0.0, description="Resting voltage (V); waveforms start and end here.")

    @model_validator(mode="after")
    def _range_is_sane(self) -> ElectrodeConfig:
        for label, value in (("min_v", self.min_v), ("max_v", self.max_v), ("rest_v", self.rest_v)):
            if not math.isfinite(value):
                raise ValueError(f"{label} must be a finite number of volts")
        if self.min_v >= self.max_v:
            raise ValueError(
                f"inverted range: min_v ({self.min_v} V) must be below max_v ({self.max_v} V)"
            )
        if not self.min_v <= 0.0 <= self.max_v:
            raise ValueError(
                f"range [{self.min_v}, {self.max_v}] V must contain 0 V, the safe state"
            )
        if not self.min_v <= self.rest_v <= self.max_v:
            raise ValueError(f"rest_v ({self.rest_v} V) lies outside [{self.min_v}, {self.max_v}]")
        return self

    def to_electrode(self) -> Electrode:
        """The device-level description."""
        return Electrode(self.name, self.role, self.min_v, self.max_v, self.rest_v)


class OutputConfig(_Strict):
    """One current output."""

    name: str = Field("out", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class AmplifierConfig(_Strict):
    """The transimpedance (current-to-voltage) amplifier in front of the ADC."""

    gain_v_per_a: float = Field(
        description="Transimpedance gain (V/A); negative for an inverting amplifier."
    )
    bandwidth_hz: float | None = Field(
        None, gt=0, description="First-order -3 dB bandwidth (Hz); null = much faster than tones."
    )
    output_swing_v: float = Field(4.0, gt=0, description="Output saturates at +/- this (V).")

    @field_validator("gain_v_per_a")
    @classmethod
    def _gain_nonzero(cls, value: float) -> float:
        if value == 0 or not math.isfinite(value):
            raise ValueError("gain must be a non-zero finite number of V/A (e.g. 2.5e7)")
        return value

    @property
    def saturation_a(self) -> float:
        """Output current (A) at which the amplifier saturates."""
        return self.output_swing_v / abs(self.gain_v_per_a)


class SafetyConfig(_Strict):
    """Global safety limits, applied to every sample on top of each electrode's range."""

    max_abs_v: float = Field(1.6, gt=0, le=HARD_VOLTAGE_CEILING_V, description="|V| ceiling (V).")
    slew_v_per_s: float = Field(200.0, gt=0, description="Maximum slew rate (V/s).")
    ramp_v_per_s: float | None = Field(
        None, gt=0, description="Rate of generated ramps (V/s); default the slew limit."
    )
    state_file: Path | None = Field(
        None,
        description="Where the last commanded voltages are persisted (relative to the config "
        "file); default: <state dir>/<setup name>.voltages.json, state dir from "
        "$LABCTL_STATE_DIR or $XDG_STATE_HOME/labctl.",
    )

    @model_validator(mode="after")
    def _ramp_below_slew(self) -> SafetyConfig:
        if self.ramp_v_per_s is not None and self.ramp_v_per_s > self.slew_v_per_s:
            raise ValueError("ramp_v_per_s must not exceed slew_v_per_s")
        return self


class SetupConfig(_Strict):
    """The physical (or simulated) setup."""

    name: str = Field("setup", description="Name recorded with every run.")
    backend: BackendConfig | None = Field(
        None, description="One instrument that fills every role it can (today's usual case)."
    )
    instruments: dict[str, InstrumentConfig] | None = Field(
        None, description="Several named instruments; give 'roles' too. Instead of 'backend'."
    )
    roles: RolesConfig | None = Field(None, description="What each of 'instruments' does.")
    sample_rate_hz: float = Field(gt=0, description="AO/AI sample rate (Hz).")
    amplifier: AmplifierConfig
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    electrodes: list[ElectrodeConfig] = Field(min_length=1)
    outputs: list[OutputConfig] = Field(default_factory=lambda: [OutputConfig()], min_length=1)
    record_budget_mib: float = Field(
        DEFAULT_RECORD_BUDGET_MIB,
        gt=0,
        description="Memory budget of one record (MiB): samples x (electrodes + outputs) x 8 "
        "bytes. A configuration whose records would exceed it is refused at validation, with "
        "the numbers; processing a record takes a few times more memory than the record.",
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> SetupConfig:
        if (self.backend is None) == (self.instruments is None):
            raise ValueError(
                "give either 'backend' (one instrument) or 'instruments' with 'roles' "
                "(a composite setup), not both and not neither"
            )
        if self.instruments is not None:
            if self.roles is None:
                raise ValueError("'instruments' needs 'roles' (at least roles.source)")
            for role, name in self.roles.named():
                if name not in self.instruments:
                    known = ", ".join(self.instruments) or "none"
                    raise ValueError(f"{role}: no instrument {name!r}; instruments: {known}")
            electrodes = {e.name for e in self.electrodes}
            for electrode in self.roles.sine_sources:
                if electrode not in electrodes:
                    raise ValueError(f"roles.sine_sources: no electrode {electrode!r}")
        elif self.roles is not None:
            raise ValueError("'roles' belongs to 'instruments'; with 'backend' leave it out")
        names = [e.name for e in self.electrodes] + [o.name for o in self.outputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicated electrode/output names: {', '.join(duplicates)}")
        ceiling = self.safety.max_abs_v
        for e in self.electrodes:
            if max(abs(e.min_v), abs(e.max_v)) > ceiling:
                raise ValueError(
                    f"electrode {e.name!r}: range [{e.min_v}, {e.max_v}] V exceeds the safety "
                    f"ceiling safety.max_abs_v = {ceiling} V; narrow the range or raise the ceiling"
                )
        return self

    def instrument_configs(self) -> dict[str, InstrumentConfig]:
        """Every instrument by name; the one ``backend`` is named after its registry name."""
        if self.instruments is not None:
            return dict(self.instruments)
        assert self.backend is not None  # guaranteed by the cross-checks
        return {
            self.backend.name: InstrumentConfig(
                backend=self.backend.name, settings=self.backend.settings
            )
        }

    def settings_path(self, instrument: str) -> tuple[str, ...]:
        """Field path of an instrument's settings, for error messages."""
        if self.instruments is not None:
            return ("setup", "instruments", instrument, "settings")
        return ("setup", "backend", "settings")

    def record_bytes(self, n_samples: float) -> float:
        """Bytes of a record of ``n_samples``: the drive of every electrode and the readout of
        every output, float64."""
        return n_samples * (len(self.electrodes) + len(self.outputs)) * 8.0

    def electrode_objects(self) -> tuple[Electrode, ...]:
        """Electrodes as device-level objects, in configuration order."""
        return tuple(e.to_electrode() for e in self.electrodes)

    def output_objects(self) -> tuple[CurrentOutput, ...]:
        """Outputs as device-level objects."""
        return tuple(
            CurrentOutput(o.name, self.amplifier.gain_v_per_a, self.amplifier.saturation_a)
            for o in self.outputs
        )

    def electrode_index(self, name: str) -> int:
        """Row of electrode ``name`` in waveforms."""
        for index, electrode in enumerate(self.electrodes):
            if electrode.name == name:
                return index
        raise KeyError(name)

    def names_with_role(self, role: ElectrodeRole) -> list[str]:
        """Names of the electrodes with ``role``, in configuration order."""
        return [e.name for e in self.electrodes if e.role == role]


class SweepConfig(_Strict):
    """A voltage sweep on one electrode."""

    electrode: str
    start_v: float
    stop_v: float
    points: int = Field(ge=2, le=10_000)


class MeasureConfig(_Strict):
    """What ``labctl measure`` applies."""

    operating_point: dict[str, float] = Field(
        default_factory=dict, description="Electrode name -> DC voltage (V); others rest."
    )
    sweep: SweepConfig | None = None
    window_s: float = Field(0.05, gt=0, description="Averaging window per point (s).")
    settle_s: float = Field(0.01, ge=0, description="Wait after each ramp (s).")
