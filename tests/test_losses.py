"""Losses: analytic gradients against central finite differences, values, registry."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from labctl.training import losses
from labctl.training.losses import LOSSES, cor_sigmoid, corrsig, fisher, get_loss, mse
from labctl.training.metrics import correlation

NA = 1e-9

LossCall = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]

ALL_LOSSES: dict[str, LossCall] = {
    "corrsig": get_loss("corrsig"),
    "corrsig_scaled": get_loss("corrsig", offset_na=2.0, slope_na=3.0),
    "cor_sigmoid": get_loss("cor_sigmoid"),
    "mse": get_loss("mse", low_na=1.0, high_na=20.0),
    "fisher": get_loss("fisher"),
}


def central_fd(f: LossCall, x: np.ndarray, t: np.ndarray, h: float) -> np.ndarray:
    """Central differences (per A), dividing by the step actually represented in floats."""
    g = np.empty_like(x)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp, t)[0] - f(xm, t)[0]) / (xp[i] - xm[i])
    return g


def one_sided_fd(
    f: LossCall, x: np.ndarray, t: np.ndarray, h: float
) -> tuple[np.ndarray, np.ndarray]:
    fwd = np.empty_like(x)
    bwd = np.empty_like(x)
    f0 = f(x, t)[0]
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fwd[i] = (f(xp, t)[0] - f0) / (xp[i] - x[i])
        bwd[i] = (f0 - f(xm, t)[0]) / (x[i] - xm[i])
    return fwd, bwd


def random_targets(rng: np.random.Generator, n: int) -> np.ndarray:
    t = (rng.random(n) < 0.5).astype(float)
    t[0], t[1] = 0.0, 1.0
    return rng.permutation(t)


def extremes_clear(x: np.ndarray, t: np.ndarray, gap: float) -> bool:
    """True if the class extremes that define Δ are unique by at least ``gap``."""
    hi = np.sort(x[t == 1])
    lo = np.sort(x[t == 0])
    ok_hi = hi.size < 2 or hi[1] - hi[0] > gap
    ok_lo = lo.size < 2 or lo[-1] - lo[-2] > gap
    return bool(ok_hi and ok_lo)


def assert_grad_close(analytic: np.ndarray, numeric: np.ndarray, rtol: float = 1e-5) -> None:
    scale = max(float(np.max(np.abs(numeric))), 1e-30)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_gradient_matches_central_differences_on_random_inputs(name: str) -> None:
    f = ALL_LOSSES[name]
    rng = np.random.default_rng(1234)
    checked = 0
    while checked < 60:
        n = int(rng.integers(3, 16))
        t = random_targets(rng, n)
        # Mixture of separable, partly separable and inverted outputs, 0.1–50 nA spread.
        scale = 10 ** rng.uniform(-1, 1.7)
        x_na = rng.normal(0.0, scale, n) + rng.uniform(-3, 3) * scale * t + rng.uniform(0, 60)
        h_na = 1e-6 * scale
        if not extremes_clear(x_na, t, 100 * h_na):
            continue
        x = x_na * NA
        _, g = f(x, t)
        assert g.shape == x.shape
        assert_grad_close(g, central_fd(f, x, t, h_na * NA))
        checked += 1


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_gradient_with_ties_away_from_kinks(name: str) -> None:
    """Equal outputs that do not define Δ (duplicates inside a class, cross-class ties in the
    middle of a non-separable set) leave the loss smooth: FD must still match."""
    f = ALL_LOSSES[name]
    rng = np.random.default_rng(99)
    checked = 0
    while checked < 30:
        n = int(rng.integers(6, 14))
        t = random_targets(rng, n)
        x_na = rng.uniform(0.0, 30.0, n)
        lo_idx = np.flatnonzero(t == 0)
        hi_idx = np.flatnonzero(t == 1)
        # Cross-class tie: a class-1 output equal to a class-0 output, both interior.
        i, j = rng.choice(hi_idx), rng.choice(lo_idx)
        x_na[i] = x_na[j] = 0.5 * (x_na[i] + x_na[j])
        # Within-class tie.
        k = rng.choice(lo_idx if lo_idx.size > 1 else hi_idx, size=2, replace=False)
        x_na[k[1]] = x_na[k[0]]
        if not extremes_clear(x_na, t, 1e-3):
            continue
        x = x_na * NA
        assert_grad_close(f(x, t)[1], central_fd(f, x, t, 1e-6 * NA))
        checked += 1


@pytest.mark.parametrize("name", ["corrsig", "corrsig_scaled", "cor_sigmoid"])
def test_subgradient_at_kinks_lies_between_one_sided_differences(name: str) -> None:
    """When two class-1 outputs tie at the class minimum, Δ has a kink: the analytic value must
    lie between the one-sided differences in every coordinate."""
    f = ALL_LOSSES[name]
    rng = np.random.default_rng(7)
    for _ in range(30):
        n = int(rng.integers(5, 12))
        t = random_targets(rng, n)
        hi_idx = np.flatnonzero(t == 1)
        lo_idx = np.flatnonzero(t == 0)
        if hi_idx.size < 2 or lo_idx.size < 2:
            continue
        x_na = rng.uniform(0.0, 20.0, n) + 4.0 * t
        a, b = hi_idx[np.argsort(x_na[hi_idx])[:2]]
        x_na[b] = x_na[a]  # tie at min(x | t=1)
        c, d = lo_idx[np.argsort(x_na[lo_idx])[-2:]]
        x_na[c] = x_na[d]  # tie at max(x | t=0)
        x = x_na * NA
        g = f(x, t)[1]
        fwd, bwd = one_sided_fd(f, x, t, 1e-7 * NA)
        lo = np.minimum(fwd, bwd)
        hi = np.maximum(fwd, bwd)
        tol = 1e-4 * np.max(np.abs(g))
        assert np.all(g >= lo - tol) and np.all(g <= hi + tol)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize("spread_na", [1e-4, 1e-3, 1e-2])
def test_near_constant_outputs_give_finite_gradient_matching_fd(
    name: str, spread_na: float
) -> None:
    f = ALL_LOSSES[name]
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 10:
        n = int(rng.integers(4, 10))
        t = random_targets(rng, n)
        x_na = 7.0 + spread_na * rng.normal(size=n)
        h_na = 1e-5 * spread_na
        if not extremes_clear(x_na, t, 100 * h_na):
            continue
        x = x_na * NA
        loss, g = f(x, t)
        assert np.isfinite(loss) and np.all(np.isfinite(g))
        assert_grad_close(g, central_fd(f, x, t, h_na * NA), rtol=1e-4)
        checked += 1


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_exactly_constant_outputs_are_finite(name: str) -> None:
    t = np.array([0.0, 1.0, 1.0, 0.0])
    loss, g = ALL_LOSSES[name](np.full(4, 5e-9), t)
    assert np.isfinite(loss)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_extreme_outputs_are_finite(name: str) -> None:
    t = np.array([0.0, 1.0, 0.0, 1.0])
    for x_na in ([1e4, -1e4, 1e4, -1e4], [-1e5, 1e5, -1e5, 1e5], [0.0, -3e3, 1.0, 2.0]):
        loss, g = ALL_LOSSES[name](np.array(x_na) * NA, t)
        assert np.isfinite(loss) and np.all(np.isfinite(g))


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_loss_decreases_along_negative_gradient(name: str) -> None:
    f = ALL_LOSSES[name]
    rng = np.random.default_rng(42)
    for _ in range(40):
        n = int(rng.integers(4, 12))
        t = random_targets(rng, n)
        x = rng.uniform(0.0, 30.0, n) * NA
        loss, g = f(x, t)
        step = -g / np.linalg.norm(g) * 1e-4 * NA
        assert f(x + step, t)[0] < loss


def test_perfect_outputs_give_low_loss() -> None:
    rng = np.random.default_rng(3)
    t = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    perfect = (2.0 + 50.0 * t + 0.01 * rng.normal(size=t.size)) * NA
    inverted = (2.0 + 50.0 * (1 - t)) * NA
    noise = rng.uniform(0.0, 50.0, t.size) * NA
    # cor_sigmoid reaches the lab's stop threshold 0.1 only for ρ ≈ 1 and Δ ≫ 5 nA.
    assert cor_sigmoid(perfect, t)[0] < 0.1
    assert corrsig(perfect, t)[0] < 0.101
    assert mse(perfect, t, low_na=2.0, high_na=52.0)[0] < 1e-3
    for name in ("corrsig", "cor_sigmoid", "mse"):
        f = ALL_LOSSES[name]
        assert f(perfect, t)[0] < f(noise, t)[0] < f(inverted, t)[0]
    # Fisher is blind to the direction of the separation.
    assert fisher(perfect, t)[0] < fisher(noise, t)[0]
    assert fisher(perfect, t)[0] < -1e6


def test_cor_sigmoid_known_value_uses_nanoampere_constants() -> None:
    # ρ = 1 exactly and Δ = 5 nA: L = 0.1 / (σ(0) + 0.05) = 0.1 / 0.55.
    t = np.array([0.0, 1.0])
    x = np.array([10.0, 15.0]) * NA
    loss, _ = cor_sigmoid(x, t, eps_na=0.0)
    assert loss == pytest.approx(0.1 / 0.55, rel=1e-12)


def test_cor_sigmoid_separation_gradient_selects_the_right_cases() -> None:
    """The published gradient picked the wrong class for the low side; check the signs here."""
    t = np.array([0.0, 0.0, 1.0, 1.0])
    # ρ fixed by symmetry-ish layout; the separation term dominates around Δ ≈ offset.
    x = np.array([0.0, 4.0, 9.0, 20.0]) * NA
    _, g_full = cor_sigmoid(x, t)
    _, g_rho_only = cor_sigmoid(x, t, slope_na=1e6)  # Δ-term switched off (flat sigmoid)
    d = g_full - g_rho_only
    # Raising the lowest class-1 output increases Δ and lowers the loss; raising the highest
    # class-0 output lowers Δ and raises the loss. Others get no Δ contribution.
    assert d[2] < 0.0 and d[1] > 0.0
    assert abs(d[0]) < 1e-3 * abs(d[2]) and abs(d[3]) < 1e-3 * abs(d[2])


def test_mse_gradient_scale_is_two_over_n() -> None:
    t = np.array([0.0, 1.0, 0.0, 1.0])
    x = np.array([1.0, 2.0, 3.0, 4.0]) * NA
    _, g = mse(x, t, low_na=0.0, high_na=1.0)
    np.testing.assert_allclose(g * NA, 2.0 * (np.array([1.0, 2.0, 3.0, 4.0]) - t) / 4)


def test_pearson_without_eps_equals_metric_correlation() -> None:
    rng = np.random.default_rng(0)
    t = random_targets(rng, 9)
    x = rng.normal(size=9) * NA
    rho, _ = losses._pearson(x / NA, t, 0.0)
    assert rho == pytest.approx(correlation(x, t), rel=1e-12)
    assert rho == correlation(x / NA, t)  # one implementation: identical, not just close


def test_registry_and_get_loss_errors() -> None:
    assert set(LOSSES) == {"corrsig", "cor_sigmoid", "mse", "fisher", "separation_margin"}
    with pytest.raises(ValueError, match=r"unknown loss 'bce'.*cor_sigmoid"):
        get_loss("bce")
    with pytest.raises(ValueError, match=r"no parameter.*'gain'.*offset_na"):
        get_loss("corrsig", gain=2.0)
    t = np.array([0.0, 1.0, 0.0, 1.0])
    x = np.array([0.0, 6.0, 1.0, 7.0]) * NA
    assert get_loss("cor_sigmoid", offset_na=0.0)(x, t)[0] < cor_sigmoid(x, t)[0]


@pytest.mark.parametrize(
    ("x", "t", "match"),
    [
        (np.zeros(3), np.array([0.0, 1.0]), "equal length"),
        (np.zeros(3), np.array([0.0, 1.0, 2.0]), "0 or 1"),
        (np.zeros(3), np.array([1.0, 1.0, 1.0]), "one class"),
        (np.array([0.0, np.nan]), np.array([0.0, 1.0]), "NaN"),
    ],
)
def test_invalid_inputs_raise(x: np.ndarray, t: np.ndarray, match: str) -> None:
    for f in LOSSES.values():
        with pytest.raises(ValueError, match=match):
            f(x, t)
