"""Tests for the simulated bench (SimBench, BenchAudit) and its time base."""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from simulated_hw.bench import BenchAudit, BenchRecord, SimBench
from simulated_hw.chain import ChainSettings, MeasurementChain
from simulated_hw.models import DeviceModel, FloatArray
from simulated_hw.surrogate import SurrogateModel
from simulated_hw.timebase import TimeBase

FS = 1000.0
REFERENCE_NPZ = Path(__file__).resolve().parents[1].parent / "shared" / "devices"
REFERENCE_NPZ = REFERENCE_NPZ / "dnpu_surrogate_a.npz"


class LinearModel:
    """I = w · V + offset (A), for exact checks."""

    def __init__(self, n: int = 3) -> None:
        self._w = np.arange(1, n + 1, dtype=np.float64) * 1e-9
        self._ranges = np.tile([-1.0, 1.0], (n, 1))

    @property
    def n_electrodes(self) -> int:
        return int(self._w.size)

    @property
    def voltage_ranges_v(self) -> FloatArray:
        return self._ranges

    def current_a(self, voltages_v: FloatArray) -> FloatArray:
        v = np.atleast_2d(np.asarray(voltages_v, dtype=np.float64))
        return v @ self._w + 0.5e-9


def _bench(settings: ChainSettings | None = None, n: int = 3) -> SimBench:
    chain = MeasurementChain(settings or ChainSettings.ideal(), seed=0)
    return SimBench(LinearModel(n), chain, TimeBase())


# --- time base -----------------------------------------------------------------------------


def test_timebase_fast_mode() -> None:
    tb = TimeBase()
    assert tb.now_s == 0.0 and not tb.realtime
    assert tb.advance(0.25) == 0.25
    tb.advance(0.5)
    assert tb.now_s == 0.75
    tb.reset()
    assert tb.now_s == 0.0
    with pytest.raises(ValueError, match="duration_s"):
        tb.advance(-1.0)


class FakeWallClock:
    def __init__(self, start: float = 100.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def test_timebase_realtime_sleeps_until_wall_clock_catches_up() -> None:
    wall = FakeWallClock()
    tb = TimeBase(realtime=True, clock=wall.clock, sleep=wall.sleep)
    tb.advance(0.5)  # origin at the first advance: nothing has elapsed yet
    assert wall.sleeps == [0.5]
    wall.t += 0.2  # the caller spent 0.2 s computing
    tb.advance(0.5)
    assert wall.sleeps[-1] == pytest.approx(0.3)
    wall.t += 2.0  # the caller is behind: no sleep at all
    tb.advance(0.1)
    assert len(wall.sleeps) == 2
    assert tb.now_s == pytest.approx(1.1)
    tb.reset()
    tb.advance(0.1)  # a fresh origin after reset
    assert wall.sleeps[-1] == pytest.approx(0.1)


# --- playing, holding, time -----------------------------------------------------------------


def test_play_returns_consistent_record_and_holds_last_sample() -> None:
    bench = _bench(n=3)
    assert isinstance(bench.model, DeviceModel)
    np.testing.assert_array_equal(bench.applied_v, [0.0, 0.0, 0.0])
    assert bench.last_record is None
    wf = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, -0.5, -0.5, 0.0], [1.0, 1.0, 1.0, -1.0]])
    rec = bench.play(wf, FS)
    assert rec.n_samples == 4 and rec.duration_s == 4 / FS and rec.t0_s == 0.0
    np.testing.assert_array_equal(rec.voltages_v, wf)
    np.testing.assert_allclose(rec.device_current_a, LinearModel(3).current_a(wf.T), rtol=1e-15)
    np.testing.assert_array_equal(bench.applied_v, wf[:, -1])
    assert bench.last_record is rec
    wf[0, 0] = 9.0  # the bench kept its own copy
    assert rec.voltages_v[0, 0] == 0.1
    with pytest.raises(ValueError):
        rec.adc_v[0] = 1.0  # records are read-only
    np.testing.assert_allclose(rec.times_s(), np.arange(4) / FS)


def test_time_chains_across_plays() -> None:
    bench = _bench()
    records = [bench.play(np.zeros((3, n)), fs) for n, fs in ((10, 1000.0), (7, 500.0), (3, 1e4))]
    assert records[0].t0_s == 0.0
    assert records[1].t0_s == records[0].t0_s + 10 / 1000.0
    assert records[2].t0_s == records[1].t0_s + 7 / 500.0
    assert bench.timebase.now_s == records[2].t0_s + 3 / 1e4


def test_ideal_chain_reads_the_model_current_exactly() -> None:
    bench = _bench(ChainSettings.ideal())
    wf = np.random.default_rng(1).uniform(-1, 1, (3, 2000)) * 50.0  # far beyond saturation
    rec = bench.play(wf, FS)
    gain = bench.chain.settings.gain_v_per_a
    np.testing.assert_array_equal(rec.adc_v, rec.device_current_a * gain)
    np.testing.assert_array_equal(rec.tia_v, rec.adc_v)
    np.testing.assert_array_max_ulp(rec.measured_current_a, rec.device_current_a, maxulp=1)
    assert not rec.saturated
    exact = _bench(ChainSettings.ideal(gain_v_per_a=2.0**24)).play(wf, FS)
    np.testing.assert_array_equal(exact.measured_current_a, exact.device_current_a)


@pytest.mark.shared
def test_surrogate_behind_the_bench() -> None:
    if not REFERENCE_NPZ.is_file():
        pytest.skip(f"reference surrogate not available at {REFERENCE_NPZ}")
    model = SurrogateModel.from_npz(REFERENCE_NPZ)
    bench = SimBench(model, MeasurementChain(ChainSettings.ideal(), seed=0))
    v = np.array([-0.9701, 0.0042, 0.2238, 0.3077, -0.2629, 0.2479, 1.2550])
    rec = bench.play(np.repeat(v[:, None], 5, axis=1), 10_000.0)
    np.testing.assert_allclose(rec.measured_current_a * 1e9, 31.1570, atol=1e-3)
    noisy = SimBench(model, MeasurementChain(ChainSettings(), seed=0))
    rec2 = noisy.play(np.repeat(v[:, None], 10_000, axis=1), 10_000.0)
    # 1/f noise down to 1 mHz gives a slowly varying offset of order 0.1 nA.
    assert np.mean(rec2.measured_current_a) * 1e9 == pytest.approx(31.157, abs=0.5)
    assert not rec2.saturated


def test_saturation_is_reported() -> None:
    settings = ChainSettings(gain_v_per_a=1e9)  # 4 V swing ⇒ 4 nA
    bench = _bench(settings)
    assert not bench.play(np.zeros((3, 50)), FS).saturated  # 0.5 nA
    assert bench.play(np.ones((3, 50)), FS).saturated  # 6.5 nA


def test_invalid_waveforms_are_rejected_without_side_effects() -> None:
    bench = _bench()
    for bad in (np.zeros((2, 5)), np.zeros((3, 0)), np.zeros(3), np.full((3, 2), np.nan)):
        with pytest.raises(ValueError, match="waveform_v"):
            bench.play(bad, FS)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        bench.play(np.zeros((3, 2)), -1.0)
    assert bench.last_record is None
    assert bench.audit.total_samples == 0
    assert bench.timebase.now_s == 0.0


# --- audit ---------------------------------------------------------------------------------


def test_audit_tracks_extremes_and_slew_including_held_step() -> None:
    bench = _bench()
    audit = bench.audit
    assert np.all(np.isnan(audit.min_v)) and np.all(np.isnan(audit.max_v))
    np.testing.assert_array_equal(audit.max_slew_v_per_s, 0.0)
    wf1 = np.array([[0.5, 0.5, 0.4], [0.0, 0.01, 0.03], [-0.2, -0.3, -0.3]])
    bench.play(wf1, 1000.0)
    np.testing.assert_allclose(audit.min_v, [0.4, 0.0, -0.3])
    np.testing.assert_allclose(audit.max_v, [0.5, 0.03, -0.2])
    # e0: 0 → 0.5 held step; e1: largest in-waveform step 0.02; e2: 0 → -0.2 held step.
    np.testing.assert_allclose(audit.max_slew_v_per_s, [500.0, 20.0, 200.0])
    # Second call: the step from the held value (0.4, 0.03, -0.3) to the first sample counts,
    # at the second call's sample rate.
    wf2 = np.array([[-0.6, -0.6], [0.03, 0.03], [-0.3, 0.9]])
    bench.play(wf2, 2000.0)
    np.testing.assert_allclose(audit.min_v, [-0.6, 0.0, -0.3])
    np.testing.assert_allclose(audit.max_v, [0.5, 0.03, 0.9])
    np.testing.assert_allclose(audit.max_slew_v_per_s, [2000.0, 20.0, 2400.0])
    assert audit.total_samples == 5 and audit.n_plays == 2
    audit.reset()
    assert audit.total_samples == 0 and np.all(np.isnan(audit.max_v))
    bench.play(np.array([[0.4], [0.03], [0.9]]), 100.0)  # held (-0.6, 0.03, 0.9)
    np.testing.assert_allclose(audit.max_slew_v_per_s, [100.0, 0.0, 0.0])
    np.testing.assert_allclose(audit.min_v, [0.4, 0.03, 0.9])


def test_audit_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="n_electrodes"):
        BenchAudit(0)


# --- subscribers and threads ---------------------------------------------------------------


def test_subscribers_receive_records_and_errors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bench = _bench()
    got: list[BenchRecord] = []
    also: list[BenchRecord] = []

    def broken(record: BenchRecord) -> None:
        raise RuntimeError("subscriber failure")

    unsubscribe = bench.subscribe(got.append)
    bench.subscribe(broken)
    bench.subscribe(also.append)
    with caplog.at_level(logging.ERROR, logger="simulated_hw.bench"):
        r1 = bench.play(np.zeros((3, 4)), FS)
    assert "subscriber" in caplog.text
    assert got == [r1] and also == [r1]
    unsubscribe()
    unsubscribe()  # idempotent
    r2 = bench.play(np.zeros((3, 4)), FS)
    assert got == [r1] and also == [r1, r2]


def test_concurrent_plays_are_serialised() -> None:
    bench = _bench(ChainSettings())
    delivered: list[BenchRecord] = []
    bench.subscribe(delivered.append)
    rng = np.random.default_rng(2)
    sizes = [[int(n) for n in rng.integers(1, 300, size=25)] for _ in range(4)]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for n in sizes[k]:
                bench.play(np.full((3, n), 0.1 * k), FS)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    total = sum(sum(s) for s in sizes)
    assert bench.audit.total_samples == total and bench.audit.n_plays == 100
    assert len(delivered) == 100
    # Records were delivered in time order and tile the time axis without gaps or overlaps.
    for prev, nxt in itertools.pairwise(delivered):
        assert nxt.t0_s == prev.t0_s + prev.duration_s
    assert bench.timebase.now_s == pytest.approx(total / FS)
    np.testing.assert_array_equal(bench.applied_v, delivered[-1].voltages_v[:, -1])


def test_an_external_sine_reaches_the_electrode_and_the_audit_but_not_the_daq_state() -> None:
    from simulated_hw.bench import ExternalSine

    bench = _bench()
    sine = ExternalSine(electrode_index=1, frequency_hz=50.0, amplitude_v=0.2)
    bench.set_external_sine("lockin", sine)
    n = 200
    wave = np.full((3, n), 0.1)
    record = bench.play(wave, FS)
    expected = 0.1 + 0.2 * np.sin(2 * np.pi * 50.0 * np.arange(n) / FS)
    np.testing.assert_allclose(record.voltages_v[1], expected)
    np.testing.assert_allclose(record.voltages_v[0], 0.1)
    assert bench.audit.max_v[1] == pytest.approx(expected.max())
    np.testing.assert_allclose(bench.applied_v, 0.1)  # the DAQ holds its DC, not the sum
    second = bench.play(wave, FS)  # the sine runs on in simulated time, phase-continuous
    later = 0.1 + 0.2 * np.sin(2 * np.pi * 50.0 * (n + np.arange(n)) / FS)
    np.testing.assert_allclose(second.voltages_v[1], later)
    bench.set_external_sine("lockin", None)
    np.testing.assert_allclose(bench.play(wave, FS).voltages_v[1], 0.1)
