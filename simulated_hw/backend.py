"""The in-process simulated DNPU backend (registry name ``simulated``), labctl's default.

It stands on a :class:`simulated_hw.bench.SimBench` (a device model, the measurement chain and
a time base) and is, like a DAQ card, a voltage source and a synchronised sampled readout;
being simulated it is also a reference switch and a simulation oracle (see
:mod:`labctl.device.protocols`). The amplifier gain, bandwidth and swing come from the setup's
``amplifier`` section, so the same configuration describes a real setup.

It behaves like a real analog output where safety depends on it:

- in real-time mode a record plays over time in chunks of at most 50 ms; a cancel stops it at
  a chunk boundary and reports the samples generated, and the electrodes hold the sample
  reached;
- with a ``state_file`` the bench state (held voltages and the safety audit) is written after
  every chunk, and read back on open: the electrodes keep their voltages across a killed
  process, as a DAC does;
- ``readback: false`` makes it an output that cannot be read back (like NI AO).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from labctl.config import SetupConfig
from labctl.device import Acquisition, CurrentOutput, Electrode, FloatArray, RecordInterrupted
from labctl.device.registry import BackendSpec
from simulated_hw.bench import SimBench
from simulated_hw.chain import ChainSettings, MeasurementChain
from simulated_hw.hopping import N_VOLTAGE_ELECTRODES, HoppingNetworkModel
from simulated_hw.models import DeviceModel, ResistorModel, gradient_fd
from simulated_hw.surrogate import (
    SurrogateFormatError,
    SurrogateModel,
    default_surrogate_path,
    surrogate_electrode_count,
)
from simulated_hw.timebase import TimeBase

TIMEBASE_HZ = 100e6
"""Simulated DAQ timebase (Hz): rates are coerced to TIMEBASE_HZ / integer divisor."""
CHUNK_S = 0.05
"""Longest piece of a record played at once in real-time mode (s): the cancel latency."""
MAX_SAMPLE_RATE_HZ = 2e6
"""Fastest AO/AI rate the simulated DAQ accepts (Hz), as a fast multifunction card; validation
refuses a higher ``setup.sample_rate_hz``."""


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

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    model: Literal["hopping", "surrogate"] = Field(
        "hopping", description="'hopping' (physics model) or 'surrogate' (MLP digital twin)."
    )
    seed: int = Field(0, ge=0, description="Seed of the device (hopping) and of the noise.")
    noise_seed: int | None = Field(
        None, ge=0, description="Seed of the noise alone (default: seed); same device, new noise."
    )
    surrogate_path: Path | None = Field(
        None,
        description="NPZ surrogate, or a brains-py/SkyNEt .pt/.pickle twin (relative to the "
        "config file); default: shared device.",
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
    state_file: Path | None = Field(
        None,
        description="Bench state JSON, written per chunk and read on open: the electrodes keep "
        "their voltages across a killed process.",
    )
    readback: bool = Field(
        True, description="Whether the outputs can be read back (false: like NI AO)."
    )
    open_delay_s: float = Field(
        0.0, ge=0, le=60, description="Time open() takes (s), as connecting to an instrument."
    )

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
        from labctl.twin.convert import load_surrogate  # NPZ, or a .pt/.pickle twin file

        return load_surrogate(settings.resolved_surrogate_path())
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


class SimulatedBackend:
    """In-process simulated instrument on a :class:`SimBench`.

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
        self._armed: int | None = None
        self._record: list[FloatArray] = []
        self._saturated = False
        self._t0_s = 0.0
        self._lock = threading.Lock()

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
        if self._settings.open_delay_s:
            time.sleep(self._settings.open_delay_s)
        bench = self.bench
        held = self._held_from_state_file()
        if held is not None and bench.last_record is None:
            bench.restore_held(held)
        self._is_open = True
        self._write_state()

    def close(self) -> None:
        self._is_open = False
        self._write_state()

    def coerce_sample_rate(self, sample_rate_hz: float) -> float:
        divisor = max(1, round(TIMEBASE_HZ / sample_rate_hz))
        return TIMEBASE_HZ / divisor

    def present_voltages(self) -> FloatArray:
        if not self._settings.readback:
            return np.full(len(self._electrodes), np.nan)
        return np.array(self.bench.applied_v, dtype=np.float64)

    def arm(self, n_samples: int, sample_rate_hz: float) -> None:
        with self._lock:
            self._armed = int(n_samples)
            self._record = []
            self._saturated = False

    def play(
        self, waveform_v: FloatArray, sample_rate_hz: float, cancel: threading.Event | None
    ) -> None:
        if not self._is_open:
            raise RuntimeError("simulated backend is not open")
        n = waveform_v.shape[1]
        chunk = n
        if self.bench.timebase.realtime:
            chunk = max(1, math.floor(CHUNK_S * sample_rate_hz))
        done = 0
        while done < n:
            if cancel is not None and cancel.is_set():
                raise RecordInterrupted(
                    f"record cancelled after {done} of {n} samples", done, cancelled=True
                )
            piece = waveform_v[:, done : done + chunk]
            record = self.bench.play(piece, sample_rate_hz)
            done += piece.shape[1]
            with self._lock:
                if self._armed is not None:
                    if not self._record:
                        self._t0_s = record.t0_s
                    self._record.append(np.asarray(record.adc_v, dtype=np.float64))
                    self._saturated = self._saturated or bool(record.saturated)
            self._write_state()

    def fetch(self) -> Acquisition:
        with self._lock:
            if self._armed is None:
                raise RuntimeError("fetch() without arm(): nothing was recorded")
            adc_v = np.concatenate(self._record) if self._record else np.empty(0)
            n, self._armed = self._armed, None
        if adc_v.size != n:
            raise RuntimeError(f"recorded {adc_v.size} samples, {n} were armed")
        gain = self._setup.amplifier.gain_v_per_a
        return Acquisition(
            current_a=adc_v[None, :] / gain,
            sample_rate_hz=self.bench_rate(),
            saturated=np.array([self._saturated]),
            metadata={"t0_s": self._t0_s, "gain_v_per_a": gain, "instrument": self.identity()},
        )

    def bench_rate(self) -> float:
        """The rate (Hz) of the last record played on the bench."""
        record = self.bench.last_record
        return record.sample_rate_hz if record is not None else self._setup.sample_rate_hz

    def simulation_state(self) -> dict[str, Any]:
        """The bench's random and filter state (JSON-ready), for an exact resume of a run."""
        return {"chain": self.bench.chain.state_dict()}

    def restore_simulation_state(self, state: Mapping[str, Any]) -> None:
        """Continue the noise and filters from :meth:`simulation_state` (a resumed run)."""
        self.bench.chain.load_state_dict(state["chain"])

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

    def reference_gradient(self, voltages_v: FloatArray) -> FloatArray:
        """The model's dI/dV (A/V): exact for the hopping and surrogate models (back-propagated
        through the MLP), central FD otherwise."""
        model = self.bench.model
        point = np.asarray(voltages_v, dtype=np.float64).reshape(1, -1)
        if isinstance(model, HoppingNetworkModel):
            return model.gradient_a_per_v(point)[0]
        if isinstance(model, SurrogateModel):
            return model.current_and_gradient_a(point)[1][0]
        return gradient_fd(model, point[0], step_v=1e-5)

    def reference_hessian(self, voltages_v: FloatArray) -> FloatArray:
        """The model's d²I/dV² (A/V²) by central differences of its gradient."""
        point = np.asarray(voltages_v, dtype=np.float64).reshape(-1)
        step = 1e-4
        columns = []
        for k in range(point.size):
            shift = np.zeros_like(point)
            shift[k] = step
            plus = self.reference_gradient(point + shift)
            minus = self.reference_gradient(point - shift)
            columns.append((plus - minus) / (2 * step))
        hessian = np.array(columns).T
        return 0.5 * (hessian + hessian.T)

    @contextlib.contextmanager
    def reference_resistor(self, electrode_index: int, resistance_ohm: float) -> Iterator[None]:
        """Swap a resistor from ``electrode_index`` to the output in place of the device."""
        resistor = ResistorModel(self.bench.n_electrodes, electrode_index, resistance_ohm)
        with self.bench.device_replaced(resistor):
            yield

    def _held_from_state_file(self) -> FloatArray | None:
        path = self._settings.state_file
        if path is None:
            return None
        try:
            state = json.loads(path.read_text())
            held = np.array(state["applied_v"], dtype=np.float64)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return held if held.shape == (len(self._electrodes),) else None

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
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)


def make_bench(setup: SetupConfig, settings: SimulatedSettings) -> SimBench:
    """A fresh bench for this setup and these settings."""
    model = build_model(settings)
    noise_seed = settings.seed if settings.noise_seed is None else settings.noise_seed
    chain = MeasurementChain(chain_settings(setup, settings), seed=noise_seed)
    return SimBench(model, chain, TimeBase(realtime=settings.realtime))


def bench_from_config(
    path: str | Path, settings_overrides: dict[str, Any] | None = None
) -> SimBench:
    """A fresh bench from a labctl configuration file with ``backend: simulated``.

    ``settings_overrides`` are merged into its ``setup.backend.settings`` first (e.g.
    ``{"realtime": True}``). Used by the simulated instruments that stand behind a network
    protocol (the NI gRPC server, the lock-ins), so they simulate the same device, seed and
    settings as the in-process backend of that file.

    Raises:
        ConfigError: The file does not load, or its backend is not ``simulated``.
    """
    import yaml

    from labctl.config import ConfigError, ConfigIssue, load_config, merge_overrides, parse_config

    path = Path(path)
    if settings_overrides:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                str(path), [ConfigIssue("", f"cannot read the file: {exc}")]
            ) from None
        data = merge_overrides(data, {"setup": {"backend": {"settings": settings_overrides}}})
        loaded = parse_config(yaml.safe_dump(data), source=path)
    else:
        loaded = load_config(path)
    backend = loaded.setup.backend
    settings = loaded.backend_settings if backend is not None else None
    if (
        backend is None
        or backend.name != "simulated"
        or not isinstance(settings, SimulatedSettings)
    ):
        raise ConfigError(
            str(path),
            [ConfigIssue("setup.backend", "the bench needs a setup with 'backend: simulated'")],
        )
    return make_bench(loaded.setup, settings)


def _check_setup(setup: SetupConfig, settings: SimulatedSettings) -> list[str]:
    """Cross-checks without side effects: no device model is built."""
    problems = []
    if settings.model == "surrogate":
        path = settings.resolved_surrogate_path()
        if not path.is_file():
            return [
                f"backend.settings.surrogate_path: surrogate file {path} not found; "
                "give the path of an NPZ surrogate (relative to the config file)"
            ]
        from labctl.twin.convert import is_torch_file, surrogate_electrodes
        from labctl.twin.unpickle import TorchFileError

        try:
            if is_torch_file(path):
                n_electrodes = surrogate_electrodes(path)
            else:
                n_electrodes = surrogate_electrode_count(path)
        except (SurrogateFormatError, TorchFileError) as exc:
            return [f"backend.settings.surrogate_path: {exc}"]
    else:
        n_electrodes = N_VOLTAGE_ELECTRODES
    if len(setup.electrodes) != n_electrodes:
        problems.append(
            f"electrodes: the simulated {settings.model} device has {n_electrodes} "
            f"voltage electrodes but {len(setup.electrodes)} are configured"
        )
    if len(setup.outputs) != 1:
        problems.append("outputs: the simulated device has exactly one current output")
    return problems


def _factory(
    setup: SetupConfig, settings: SimulatedSettings, built: Mapping[str, object]
) -> SimulatedBackend:
    return SimulatedBackend(setup, settings)


SIMULATED_BACKEND = BackendSpec(
    name="simulated",
    description="In-process simulated DNPU (hopping-network physics or MLP surrogate)",
    settings_model=SimulatedSettings,
    factory=_factory,
    check_setup=_check_setup,
    max_sample_rate_hz=lambda settings: MAX_SAMPLE_RATE_HZ,
)
