"""Tests for the streaming software lock-in (labctl.homodyne.lockin)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from labctl.homodyne.lockin import StreamingLockIn

FS = 10_000.0


def _tone(n: int, f: float, c: complex, phase: float = 0.0, start: int = 0) -> np.ndarray:
    t = (start + np.arange(n)) / FS
    return abs(c) * np.sin(2 * np.pi * f * t + phase + np.angle(c))


@pytest.mark.parametrize("order", [1, 2, 4, 8])
def test_single_tone_converges_to_complex_amplitude(order: int) -> None:
    c = 0.8 - 0.45j
    li = StreamingLockIn(FS, [437.0], time_constant_s=0.01, order=order, phases_rad=[0.9])
    n = math.ceil((li.settling_time_s(1e-6) + 0.05) * FS)
    z = li.process(_tone(n, 437.0, c, phase=0.9) + 0.3)[0]
    settled = z[-int(0.05 * FS) :]
    # residual ripple: 2f term (tone) and f term (DC offset), both heavily filtered
    ripple = abs(c) * abs(li.frequency_response(2 * 437.0)) + 0.6 * abs(
        li.frequency_response(437.0)
    )
    assert np.max(np.abs(settled - c)) < ripple + 1e-6 * abs(c)
    # before settling the output is clearly not there yet
    assert abs(z[int(0.2 * li.time_constant_s * FS)] - c) > 0.1 * abs(c)


def test_settling_time_matches_step_response() -> None:
    for order in (1, 3, 6):
        tau = 0.004
        ts = StreamingLockIn(FS, [500.0], time_constant_s=tau, order=order).settling_time_s(1e-3)
        n = int((ts + 0.01) * FS)
        # X for a sine input plus Y for a cosine input is exactly twice the filter's step
        # response (the 2f ripples cancel): 2 sin^2 + 2 cos^2 = 2
        sin_run = StreamingLockIn(FS, [500.0], time_constant_s=tau, order=order)
        cos_run = StreamingLockIn(FS, [500.0], time_constant_s=tau, order=order)
        step = (
            sin_run.process(_tone(n, 500.0, 1.0))[0].real
            + cos_run.process(_tone(n, 500.0, 1j))[0].imag
        ) / 2
        k = round(ts * FS)
        assert 1 - step[k] == pytest.approx(1e-3, rel=0.1)  # discrete vs continuous
        assert 1 - step[k // 2] > 1e-2


@pytest.mark.parametrize("order", [1, 2, 4, 8])
@pytest.mark.parametrize("delta_f", [10.0, 25.0])
def test_neighbour_crosstalk_follows_filter_response(order: int, delta_f: float) -> None:
    f1 = 500.0
    # time constant chosen so the neighbour is attenuated to a measurable 1-50 %
    tau = 1.2 / (2 * np.pi * delta_f)
    li = StreamingLockIn(FS, [f1], time_constant_s=tau, order=order)
    c1, a2 = 0.2 + 0.1j, 1.0
    n_settle = int(li.settling_time_s(1e-5) * FS)
    n_meas = round(4 * FS / delta_f)  # whole periods of the beat
    n = n_settle + n_meas
    y = _tone(n, f1, c1) + _tone(n, f1 + delta_f, a2)
    z = li.process(y)[0, n_settle:]
    measured = float(np.mean(np.abs(z - c1)))
    expected = a2 * (1 + (2 * np.pi * delta_f * tau) ** 2) ** (-order / 2)
    assert measured == pytest.approx(expected, rel=0.1)
    assert expected < 0.7


def test_cutoff_parameter_sets_minus_3db_point() -> None:
    for order in (1, 4):
        li = StreamingLockIn(FS, [300.0], cutoff_hz=5.0, order=order)
        assert li.cutoff_hz == pytest.approx(5.0)
        assert abs(li.frequency_response(5.0)) == pytest.approx(1 / math.sqrt(2), rel=1e-3)


def test_enbw() -> None:
    li1 = StreamingLockIn(FS, [300.0], time_constant_s=0.01, order=1)
    assert li1.enbw_hz == pytest.approx(1 / (4 * 0.01))
    for order in (2, 5):
        li = StreamingLockIn(FS, [300.0], time_constant_s=0.01, order=order)
        f = np.linspace(0, 2000, 400_001)
        numeric = np.trapezoid((1 + (2 * np.pi * f * 0.01) ** 2) ** (-order), f)
        assert li.enbw_hz == pytest.approx(numeric, rel=1e-4)


def test_noise_variance_matches_enbw() -> None:
    rng = np.random.default_rng(11)
    sigma = 1.0
    li = StreamingLockIn(FS, [1000.0], time_constant_s=0.005, order=2)
    z = li.process(rng.normal(0, sigma, 200_000))[0, 2000:]
    one_sided_psd = 2 * sigma**2 / FS
    # X = LPF(2 o sin): white baseband PSD 2 * S (one-sided), times ENBW
    expected_var = 2 * one_sided_psd * li.enbw_hz
    assert np.var(z.real) == pytest.approx(expected_var, rel=0.1)
    assert np.var(z.imag) == pytest.approx(expected_var, rel=0.1)


def test_chunking_is_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    freqs = [220.0, 270.0, 333.3]
    y = rng.normal(size=7_777) + _tone(7_777, 270.0, 0.5j)
    whole = StreamingLockIn(FS, freqs, time_constant_s=0.02, order=3, phases_rad=[0.1, 0.2, 0.3])
    ref = whole.process(y)
    chunked = StreamingLockIn(FS, freqs, time_constant_s=0.02, order=3, phases_rad=[0.1, 0.2, 0.3])
    edges = [0, 1, 2, 100, 101, 1_000, 3_333, 3_334, 7_000, 7_777]
    parts = [chunked.process(y[a:b]) for a, b in itertools.pairwise(edges)]
    assert np.array_equal(np.concatenate(parts, axis=1), ref)
    assert chunked.samples_processed == 7_777
    chunked.reset()
    assert chunked.samples_processed == 0
    assert np.array_equal(chunked.process(y), ref)


def test_start_index_references_phase_to_drive() -> None:
    c = 0.3 + 0.4j
    start = 12_345
    li = StreamingLockIn(FS, [440.0], time_constant_s=0.005, order=4, start_index=start)
    z = li.process(_tone(4000, 440.0, c, start=start))[0]
    assert abs(z[-1] - c) < 1e-4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(), "exactly one"),
        (dict(time_constant_s=0.1, cutoff_hz=3.0), "exactly one"),
        (dict(time_constant_s=0.1, order=9), "order"),
        (dict(time_constant_s=0.1, order=0), "order"),
        (dict(time_constant_s=-1.0), "time_constant_s"),
        (dict(time_constant_s=0.1, phases_rad=[0.0, 1.0]), "phases_rad"),
        (dict(time_constant_s=0.1, frequencies_hz=[6000.0]), "Nyquist"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args: dict = dict(sample_rate_hz=FS, frequencies_hz=[300.0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        StreamingLockIn(**args)


def test_process_rejects_bad_chunks() -> None:
    li = StreamingLockIn(FS, [300.0], time_constant_s=0.01)
    with pytest.raises(ValueError, match="one-dimensional"):
        li.process(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="NaN"):
        li.process(np.array([0.0, np.nan]))
    assert li.process(np.zeros(0)).shape == (1, 0)
