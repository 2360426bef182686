"""Metrics: separation, correlation, exact threshold accuracy, lab perceptron."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.training.metrics import (
    correlation,
    pearson_terms,
    perceptron_accuracy,
    separation,
    threshold_accuracy,
)


def brute_force_accuracy(x: np.ndarray, t: np.ndarray) -> float:
    """Best accuracy over every threshold between/outside the outputs, both directions."""
    xs = np.unique(x)
    cands = np.concatenate(([xs[0] - 1.0], 0.5 * (xs[1:] + xs[:-1]), [xs[-1] + 1.0]))
    best = 0.0
    for thr in cands:
        up = np.mean((x > thr) == (t == 1))
        best = max(best, up, 1.0 - up)
    return float(best)


def test_separation_and_correlation_values() -> None:
    t = np.array([0.0, 1.0, 1.0, 0.0])
    x = np.array([1.0, 5.0, 7.0, 2.0])
    assert separation(x, t) == pytest.approx(3.0)
    assert separation(-x, t) == pytest.approx(-7.0 - (-1.0))
    assert correlation(x, t) == pytest.approx(np.corrcoef(x, t)[0, 1])
    assert correlation(np.ones(4), t) == 0.0
    assert correlation(2.0 * t + 1.0, t) == pytest.approx(1.0)


def test_pearson_terms_regularised_and_pieces() -> None:
    t = np.array([0.0, 1.0, 1.0, 0.0])
    x = np.array([1.0, 5.0, 7.0, 2.0])
    terms = pearson_terms(x, t)
    assert terms.rho == correlation(x, t)
    np.testing.assert_allclose(terms.dx, x - x.mean())
    assert terms.sx == pytest.approx(x.std()) and terms.st == pytest.approx(0.5)
    # eps regularises sigma_x: a constant output gives rho = 0, a varying one a smaller |rho|
    assert pearson_terms(np.ones(4), t, eps=0.1).rho == 0.0
    assert 0.0 < pearson_terms(x, t, eps=1.0).rho < terms.rho


def test_threshold_separable_puts_threshold_midway() -> None:
    t = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    x = np.array([1.0, 5.0, 7.0, 2.0, 9.0])
    r = threshold_accuracy(x, t)
    assert r.accuracy == 1.0
    assert r.direction == 1
    assert r.threshold == pytest.approx(3.5)
    assert r.margin == pytest.approx(1.5)
    assert np.array_equal(r.predict(x), t == 1)


def test_threshold_inverted_direction() -> None:
    t = np.array([0.0, 1.0, 1.0, 0.0])
    x = np.array([10.0, 1.0, 2.0, 8.0])
    r = threshold_accuracy(x, t)
    assert (r.accuracy, r.direction) == (1.0, -1)
    assert r.threshold == pytest.approx(5.0)
    assert np.array_equal(r.predict(x), t == 1)


def test_threshold_non_separable_matches_brute_force() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(2, 25))
        t = (rng.random(n) < 0.5).astype(float)
        t[0], t[-1] = 0.0, 1.0
        # Coarse grid makes ties (within and across classes) frequent.
        x = np.round(rng.normal(size=n) + 0.7 * t, 1)
        r = threshold_accuracy(x, t)
        assert r.accuracy == pytest.approx(brute_force_accuracy(x, t))
        assert r.accuracy == pytest.approx(np.mean(r.predict(x) == (t == 1)))
        assert r.accuracy >= max(t.mean(), 1 - t.mean()) - 1e-12


def test_ties_across_classes_cannot_be_split() -> None:
    t = np.array([0.0, 1.0, 0.0, 1.0])
    x = np.array([1.0, 1.0, 2.0, 2.0])
    r = threshold_accuracy(x, t)
    assert r.accuracy == 0.5
    # Threshold never sits on a data value.
    assert not np.any(x == r.threshold)


def test_equal_accuracy_breaks_toward_widest_margin() -> None:
    t = np.array([0.0, 1.0, 0.0, 1.0])
    x = np.array([0.0, 1.0, 5.0, 7.0])
    r = threshold_accuracy(x, t)
    # Cuts at 0.5 (gap 1) and 6.0 (gap 2) both give 3/4; the wider one wins.
    assert r.accuracy == 0.75
    assert r.threshold == pytest.approx(6.0)
    assert r.margin == pytest.approx(1.0)


def test_constant_outputs_give_majority_class_and_infinite_threshold() -> None:
    t = np.array([0.0, 1.0, 1.0])
    r = threshold_accuracy(np.full(3, 4.0), t)
    assert r.accuracy == pytest.approx(2 / 3)
    assert np.isinf(r.threshold)
    assert np.array_equal(r.predict(np.full(3, 4.0)), [True, True, True])


def test_threshold_is_unit_agnostic() -> None:
    t = np.array([0.0, 1.0, 1.0, 0.0])
    x_na = np.array([1.0, 5.0, 7.0, 2.0])
    r_na = threshold_accuracy(x_na, t)
    r_a = threshold_accuracy(x_na * 1e-9, t)
    assert r_a.threshold == pytest.approx(r_na.threshold * 1e-9)
    assert r_a.accuracy == r_na.accuracy


def test_perceptron_agrees_with_exact_threshold_on_separable_data() -> None:
    rng = np.random.default_rng(21)
    for trial in range(8):
        n = int(rng.integers(10, 60))
        t = (rng.random(n) < 0.5).astype(float)
        t[:2] = [0.0, 1.0]
        sign = 1.0 if trial % 2 else -1.0
        x = (rng.uniform(0, 10, n) + sign * 12.0 * t) * 1e-9
        exact = threshold_accuracy(x, t)
        perc = perceptron_accuracy(x, t, seed=trial)
        assert exact.accuracy == perc.accuracy == 1.0
        assert perc.direction == exact.direction
        lo = x[t == (0 if sign > 0 else 1)].max()
        hi = x[t == (1 if sign > 0 else 0)].min()
        assert lo < perc.threshold < hi
        assert perc.epochs < 25_000


def test_perceptron_never_beats_exact_threshold() -> None:
    rng = np.random.default_rng(8)
    for seed in range(3):
        n = 40
        t = (rng.random(n) < 0.5).astype(float)
        t[:2] = [0.0, 1.0]
        x = rng.normal(size=n) + 1.0 * t
        perc = perceptron_accuracy(x, t, epochs=300, seed=seed)
        assert perc.accuracy <= threshold_accuracy(x, t).accuracy
        assert perc.epochs == 300 or perc.accuracy == 1.0


def test_perceptron_is_reproducible() -> None:
    t = np.array([0.0, 1.0] * 6)
    x = np.arange(12.0) + 3.0 * t
    a = perceptron_accuracy(x, t, seed=4, epochs=50)
    b = perceptron_accuracy(x, t, seed=4, epochs=50)
    assert a == b


def test_metric_input_validation() -> None:
    with pytest.raises(ValueError, match="one class"):
        threshold_accuracy(np.arange(3.0), np.ones(3))
    with pytest.raises(ValueError, match="0 or 1"):
        separation(np.arange(3.0), np.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="positive"):
        perceptron_accuracy(np.arange(2.0), np.array([0.0, 1.0]), epochs=0)
