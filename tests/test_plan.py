"""Tests for the HGE frequency planner (labctl.homodyne.plan)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from labctl.homodyne.plan import (
    FrequencyPlan,
    PlanError,
    PlanWarning,
    _new_products,
    _product_coefficients,
    find_collisions,
    plan_frequencies,
    product_bins,
    sidon_min_span,
    validate_frequencies,
)

# ------------------------------------------------------------------ independent brute force


def _canonical(vec: tuple[int, ...]) -> tuple[int, ...]:
    for c in vec:
        if c != 0:
            return vec if c > 0 else tuple(-x for x in vec)
    return vec


def _products_by_order(n: int, order: int) -> set[tuple[int, ...]]:
    """All integer coefficient vectors with sum |c| == order (built from signed unit vectors)."""
    units = []
    for k in range(n):
        for sign in (1, -1):
            v = [0] * n
            v[k] = sign
            units.append(tuple(v))
    out = set()
    for combo in itertools.combinations_with_replacement(units, order):
        vec = tuple(sum(col) for col in zip(*combo, strict=True))
        if sum(abs(c) for c in vec) == order:
            out.add(_canonical(vec))
    return out


def _brute_force_clean(bins: tuple[int, ...], max_order: int, curvature: bool) -> bool:
    n = len(bins)
    fund = set(bins)
    if len(fund) != n:
        return False

    def value(vec: tuple[int, ...]) -> int:
        return abs(sum(c * m for c, m in zip(vec, bins, strict=True)))

    second = [value(v) for v in _products_by_order(n, 2)]
    third = [value(v) for v in _products_by_order(n, 3)] if max_order >= 3 else []
    if any(b in fund for b in second) or any(b in fund for b in third):
        return False
    if curvature:
        if len(set(second)) != len(second) or 0 in second:
            return False
        if set(second) & set(third):
            return False
    return True


def _mains_ok(plan: FrequencyPlan, mains: tuple[float, ...], guard: float) -> bool:
    for f in plan.frequencies_hz:
        for fm in mains:
            for h in range(1, 100):
                if abs(f - h * fm) * plan.window_s < guard - 1e-9:
                    return False
    return True


# ------------------------------------------------------------------ published / lab plans


def test_lab_plan_is_second_order_clean_but_has_third_order_collisions() -> None:
    plan = validate_frequencies(
        [200, 360, 520, 760, 920], 10_000, 0.05, max_order=2, mains_hz=(), insist=False
    )
    assert plan.bins == (10, 18, 26, 38, 46)
    assert plan.n_samples == 500
    assert find_collisions(plan.bins, max_order=2) == []
    third = find_collisions(plan.bins, max_order=3)
    described = {(c.product, c.target) for c in third}
    # labels are 0-based: the method's 2f1+f2 = f4 (1-based) is "2f0+f1" hitting "f3" here
    assert ("2f0+f1", "f3") in described  # 400 + 360 = 760
    assert ("2f0+f2", "f4") in described  # 400 + 520 = 920
    assert ("2f1-f0", "f2") in described  # 720 - 200 = 520
    assert ("f0+2f1", "f4") in described or ("2f1+f0", "f4") in described
    assert all(c.order == 3 and c.target_kind == "fundamental" for c in third)
    assert not _brute_force_clean(plan.bins, 3, False)
    assert _brute_force_clean(plan.bins, 2, False)


def test_2019_plan_has_second_order_collisions() -> None:
    clashes = find_collisions((8, 16, 24, 32, 40), max_order=2)  # 1 Hz bins, T = 1 s
    described = {(c.product, c.target) for c in clashes}
    assert ("2f0", "f1") in described
    assert ("f0+f1", "f2") in described
    assert all(c.order == 2 for c in clashes)
    with pytest.raises(PlanError, match="2f0"):
        validate_frequencies([8, 16, 24, 32, 40], 1000, 1.0, max_order=2, mains_hz=())


@pytest.mark.parametrize(
    "freqs",
    [(220, 270, 330, 520, 620), (220, 320, 580, 620, 820, 870, 930)],
)
def test_published_clean_plans(freqs: tuple[int, ...]) -> None:
    plan = validate_frequencies(freqs, 10_000, 0.1)  # default: 3rd order + mains guard
    assert plan.bins == tuple(f // 10 for f in freqs)
    assert find_collisions(plan.bins, max_order=3) == []
    assert _brute_force_clean(plan.bins, 3, False)


def test_planner_reproduces_five_tone_plan() -> None:
    plan = plan_frequencies(10_000, 0.1, 5, band_hz=(200, 1000), min_spacing_hz=50)
    assert plan.frequencies_hz == (220.0, 270.0, 330.0, 520.0, 620.0)


# ------------------------------------------------------------------ generated plans


@pytest.mark.parametrize(
    ("rate", "window", "n_tones", "band", "curvature"),
    [
        (10_000, 0.1, 3, (200, 1000), False),
        (10_000, 0.1, 5, (200, 1000), False),
        (10_000, 0.1, 7, (200, 1000), False),
        (10_000, 0.1, 5, (200, 1000), True),
        (10_000, 0.1, 6, (200, 1000), True),
        (10_000, 0.2, 7, (200, 1000), True),
        (10_000, 0.5, 7, (200, 1000), True),
        (20_000, 0.1, 7, (100, 2000), True),
        (5_000, 0.2, 7, (50, 500), True),
        (2_000, 1.0, 5, (10, 200), False),
        (1_000, 0.5, 4, (20, 100), False),
        (48_000, 0.25, 7, (100, 4000), True),
    ],
)
def test_generated_plans_pass_independent_check(
    rate: float, window: float, n_tones: int, band: tuple[float, float], curvature: bool
) -> None:
    plan = plan_frequencies(rate, window, n_tones, band_hz=band, curvature=curvature)
    assert len(plan.bins) == n_tones
    assert list(plan.bins) == sorted(set(plan.bins))
    assert find_collisions(plan.bins, max_order=3, curvature=curvature) == []
    assert _brute_force_clean(plan.bins, 3, curvature)
    assert _mains_ok(plan, (50.0, 60.0), 2)
    for f, m in zip(plan.frequencies_hz, plan.bins, strict=True):
        assert band[0] <= f <= band[1]
        assert f <= rate / 10
        assert math.isclose(f * window, m, abs_tol=1e-9)
    # the plan also validates through the user path
    again = validate_frequencies(plan.frequencies_hz, rate, window, curvature=curvature)
    assert again.bins == plan.bins


def test_seven_tone_curvature_plan_and_curvature_bins() -> None:
    plan = plan_frequencies(10_000, 0.2, 7, curvature=True)
    bins = plan.curvature_bins()
    assert len(bins) == 7 + 21
    flat = [b for group in bins.values() for b in group]
    assert len(flat) == len(set(flat)) == 7 + 2 * 21
    assert not set(flat) & set(plan.bins)
    m = plan.bins
    assert bins[(0, 0)] == (2 * m[0],)
    assert bins[(1, 4)] == (m[1] + m[4], m[4] - m[1])
    hz = plan.curvature_frequencies_hz()
    assert math.isclose(hz[(1, 4)][0], plan.frequencies_hz[1] + plan.frequencies_hz[4])


def test_curvature_bins_refused_on_unclean_plan() -> None:
    plan = validate_frequencies([220, 270, 330, 520, 620], 10_000, 0.1)
    # 3rd-order clean, but e.g. 3*220 = 660 = 2*330 puts 3f0 on the curvature bin 2f2
    clashes = find_collisions(plan.bins, curvature=True)
    assert ("3f0", "2f2") in {(c.product, c.target) for c in clashes}
    assert all(c.target_kind == "curvature" for c in clashes)
    assert not _brute_force_clean(plan.bins, 3, True)
    with pytest.raises(PlanError, match="curvature"):
        plan.curvature_bins()


def test_min_spacing_and_second_order_only() -> None:
    plan = plan_frequencies(10_000, 0.1, 6, min_spacing_hz=75, max_order=2)
    diffs = [b - a for a, b in itertools.pairwise(plan.frequencies_hz)]
    assert min(diffs) >= 75
    assert _brute_force_clean(plan.bins, 2, False)


def test_planner_is_deterministic() -> None:
    a = plan_frequencies(10_000, 0.2, 7, curvature=True)
    b = plan_frequencies(10_000, 0.2, 7, curvature=True)
    assert a == b


# ------------------------------------------------------------------ mains


def test_mains_avoidance() -> None:
    plan = plan_frequencies(10_000, 0.1, 7, band_hz=(200, 1000))
    assert _mains_ok(plan, (50.0, 60.0), 2)
    free = plan_frequencies(10_000, 0.1, 3, band_hz=(200, 1000), mains_hz=())
    assert free.frequencies_hz[0] == 200.0  # 4 x 50 Hz is allowed once the guard is off
    guarded = plan_frequencies(10_000, 0.1, 3, band_hz=(200, 1000), mains_hz=(50.0,))
    assert all(abs(f - 50 * round(f / 50)) >= 20 for f in guarded.frequencies_hz)
    wide = plan_frequencies(10_000, 0.2, 5, mains_hz=(50.0,), mains_guard_bins=4)
    assert _mains_ok(wide, (50.0,), 4)
    assert all(abs(f - 50 * round(f / 50)) >= 20 for f in wide.frequencies_hz)


def test_validate_flags_mains_and_samples_per_period() -> None:
    with pytest.raises(PlanError, match="mains harmonic"):
        validate_frequencies([150, 230], 10_000, 0.1)
    with pytest.raises(PlanError, match="samples per"):
        validate_frequencies([230, 1230], 10_000, 0.1, mains_hz=())


# ------------------------------------------------------------------ errors and warnings


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        (dict(n_tones=7, curvature=True), "drop curvature"),
        (dict(n_tones=12), "fewer tones"),
        (dict(n_tones=5, band_hz=(200, 260)), "widen band_hz"),
        (dict(n_tones=5, window_s=0.05), "mains_guard_bins"),
        (dict(n_tones=5, min_spacing_hz=300), "min_spacing_hz"),
        (dict(n_tones=9, curvature=True, band_hz=(200, 400)), "lengthen window_s"),
    ],
)
def test_impossible_requests_explain(kwargs: dict, hint: str) -> None:
    args = dict(sample_rate_hz=10_000, window_s=0.1, band_hz=(200, 1000))
    args.update(kwargs)
    with pytest.raises(PlanError, match=hint) as info:
        plan_frequencies(**args)
    assert isinstance(info.value, ValueError)
    assert "cannot place" in str(info.value)


def test_non_integer_window_rejected() -> None:
    with pytest.raises(PlanError, match="integer"):
        plan_frequencies(10_000, 0.00015, 3)
    with pytest.raises(PlanError, match="integer"):
        validate_frequencies([220], 1_000, 0.0015)


def test_off_grid_frequency_is_hard_error_even_with_insist() -> None:
    with pytest.raises(PlanError, match=r"225 Hz is off the 10 Hz grid") as info:
        validate_frequencies([225, 270], 10_000, 0.1, insist=True)
    assert "220" in str(info.value) and "230" in str(info.value)


def test_validate_lists_every_problem() -> None:
    with pytest.raises(PlanError) as info:
        validate_frequencies([200, 360, 520, 760, 920], 10_000, 0.05, mains_hz=())
    text = str(info.value)
    assert text.count("collision:") == len(find_collisions((10, 18, 26, 38, 46)))
    assert "insist=True" in text


def test_insist_turns_collisions_into_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = validate_frequencies([200, 360, 520, 760, 920], 10_000, 0.05, insist=True)
    assert plan.bins == (10, 18, 26, 38, 46)
    plan_warnings = [w for w in caught if issubclass(w.category, PlanWarning)]
    n_collisions = len(find_collisions(plan.bins))
    assert n_collisions > 0
    assert sum("collision" in str(w.message) for w in plan_warnings) == n_collisions


def test_find_collisions_reports_duplicates_and_aliases() -> None:
    dup = find_collisions((10, 10))
    assert any(c.order == 1 and c.target == "f0" for c in dup)
    # with 100 samples per window, 2*40 = 80 aliases to bin 20 = f1
    aliased = find_collisions((40, 20), max_order=2, n_samples=100)
    assert any(c.product == "2f0" and c.target == "f1" for c in aliased)
    assert not any(c.product == "2f0" for c in find_collisions((40, 20), max_order=2))


@pytest.mark.parametrize("curvature", [False, True])
@pytest.mark.parametrize("max_order", [2, 3])
def test_find_collisions_agrees_with_brute_force_on_random_sets(
    max_order: int, curvature: bool
) -> None:
    rng = np.random.default_rng(1234 + max_order + 10 * curvature)
    n_clean = 0
    for _ in range(300):
        n = int(rng.integers(2, 7))
        bins = tuple(int(b) for b in rng.choice(np.arange(1, 120), size=n, replace=False))
        clean = _brute_force_clean(bins, max_order, curvature)
        assert (find_collisions(bins, max_order=max_order, curvature=curvature) == []) == clean
        n_clean += clean
    assert 0 < n_clean < 300  # both outcomes exercised


@pytest.mark.parametrize("max_order", [2, 3])
def test_product_bins_are_every_signed_sum_of_up_to_max_order_tones(max_order: int) -> None:
    rng = np.random.default_rng(77 + max_order)
    for _ in range(100):
        n = int(rng.integers(1, 7))
        bins = [int(b) for b in rng.choice(np.arange(1, 200), size=n, replace=False)]
        expected = {
            abs(sum(s * bins[i] for s, i in zip(signs, picks, strict=True)))
            for k in range(1, max_order + 1)
            for picks in itertools.product(range(n), repeat=k)
            for signs in itertools.product((1, -1), repeat=k)
        }
        assert product_bins(bins, max_order=max_order) == expected
    assert product_bins([]) == set()
    assert product_bins([7], max_order=3) == {0, 7, 14, 21}


@pytest.mark.parametrize("max_order", [2, 3])
def test_incremental_products_agree_with_full_form(max_order: int) -> None:
    """The search's running product sets (``_new_products``) equal the full evaluation."""
    rng = np.random.default_rng(4321 + max_order)
    for _ in range(200):
        n = int(rng.integers(1, 8))
        bins = [int(b) for b in rng.choice(np.arange(1, 300), size=n, replace=False)]
        second: set[int] = set()
        third: set[int] = set()
        for k, x in enumerate(bins):
            new2, new3 = _new_products(x, bins[:k], max_order)
            second.update(new2)
            third.update(new3)
            chosen = bins[: k + 1]

            def full(order: int, chosen: list[int] = chosen) -> set[int]:
                return {
                    abs(sum(c * m for c, m in zip(coeffs, chosen, strict=True)))
                    for coeffs in _product_coefficients(len(chosen), order)
                }

            assert second == full(2)
            assert third == (full(3) if max_order >= 3 else set())
            assert {0, *chosen} | second | third == product_bins(chosen, max_order=max_order)


def test_bad_max_order_rejected() -> None:
    with pytest.raises(PlanError, match="max_order"):
        find_collisions((10, 13), max_order=4)
    with pytest.raises(PlanError, match="max_order"):
        product_bins((10, 13), max_order=1)


# ------------------------------------------------------------------ infeasibility bounds


def _brute_min_span(n_marks: int) -> int:
    """Shortest span of a set of ``n_marks`` integers with distinct pairwise differences."""
    span = n_marks - 1
    while True:
        for rest in itertools.combinations(range(1, span), n_marks - 2):
            marks = (0, *rest, span)
            diffs = [b - a for a, b in itertools.combinations(marks, 2)]
            if len(set(diffs)) == len(diffs):
                return span
        span += 1


@pytest.mark.parametrize("n_marks", [2, 3, 4, 5, 6, 7])
def test_sidon_min_span_is_the_shortest_golomb_ruler(n_marks: int) -> None:
    assert sidon_min_span(n_marks) == _brute_min_span(n_marks)


def test_sidon_min_span_grows_and_beyond_the_table_stays_a_lower_bound() -> None:
    spans = [sidon_min_span(n) for n in range(2, 80)]
    assert all(b > a for a, b in itertools.pairwise(spans))
    for n in (30, 40, 60):  # Lindström: n < sqrt(M) + M**0.25 + 1 with M = span + 1
        m = sidon_min_span(n) + 1
        assert n < math.sqrt(m) + m**0.25 + 1
        assert not n < math.sqrt(m - 1) + (m - 1) ** 0.25 + 1


@pytest.mark.parametrize(
    ("n_tones", "window_s", "curvature"),
    [(5, 0.05, False), (7, 0.1, False), (5, 0.1, True), (6, 0.2, True)],
)
def test_third_order_and_curvature_clean_plans_are_sidon_sets(
    n_tones: int, window_s: float, curvature: bool
) -> None:
    plan = plan_frequencies(
        10_000, window_s, n_tones, band_hz=(200, 1000), mains_hz=(), curvature=curvature
    )
    assert plan.collisions() == []
    diffs = [abs(a - b) for a, b in itertools.combinations(plan.bins, 2)]
    assert len(set(diffs)) == len(diffs)
    assert max(plan.bins) - min(plan.bins) >= sidon_min_span(n_tones)


@pytest.mark.parametrize(("n_tones", "window_s"), [(12, 0.1), (20, 0.1), (40, 0.1), (40, 0.4)])
def test_impossible_third_order_plans_say_so_without_searching(
    n_tones: int, window_s: float
) -> None:
    with pytest.raises(PlanError) as info:
        plan_frequencies(
            10_000, window_s, n_tones, band_hz=(200, 1000), mains_hz=(), node_limit=1
        )  # node_limit=1: a search would run out at once; the bound answers before it
    text = str(info.value)
    assert "distinct pairwise differences" in text and "search limit" not in text
    assert f"span at least {sidon_min_span(n_tones)} bins" in text
    assert "accept max_order=2 (a second-order-clean plan exists)" in text
    assert text.count("accept max_order=2") == 1
    relaxed = plan_frequencies(
        10_000, window_s, n_tones, band_hz=(200, 1000), mains_hz=(), max_order=2
    )
    assert relaxed.collisions() == []


def test_search_budget_exhausted_names_the_budget_and_a_relaxation() -> None:
    # 20 tones in 320 bins: the bound (283) allows it, the search cannot settle it cheaply
    with pytest.raises(PlanError) as info:
        plan_frequencies(10_000, 0.4, 20, band_hz=(200, 1000), mains_hz=(), node_limit=300)
    text = str(info.value)
    assert "search limit of 300 nodes" in text and "raise node_limit" in text
    assert "accept max_order=2 (a second-order-clean plan exists)" in text


def test_curvature_bound_suggests_dropping_curvature_when_that_works() -> None:
    with pytest.raises(PlanError) as info:
        plan_frequencies(10_000, 0.1, 10, band_hz=(200, 600), mains_hz=(), curvature=True)
    text = str(info.value)
    assert "curvature-clean sets of 10 tones" in text
    assert text.count("drop curvature") == 1
