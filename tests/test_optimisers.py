"""Optimisers, projection, stall detection, stop criteria, best tracking and restarts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.training.optimisers import (
    Adam,
    BestTracker,
    GradientDescent,
    Momentum,
    Optimiser,
    RestartPolicy,
    StallDetector,
    StopCriteria,
    StopReason,
    make_optimiser,
    project_to_box,
    sample_controls,
)

CURVATURE = np.array([1.0, 4.0, 0.5, 2.0])
CENTRE = np.array([0.3, -0.7, 0.1, 0.5])


def bowl_grad(p: np.ndarray) -> np.ndarray:
    return CURVATURE * (p - CENTRE)


def run(opt: Optimiser, steps: int, start: np.ndarray | None = None) -> np.ndarray:
    p = np.zeros(4) if start is None else start
    for _ in range(steps):
        p = opt.step(p, bowl_grad(p))
    return p


@pytest.mark.parametrize(
    ("opt", "steps", "tol"),
    [
        (GradientDescent(0.2), 300, 1e-8),
        (Momentum(0.05), 400, 1e-6),
        (Momentum(0.05, beta=0.8, nesterov=True), 400, 1e-6),
        (Adam(0.02), 3000, 1e-4),
    ],
)
def test_optimisers_converge_on_quadratic_bowl(opt: Optimiser, steps: int, tol: float) -> None:
    p = run(opt, steps, start=np.array([-1.0, 1.0, 1.0, -1.0]))
    np.testing.assert_allclose(p, CENTRE, atol=tol)


def test_step_does_not_modify_params() -> None:
    for opt in (GradientDescent(0.1), Momentum(0.1), Adam(0.1)):
        p = np.ones(3)
        opt.step(p, np.ones(3))
        assert np.array_equal(p, np.ones(3))


def test_adam_first_step_is_lr_times_sign() -> None:
    g = np.array([3.0, -0.002, 1e-3, -50.0])
    opt = Adam(0.01)
    p = opt.step(np.zeros(4), g)
    np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-5)
    # Second step with the same gradient: still ±lr (m̂ = g, v̂ = g²).
    p2 = opt.step(p, g)
    np.testing.assert_allclose(p2 - p, -0.01 * np.sign(g), rtol=1e-5)
    opt.reset()
    np.testing.assert_allclose(opt.step(np.zeros(4), 1e6 * g), -0.01 * np.sign(g), rtol=1e-9)


def test_momentum_accumulates_and_resets() -> None:
    opt = Momentum(1.0, beta=0.5)
    g = np.array([1.0])
    p1 = opt.step(np.zeros(1), g)
    p2 = opt.step(p1, g)
    assert p1[0] == -1.0 and p2[0] == pytest.approx(-1.0 - 1.5)
    opt.reset()
    assert opt.step(np.zeros(1), g)[0] == -1.0


def test_shape_change_and_bad_gradient_raise() -> None:
    opt = Adam(0.1)
    opt.step(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="reset"):
        opt.step(np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        GradientDescent(0.1).step(np.zeros(2), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="same shape"):
        GradientDescent(0.1).step(np.zeros(2), np.ones(3))


def test_make_optimiser() -> None:
    opt = make_optimiser("Adam", learning_rate=0.1, beta1=0.8)
    assert isinstance(opt, Adam) and opt.beta1 == 0.8
    assert isinstance(make_optimiser("gd", learning_rate=0.02), GradientDescent)
    assert make_optimiser("momentum", learning_rate=0.1, nesterov=True).nesterov  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"unknown optimiser 'sgdx'.*adam"):
        make_optimiser("sgdx", learning_rate=0.1)
    with pytest.raises(ValueError, match=r"no parameter.*'beta3'"):
        make_optimiser("adam", learning_rate=0.1, beta3=0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimiser("gd")
    with pytest.raises(ValueError, match="positive"):
        make_optimiser("gd", learning_rate=-1.0)


def test_project_to_box() -> None:
    p = np.array([-2.0, 0.0, 2.0])
    out = project_to_box(p, [-1.0, -1.0, -1.0], [1.0, 1.0, 0.5])
    assert np.array_equal(out, [-1.0, 0.0, 0.5])
    assert np.array_equal(p, [-2.0, 0.0, 2.0])
    assert np.array_equal(project_to_box(p, -0.5, 0.5), [-0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match="lower bound above upper"):
        project_to_box(p, [0.0, 0.0, 1.0], [1.0, 1.0, 0.0])


def test_stall_detector_absolute() -> None:
    det = StallDetector(patience=3, min_improvement=0.01)
    assert not det.update(1.0)
    assert not det.update(0.995)  # less than 0.01 better: no improvement (1)
    assert not det.update(0.98)  # 0.02 better than best 1.0: improvement, count reset
    assert not det.update(0.975)  # 1
    assert not det.update(0.99)  # 2
    assert det.update(0.979)  # 3 -> stalled
    assert det.update(0.979)  # stays stalled
    assert not det.update(0.5)  # improvement clears it
    det.reset()
    assert det.best == math.inf and det.since_improvement == 0


def test_stall_detector_relative() -> None:
    det = StallDetector(patience=2, min_improvement=0.1, mode="relative")
    det.update(100.0)
    assert not det.update(91.0)  # needs < 90
    assert det.update(90.5)
    det.reset()
    det.update(1.0)
    assert not det.update(0.85)  # 15 % better: improvement
    with pytest.raises(ValueError, match="patience"):
        StallDetector(patience=0)


def test_stop_criteria_each_reason() -> None:
    crit = StopCriteria(max_iterations=10, loss_threshold=0.1)
    assert crit.check(1, 0.5, 0.5, 0.3) is None
    assert crit.check(2, 0.09, 0.5, 0.6) == StopReason.LOSS_THRESHOLD == "loss_threshold"

    crit = StopCriteria(max_iterations=10, accuracy_hold_iterations=3)
    reasons = [crit.check(i, 1.0, acc, 0.0) for i, acc in enumerate([1, 1, 0.75, 1, 1, 1], 1)]
    assert reasons == [None, None, None, None, None, StopReason.ACCURACY_HOLD]
    crit.reset()
    assert crit.check(7, 1.0, 1.0, 0.0) is None
    assert crit.check(8, 1.0, None, 0.0) is None  # unmeasured accuracy breaks the streak

    crit = StopCriteria(max_iterations=10, max_device_seconds=2.0)
    assert crit.check(3, 1.0, None, 1.9) is None
    assert crit.check(4, 1.0, None, 2.0) == StopReason.MAX_DEVICE_SECONDS

    crit = StopCriteria(max_iterations=3)
    assert [crit.check(i, 1.0, None, 0.0) for i in (1, 2, 3)] == [
        None,
        None,
        StopReason.MAX_ITERATIONS,
    ]
    with pytest.raises(ValueError, match="max_iterations"):
        StopCriteria(max_iterations=0)


def test_best_tracker_keeps_copy_of_best() -> None:
    best = BestTracker()
    controls = np.array([0.1, 0.2])
    assert best.update(1.0, controls, 1)
    controls[0] = 9.0  # caller mutates its array
    assert not best.update(1.0, np.zeros(2), 2)  # equal loss is not better
    assert not best.update(math.nan, np.zeros(2), 3)
    assert best.update(0.5, np.array([0.3, 0.4]), 4)
    assert not best.update(0.7, np.zeros(2), 5)
    assert best.best_loss == 0.5 and best.best_iteration == 4
    assert best.best_controls is not None
    assert np.array_equal(best.best_controls, [0.3, 0.4])


def test_sample_controls_inside_ranges_and_reproducible() -> None:
    lo, hi = np.array([-1.2, -0.8, 0.0]), np.array([0.6, 1.0, 0.0])
    a = sample_controls(np.random.default_rng(3), lo, hi)
    b = sample_controls(np.random.default_rng(3), lo, hi)
    assert np.array_equal(a, b)
    assert np.all(a >= lo) and np.all(a <= hi) and a[2] == 0.0


def test_restart_policy_restarts_on_stall_and_keeps_best() -> None:
    lo, hi = np.full(5, -1.0), np.full(5, 1.0)
    policy = RestartPolicy(lo, hi, StallDetector(patience=2), seed=7, max_restarts=1)
    start = policy.initial_controls()
    assert np.all((start >= lo) & (start <= hi))
    assert policy.observe(1, 0.8, start) is None
    assert policy.observe(2, 0.9, start + 0.1) is None
    fresh = policy.observe(3, 0.95, start + 0.2)
    assert fresh is not None and not np.array_equal(fresh, start)
    assert np.all((fresh >= lo) & (fresh <= hi))
    assert policy.restarts == [(3, "stall")]
    # Stall detector was reset: a worse loss after restart does not trigger immediately.
    assert policy.observe(4, 2.0, fresh) is None
    assert policy.observe(5, 2.0, fresh) is None
    assert policy.observe(6, 2.0, fresh) is None  # stalled, but no restarts left
    assert policy.best.best_loss == 0.8 and policy.best.best_iteration == 1
    np.testing.assert_array_equal(policy.best.best_controls, start)
    with pytest.raises(RuntimeError, match="restarts used"):
        policy.restart(7, "clipping")


def test_restart_policy_is_reproducible() -> None:
    def sequence(seed: int) -> list[np.ndarray]:
        pol = RestartPolicy([-1.0, -1.0], [1.0, 1.0], StallDetector(1), seed=seed)
        return [pol.initial_controls(), pol.restart(1, "clipping"), pol.restart(2, "stall")]

    for a, b in zip(sequence(5), sequence(5), strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(sequence(5)[0], sequence(6)[0])


@pytest.mark.parametrize("name", ["gd", "momentum", "adam"])
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    import json

    rng = np.random.default_rng(3)
    grads = rng.normal(size=(6, 4))
    a = make_optimiser(name, learning_rate=0.1)
    p = np.zeros(4)
    for g in grads[:3]:
        p = a.step(p, g)
    b = make_optimiser(name, learning_rate=0.1)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    pa, pb = p.copy(), p.copy()
    for g in grads[3:]:
        pa, pb = a.step(pa, g), b.step(pb, g)
    np.testing.assert_array_equal(pa, pb)
