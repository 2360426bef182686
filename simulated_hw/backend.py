"""The in-process simulated DNPU backend (registry name ``simulated``), labctl's default.

It implements :class:`labctl.device.ElectrodeBackend` on a :class:`simulated_hw.bench.SimBench`:
a device model (the hopping-network physics model or an MLP surrogate), the measurement chain
(amplifier, noise, drift, ADC) and a time base. The amplifier gain, bandwidth and swing come
from the setup's ``amplifier`` section, so the same configuration describes a real setup.

Optionally the bench state (present electrode voltages and the safety audit) is written to a
JSON ``state_file`` after every write: the simulated counterpart of looking at the instrument
from outside the process, used by tests that kill the process.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from labctl.config import SetupConfig
from labctl.device import (
    Acquisition,
    CurrentOutput,
    Electrode,
    ElectrodeBackend,
    FloatArray,
)
from labctl.registry import BackendSpec
from simulated_hw.bench import SimBench
from simulated_hw.chain import ChainSettings, MeasurementChain
from simulated_hw.hopping import HoppingNetworkModel
from simulated_hw.models import DeviceModel, ResistorModel, gradient_fd
from simulated_hw.surrogate import SurrogateModel, default_surrogate_path
from simulated_hw.timebase import TimeBase

TIMEBASE_HZ = 100e6
"""Simulated DAQ timebase (Hz): rates are coerced to TIMEBASE_HZ / integer divisor."""


class EffectsSettings(BaseModel):
    """Which measurement-chain effects are simulated (switch off for exact tests)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    noise: bool = True
    flicker: bool = True
    drift: bool = True
    bandwidth: bool = True
    saturation: bool = True
    quantisation: bool = True


class SimulatedSettings(BaseModel):
    """Settings of the simulated DNPU backend (``setup.backend.settings``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: Literal["hopping", "surrogate"] = Field(
        "hopping", description="'hopping' (physics model) or 'surrogate' (MLP digital twin)."
    )
    seed: int = Field(0, ge=0, description="Seed of the device (hopping) and of the noise.")
    noise_seed: int | None = Field(
        None, ge=0, description="Seed of the noise alone (default: seed); same device, new noise."
    )
    surrogate_path: Path | None = Field(
        None, description="NPZ surrogate (relative to the config file); default: shared device."
    )
    realtime: bool = Field(False, description="Pace the simulation in real time.")
    noise_psd_at_1khz_a2_per_hz: float = Field(
        1e-23, ge=0, description="Output current noise PSD at 1 kHz (A^2/Hz); paper: 1e-23."
    )
    flicker_corner_hz: float = Field(100.0, gt=0, description="1/f corner frequency (Hz).")
    drift_a_per_sqrt_s: float = Field(2e-12, ge=0, description="Random-walk drift (A/sqrt(s)).")
    adc_range_v: float = Field(10.0, gt=0, description="ADC input range +/- (V).")
    adc_bits: int = Field(16, ge=8, le=32, description="ADC resolution (bits).")
    adc_delay_samples: int = Field(
        0, ge=0, description="ADC digital-filter group delay (samples); adds chain phase lag."
    )
    effects: EffectsSettings = Field(default_factory=EffectsSettings)
    state_file: Path | None = Field(None, description="Write bench state JSON here per write.")

    @field_validator("surrogate_path", "state_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is not None and not value.is_absolute() and base is not None:
            return (Path(base) / value).resolve()
        return value

    def resolved_surrogate_path(self) -> Path:
        """The surrogate file to load."""
        return self.surrogate_path if self.surrogate_path is not None else default_surrogate_path()


def build_model(settings: SimulatedSettings) -> DeviceModel:
    """The device model the settings ask for."""
    if settings.model == "surrogate":
        return SurrogateModel.from_npz(settings.resolved_surrogate_path())
    return HoppingNetworkModel(seed=settings.seed)


def chain_settings(setup: SetupConfig, settings: SimulatedSettings) -> ChainSettings:
    """Measurement-chain settings from the setup's amplifier and the backend settings."""
    amplifier = setup.amplifier
    effects = settings.effects
    return ChainSettings(
        gain_v_per_a=amplifier.gain_v_per_a,
        bandwidth_hz=amplifier.bandwidth_hz,
        output_swing_v=amplifier.output_swing_v,
        noise_psd_at_1khz_a2_per_hz=settings.noise_psd_at_1khz_a2_per_hz,
        flicker_corner_hz=settings.flicker_corner_hz,
        drift_a_per_sqrt_s=settings.drift_a_per_sqrt_s,
        adc_range_v=settings.adc_range_v,
        adc_bits=settings.adc_bits,
        enable_noise=effects.noise,
        enable_flicker=effects.flicker,
        enable_drift=effects.drift,
        enable_bandwidth=effects.bandwidth and amplifier.bandwidth_hz is not None,
        enable_saturation=effects.saturation,
        enable_quantisation=effects.quantisation,
        adc_delay_samples=settings.adc_delay_samples,
    )


class SimulatedBackend(ElectrodeBackend):
    """In-process backend on a :class:`SimBench`.

    Args:
        setup: The validated setup (electrodes, amplifier, rate).
        settings: The validated backend settings.
        bench: An existing bench to stand behind (shared with other simulated instruments);
            built from the settings when omitted.
    """

    def __init__(
        self, setup: SetupConfig, settings: SimulatedSettings, bench: SimBench | None = None
    ) -> None:
        self._setup = setup
        self._settings = settings
        self._electrodes = setup.electrode_objects()
        self._outputs = setup.output_objects()
        self._bench = bench
        self._is_open = False

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        return self._electrodes

    @property
    def outputs(self) -> tuple[CurrentOutput, ...]:
        return self._outputs

    @property
    def bench(self) -> SimBench:
        """The simulated bench (for tests and other simulated instruments)."""
        if self._bench is None:
            self._bench = make_bench(self._setup, self._settings)
        return self._bench

    def open(self) -> None:
        _ = self.bench
        self._is_open = True
        self._write_state()

    def close(self) -> None:
        self._is_open = False
        self._write_state()

    def coerce_sample_rate(self, sample_rate_hz: float) -> float:
        divisor = max(1, round(TIMEBASE_HZ / sample_rate_hz))
        return TIMEBASE_HZ / divisor

    def present_voltages(self) -> FloatArray:
        return np.array(self.bench.applied_v, dtype=np.float64)

    def write_read(self, waveform_v: FloatArray, sample_rate_hz: float) -> Acquisition:
        if not self._is_open:
            raise RuntimeError("simulated backend is not open")
        record = self.bench.play(waveform_v, sample_rate_hz)
        self._write_state()
        gain = self._setup.amplifier.gain_v_per_a
        current = np.asarray(record.adc_v, dtype=np.float64)[None, :] / gain
        return Acquisition(
            current_a=current,
            sample_rate_hz=sample_rate_hz,
            saturated=np.array([bool(record.saturated)]),
            metadata={
                "t0_s": record.t0_s,
                "gain_v_per_a": gain,
                "instrument": self.identity(),
            },
        )

    def identity(self) -> dict[str, Any]:
        settings = self._settings
        identity: dict[str, Any] = {
            "backend": "simulated",
            "model": settings.model,
            "seed": settings.seed,
        }
        if settings.model == "surrogate":
            identity["surrogate_path"] = str(settings.resolved_surrogate_path())
        return identity

    def reference_gradient(self, voltages_v: FloatArray) -> FloatArray | None:
        """The model's dI/dV (A/V): exact for the hopping model, central FD otherwise."""
        model = self.bench.model
        point = np.asarray(voltages_v, dtype=np.float64).reshape(1, -1)
        if isinstance(model, HoppingNetworkModel):
            return model.gradient_a_per_v(point)[0]
        return gradient_fd(model, point[0], step_v=1e-5)

    def reference_hessian(self, voltages_v: FloatArray) -> FloatArray | None:
        """The model's d²I/dV² (A/V²) by central differences of its gradient."""
        point = np.asarray(voltages_v, dtype=np.float64).reshape(-1)
        step = 1e-4
        columns = []
        for k in range(point.size):
            shift = np.zeros_like(point)
            shift[k] = step
            plus = self.reference_gradient(point + shift)
            minus = self.reference_gradient(point - shift)
            assert plus is not None and minus is not None
            columns.append((plus - minus) / (2 * step))
        hessian = np.array(columns).T
        return 0.5 * (hessian + hessian.T)

    @contextlib.contextmanager
    def reference_resistor(self, electrode_index: int, resistance_ohm: float) -> Iterator[None]:
        """Swap a resistor from ``electrode_index`` to the output in place of the device."""
        resistor = ResistorModel(self.bench.n_electrodes, electrode_index, resistance_ohm)
        with self.bench.device_replaced(resistor):
            yield

    def _write_state(self) -> None:
        path = self._settings.state_file
        if path is None or self._bench is None:
            return
        audit = self._bench.audit
        state = {
            "open": self._is_open,
            "applied_v": [float(v) for v in self._bench.applied_v],
            "min_v": [float(np.nan_to_num(v)) for v in audit.min_v],
            "max_v": [float(np.nan_to_num(v)) for v in audit.max_v],
            "max_slew_v_per_s": [float(v) for v in audit.max_slew_v_per_s],
            "total_samples": int(audit.total_samples),
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)


def make_bench(setup: SetupConfig, settings: SimulatedSettings) -> SimBench:
    """A fresh bench for this setup and these settings."""
    model = build_model(settings)
    noise_seed = settings.seed if settings.noise_seed is None else settings.noise_seed
    chain = MeasurementChain(chain_settings(setup, settings), seed=noise_seed)
    return SimBench(model, chain, TimeBase(realtime=settings.realtime))


def _check_setup(setup: SetupConfig, settings: SimulatedSettings) -> list[str]:
    problems = []
    if settings.model == "surrogate":
        path = settings.resolved_surrogate_path()
        if not path.is_file():
            problems.append(
                f"backend.settings.surrogate_path: surrogate file {path} not found; "
                "give the path of an NPZ surrogate (relative to the config file)"
            )
            return problems
    try:
        model = build_model(settings)
    except (OSError, ValueError) as exc:
        return [f"backend.settings: cannot load the device model: {exc}"]
    if len(setup.electrodes) != model.n_electrodes:
        problems.append(
            f"electrodes: the simulated {settings.model} device has {model.n_electrodes} "
            f"voltage electrodes but {len(setup.electrodes)} are configured"
        )
    if len(setup.outputs) != 1:
        problems.append("outputs: the simulated device has exactly one current output")
    return problems


def _factory(setup: SetupConfig, settings: SimulatedSettings) -> SimulatedBackend:
    return SimulatedBackend(setup, settings)


SIMULATED_BACKEND = BackendSpec(
    name="simulated",
    description="In-process simulated DNPU (hopping-network physics or MLP surrogate)",
    settings_model=SimulatedSettings,
    factory=_factory,
    check_setup=_check_setup,
)
