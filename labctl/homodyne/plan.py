"""Frequency planning for homodyne gradient extraction (HGE).

Conventions (all SI: Hz, s):

* A demodulation window holds ``N_s = f_s * T`` samples; ``N_s`` must be an integer.
* Every tone sits on an integer bin of that window: ``m_k = f_k * T``, so ``f_k = m_k * f_s / N_s``.
  Then the sine and cosine of every tone, DC and every intermodulation product are exactly
  orthogonal over the window (coherent sampling).
* Tones are indexed from 0; intermodulation products are written with those indices, e.g.
  ``"2f0+f1"`` or ``"f3-f0"``.

Collision rules (bins are compared after taking absolute values):

* No second-order product (``2m_i``, ``m_i + m_j``, ``|m_i - m_j|``) may land on a fundamental.
* With ``max_order=3`` also no third-order product (``3m_i``, ``2m_i +- m_j``,
  ``m_i +- m_j +- m_k``) may land on a fundamental.
* With ``curvature=True`` every curvature bin (the second-order products) must in addition be
  distinct from every other curvature bin and from DC, and (with ``max_order=3``) from every
  third-order product, so that Hessian terms can be read from the same record.

The products are defined once, as coefficient vectors (``_product_coefficients``):
:func:`find_collisions` labels and checks them, :func:`product_bins` gives the set of bins they
(with the fundamentals and DC) occupy, for the demodulators' noise estimates, and the planner's
search adds them incrementally, one new tone at a time (``_new_products``).
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

logger = logging.getLogger(__name__)

_GRID_TOL = 1e-6  # tolerance (in bins / samples) when checking that a float is an integer

# Shortest possible Golomb ruler of n marks (n = 0..27; the published optimal lengths). A set
# with distinct pairwise differences (a Sidon set) spans at least this many bins. Both a
# curvature-clean set and a third-order-clean set are Sidon sets: m_a + m_b = m_c + m_d with
# {a, b} != {c, d} is the third-order product m_a + m_b - m_c (or 2m_a - m_c) landing on m_d.
_GOLOMB_LENGTH = (
    0, 0, 1, 3, 6, 11, 17, 25, 34, 44, 55, 72, 85, 106, 127,
    151, 177, 199, 216, 246, 283, 333, 356, 372, 425, 480, 492, 553,
)  # fmt: skip


def sidon_min_span(n_marks: int) -> int:
    """Fewest bins a set of ``n_marks`` bins with distinct pairwise differences can span.

    Exact (optimal Golomb rulers) up to 27 marks; beyond, Lindström's bound: a Sidon set in M
    consecutive integers has fewer than ``M**0.5 + M**0.25 + 1`` elements.
    """
    if n_marks < len(_GOLOMB_LENGTH):
        return _GOLOMB_LENGTH[max(n_marks, 0)]
    known = len(_GOLOMB_LENGTH) - 1
    m = max(n_marks * (n_marks - 1) // 2, _GOLOMB_LENGTH[known] + n_marks - known) + 1
    while math.sqrt(m) + m**0.25 + 1 <= n_marks:  # M = span + 1 integers
        m += 1
    return m - 1


Coefficients = tuple[int, ...]


class PlanError(ValueError):
    """A frequency plan is impossible or invalid; the message says what to relax or fix."""


class PlanWarning(UserWarning):
    """A user-insisted frequency plan violates a planning rule (issued with ``insist=True``)."""


@dataclass(frozen=True)
class Collision:
    """One intermodulation product landing on a bin that must stay clean.

    Attributes:
        product: the offending product, e.g. ``"2f0+f1"`` (tone indices from 0).
        order: order of the product (1 for two tones on one bin, 2 or 3 otherwise).
        bin: window bin (integer multiple of 1/T) where the product lands.
        target: what it hits: a fundamental (``"f4"``), a curvature bin (``"2f0"``,
            ``"f0+f1"``, ``"f1-f0"``) or ``"DC"``.
        target_kind: ``"fundamental"``, ``"curvature"`` or ``"dc"``.
    """

    product: str
    order: int
    bin: int
    target: str
    target_kind: str

    def __str__(self) -> str:
        return f"{self.product} (bin {self.bin}) lands on {self.target}"


@dataclass(frozen=True)
class FrequencyPlan:
    """A coherent set of perturbation frequencies.

    Attributes:
        sample_rate_hz: sample rate f_s in Hz (the actual, coerced rate of the DAQ).
        window_s: demodulation window T in s; f_s * T is an integer.
        frequencies_hz: tone frequencies in Hz, ``bins[k] * f_s / n_samples``.
        bins: integer window bins m_k = f_k * T.
        max_order: intermodulation order the plan was checked to (2 or 3).
        curvature: whether the plan was checked to be curvature-clean.
    """

    sample_rate_hz: float
    window_s: float
    frequencies_hz: tuple[float, ...]
    bins: tuple[int, ...]
    max_order: int = 3
    curvature: bool = False

    def __post_init__(self) -> None:
        n_s = window_samples(self.sample_rate_hz, self.window_s)
        if len(self.frequencies_hz) != len(self.bins) or not self.bins:
            raise PlanError("frequencies_hz and bins must be non-empty and of equal length")
        for f, m in zip(self.frequencies_hz, self.bins, strict=True):
            if abs(f * n_s / self.sample_rate_hz - m) > _GRID_TOL:
                raise PlanError(f"frequency {f!r} Hz does not sit on bin {m} of the window")
        _check_order(self.max_order)

    @property
    def n_samples(self) -> int:
        """Samples per window, N_s = f_s * T."""
        return window_samples(self.sample_rate_hz, self.window_s)

    @property
    def n_tones(self) -> int:
        """Number of tones."""
        return len(self.bins)

    @property
    def bin_width_hz(self) -> float:
        """Frequency resolution 1/T of the window in Hz."""
        return self.sample_rate_hz / self.n_samples

    def collisions(
        self, max_order: int | None = None, curvature: bool | None = None
    ) -> list[Collision]:
        """Collisions of this plan (defaults: the plan's own ``max_order`` and ``curvature``)."""
        return find_collisions(
            self.bins,
            max_order=self.max_order if max_order is None else max_order,
            curvature=self.curvature if curvature is None else curvature,
            n_samples=self.n_samples,
        )

    def curvature_bins(self) -> dict[tuple[int, int], tuple[int, ...]]:
        """Bins carrying the second-order (Hessian) response of each tone pair.

        Returns:
            ``{(i, i): (2 m_i,), (i, j): (m_i + m_j, |m_i - m_j|)}`` for i < j.

        Raises:
            PlanError: if the plan is not curvature-clean (the bins would be ambiguous).
        """
        clashes = find_collisions(
            self.bins, max_order=self.max_order, curvature=True, n_samples=self.n_samples
        )
        if clashes:
            listed = "; ".join(str(c) for c in clashes[:5])
            raise PlanError(
                f"plan is not curvature-clean ({len(clashes)} collisions, e.g. {listed}); "
                "generate it with plan_frequencies(..., curvature=True)"
            )
        m = self.bins
        out: dict[tuple[int, int], tuple[int, ...]] = {}
        for i in range(len(m)):
            out[(i, i)] = (2 * m[i],)
            for j in range(i + 1, len(m)):
                out[(i, j)] = (m[i] + m[j], abs(m[i] - m[j]))
        return out

    def curvature_frequencies_hz(self) -> dict[tuple[int, int], tuple[float, ...]]:
        """Same as :meth:`curvature_bins` but in Hz."""
        width = self.bin_width_hz
        return {key: tuple(b * width for b in bins) for key, bins in self.curvature_bins().items()}


# --------------------------------------------------------------------------------------------
# helpers


def window_samples(sample_rate_hz: float, window_s: float) -> int:
    """Return N_s = f_s * T, raising PlanError unless it is a positive integer."""
    if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise PlanError(f"sample_rate_hz must be a positive finite number, got {sample_rate_hz!r}")
    if not (math.isfinite(window_s) and window_s > 0):
        raise PlanError(f"window_s must be a positive finite number, got {window_s!r}")
    exact = sample_rate_hz * window_s
    n = round(exact)
    if n < 1 or abs(exact - n) > _GRID_TOL:
        raise PlanError(
            f"window of {window_s} s at {sample_rate_hz} Hz holds {exact:.6g} samples; "
            "choose window_s so that sample_rate_hz * window_s is an integer"
        )
    return n


def _coeff_label(coeffs: Coefficients) -> str:
    pos = [(k, c) for k, c in enumerate(coeffs) if c > 0]
    neg = [(k, -c) for k, c in enumerate(coeffs) if c < 0]

    def term(k: int, c: int) -> str:
        return f"f{k}" if c == 1 else f"{c}f{k}"

    text = "+".join(term(k, c) for k, c in pos)
    if neg:
        text += "-" + "-".join(term(k, c) for k, c in neg)
    return text


@lru_cache(maxsize=64)
def _product_coefficients(n: int, order: int) -> tuple[Coefficients, ...]:
    """Coefficient vectors of all distinct intermodulation products of exactly ``order``.

    The one definition of the products of ``n`` tones (order 2: ``2m_i``, ``m_i ± m_j``; order 3:
    ``3m_i``, ``2m_i ± m_j``, ``m_i ± m_j ± m_k``, distinct indices ``i < j < k``). Each product
    appears once (``c`` and ``-c`` are the same bin after taking absolute values).
    """

    def vec(*terms: tuple[int, int]) -> Coefficients:
        v = [0] * n
        for k, c in terms:
            v[k] += c
        return tuple(v)

    out: list[Coefficients] = []
    if order == 2:
        for i in range(n):
            out.append(vec((i, 2)))
        for i in range(n):
            for j in range(i + 1, n):
                out.append(vec((i, 1), (j, 1)))
                out.append(vec((i, 1), (j, -1)))
    elif order == 3:
        for i in range(n):
            out.append(vec((i, 3)))
        for i in range(n):
            for j in range(n):
                if j != i:
                    out.append(vec((i, 2), (j, 1)))
                    out.append(vec((i, 2), (j, -1)))
        for i in range(n):
            for j in range(i + 1, n):
                for k in range(j + 1, n):
                    out.append(vec((i, 1), (j, 1), (k, 1)))
                    out.append(vec((i, 1), (j, 1), (k, -1)))
                    out.append(vec((i, 1), (j, -1), (k, 1)))
                    out.append(vec((i, -1), (j, 1), (k, 1)))
    else:
        raise ValueError(f"order must be 2 or 3, got {order}")
    return tuple(out)


def _evaluate(coeffs: Coefficients, bins: Sequence[int], n_samples: int | None) -> tuple[str, int]:
    value = sum(c * m for c, m in zip(coeffs, bins, strict=True))
    if value < 0:
        coeffs = tuple(-c for c in coeffs)
        value = -value
    if n_samples is not None:
        value %= n_samples
        value = min(value, n_samples - value)
    return _coeff_label(coeffs), value


def _check_order(max_order: int) -> None:
    if max_order not in (2, 3):
        raise PlanError(f"max_order must be 2 or 3, got {max_order!r}")


def find_collisions(
    bins: Iterable[int],
    max_order: int = 3,
    curvature: bool = False,
    n_samples: int | None = None,
) -> list[Collision]:
    """List every rule violation of a set of tone bins.

    Args:
        bins: integer window bins m_k of the tones (index k gives the label ``fk``).
        max_order: 2 checks second-order products only, 3 also third-order products.
        curvature: also require the curvature bins (second-order products) to be mutually
            distinct, distinct from DC and (``max_order=3``) from every third-order product.
        n_samples: samples per window; if given, products above Nyquist are folded (aliased)
            back into 0..N_s/2 before comparison.

    Returns:
        The collisions in a deterministic order (empty list: the set is clean).
    """
    _check_order(max_order)
    m = [int(b) for b in bins]
    n = len(m)
    out: list[Collision] = []
    fundamentals: dict[int, str] = {}
    for k, b in enumerate(m):
        if b in fundamentals:
            out.append(Collision(f"f{k}", 1, b, fundamentals[b], "fundamental"))
        else:
            fundamentals[b] = f"f{k}"

    second = [_evaluate(c, m, n_samples) for c in _product_coefficients(n, 2)]
    third = (
        [_evaluate(c, m, n_samples) for c in _product_coefficients(n, 3)] if max_order >= 3 else []
    )

    for label, b in second:
        if b in fundamentals:
            out.append(Collision(label, 2, b, fundamentals[b], "fundamental"))
    for label, b in third:
        if b in fundamentals:
            out.append(Collision(label, 3, b, fundamentals[b], "fundamental"))

    if curvature:
        seen: dict[int, str] = {}
        for label, b in second:
            if b == 0:
                out.append(Collision(label, 2, b, "DC", "dc"))
            elif b in seen:
                out.append(Collision(label, 2, b, seen[b], "curvature"))
            else:
                seen[b] = label
        for label, b in third:
            if b in seen:
                out.append(Collision(label, 3, b, seen[b], "curvature"))
    return out


def product_bins(bins: Iterable[int], max_order: int = 3) -> set[int]:
    """Every bin that intermodulation of the tones up to ``max_order`` can put signal on.

    A response that is a polynomial of degree ``max_order`` or less in the tones carries power
    only at ``|±m_i ± m_j ± ...|`` with at most ``max_order`` terms (indices may repeat). That is:
    the fundamentals ``m_i``, DC (``m_i - m_i``, the rectified part of every second-order term),
    the second-order products ``2m_i``, ``m_i + m_j``, ``|m_i - m_j|`` and, with ``max_order=3``,
    the third-order products ``3m_i``, ``2m_i ± m_j``, ``m_i ± m_j ± m_k``: exactly the products
    :func:`find_collisions` checks, plus the fundamentals and DC. Bins are not folded at
    Nyquist.

    Args:
        bins: Integer window bins m_k of the tones (integer multiples of 1/T).
        max_order: Highest product order, 2 or 3.

    Returns:
        The occupied bins (each ``>= 0``); empty when there are no tones.

    Raises:
        PlanError: If ``max_order`` is not 2 or 3.
    """
    _check_order(max_order)
    m = [int(b) for b in bins]
    if not m:
        return set()
    out = {0, *m}
    for order in range(2, max_order + 1):
        for coeffs in _product_coefficients(len(m), order):
            out.add(abs(sum(c * b for c, b in zip(coeffs, m, strict=True))))
    return out


# --------------------------------------------------------------------------------------------
# search


@dataclass(frozen=True)
class _State:
    chosen: tuple[int, ...]
    fundamentals: frozenset[int]
    second: frozenset[int]
    third: frozenset[int]


def _new_products(x: int, chosen: Sequence[int], max_order: int) -> tuple[list[int], list[int]]:
    """Second- and third-order product bins that involve the new bin ``x`` at least once.

    The incremental form of :func:`_product_coefficients` for the search: the products of
    ``(*chosen, x)`` are those of ``chosen`` plus these (per order), so the search extends its
    running sets at each node instead of evaluating every product again. Tested against the full
    form in ``tests/test_plan.py``.
    """
    new2 = [2 * x]
    for s in chosen:
        new2.append(x + s)
        new2.append(abs(x - s))
    new3: list[int] = []
    if max_order >= 3:
        new3.append(3 * x)
        for s in chosen:
            new3.extend((2 * x + s, abs(2 * x - s), 2 * s + x, abs(2 * s - x)))
        for a in range(len(chosen)):
            s = chosen[a]
            for b in range(a + 1, len(chosen)):
                t = chosen[b]
                new3.extend((x + s + t, abs(x + s - t), abs(x - s + t), abs(x - s - t)))
    return new2, new3


def _try_add(x: int, state: _State, max_order: int, curvature: bool) -> _State | None:
    """Return the state with ``x`` added, or None if that creates a collision."""
    if x in state.second or x in state.third:
        return None
    new2, new3 = _new_products(x, state.chosen, max_order)
    fund = state.fundamentals | {x}
    if any(b in fund for b in new2) or any(b in fund for b in new3):
        return None
    third = state.third.union(new3)
    if curvature:
        if len(set(new2)) != len(new2) or 0 in new2:
            return None
        if any(b in state.second for b in new2):
            return None
        if any(b in third for b in new2) or any(b in state.second for b in new3):
            return None
    return _State((*state.chosen, x), fund, state.second.union(new2), third)


def _max_packable(cands: Sequence[int], spacing: int) -> int:
    """Largest number of candidates that can be picked with the given minimum spacing."""
    count = 0
    last = None
    for c in cands:
        if last is None or c - last >= spacing:
            count += 1
            last = c
    return count


class _SearchLimitError(Exception):
    pass


def _search(
    cands: Sequence[int],
    n_tones: int,
    spacing: int,
    max_order: int,
    curvature: bool,
    node_limit: int,
) -> tuple[int, ...] | None:
    """Depth-first search for the lexicographically smallest clean set of ``n_tones`` bins.

    Pruning: a branch is dropped when its remaining candidates cannot hold the tones still
    needed at the minimum spacing, or (third order or curvature: the set is a Sidon set) when
    the newest tone and the tones still needed cannot span a Golomb ruler of that many marks.
    """
    counter = [0]
    empty = frozenset[int]()
    sidon = max_order >= 3 or curvature

    def recurse(state: _State, pool: list[int]) -> tuple[int, ...] | None:
        needed = n_tones - len(state.chosen)
        if needed == 0:
            return state.chosen
        for idx, x in enumerate(pool):
            rest = pool[idx + 1 :]
            if len(rest) < needed - 1:
                return None
            counter[0] += 1
            if counter[0] > node_limit:
                raise _SearchLimitError
            new_state = _try_add(x, state, max_order, curvature)
            if new_state is None:
                continue
            filtered = [
                c
                for c in rest
                if c - x >= spacing and _try_add(c, new_state, max_order, curvature) is not None
            ]
            if _max_packable(filtered, spacing) < needed - 1:
                continue
            if sidon and needed > 1 and filtered[-1] - x < sidon_min_span(needed):
                continue
            found = recurse(new_state, filtered)
            if found is not None:
                return found
        return None

    return recurse(_State((), empty, empty, empty), list(cands))


def _relaxed_hint(
    cands: Sequence[int], n_tones: int, spacing: int, max_order: int, curvature: bool
) -> list[str]:
    """Which single relaxation (curvature off, then max_order=2) gives a plan, if one does."""
    tries = []
    if curvature:
        tries.append(("drop curvature=True (a plan exists without it)", max_order, False))
    if max_order >= 3:
        tries.append(("accept max_order=2 (a second-order-clean plan exists)", 2, False))
    for text, order, curv in tries:
        if (curv or order >= 3) and sidon_min_span(n_tones) > cands[-1] - cands[0]:
            continue
        try:
            if _search(cands, n_tones, spacing, order, curv, 2_000) is not None:
                return [text]
        except _SearchLimitError:
            continue
    return []


def _mains_distance(b: int, mains_bins: Sequence[float]) -> float:
    best = math.inf
    for fb in mains_bins:
        if fb <= 0:
            continue
        h = max(1, round(b / fb))
        for hh in (h - 1, h, h + 1):
            if hh >= 1:
                best = min(best, abs(b - hh * fb))
    return best


def _spacing_bins(min_spacing_hz: float | None, window_s: float) -> int:
    if min_spacing_hz is None:
        return 1
    if not (math.isfinite(min_spacing_hz) and min_spacing_hz >= 0):
        raise PlanError(f"min_spacing_hz must be >= 0, got {min_spacing_hz!r}")
    return max(1, math.ceil(min_spacing_hz * window_s - _GRID_TOL))


def plan_frequencies(
    sample_rate_hz: float,
    window_s: float,
    n_tones: int,
    band_hz: tuple[float, float] = (200.0, 1000.0),
    min_spacing_hz: float | None = None,
    mains_hz: Sequence[float] = (50.0, 60.0),
    mains_guard_bins: float = 2,
    max_order: int = 3,
    curvature: bool = False,
    min_samples_per_period: float = 10,
    node_limit: int = 50_000,
) -> FrequencyPlan:
    """Choose a coherent, collision-free set of tone frequencies.

    The search is deterministic: it returns the lexicographically smallest set of admissible
    bins (lowest first tone, then lowest second tone, ...), found by depth-first search with
    forward checking over the candidate bins.

    Args:
        sample_rate_hz: actual sample rate f_s in Hz.
        window_s: demodulation window T in s (f_s * T must be an integer).
        n_tones: number of tones (one per perturbed control), >= 1.
        band_hz: (lowest, highest) allowed tone frequency in Hz, inclusive.
        min_spacing_hz: minimum distance between tones in Hz (None: one bin, 1/T).
        mains_hz: mains fundamentals whose harmonics are avoided; empty disables.
        mains_guard_bins: minimum distance in bins from every mains harmonic.
        max_order: intermodulation order kept off the fundamentals (2 or 3).
        curvature: also make every curvature bin readable (see module docstring).
        min_samples_per_period: tones stay at or below f_s / min_samples_per_period.
        node_limit: maximum number of search nodes before giving up.

    Returns:
        The plan.

    Raises:
        PlanError: if no plan satisfies the request; the message says what to relax.
    """
    n_s = window_samples(sample_rate_hz, window_s)
    _check_order(max_order)
    if not isinstance(n_tones, int) or n_tones < 1:
        raise PlanError(f"n_tones must be a positive integer, got {n_tones!r}")
    f_lo, f_hi = (float(band_hz[0]), float(band_hz[1]))
    if not (0 <= f_lo <= f_hi):
        raise PlanError(f"band_hz must be (low, high) with 0 <= low <= high, got {band_hz!r}")
    if min_samples_per_period < 2:
        raise PlanError(f"min_samples_per_period must be >= 2, got {min_samples_per_period!r}")
    spacing = _spacing_bins(min_spacing_hz, window_s)
    f_max = sample_rate_hz / min_samples_per_period

    lo = max(1, math.ceil(f_lo * window_s - _GRID_TOL))
    hi = min(
        math.floor(f_hi * window_s + _GRID_TOL),
        math.floor(f_max * window_s + _GRID_TOL),
        (n_s - 1) // 2,
    )
    mains_bins = [float(f) * window_s for f in mains_hz]
    in_band = list(range(lo, hi + 1))
    cands = [b for b in in_band if _mains_distance(b, mains_bins) >= mains_guard_bins - _GRID_TOL]
    width = 1.0 / window_s
    context = (
        f"{n_tones} tones in {f_lo:g}-{min(f_hi, f_max):g} Hz on {width:g} Hz bins "
        f"(T = {window_s:g} s, f_s = {sample_rate_hz:g} Hz)"
    )

    def fail(reason: str, extra: Sequence[str] = ()) -> PlanError:
        hints = ["widen band_hz", "lengthen window_s (finer bins)", "use fewer tones"]
        if spacing > 1:
            hints.append("reduce min_spacing_hz")
        hints.extend(extra)
        if max_order >= 3 and not any(h.startswith("accept max_order=2") for h in extra):
            hints.append("accept max_order=2")
        if curvature and not any(h.startswith("drop curvature") for h in extra):
            hints.append("drop curvature=True")
        if f_hi > f_max:
            hints.append("raise sample_rate_hz or lower min_samples_per_period")
        return PlanError(f"cannot place {context}: {reason}. Try: {', '.join(hints)}.")

    mains_hint = (
        ["reduce mains_guard_bins or mains_hz"] if mains_hz and len(cands) < len(in_band) else []
    )
    if _max_packable(cands, spacing) < n_tones:
        raise fail(
            f"only {len(cands)} admissible bins ({len(in_band)} in band before mains guard), "
            f"of which at most {_max_packable(cands, spacing)} are {spacing} bins apart",
            mains_hint,
        )
    if curvature or max_order >= 3:
        need = max(sidon_min_span(n_tones), (n_tones - 1) * spacing)
        span = cands[-1] - cands[0]
        if span < need:
            what = "curvature-clean" if curvature else "third-order-clean"
            fits = max(k for k in range(1, n_tones + 1) if sidon_min_span(k) <= span)
            min_window_s = need / max(min(f_hi, f_max) - f_lo, width)
            raise fail(
                f"{what} sets of {n_tones} tones have distinct pairwise differences and so span "
                f"at least {need} bins, the band spans {span} (at most {fits} such tones fit; "
                f"{n_tones} need a window of at least {min_window_s:.3g} s "
                f"in this band, or a band {need * width:g} Hz wide at this window)",
                [*mains_hint, *_relaxed_hint(cands, n_tones, spacing, max_order, curvature)],
            )
    try:
        found = _search(cands, n_tones, spacing, max_order, curvature, node_limit)
    except _SearchLimitError:
        raise fail(
            f"no collision-free set found within the search limit of {node_limit} nodes "
            "(raise node_limit to search longer)",
            [*mains_hint, *_relaxed_hint(cands, n_tones, spacing, max_order, curvature)],
        ) from None
    if found is None:
        raise fail("no collision-free set exists among the admissible bins", mains_hint)
    freqs = tuple(b * sample_rate_hz / n_s for b in found)
    logger.debug("planned %s: bins %s, frequencies %s Hz", context, found, freqs)
    return FrequencyPlan(
        sample_rate_hz=float(sample_rate_hz),
        window_s=float(window_s),
        frequencies_hz=freqs,
        bins=tuple(found),
        max_order=max_order,
        curvature=curvature,
    )


def validate_frequencies(
    frequencies_hz: Sequence[float],
    sample_rate_hz: float,
    window_s: float,
    *,
    min_spacing_hz: float | None = None,
    mains_hz: Sequence[float] = (50.0, 60.0),
    mains_guard_bins: float = 2,
    max_order: int = 3,
    curvature: bool = False,
    min_samples_per_period: float = 10,
    insist: bool = False,
) -> FrequencyPlan:
    """Check user-given tone frequencies against the planning rules.

    Hard errors (always raised): non-integer window, frequencies that are not positive, off the
    window grid (f * T not an integer), duplicated, or at/above Nyquist.
    Rule violations (raised together, or each issued as a :class:`PlanWarning` when
    ``insist=True``): intermodulation collisions, tones closer than ``min_spacing_hz``, closer
    than ``mains_guard_bins`` to a mains harmonic, or above f_s / ``min_samples_per_period``.

    Args:
        frequencies_hz: tone frequencies in Hz.
        sample_rate_hz: actual sample rate f_s in Hz.
        window_s: demodulation window T in s.
        min_spacing_hz: minimum tone spacing in Hz (None: no check beyond distinct bins).
        mains_hz: mains fundamentals to avoid; empty disables the check.
        mains_guard_bins: minimum distance in bins from every mains harmonic.
        max_order: 2 or 3, see :func:`find_collisions`.
        curvature: require curvature-clean bins, see :func:`find_collisions`.
        min_samples_per_period: minimum samples per tone period.
        insist: downgrade rule violations to warnings and return the plan anyway.

    Returns:
        The plan, with frequencies snapped exactly onto the grid.

    Raises:
        PlanError: listing every problem found.
    """
    n_s = window_samples(sample_rate_hz, window_s)
    _check_order(max_order)
    freqs = [float(f) for f in frequencies_hz]
    if not freqs:
        raise PlanError("frequencies_hz is empty; give at least one tone frequency")
    hard: list[str] = []
    bins: list[int] = []
    for k, f in enumerate(freqs):
        exact = f * window_s
        b = round(exact) if math.isfinite(exact) else 0
        if not math.isfinite(f) or f <= 0:
            hard.append(f"f{k} = {f!r} Hz is not a positive frequency")
        elif abs(exact - b) > _GRID_TOL:
            near = (math.floor(exact) / window_s, math.ceil(exact) / window_s)
            hard.append(
                f"f{k} = {f:g} Hz is off the {1 / window_s:g} Hz grid of a {window_s:g} s window "
                f"(f*T = {exact:.6g}); use {near[0]:g} or {near[1]:g} Hz"
            )
        elif 2 * b >= n_s:
            hard.append(f"f{k} = {f:g} Hz is at or above Nyquist ({sample_rate_hz / 2:g} Hz)")
        bins.append(b)
    for k in range(len(bins)):
        for j in range(k):
            if bins[j] == bins[k] and not hard:
                hard.append(f"f{k} and f{j} are the same frequency ({freqs[k]:g} Hz)")
    if hard:
        raise PlanError("invalid frequencies: " + "; ".join(hard))

    problems: list[str] = []
    for c in find_collisions(bins, max_order=max_order, curvature=curvature, n_samples=n_s):
        freq = c.bin / window_s
        problems.append(f"collision: {c} ({freq:g} Hz, order {c.order})")
    if min_spacing_hz is not None:
        spacing = _spacing_bins(min_spacing_hz, window_s)
        order = sorted(range(len(bins)), key=lambda k: bins[k])
        for a, b in itertools.pairwise(order):
            if bins[b] - bins[a] < spacing:
                problems.append(
                    f"f{a} and f{b} are {(bins[b] - bins[a]) / window_s:g} Hz apart, "
                    f"less than min_spacing_hz = {min_spacing_hz:g}"
                )
    mains_bins = [float(f) * window_s for f in mains_hz]
    for k, b in enumerate(bins):
        if mains_hz and _mains_distance(b, mains_bins) < mains_guard_bins - _GRID_TOL:
            problems.append(
                f"f{k} = {freqs[k]:g} Hz is within {mains_guard_bins:g} bins of a mains harmonic "
                f"of {'/'.join(f'{m:g}' for m in mains_hz)} Hz"
            )
        if freqs[k] > sample_rate_hz / min_samples_per_period * (1 + 1e-12):
            problems.append(
                f"f{k} = {freqs[k]:g} Hz has fewer than {min_samples_per_period:g} samples per "
                f"period at {sample_rate_hz:g} Hz"
            )
    if problems:
        if not insist:
            raise PlanError(
                f"{len(problems)} problem(s) with the frequency plan: "
                + "; ".join(problems)
                + ". Fix them, use plan_frequencies(), or pass insist=True to accept them."
            )
        for text in problems:
            warnings.warn(text, PlanWarning, stacklevel=2)
    return FrequencyPlan(
        sample_rate_hz=float(sample_rate_hz),
        window_s=float(window_s),
        frequencies_hz=tuple(b * sample_rate_hz / n_s for b in bins),
        bins=tuple(bins),
        max_order=max_order,
        curvature=curvature,
    )
