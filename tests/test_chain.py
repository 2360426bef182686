"""Tests for the simulated measurement chain (amplifier, noise, drift, ADC)."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.signal import welch

from simulated_hw.chain import DEFAULT_GAIN_V_PER_A, ChainSettings, MeasurementChain

FS = 10_000.0


def _only(**flags: bool) -> ChainSettings:
    """Ideal settings with unit gain, plus the given effects switched on."""
    return replace(ChainSettings.ideal(gain_v_per_a=1.0), **flags)


def _band_mean(f: np.ndarray, psd: np.ndarray, f0: float, rel: float = 0.15) -> float:
    mask = (f >= f0 * (1 - rel)) & (f <= f0 * (1 + rel))
    return float(psd[mask].mean())


# --- settings ------------------------------------------------------------------------------


def test_defaults_and_derived_values() -> None:
    s = ChainSettings()
    assert s.gain_v_per_a == pytest.approx(1 / 39.5e-9)
    assert s.adc_step_v == 20.0 / 2**16
    assert s.adc_step_v == pytest.approx(305.17578125e-6)
    assert s.noise_psd_a2_per_hz(1000.0) == pytest.approx(1e-23)
    assert s.white_psd_a2_per_hz == pytest.approx(1e-23 / 1.1)
    assert s.noise_psd_a2_per_hz(100.0) == pytest.approx(2 * s.white_psd_a2_per_hz)
    assert s.saturation_current_a == pytest.approx(4.0 * 39.5e-9)


def test_ideal_switches_everything_off_and_keeps_gain() -> None:
    s = ChainSettings.ideal()
    assert s.gain_v_per_a == DEFAULT_GAIN_V_PER_A
    assert not any(
        (
            s.enable_noise,
            s.enable_flicker,
            s.enable_drift,
            s.enable_bandwidth,
            s.enable_saturation,
            s.enable_quantisation,
        )
    )
    assert ChainSettings.ideal(gain_v_per_a=-2e7).gain_v_per_a == -2e7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gain_v_per_a": 0.0},
        {"gain_v_per_a": math.inf},
        {"bandwidth_hz": 0.0},
        {"bandwidth_hz": -5.0},
        {"output_swing_v": 0.0},
        {"adc_range_v": -1.0},
        {"adc_bits": 0},
        {"adc_bits": 40},
        {"noise_psd_at_1khz_a2_per_hz": -1e-23},
        {"flicker_corner_hz": -1.0},
        {"drift_a_per_sqrt_s": math.nan},
        {"flicker_min_hz": 0.0},
        {"flicker_poles_per_decade": 0},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        ChainSettings(**kwargs)  # type: ignore[arg-type]


def test_invalid_process_arguments() -> None:
    chain = MeasurementChain(seed=0)
    with pytest.raises(ValueError, match="1-D"):
        chain.process(np.zeros((2, 3)), FS)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        chain.process(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        chain.process(np.array([0.0, np.nan]), FS)
    empty = chain.process(np.zeros(0), FS)
    assert empty.tia_v.shape == (0,) and empty.adc_v.shape == (0,) and not empty.saturated


# --- ideal chain and single effects ----------------------------------------------------------


def test_ideal_chain_is_exactly_the_gain() -> None:
    chain = MeasurementChain(ChainSettings.ideal(), seed=1)
    current = np.random.default_rng(0).normal(0, 1e-6, 5000)  # far beyond any saturation
    out = chain.process(current, FS)
    np.testing.assert_array_equal(out.tia_v, current * DEFAULT_GAIN_V_PER_A)
    np.testing.assert_array_equal(out.adc_v, current * DEFAULT_GAIN_V_PER_A)
    assert not out.saturated
    np.testing.assert_array_max_ulp(chain.to_current_a(out.adc_v), current, maxulp=1)


def test_white_noise_variance_and_switch() -> None:
    s = _only(enable_noise=True)
    out = MeasurementChain(s, seed=2).process(np.zeros(200_000), FS)
    expected_var = s.white_psd_a2_per_hz * FS / 2
    assert np.var(out.tia_v) == pytest.approx(expected_var, rel=0.02)
    assert abs(np.mean(out.tia_v)) < 5 * math.sqrt(expected_var / 200_000)
    off = MeasurementChain(_only(), seed=2).process(np.zeros(1000), FS)
    np.testing.assert_array_equal(off.tia_v, 0.0)


def test_noise_psd_matches_target() -> None:
    s = _only(enable_noise=True, enable_flicker=True)
    n = int(200 * FS)
    out = MeasurementChain(s, seed=3).process(np.zeros(n), FS)
    f, psd = welch(out.tia_v, fs=FS, nperseg=int(FS))  # 1 Hz bins, 399 averages
    measured_1k = _band_mean(f, psd, 1000.0)
    assert measured_1k == pytest.approx(1e-23, rel=0.2)
    assert measured_1k == pytest.approx(float(s.noise_psd_a2_per_hz(1000.0)), rel=0.05)
    for f0 in (10.0, 30.0, 100.0, 300.0, 3000.0):
        assert _band_mean(f, psd, f0) == pytest.approx(float(s.noise_psd_a2_per_hz(f0)), rel=0.1)
    # 1/f slope: the excess over the white floor falls tenfold from 10 Hz to 100 Hz.
    s_white = s.white_psd_a2_per_hz
    excess_10 = _band_mean(f, psd, 10.0) - s_white
    excess_100 = _band_mean(f, psd, 100.0) - s_white
    slope = math.log10(excess_100 / excess_10)
    assert slope == pytest.approx(-1.0, abs=0.15)


def test_flicker_alone_is_one_over_f() -> None:
    s = _only(enable_flicker=True)
    out = MeasurementChain(s, seed=4).process(np.zeros(int(100 * FS)), FS)
    f, psd = welch(out.tia_v, fs=FS, nperseg=int(FS))
    target = s.white_psd_a2_per_hz * s.flicker_corner_hz  # f · S(f), A²
    for f0 in (5.0, 20.0, 100.0, 500.0, 2000.0):
        assert f0 * _band_mean(f, psd, f0) == pytest.approx(target, rel=0.15)


def test_drift_is_a_random_walk_and_switchable() -> None:
    s = _only(enable_drift=True)
    out = MeasurementChain(s, seed=5).process(np.zeros(100_000), FS)
    steps = np.diff(out.tia_v)
    assert np.std(steps) == pytest.approx(s.drift_a_per_sqrt_s / math.sqrt(FS), rel=0.02)
    assert abs(np.corrcoef(steps[:-1], steps[1:])[0, 1]) < 0.02  # independent increments
    assert MeasurementChain(s, seed=5).process(np.zeros(1), FS).tia_v[0] != 0.0
    off = MeasurementChain(replace(s, enable_drift=False), seed=5).process(np.zeros(100), FS)
    np.testing.assert_array_equal(off.tia_v, 0.0)


# --- continuity, seeds, reset --------------------------------------------------------------


def test_chunked_calls_equal_one_long_call_bit_for_bit() -> None:
    s = ChainSettings()  # every effect on
    rng = np.random.default_rng(6)
    n = 30_000
    t = np.arange(n) / FS
    current = 60e-9 * np.sin(2 * np.pi * 37 * t) + 5e-9 * rng.standard_normal(n)
    current[12_000:12_100] = 300e-9  # force saturation inside one chunk
    whole = MeasurementChain(s, seed=7, block_samples=4096).process(current, FS)
    assert whole.saturated
    chunked = MeasurementChain(s, seed=7, block_samples=4096)
    cuts = [0, 1, 2, 500, 4096, 4097, 11_999, 12_050, 20_000, 29_999, n]
    tia, adc, sat = [], [], []
    for a, b in itertools.pairwise(cuts):
        part = chunked.process(current[a:b], FS)
        tia.append(part.tia_v)
        adc.append(part.adc_v)
        sat.append(part.saturated)
    np.testing.assert_array_equal(np.concatenate(tia), whole.tia_v)
    np.testing.assert_array_equal(np.concatenate(adc), whole.adc_v)
    assert any(sat) and sat.index(True) == cuts.index(12_050) - 1


def test_seeds_reproduce_and_reset_restores() -> None:
    current = np.full(5000, 10e-9)
    a = MeasurementChain(seed=11)
    first = a.process(current, FS).adc_v
    second = a.process(current, FS).adc_v
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(MeasurementChain(seed=11).process(current, FS).adc_v, first)
    assert not np.array_equal(MeasurementChain(seed=12).process(current, FS).adc_v, first)
    a.reset()
    np.testing.assert_array_equal(a.process(current, FS).adc_v, first)
    np.testing.assert_array_equal(a.process(current, FS).adc_v, second)


# --- bandwidth -----------------------------------------------------------------------------


@pytest.mark.parametrize("f_test", [50.0, 250.0, 1000.0, 2500.0])
def test_low_pass_amplitude_and_phase(f_test: float) -> None:
    f_c = 1000.0
    s = _only(enable_bandwidth=True)
    s = replace(s, bandwidth_hz=f_c, gain_v_per_a=2.0)
    chain = MeasurementChain(s, seed=0)
    n = 20_000
    t = np.arange(n) / FS
    out = chain.process(np.sin(2 * np.pi * f_test * t), FS).tia_v
    keep = slice(n // 2, n)  # integer number of periods, long after the transient
    basis = np.column_stack(
        [np.sin(2 * np.pi * f_test * t[keep]), np.cos(2 * np.pi * f_test * t[keep])]
    )
    (c_sin, c_cos), *_ = np.linalg.lstsq(basis, out[keep], rcond=None)
    measured = complex(c_sin, c_cos)  # response to sin: Im part of H·e^{jωt}
    expected = complex(chain.tia_response(f_test, FS))
    assert abs(measured - expected) < 1e-9
    a = math.exp(-2 * math.pi * f_c / FS)
    assert abs(expected) == pytest.approx(
        2.0 * (1 - a) / abs(1 - a * np.exp(-2j * np.pi * f_test / FS)), rel=1e-12
    )
    if f_test <= FS / 10:
        # Well below the sample rate: the analogue low-pass plus the hold's half-sample delay.
        approx_lag = math.atan(f_test / f_c) + math.pi * f_test / FS
        assert -np.angle(expected) == pytest.approx(approx_lag, abs=math.radians(2.0))
        assert abs(expected) == pytest.approx(2.0 / math.hypot(1, f_test / f_c), rel=0.03)


def test_low_pass_off_has_no_lag_and_settles() -> None:
    s = _only()
    chain = MeasurementChain(s, seed=0)
    assert complex(chain.tia_response(300.0, FS)) == 1.0
    lp = MeasurementChain(replace(s, enable_bandwidth=True, bandwidth_hz=500.0), seed=0)
    lp.settle(3.0)
    out = lp.process(np.full(100, 3.0), FS).tia_v
    np.testing.assert_allclose(out, 3.0, rtol=1e-14)
    # A step: the first reading still shows the previous level (one-sample hold delay).
    step = lp.process(np.full(200, 1.0), FS).tia_v
    assert step[0] == pytest.approx(3.0, rel=1e-14)
    a = math.exp(-2 * math.pi * 500.0 / FS)
    np.testing.assert_allclose(step[:50], 1.0 + 2.0 * a ** np.arange(50), rtol=1e-12)


def test_low_pass_state_carries_across_a_rate_change() -> None:
    s = replace(_only(enable_bandwidth=True), bandwidth_hz=200.0)
    chain = MeasurementChain(s, seed=0)
    chain.process(np.full(1000, 1.0), FS)
    first = chain.process(np.full(10, 0.0), 1000.0).tia_v
    assert first[0] == pytest.approx(1.0, rel=1e-12)
    a = math.exp(-2 * math.pi * 200.0 / 1000.0)
    np.testing.assert_allclose(first, a ** np.arange(10), rtol=1e-12)


# --- saturation and quantisation -----------------------------------------------------------


def test_amplifier_saturation_clips_and_flags() -> None:
    s = _only(enable_saturation=True)
    s = replace(s, gain_v_per_a=1e7, output_swing_v=4.0)
    chain = MeasurementChain(s, seed=0)
    ok = chain.process(np.array([1e-7, -3.9e-7]), FS)
    assert not ok.saturated
    hit = chain.process(np.array([1e-7, 5e-7, -6e-7]), FS)
    assert hit.saturated
    np.testing.assert_allclose(hit.tia_v, [1.0, 4.0, -4.0])
    np.testing.assert_array_equal(hit.adc_v, hit.tia_v)
    free = MeasurementChain(replace(s, enable_saturation=False), seed=0)
    loose = free.process(np.array([5e-7]), FS)
    assert not loose.saturated
    assert loose.tia_v[0] == pytest.approx(5.0)


def test_adc_range_clips_and_flags() -> None:
    s = _only(enable_saturation=True, enable_quantisation=True)
    s = replace(s, gain_v_per_a=1.0, output_swing_v=20.0, adc_range_v=10.0, adc_bits=16)
    out = MeasurementChain(s, seed=0).process(np.array([0.5, 12.0, -15.0]), FS)
    assert out.saturated
    step = 20.0 / 2**16
    np.testing.assert_allclose(out.adc_v, [round(0.5 / step) * step, 10.0 - step, -10.0])
    np.testing.assert_array_equal(out.tia_v, [0.5, 12.0, -15.0])
    unquantised = MeasurementChain(replace(s, enable_quantisation=False), seed=0)
    out2 = unquantised.process(np.array([12.0, -3.0]), FS)
    assert out2.saturated
    np.testing.assert_array_equal(out2.adc_v, [10.0, -3.0])
    assert not unquantised.process(np.array([9.0, -9.0]), FS).saturated


def test_quantisation_step() -> None:
    s = _only(enable_quantisation=True)
    s = replace(s, adc_range_v=10.0, adc_bits=16, gain_v_per_a=1.0)
    step = s.adc_step_v
    assert step == 10.0 / 2**15
    v = np.random.default_rng(8).uniform(-9, 9, 20_000)
    out = MeasurementChain(s, seed=0).process(v, FS)
    codes = out.adc_v / step
    np.testing.assert_array_equal(codes, np.round(codes))
    assert np.max(np.abs(out.adc_v - v)) <= step / 2
    assert np.max(np.abs(out.adc_v - v)) > 0.45 * step
    coarse = MeasurementChain(replace(s, adc_bits=4), seed=0).process(np.array([0.3, 0.7]), FS)
    np.testing.assert_array_equal(coarse.adc_v, [0.0, 1.25])
