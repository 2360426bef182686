"""Composite setups from YAML: a DAQ-like source and readout, a demodulating readout and a sine
source on one simulated bench; tone specs are checked before any oscillator is programmed.

The lock-in here is written in the test, on the simulated bench: real lock-in drivers and
simulated lock-ins come with their own issue.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from labctl.config import ConfigError, LoadedConfig, merge_overrides, parse_config
from labctl.connect import build_device
from labctl.device.composite import SetupError
from labctl.device.protocols import (
    DemodulatedReading,
    DemodulatedReadout,
    DemodulatorSettings,
    SineSource,
)
from labctl.device.registry import BackendSpec, register_backend, unregister_backend
from labctl.device.safety import SafetyViolation
from labctl.device.tones import ToneSpec
from simulated_hw.backend import SimulatedBackend
from simulated_hw.bench import SimBench
from tests.conftest import CONFIGS, NO_EFFECTS, bench_of

RATE = 10_000.0


class LockInSettings(BaseModel):
    """Settings of the test lock-in."""

    model_config = ConfigDict(extra="forbid")
    bench_of: str


class BenchLockIn:
    """A minimal lock-in on a shared simulated bench: demodulates its last record, and has a
    sine output whose every call is logged (so tests can see what was programmed, and when)."""

    def __init__(self, bench: SimBench, log: list[str]) -> None:
        self._bench = bench
        self._settings = DemodulatorSettings(100.0, 1, 0.01, 24, 1e-6)
        self.log = log
        self.programmed: list[ToneSpec] = []

    def open(self) -> None:
        self.log.append("lockin open")

    def close(self) -> None:
        self.log.append("lockin close")

    def identity(self) -> dict[str, Any]:
        return {"model": "bench lock-in (test)"}

    def configure(self, settings: DemodulatorSettings) -> DemodulatorSettings:
        self._settings = settings
        return settings

    def settling_time_s(self) -> float:
        return 10 * self._settings.time_constant_s

    def read(self) -> DemodulatedReading:
        record = self._bench.last_record
        assert record is not None
        f = self._settings.reference_hz * self._settings.harmonic
        phase = 2 * math.pi * f * record.times_s()
        current = record.measured_current_a
        x = math.sqrt(2) * float(np.mean(current * np.sin(phase)))
        y = math.sqrt(2) * float(np.mean(current * np.cos(phase)))
        overload = max(abs(x), abs(y)) > self._settings.sensitivity_a
        return DemodulatedReading(x, y, overload)

    def program_tone(self, spec: ToneSpec) -> None:
        self.log.append(f"program {spec.electrode} {spec.amplitude_v:g} V")
        self.programmed.append(spec)

    def tone_off(self) -> None:
        self.log.append("tone off")

    def programmed_amplitude_v(self) -> float | None:
        return self.programmed[-1].amplitude_v if self.programmed else None

    residual_v_peak = 0.0
    reference_hz = 1000.0

    def residual_tone(self, electrode: str, reference_hz: float | None = None) -> ToneSpec | None:
        """Like an SR830, the sine output may not go to 0 V: a residual at the reference."""
        if self.residual_v_peak == 0.0:
            return None
        frequency = self.reference_hz if reference_hz is None else reference_hz
        return ToneSpec(electrode, frequency, self.residual_v_peak)


CALLS: list[str] = []


def _lockin_factory(setup: Any, settings: LockInSettings, built: Mapping[str, object]) -> object:
    daq = built[settings.bench_of]
    assert isinstance(daq, SimulatedBackend)
    return BenchLockIn(daq.bench, CALLS)


LOCKIN = BackendSpec(
    name="test_bench_lockin",
    description="lock-in on a shared simulated bench (tests only)",
    settings_model=LockInSettings,
    factory=_lockin_factory,
)


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    register_backend(LOCKIN)
    CALLS.clear()
    yield
    unregister_backend(LOCKIN.name)


COMPOSITE = {
    "setup": {
        "name": "composite-test",
        "instruments": {
            "daq": {"backend": "simulated", "settings": {"effects": NO_EFFECTS}},
            "li": {"backend": "test_bench_lockin", "settings": {"bench_of": "daq"}},
        },
        "roles": {
            "source": "daq",
            "sampled_readout": "daq",
            "demodulated_readouts": ["li"],
            "sine_sources": {"e3": "li"},
            "reference_switch": "daq",
            "oracle": "daq",
        },
    }
}
"""A composite setup: a simulated DAQ as source and sampled readout, a lock-in on its bench."""


def composite_config(override: dict[str, Any] | None = None) -> LoadedConfig:
    base = yaml.safe_load((CONFIGS / "sim_dnpu.yaml").read_text())
    base["setup"].pop("backend")
    data = merge_overrides(base, COMPOSITE)
    if override:
        data = merge_overrides(data, override)
    return parse_config(yaml.safe_dump(data), source=CONFIGS / "composite.yaml")


def test_a_composite_setup_builds_from_yaml_by_capability() -> None:
    loaded = composite_config()
    assert set(loaded.instrument_settings) == {"daq", "li"}
    device = build_device(loaded)
    assert isinstance(device.demodulators["li"], DemodulatedReadout)
    assert isinstance(device.sine_sources["e3"], SineSource)
    assert device.can_switch_reference
    assert CALLS == []  # building touches no instrument
    with device:
        assert CALLS == ["lockin open"]
        identity = device.identity()
        assert set(identity) == {"daq", "li"} and identity["daq"]["backend"] == "simulated"
        assert device.reference_gradient(np.zeros(7)) is not None
        # the demodulating readout sees what the DAQ drives: a tone on e1 at its reference
        lockin = device.demodulators["li"]
        lockin.configure(DemodulatorSettings(200.0, 1, 0.01, 24, 1e-6))
        n = 2000
        t = np.arange(n) / RATE
        wave = np.zeros((7, n))
        wave[1] = 0.02 * np.sin(2 * np.pi * 200.0 * t) * np.sin(np.pi * t / t[-1]) ** 2
        wave[:, 0] = wave[:, -1] = 0.0
        device.apply(wave)
        reading = lockin.read()
        assert math.isfinite(reading.x_a) and abs(reading.x_a) > 0
    assert CALLS[-1] == "lockin close"


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        (ToneSpec("e3", 1000.0, 0.05), "slew"),  # 2π f A = 314 V/s > 200 V/s
        (ToneSpec("e3", 10.0, 1.5), "maximum"),  # beyond the electrode's range
    ],
)
def test_a_sine_spec_that_breaks_a_limit_is_refused_before_anything_is_programmed(
    spec: ToneSpec, rule: str
) -> None:
    device = build_device(composite_config())
    with device:
        (lockin,) = (d.instrument for d in device.demodulators.values())  # type: ignore[attr-defined]
        with pytest.raises(SafetyViolation, match=rule) as info:
            device.program_tones([spec])
        assert info.value.electrode == "e3"
        assert isinstance(lockin, BenchLockIn) and lockin.programmed == []
        assert not any(call.startswith("program") for call in CALLS)


def test_a_running_sine_counts_in_every_later_waveform_check_and_goes_off_first() -> None:
    device = build_device(composite_config())
    with device:
        device.program_tones([ToneSpec("e3", 50.0, 0.1)])
        assert CALLS[-1] == "program e3 0.1 V"
        # a DC level that fits on its own but not with the 0.1 V sine on top is refused
        up = np.linspace(0.0, 1.15, 1200)
        row = np.concatenate([up, np.full(300, 1.15), up[::-1]])
        wave = np.zeros((7, row.size))
        wave[3] = row
        with pytest.raises(SafetyViolation, match="maximum"):
            device.apply(wave)
        wave[3] = row * 0.9
        device.apply(wave)  # 1.035 V + 0.1 V fits
        with pytest.raises(KeyError, match="e1"):
            device.program_tones([ToneSpec("e1", 50.0, 0.01)])  # no sine source there
    assert CALLS.index("tone off") > CALLS.index("program e3 0.1 V")
    assert CALLS[-1] == "lockin close"


def test_roles_are_checked_against_capabilities() -> None:
    loaded = composite_config({"setup": {"roles": {"sine_sources": {"e3": "daq"}}}})
    with pytest.raises(SetupError, match=r"roles\.sine_sources\.e3.*SineSource"):
        build_device(loaded)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"setup": {"roles": {"source": "dac"}}}, "no instrument 'dac'"),
        ({"setup": {"roles": {"sine_sources": {"e9": "li"}}}}, "no electrode 'e9'"),
        ({"setup": {"instruments": {"li": {"settings": {"bench": "daq"}}}}}, "instruments.li"),
        ({"setup": {"instruments": {"li": {"backend": "nope"}}}}, "instruments.li.backend"),
    ],
)
def test_composite_configuration_errors_name_the_field(override: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        composite_config(override)
    assert field in str(info.value)


def test_backend_and_instruments_are_exclusive() -> None:
    data = yaml.safe_load((CONFIGS / "sim_dnpu.yaml").read_text())
    data = merge_overrides(data, COMPOSITE)
    with pytest.raises(ConfigError, match="either 'backend'"):
        parse_config(yaml.safe_dump(data))


def test_a_sine_output_that_cannot_reach_0_v_counts_everywhere() -> None:
    """An SR830's sine output cannot go below 4 mV rms: that residual is in every check, and
    moving the reference (which moves the residual) is checked before it is sent."""
    device = build_device(composite_config())
    with device:
        (lockin,) = device.demodulators.values()
        raw = lockin.instrument
        assert isinstance(raw, BenchLockIn)
        raw.residual_v_peak = math.sqrt(2) * 0.004
        # a reference so high that the residual alone breaks the slew limit is refused
        with pytest.raises(SafetyViolation, match="slew"):
            lockin.configure(DemodulatorSettings(20_000.0, 1, 0.01, 24, 1e-6))
        assert raw._settings.reference_hz == 100.0  # nothing was sent
        lockin.configure(DemodulatorSettings(1000.0, 1, 0.01, 24, 1e-6))
        # at 1 kHz the residual fits, but it narrows what a waveform may do on e3
        up = np.linspace(0.0, 1.2, 1200)
        wave = np.zeros((7, 2 * up.size))
        wave[3] = np.concatenate([up, up[::-1]])
        with pytest.raises(SafetyViolation, match="maximum"):
            device.apply(wave)


def test_generated_ramps_leave_the_running_sines_room_under_the_slew_limit() -> None:
    """Shutdown, park and approach ramps are slowed by Σ 2πfA of the sines on the electrodes,
    so the layer's own ramps never fail (or break) the slew limit a sine shares with them."""
    electrodes = yaml.safe_load((CONFIGS / "sim_dnpu.yaml").read_text())["setup"]["electrodes"]
    electrodes[3]["rest_v"] = 0.5
    device = build_device(composite_config({"setup": {"electrodes": electrodes}}))
    bench = bench_of(device)
    with device:
        (lockin,) = device.demodulators.values()
        raw = lockin.instrument
        assert isinstance(raw, BenchLockIn)
        lockin.configure(DemodulatorSettings(250.0, 1, 0.01, 24, 1e-6))
        raw.residual_v_peak, raw.reference_hz = 0.1, 250.0  # stays on: 2π·250 Hz·0.1 V = 157 V/s
        sine_slew = 2 * math.pi * 250.0 * 0.1
        assert device.ramp_rate_v_per_s == pytest.approx(200.0 - sine_slew, rel=1e-5)
        device.idle(0.01)  # ramps e3 from 0 V to its 0.5 V resting voltage
        np.testing.assert_allclose(bench.applied_v[3], 0.5)
        assert device.park().ok  # and back to 0 V
        device.unpark()
        device.idle(0.01)
    report = device.last_shutdown_report
    assert report is not None and report.ok
    np.testing.assert_array_equal(bench.applied_v, np.zeros(7))
    assert bench.audit.max_slew_v_per_s[3] <= (200.0 - sine_slew) * (1 + 1e-6)
