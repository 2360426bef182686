"""Tests for labctl.homodyne.drive: drive synthesis for homodyne gradient extraction."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.homodyne.drive import Drive, ToneSet, device_drive, synthesise_drive

FS = 10_000.0
N_EL = 7


def lab_tones() -> ToneSet:
    """Five controls on electrodes 0, 3..6 (inputs on 1, 2), coherent with 50 ms windows."""
    return ToneSet(
        electrode_indices=(0, 3, 4, 5, 6),
        frequencies_hz=(200.0, 360.0, 520.0, 760.0, 920.0),
        amplitudes_v=(0.03, 0.01, 0.01, 0.005, 0.005),
        phases_rad=(0.0, 0.3, -1.0, 2.0, 0.5),
    )


def gate_cases(controls: np.ndarray) -> np.ndarray:
    """Four Boolean input cases on electrodes 1, 2 with the same controls elsewhere."""
    ops = np.tile(controls, (4, 1))
    for c, (a, b) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        ops[c, 1] = -1.2 + 1.8 * a
        ops[c, 2] = -1.2 + 1.8 * b
    return ops


def lab_drive(**overrides: object) -> Drive:
    rng = np.random.default_rng(1)
    kwargs: dict[str, object] = {
        "rest_v": np.zeros(N_EL),
        "operating_points_v": gate_cases(rng.uniform(-0.8, 0.6, N_EL)),
        "tones": lab_tones(),
        "sample_rate_hz": FS,
        "window_s": 0.05,
        "settle_s": 0.01,
        "slew_v_per_s": 100.0,
    }
    kwargs.update(overrides)
    return synthesise_drive(**kwargs)  # type: ignore[arg-type]


def max_step(drive: Drive) -> float:
    return float(np.max(np.abs(np.diff(drive.waveform_v, axis=1))))


# --------------------------------------------------------------------------- ToneSet


def test_toneset_defaults_phases_to_zero_and_normalises_types() -> None:
    t = ToneSet(electrode_indices=(1, 2), frequencies_hz=(10, 20), amplitudes_v=(0.1, 0.2))
    assert t.phases_rad == (0.0, 0.0)
    assert t.frequencies_hz == (10.0, 20.0)
    assert t.n_tones == 2
    assert t.slowest_hz == 10.0
    np.testing.assert_allclose(t.slew_v_per_s(3), [0.0, 2 * np.pi, 8 * np.pi])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"electrode_indices": (0, 1), "frequencies_hz": (1.0,), "amplitudes_v": (0.1, 0.1)},
            "lengths",
        ),
        (
            {"electrode_indices": (0, 0), "frequencies_hz": (1.0, 2.0), "amplitudes_v": (0.1, 0.1)},
            "distinct",
        ),
        (
            {"electrode_indices": (0,), "frequencies_hz": (1.0,), "amplitudes_v": (0.0,)},
            "amplitude",
        ),
        (
            {"electrode_indices": (0,), "frequencies_hz": (1.0,), "amplitudes_v": (-0.1,)},
            "amplitude",
        ),
        (
            {"electrode_indices": (0,), "frequencies_hz": (0.0,), "amplitudes_v": (0.1,)},
            "frequency",
        ),
        ({"electrode_indices": (-1,), "frequencies_hz": (1.0,), "amplitudes_v": (0.1,)}, ">= 0"),
        ({"electrode_indices": (), "frequencies_hz": (), "amplitudes_v": ()}, "tones=None"),
        (
            {
                "electrode_indices": (0,),
                "frequencies_hz": (1.0,),
                "amplitudes_v": (0.1,),
                "phases_rad": (0.0, 1.0),
            },
            "phases",
        ),
    ],
)
def test_toneset_validation(kwargs: dict[str, tuple[float, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ToneSet(**kwargs)  # type: ignore[arg-type]


def test_tone_on_missing_electrode_is_rejected() -> None:
    t = ToneSet(electrode_indices=(7,), frequencies_hz=(100.0,), amplitudes_v=(0.01,))
    with pytest.raises(ValueError, match="do not exist"):
        synthesise_drive(
            rest_v=np.zeros(N_EL),
            operating_points_v=np.zeros((1, N_EL)),
            tones=t,
            sample_rate_hz=FS,
            window_s=0.01,
            settle_s=0.0,
            slew_v_per_s=100.0,
        )


# --------------------------------------------------------------------------- structure


def test_starts_and_ends_exactly_at_rest() -> None:
    rest = np.array([0.1, -0.2, 0.0, 0.05, 0.3, -0.4, 0.2])
    d = lab_drive(rest_v=rest)
    np.testing.assert_array_equal(d.waveform_v[:, 0], rest)
    np.testing.assert_array_equal(d.waveform_v[:, -1], rest)


def test_windows_have_requested_length_and_mask_and_cases() -> None:
    d = lab_drive(window_s=0.0503)  # 503 samples at 10 kHz
    assert d.n_cases == 4
    assert [w.case_index for w in d.windows] == [0, 1, 2, 3]
    for w in d.windows:
        assert w.length == 503
    assert int(d.mask.sum()) == 4 * 503
    for c, w in enumerate(d.windows):
        assert np.all(d.case_of_sample[w.start : w.stop] == c)
        assert np.all(d.mask[w.start : w.stop])
    assert np.all(d.case_of_sample[~d.mask] == -1)
    # windows are in order and do not overlap
    starts = [w.start for w in d.windows]
    stops = [w.stop for w in d.windows]
    assert all(stops[i] <= starts[i + 1] for i in range(3))


def test_window_content_is_dc_plus_tones_referenced_to_tone_origin() -> None:
    d = lab_drive()
    tones = lab_tones()
    for c, w in enumerate(d.windows):
        n = np.arange(w.start, w.stop)
        expected = d.operating_points_v[c][:, None] + np.zeros((N_EL, n.size))
        for e, f, a, p in zip(
            tones.electrode_indices,
            tones.frequencies_hz,
            tones.amplitudes_v,
            tones.phases_rad,
            strict=True,
        ):
            expected[e] += a * np.sin(2 * np.pi * f * n / FS + p)
        np.testing.assert_allclose(d.window_samples(d.waveform_v, c), expected, rtol=0, atol=1e-13)


def test_window_fit_recovers_dc_and_full_amplitude_and_phase() -> None:
    """Least-squares fit in a window, referenced with the window's start index."""
    d = lab_drive()
    tones = lab_tones()
    for c, w in enumerate(d.windows):
        n = np.arange(w.start, w.stop)
        for e, f, a, p in zip(
            tones.electrode_indices,
            tones.frequencies_hz,
            tones.amplitudes_v,
            tones.phases_rad,
            strict=True,
        ):
            phase = 2 * np.pi * f * n / FS
            design = np.column_stack([np.sin(phase), np.cos(phase), np.ones_like(phase)])
            coef, *_ = np.linalg.lstsq(design, d.waveform_v[e, w.start : w.stop], rcond=None)
            x, y, dc = coef
            assert math.hypot(x, y) == pytest.approx(a, rel=1e-9)
            assert math.atan2(y, x) == pytest.approx(p, abs=1e-9)
            assert dc == pytest.approx(d.operating_points_v[c, e], abs=1e-12)
        # untoned electrodes (data inputs) hold their case value exactly
        for e in (1, 2):
            np.testing.assert_array_equal(
                d.waveform_v[e, w.start : w.stop], d.operating_points_v[c, e]
            )


def test_window_samples_slices_1d_and_2d_records() -> None:
    d = lab_drive()
    rec = np.arange(d.n_samples, dtype=float)
    w = d.windows[2]
    np.testing.assert_array_equal(d.window_samples(rec, 2), rec[w.start : w.stop])
    rec2 = np.vstack([rec, -rec])
    assert d.window_samples(rec2, 2).shape == (2, w.length)
    with pytest.raises(ValueError, match="shape"):
        d.window_samples(rec[:-1], 0)
    with pytest.raises(IndexError, match="4 cases"):
        d.window_samples(rec, 4)


def test_duration_adds_up() -> None:
    d = lab_drive(settle_s=0.012)
    assert d.duration_s == d.n_samples / FS
    # segments tile the record exactly, in order
    assert d.segments[0].start == 0
    assert d.segments[-1].stop == d.n_samples
    for a, b in zip(d.segments, d.segments[1:], strict=False):
        assert a.stop == b.start
    kinds = [s.kind for s in d.segments]
    assert kinds[0] == "rest" and kinds[-1] == "rest"
    assert kinds.count("window") == 4 and kinds.count("settle") == 4
    assert kinds.count("fade_in") == 1 and kinds.count("fade_out") == 1
    lengths = {k: sum(s.stop - s.start for s in d.segments if s.kind == k) for k in set(kinds)}
    assert lengths["window"] == 4 * 500
    assert lengths["settle"] == 4 * 120
    assert lengths["fade_in"] == lengths["fade_out"] == 100  # 2 periods of 200 Hz
    assert sum(lengths.values()) == d.n_samples


def test_dc_only_record() -> None:
    ops = np.array([[0.2] * N_EL, [-0.3] * N_EL])
    d = synthesise_drive(
        rest_v=np.zeros(N_EL),
        operating_points_v=ops,
        tones=None,
        sample_rate_hz=1000.0,
        window_s=0.02,
        settle_s=0.005,
        slew_v_per_s=10.0,
    )
    assert d.tones is None and d.fade_s == 0.0
    assert "fade_in" not in [s.kind for s in d.segments]
    for c in range(2):
        win = d.window_samples(d.waveform_v, c)
        np.testing.assert_array_equal(win, np.repeat(ops[c][:, None], win.shape[1], axis=1))
    assert max_step(d) <= 10.0 / 1000.0
    # a 0.2 V ramp at <= 0.01 V/sample needs at least 20 samples
    first_ramp = d.segments[1]
    assert first_ramp.kind == "ramp" and first_ramp.stop - first_ramp.start >= 20


def test_single_case_1d_operating_point() -> None:
    d = lab_drive(operating_points_v=np.full(N_EL, 0.1))
    assert d.n_cases == 1
    assert d.operating_points_v.shape == (1, N_EL)


def test_outputs_are_read_only() -> None:
    d = lab_drive()
    with pytest.raises(ValueError):
        d.waveform_v[0, 0] = 1.0
    with pytest.raises(ValueError):
        d.mask[0] = True


# --------------------------------------------------------------------------- fades


def test_fades_are_whole_periods_of_slowest_tone() -> None:
    # constant DC so the tone part is waveform - DC everywhere between the ramps
    op = np.full((1, N_EL), 0.2)
    tones = ToneSet(electrode_indices=(0,), frequencies_hz=(300.0,), amplitudes_v=(0.02,))
    for fade_periods in (1, 2, 5):
        d = synthesise_drive(
            rest_v=np.full(N_EL, 0.2),
            operating_points_v=op,
            tones=tones,
            sample_rate_hz=FS,
            window_s=0.01,
            settle_s=0.0,
            slew_v_per_s=100.0,
            fade_periods=fade_periods,
        )
        assert d.fade_s == pytest.approx(fade_periods / 300.0, rel=1e-12)
        fade_in = next(s for s in d.segments if s.kind == "fade_in")
        fade_out = next(s for s in d.segments if s.kind == "fade_out")
        exact = fade_periods * FS / 300.0  # not a whole number of samples
        assert fade_in.stop - fade_in.start == math.ceil(exact)
        assert fade_out.stop - fade_out.start == math.ceil(exact)
        tone = d.waveform_v[0] - 0.2
        n = np.arange(d.n_samples)
        full = 0.02 * np.sin(2 * np.pi * 300.0 * n / FS)
        # envelope = raised cosine over exactly fade_periods periods, from the fade start
        k = n[fade_in.start : fade_in.stop] - fade_in.start
        env = 0.5 * (1 - np.cos(np.pi * np.minimum(k / exact, 1.0)))
        np.testing.assert_allclose(
            tone[fade_in.start : fade_in.stop], env * full[fade_in.start : fade_in.stop], atol=1e-15
        )
        k = n[fade_out.start : fade_out.stop] - fade_out.start
        env = 0.5 * (1 - np.cos(np.pi * np.minimum((k[-1] - k) / exact, 1.0)))
        np.testing.assert_allclose(
            tone[fade_out.start : fade_out.stop],
            env * full[fade_out.start : fade_out.stop],
            atol=1e-15,
        )
        # the fades begin and end on exactly zero tone; tones are off outside them
        assert tone[fade_in.start] == 0.0 and tone[fade_out.stop - 1] == 0.0
        assert np.all(tone[: fade_in.start] == 0.0)
        assert np.all(tone[fade_out.stop :] == 0.0)
        # and at full amplitude from the fade-in end to the fade-out start
        np.testing.assert_allclose(
            tone[fade_in.stop : fade_out.start], full[fade_in.stop : fade_out.start], atol=1e-15
        )


def test_fade_uses_slowest_tone() -> None:
    d = lab_drive(fade_periods=3)
    assert d.fade_s == pytest.approx(3 / 200.0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_fade_periods_must_be_whole_and_positive(bad: object) -> None:
    with pytest.raises(ValueError, match="fade_periods"):
        lab_drive(fade_periods=bad)


# --------------------------------------------------------------------------- slew


def test_lab_drive_respects_slew_and_dc_ramps_leave_room_for_tones() -> None:
    d = lab_drive()
    assert max_step(d) <= 100.0 / FS
    # electrode 0 carries 30 mV at 200 Hz (37.7 V/s): its inter-case DC ramps are slower
    tones = lab_tones()
    assert tones.slew_v_per_s(N_EL)[0] == pytest.approx(2 * np.pi * 200 * 0.03)


def test_too_fast_tones_raise_naming_electrode() -> None:
    tones = ToneSet(
        electrode_indices=(0, 4), frequencies_hz=(100.0, 1000.0), amplitudes_v=(0.01, 0.1)
    )
    # electrode 4: 2*pi*1000*0.1 = 628 V/s > 100 V/s
    with pytest.raises(ValueError, match="electrode 4"):
        lab_drive(tones=tones)


def test_tone_above_nyquist_raises() -> None:
    tones = ToneSet(electrode_indices=(0,), frequencies_hz=(6000.0,), amplitudes_v=(1e-5,))
    with pytest.raises(ValueError, match="Nyquist"):
        lab_drive(tones=tones)


def test_dc_ramp_cap_slows_ramps() -> None:
    fast = lab_drive()
    slow = lab_drive(dc_ramp_v_per_s=1.0)
    assert slow.n_samples > fast.n_samples
    dc_steps = np.abs(np.diff(slow.waveform_v[1]))  # untoned input electrode
    assert dc_steps.max() <= 1.0 / FS


def test_raised_cosine_ramps_respect_slew() -> None:
    lin = lab_drive()
    rc = lab_drive(ramp_shape="raised_cosine")
    assert max_step(rc) <= 100.0 / FS
    assert rc.n_samples > lin.n_samples  # same peak rate, so a raised cosine takes longer
    with pytest.raises(ValueError, match="ramp_shape"):
        lab_drive(ramp_shape="step")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_cases=st.integers(1, 4),
    n_tones=st.integers(0, 4),
    slew=st.floats(5.0, 500.0),
    tone_fraction=st.floats(0.05, 0.9),
    fs=st.sampled_from([2_000.0, 10_000.0, 25_000.0]),
    shape=st.sampled_from(["linear", "raised_cosine"]),
    fade_periods=st.integers(1, 3),
)
def test_random_drives_never_exceed_slew(
    seed: int,
    n_cases: int,
    n_tones: int,
    slew: float,
    tone_fraction: float,
    fs: float,
    shape: str,
    fade_periods: int,
) -> None:
    rng = np.random.default_rng(seed)
    n_el = 5
    rest = rng.uniform(-0.2, 0.2, n_el)
    ops = rng.uniform(-1.2, 1.2, (n_cases, n_el))
    tones = None
    if n_tones:
        electrodes = tuple(int(e) for e in rng.choice(n_el, n_tones, replace=False))
        freqs = rng.uniform(fs / 200.0, fs / 10.0, n_tones)
        # amplitude so that the tones use `tone_fraction` of the slew budget on their electrode
        amps = tone_fraction * slew / (2 * np.pi * freqs) * rng.uniform(0.2, 1.0, n_tones)
        tones = ToneSet(
            electrodes, tuple(freqs), tuple(amps), tuple(rng.uniform(-np.pi, np.pi, n_tones))
        )
    window_s = float(rng.uniform(0.005, 0.02))
    d = synthesise_drive(
        rest_v=rest,
        operating_points_v=ops,
        tones=tones,
        sample_rate_hz=fs,
        window_s=window_s,
        settle_s=float(rng.uniform(0.0, 0.005)),
        slew_v_per_s=slew,
        fade_periods=fade_periods,
        ramp_shape=shape,  # type: ignore[arg-type]
    )
    assert max_step(d) <= slew / fs
    np.testing.assert_array_equal(d.waveform_v[:, 0], rest)
    np.testing.assert_array_equal(d.waveform_v[:, -1], rest)
    for c, w in enumerate(d.windows):
        assert w.length == round(window_s * fs)
        expected = np.repeat(ops[c][:, None], w.length, axis=1)
        if tones is not None:
            expected = expected + tones.evaluate(np.arange(w.start, w.stop), fs, n_el)
        np.testing.assert_allclose(d.window_samples(d.waveform_v, c), expected, rtol=0, atol=1e-12)


def test_device_drive_uses_the_devices_rest_rate_and_limits() -> None:
    rest = np.linspace(-0.1, 0.1, N_EL)
    ops = gate_cases(np.full(N_EL, 0.2))
    for ramp in (None, 20.0):
        device = SimpleNamespace(
            limits=SimpleNamespace(slew_v_per_s=100.0, ramp_v_per_s=ramp),
            sample_rate_hz=FS,
            rest_voltages=lambda: rest.copy(),
        )
        d = device_drive(device, ops, lab_tones(), 0.05, 0.01, fade_periods=3)  # type: ignore[arg-type]
        expected = synthesise_drive(
            rest_v=rest,
            operating_points_v=ops,
            tones=lab_tones(),
            sample_rate_hz=FS,
            window_s=0.05,
            settle_s=0.01,
            slew_v_per_s=100.0,
            fade_periods=3,
            dc_ramp_v_per_s=ramp,
        )
        np.testing.assert_array_equal(d.waveform_v, expected.waveform_v)
        assert d.windows == expected.windows
        assert d.sample_rate_hz == FS
        np.testing.assert_array_equal(d.waveform_v[:, 0], rest)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sample_rate_hz": 0.0}, "sample_rate_hz"),
        ({"slew_v_per_s": -1.0}, "slew_v_per_s"),
        ({"window_s": 0.0}, "window_s"),
        ({"window_s": 1e-6}, "shorter than one sample"),
        ({"settle_s": -0.1}, "settle_s"),
        ({"rest_v": np.zeros(3)}, "operating_points_v"),
        ({"operating_points_v": np.full((2, N_EL), np.nan)}, "finite"),
        ({"dc_ramp_v_per_s": 0.0}, "dc_ramp_v_per_s"),
    ],
)
def test_invalid_arguments_raise(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lab_drive(**overrides)


def test_inter_case_ramp_on_toned_electrode_leaves_room_for_its_tone() -> None:
    tones = ToneSet(electrode_indices=(0,), frequencies_hz=(250.0,), amplitudes_v=(0.04,))
    tone_rate = 2 * np.pi * 250.0 * 0.04  # 62.8 V/s of a 100 V/s budget
    ops = np.zeros((2, N_EL))
    ops[1, 0] = 0.5
    d = lab_drive(tones=tones, operating_points_v=ops, rest_v=np.zeros(N_EL))
    ramps = [s for s in d.segments if s.kind == "ramp"]
    between = next(s for s in ramps if d.windows[0].stop <= s.start < d.windows[1].start)
    assert (between.stop - between.start) >= 0.5 / (100.0 - tone_rate) * FS
    assert max_step(d) <= 100.0 / FS
