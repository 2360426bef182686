"""Simulated devices for the benchmark suite, chain calibration and small statistics helpers.

Three devices:

* :func:`open_dnpu`: the shipped 7-electrode simulated DNPU (``configs/sim_dnpu.yaml``, hopping
  physics model, every chain effect on) with a ``homodyne`` section merged in.
* :func:`open_large_dnpu`: the hopping-network physics model with ``n_controls`` control
  electrodes plus two data inputs (:meth:`simulated_hw.hopping.HoppingParameters.scaled`, e.g.
  12, 22 or 42 voltage electrodes), for scaling studies with more parameters than a DNPU has.
  With 5 controls it is the shipped 7-electrode device.
* :func:`open_synthetic`: a synthetic smooth device (:class:`TanhNetworkModel`), kept for
  comparison with earlier measurements.

The ``simulated`` backend's configuration check insists on the shipped electrode count, so the
configuration of the two larger devices is validated with :class:`labctl.config.LabConfig` and
:class:`simulated_hw.backend.SimulatedSettings` directly, and the backend is built on an explicit
:class:`simulated_hw.bench.SimBench`, then wrapped in a :class:`SafeDevice` exactly as
:func:`labctl.connect.build_device` does.

Both come with a chain calibration (:func:`calibrate`) measured through the reference resistor,
so the engine can project onto the calibrated phase.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labctl.config import LabConfig, LoadedConfig, merge_overrides, parse_config
from labctl.connect import build_device
from labctl.device import FloatArray
from labctl.device.safety import SafeDevice, SafetyLimits
from labctl.homodyne.calibrate import measure_chain_response
from labctl.homodyne.calibration import ChainResponse
from labctl.homodyne.engine import GradientEngine
from simulated_hw.backend import SimulatedBackend, SimulatedSettings, chain_settings
from simulated_hw.bench import SimBench
from simulated_hw.chain import MeasurementChain
from simulated_hw.hopping import HoppingNetworkModel, HoppingParameters
from simulated_hw.models import DeviceModel
from simulated_hw.timebase import TimeBase

REPO = Path(__file__).resolve().parents[2]
"""The repository (configs, bench): the suite runs from a source checkout."""
CONFIGS = REPO / "configs"


class TanhNetworkModel:
    """A smooth nonlinear synthetic device with any number of electrodes.

    ``I(V) = I_0 + Σ_j a_j tanh(w_j · V + b_j)`` with ``n_units`` hidden units. Seeded random
    weights: ``w_jk ~ N(0, s²)`` with ``s = weight_scale / sqrt(n_electrodes)`` (1/V), so that
    ``w_j · V`` is of order 1 for voltages spread over ±1 V whatever the electrode count;
    ``b_j ~ N(0, 0.3²)``; ``a_j ~ N(0, 1)`` rescaled so that the RMS of dI/dV over the control
    box is about ``gradient_rms_a_per_v`` per electrode. ``I_0`` centres the output; currents are
    tens of nA and gradients tens of nA/V. The third derivative is small on the 10 mV scale of
    the perturbations (curvature bias well below 0.1 nA/V), so differences between methods come
    from noise, drift and time, not from the device.

    Args:
        n_electrodes: Number of voltage electrodes.
        seed: Seed of the weights.
        n_units: Hidden units.
        weight_scale: See above (dimensionless).
        gradient_rms_a_per_v: Target RMS gradient component (A/V).
        offset_a: Output at the centre of the box (A), roughly.
        range_v: Every electrode's recommended range is ``[-range_v, range_v]`` (V).
    """

    def __init__(
        self,
        n_electrodes: int,
        seed: int = 0,
        *,
        n_units: int = 8,
        weight_scale: float = 2.0,
        gradient_rms_a_per_v: float = 20e-9,
        offset_a: float = 40e-9,
        range_v: float = 1.0,
    ) -> None:
        if n_electrodes < 1 or n_units < 1:
            raise ValueError("n_electrodes and n_units must be positive")
        rng = np.random.default_rng(seed)
        self._n = int(n_electrodes)
        self._range_v = float(range_v)
        self._w = rng.normal(0.0, weight_scale / math.sqrt(n_electrodes), (n_units, n_electrodes))
        self._b = rng.normal(0.0, 0.3, n_units)
        self._a = rng.normal(0.0, 1.0, n_units)
        probe = rng.uniform(-range_v, range_v, (512, n_electrodes))
        rms = float(np.sqrt(np.mean(self.gradient_a_per_v(probe) ** 2)))
        self._a *= gradient_rms_a_per_v / rms
        self._offset = 0.0
        self._offset = offset_a - float(self.current_a(np.zeros(n_electrodes))[0])

    @property
    def n_electrodes(self) -> int:
        """Number of voltage electrodes."""
        return self._n

    @property
    def voltage_ranges_v(self) -> FloatArray:
        """``[-range_v, range_v]`` (V) per electrode, shape ``(n_electrodes, 2)``."""
        return np.tile([-self._range_v, self._range_v], (self._n, 1))

    def current_a(self, voltages_v: FloatArray) -> FloatArray:
        """Output current (A) per row of ``voltages_v`` (V), shape ``(n_samples,)``."""
        v = np.atleast_2d(np.asarray(voltages_v, dtype=np.float64))
        return self._offset + np.tanh(v @ self._w.T + self._b) @ self._a

    def gradient_a_per_v(self, voltages_v: FloatArray) -> FloatArray:
        """Exact dI/dV (A/V), shape ``(n_samples, n_electrodes)``."""
        v = np.atleast_2d(np.asarray(voltages_v, dtype=np.float64))
        sech2 = 1.0 - np.tanh(v @ self._w.T + self._b) ** 2
        return (sech2 * self._a) @ self._w


def dnpu_config(override: dict[str, Any]) -> LoadedConfig:
    """``configs/sim_dnpu.yaml`` with ``override`` merged in, validated by ``parse_config``."""
    path = CONFIGS / "sim_dnpu.yaml"
    data = merge_overrides(yaml.safe_load(path.read_text()), override)
    return parse_config(yaml.safe_dump(data), source=path)


@contextmanager
def open_dnpu(override: dict[str, Any]) -> Iterator[tuple[SafeDevice, LoadedConfig]]:
    """The simulated 7-electrode DNPU (opened) and its configuration."""
    loaded = dnpu_config(override)
    with build_device(loaded) as device:
        yield device, loaded


@dataclass(frozen=True)
class SyntheticSettings:
    """Setup of the synthetic N-control device (SI units).

    Attributes:
        n_controls: Control electrodes ``c0..c{n-1}``; two inputs ``in0, in1`` come first.
        model_seed: Seed of the model weights.
        noise_seed: Seed of the chain noise.
        sample_rate_hz: AO/AI rate (Hz).
        gain_v_per_a: Amplifier gain (V/A); 1e7 (100 nA per volt) saturates at ±400 nA, room
            for the wider current spread of many electrodes.
        bandwidth_hz: Amplifier bandwidth (Hz).
        noise_psd_at_1khz_a2_per_hz: Output-noise PSD at 1 kHz (A²/Hz), white + 1/f.
        flicker_corner_hz: 1/f corner (Hz).
        drift_a_per_sqrt_s: Random-walk drift (A/√s).
        slew_v_per_s: Safety slew limit (V/s): room for 10 mV tones up to 4 kHz.
        ramp_v_per_s: Rate of DC ramps (V/s).
        range_v: Electrode range ±range_v (V).
        inputs_at_ends: Electrodes ``e0..e{n+1}`` with the data inputs first and last (the
            hopping model's order) instead of ``in0, in1, c0..c{n-1}``.
    """

    n_controls: int
    model_seed: int = 0
    noise_seed: int = 0
    sample_rate_hz: float = 50_000.0
    gain_v_per_a: float = 1e7
    bandwidth_hz: float = 20_000.0
    noise_psd_at_1khz_a2_per_hz: float = 1e-23
    flicker_corner_hz: float = 100.0
    drift_a_per_sqrt_s: float = 2e-12
    slew_v_per_s: float = 1000.0
    ramp_v_per_s: float = 200.0
    range_v: float = 1.0
    inputs_at_ends: bool = False


def synthetic_config(settings: SyntheticSettings, homodyne: dict[str, Any]) -> LoadedConfig:
    """The validated configuration of the synthetic device (no 7-electrode backend check)."""
    r = settings.range_v
    if settings.inputs_at_ends:  # e0 input, e1..en controls, e(n+1) input: the DNPU's order
        n = settings.n_controls
        electrodes = [
            {
                "name": f"e{i}",
                "role": "input" if i in (0, n + 1) else "control",
                "min_v": -r,
                "max_v": r,
            }
            for i in range(n + 2)
        ]
    else:
        electrodes = [
            {"name": f"in{i}", "role": "input", "min_v": -r, "max_v": r} for i in range(2)
        ]
        electrodes += [
            {"name": f"c{i}", "role": "control", "min_v": -r, "max_v": r}
            for i in range(settings.n_controls)
        ]
    backend_settings = {
        "model": "hopping",  # not used: the bench below carries its own model
        "seed": settings.noise_seed,
        "noise_psd_at_1khz_a2_per_hz": settings.noise_psd_at_1khz_a2_per_hz,
        "flicker_corner_hz": settings.flicker_corner_hz,
        "drift_a_per_sqrt_s": settings.drift_a_per_sqrt_s,
    }
    data = {
        "setup": {
            "name": f"bench-{settings.n_controls}-controls",
            "backend": {"name": "simulated", "settings": backend_settings},
            "sample_rate_hz": settings.sample_rate_hz,
            "amplifier": {
                "gain_v_per_a": settings.gain_v_per_a,
                "bandwidth_hz": settings.bandwidth_hz,
                "output_swing_v": 4.0,
            },
            "safety": {
                "max_abs_v": 1.6,
                "slew_v_per_s": settings.slew_v_per_s,
                "ramp_v_per_s": settings.ramp_v_per_s,
            },
            "electrodes": electrodes,
            "outputs": [{"name": "out"}],
        },
        "homodyne": homodyne,
    }
    text = yaml.safe_dump(data)
    config = LabConfig.model_validate(data)
    backend = config.setup.backend
    assert backend is not None  # the setup above has one `backend`, no `instruments`
    validated = SimulatedSettings.model_validate(backend.settings)
    return LoadedConfig(
        config=config, instrument_settings={backend.name: validated}, source=None, text=text
    )


@contextmanager
def open_with_model(
    settings: SyntheticSettings, homodyne: dict[str, Any], model: DeviceModel
) -> Iterator[tuple[SafeDevice, LoadedConfig]]:
    """A device with ``n_controls + 2`` electrodes standing on ``model``, behind the safety
    layer (opened), and its configuration."""
    loaded = synthetic_config(settings, homodyne)
    setup = loaded.setup
    if model.n_electrodes != len(setup.electrodes):
        raise ValueError(
            f"the model has {model.n_electrodes} electrodes, the setup {len(setup.electrodes)}"
        )
    backend_settings = loaded.backend_settings
    assert isinstance(backend_settings, SimulatedSettings)
    chain = MeasurementChain(chain_settings(setup, backend_settings), seed=settings.noise_seed)
    bench = SimBench(model, chain, TimeBase())
    backend = SimulatedBackend(setup, backend_settings, bench=bench)
    limits = SafetyLimits(
        max_abs_v=setup.safety.max_abs_v,
        slew_v_per_s=setup.safety.slew_v_per_s,
        ramp_v_per_s=setup.safety.ramp_v_per_s,
    )
    with SafeDevice(backend, limits, setup.sample_rate_hz) as device:
        yield device, loaded


@contextmanager
def open_synthetic(
    settings: SyntheticSettings, homodyne: dict[str, Any]
) -> Iterator[tuple[SafeDevice, LoadedConfig, TanhNetworkModel]]:
    """The synthetic device behind the safety layer (opened), its configuration and model."""
    model = TanhNetworkModel(settings.n_controls + 2, seed=settings.model_seed)
    with open_with_model(settings, homodyne, model) as (device, loaded):
        yield device, loaded, model


def large_dnpu_settings(n_controls: int, noise_seed: int = 0) -> SyntheticSettings:
    """Setup of the larger hopping device: the shipped DNPU's chain and rates (10 kS/s, 2 kHz
    amplifier of 2.53e7 V/A, 1e-5 nA²/Hz at 1 kHz with 1/f corner 100 Hz, drift 2 pA/√s, slew
    200 V/s), electrodes ``in0, in1`` (data inputs) and ``c0..c{n-1}`` in ±1.2 V."""
    return SyntheticSettings(
        n_controls=n_controls,
        noise_seed=noise_seed,
        sample_rate_hz=10_000.0,
        gain_v_per_a=2.53e7,
        bandwidth_hz=2000.0,
        slew_v_per_s=200.0,
        ramp_v_per_s=200.0,
        range_v=1.2,
        inputs_at_ends=True,
    )


def large_dnpu_model(n_controls: int, seed: int = 0) -> HoppingNetworkModel:
    """The hopping model with ``n_controls + 2`` voltage electrodes (seed = device realisation).

    Its electrodes 0 and ``n_controls + 1`` are the data inputs, 1..n_controls the controls: the
    order of :func:`large_dnpu_config` (and of ``configs/sim_dnpu.yaml`` for 5 controls).
    """
    return HoppingNetworkModel(HoppingParameters.scaled(n_controls + 2), seed=seed)


@contextmanager
def open_large_dnpu(
    n_controls: int, homodyne: dict[str, Any], *, noise_seed: int = 0, model_seed: int = 0
) -> Iterator[tuple[SafeDevice, LoadedConfig, HoppingNetworkModel]]:
    """The larger hopping device behind the safety layer (opened), its configuration, model."""
    settings = large_dnpu_settings(n_controls, noise_seed)
    model = large_dnpu_model(n_controls, seed=model_seed)
    with open_with_model(settings, homodyne, model) as (device, loaded):
        yield device, loaded, model


def calibrate(
    device: SafeDevice, loaded: LoadedConfig, frequencies_hz: Sequence[float], window_s: float
) -> ChainResponse:
    """Chain response at ``frequencies_hz`` through the configured reference resistor."""
    config = loaded.config
    electrode = config.homodyne.calibration.electrode or config.perturbed_electrodes()[0]
    index = loaded.setup.electrode_index(electrode)
    with device.reference_resistor(index, config.homodyne.calibration.resistance_ohm):
        return measure_chain_response(device, loaded, sorted(set(frequencies_hz)), window_s)


def engine_for(
    device: SafeDevice,
    loaded: LoadedConfig,
    homodyne: dict[str, Any],
    calibration: ChainResponse | None,
) -> GradientEngine:
    """An engine with the configuration's homodyne section replaced by ``homodyne``."""
    settings = type(loaded.config.homodyne).model_validate(homodyne)
    names = settings.electrodes or loaded.config.perturbed_electrodes()
    return GradientEngine(device, loaded.setup, settings, list(names), calibration)


def random_points(
    device: SafeDevice,
    engine: GradientEngine,
    n_points: int,
    rng: np.random.Generator,
    margin_v: float = 0.0,
) -> FloatArray:
    """Operating points: controls uniform inside ``engine.control_bounds()`` (shrunk by
    ``margin_v``), every other electrode uniform inside its range. Shape ``(n, n_electrodes)``."""
    electrodes = device.electrodes
    low = np.array([e.min_v for e in electrodes])
    high = np.array([e.max_v for e in electrodes])
    c_low, c_high = engine.control_bounds()
    rows = list(engine.electrode_indices)
    low[rows] = c_low + margin_v
    high[rows] = c_high - margin_v
    return rng.uniform(low, high, (n_points, len(electrodes)))


def linear_fit(x: FloatArray, y: FloatArray) -> tuple[float, float, float]:
    """Least-squares line ``y = slope·x + intercept``; returns ``(slope, intercept, R²)``."""
    x = np.ravel(x)
    y = np.ravel(y)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1.0 - float(np.sum(residual**2)) / float(np.sum((y - y.mean()) ** 2))
    return float(slope), float(intercept), r2


def r2_against(truth: FloatArray, estimate: FloatArray) -> float:
    """Coefficient of determination of ``estimate`` as a prediction of ``truth`` (y = x)."""
    truth = np.ravel(truth)
    estimate = np.ravel(estimate)
    return 1.0 - float(np.sum((estimate - truth) ** 2)) / float(np.sum((truth - truth.mean()) ** 2))


def fast_endless_xor_config(directory: Path, iterations: int, name: str | None = None) -> str:
    """``configs/xor_sim.yaml`` made fast and endless, as YAML text: a 10 ms window, no mains
    guard, second-order plan rules, and no stopping rule but ``iterations`` (for long runs)."""
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    data["homodyne"].update(
        {
            "window_s": 0.01,
            "settle_s": 0.002,
            "mains_hz": [],
            "max_order": 2,
            "fade_periods": 1,
            "min_spacing_hz": None,
            "phase": "sign",
        }
    )
    run = {
        "max_iterations": iterations,
        "accuracy_hold_iterations": None,
        "max_restarts": None,
        "directory": str(directory),
        "report": False,
    }
    if name is not None:
        run["name"] = name
    data["run"].update(run)
    return yaml.safe_dump(data, sort_keys=False)
