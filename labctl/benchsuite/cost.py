"""Device-seconds per gradient at equal error: parallel and sequential HGE, central FD, SPSA.

Device: the hopping-network physics model with N control electrodes plus two data inputs
(:func:`labctl.benchsuite.devices.open_large_dnpu`; N = 5 is the shipped 7-electrode DNPU, N =
10, 20, 40 are the larger devices of 12, 22 and 42 voltage electrodes) with the shipped DNPU's
chain: 10 kS/s, 2.53e7 V/A amplifier with 2 kHz bandwidth, 1e-5 nA²/Hz at 1 kHz with 1/f noise
(corner 100 Hz), drift 2 pA/√s, 16-bit ADC, ramps at 200 V/s, 15 ms settling after every
operating-point change.

Every method perturbs by 10 mV: HGE tone amplitude, FD half step and SPSA c; an extra FD row
uses a 30 mV half step, because at DC the 1/f noise sets an error floor ∝ 1/h that a longer
window does not lower. Each gradient is one call at one operating point (ramps from and back to
rest, tone fades, settling: everything the device spends on it). Error: RMS over points, repeats
and components of (estimate − the model's exact gradient). Knob per method: window length
(HGE: per record; FD: per plateau) or number of ± pairs (SPSA, 2 ms plateaus). The scanned
(cost, error) pairs are fitted with ``error² = a + b / knob`` and the cost is interpolated
(extrapolated linearly outside the scan, flagged ``*``) at the knob that meets the target error.

HGE plans: the planner in 200–1000 Hz without mains guard (the simulated chain has no mains
pickup), third-order-clean up to 10 tones; for 20 and 40 tones the planner finds no
third-order-clean set in that band (it says so and names ``max_order=2`` among what to relax),
so those plans are second-order clean. Windows the planner cannot fill are skipped.

From N = 20 an extra row, "parallel HGE, one-octave plan", puts the N tones on the consecutive
bins N..2N−1 (second-order clean by construction, up to 2 kHz, the amplifier's bandwidth; the
planner itself stops at f_s/10 = 1 kHz, which at N = 40 forces T >= 100 ms) with each tone's
amplitude from its electrode's slew budget (2πfA <= 0.95 × 200 V/s, capped at FD's 30 mV
step): the shortest record a second-order-clean plan allows, at the largest amplitude the
hardware limits allow. The "where the time goes" table splits each method's cost into its
window and its fixed cost (ramps, fades, settling).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from labctl.benchsuite.common import (
    NA,
    Headline,
    Log,
    Section,
    SuiteSize,
    fmt,
    md_table,
    new_figure,
    save_figure,
)
from labctl.benchsuite.devices import (
    calibrate,
    engine_for,
    large_dnpu_settings,
    open_large_dnpu,
    random_points,
)
from labctl.config import LoadedConfig
from labctl.device import FloatArray
from labctl.device.safety import SafeDevice
from labctl.homodyne.calibration import ChainResponse
from labctl.homodyne.plan import PlanError, PlanWarning, find_collisions, plan_frequencies
from labctl.training.baselines import spsa_gradient

AMPLITUDE_V = 0.01
FD_WIDE_STEP_V = 0.03
SETTLE_S = 0.015
BAND_HZ = (200.0, 1000.0)
SAMPLE_RATE_HZ = 10_000.0
CALIBRATION_WINDOW_S = 0.4
SPSA_WINDOW_S = 0.002
HGE_WINDOWS_S = (0.05, 0.1, 0.2, 0.4)
FD_WINDOWS_S = (0.01, 0.04, 0.16)
SPSA_PAIRS = (8, 32, 128)
TARGETS_A_PER_V = (1.0e-9, 2.0e-9)
"""The equal-error targets: RMS gradient error 1 nA/V (the headline) and 2 nA/V."""
SEED = 2025
BEST_FD = "central FD (best step)"
OCTAVE = "parallel HGE, one-octave plan"
OCTAVE_MIN_CONTROLS = 20
OCTAVE_WINDOWS_S = (0.025, 0.05, 0.1, 0.2)
OCTAVE_MAX_HZ = 2000.0
"""Highest tone of the one-octave plans: the amplifier's bandwidth (calibrated through)."""
SLEW_MARGIN = 0.95


@dataclass(frozen=True)
class ScanPoint:
    """One scanned setting of one method (SI units)."""

    knob: float
    device_s: float
    rms_error: float
    mean_stderr: float
    saturated: int
    total: int


@dataclass(frozen=True)
class AtTarget:
    """A method's cost at the target error."""

    knob: float
    device_s: float
    extrapolated: bool
    floor: float


def max_order_for(n_controls: int) -> int:
    """Third-order-clean plans up to 10 tones, second-order beyond (see the module docstring)."""
    return 3 if n_controls <= 10 else 2


def homodyne_settings(
    n_controls: int, window_s: float, fd: bool = False, fd_step_v: float = AMPLITUDE_V
) -> dict[str, Any]:
    """The ``homodyne`` section for one window (FD: any bins, it never plays tones)."""
    extra: dict[str, Any] = {}
    if fd:
        extra = {"frequencies_hz": [k / window_s for k in range(1, n_controls + 1)], "insist": True}
    return extra | {
        "amplitude_v": AMPLITUDE_V,
        "window_s": window_s,
        "settle_s": SETTLE_S,
        "band_hz": list(BAND_HZ),
        "min_spacing_hz": None,
        "mains_hz": [],
        "max_order": max_order_for(n_controls),
        "fd_step_v": fd_step_v,
        "calibration": {"resistance_ohm": 1e6},
    }


def octave_frequencies(n_controls: int, window_s: float) -> list[float] | None:
    """``n_controls`` tones on the consecutive bins ``n .. 2n − 1`` of the window, or None.

    One octave ``[a, 2a)``: every sum of two tones lies above it and every difference below
    it, so the plan is second-order clean by construction (checked, folding at Nyquist
    included) and as short as a second-order-clean plan of n tones on one grid can be. The
    planner's own search keeps tones at or below f_s/10 (1 kHz here), which at N = 40 forces
    10 Hz bins (T >= 100 ms); these plans go up to :data:`OCTAVE_MAX_HZ` (6.3 samples per
    period at 1.58 kHz), are given to the engine as explicit frequencies (``insist``) and are
    calibrated at their own frequencies. None when the top tone is above that limit.
    """
    bins = list(range(n_controls, 2 * n_controls))
    n_samples = round(SAMPLE_RATE_HZ * window_s)
    if bins[-1] / window_s > OCTAVE_MAX_HZ or find_collisions(bins, 2, n_samples=n_samples):
        return None
    return [b / window_s for b in bins]


def slew_amplitudes(frequencies_hz: list[float], slew_v_per_s: float) -> list[float]:
    """Per tone, the amplitude (V) its slew budget allows, capped at FD's wide step.

    Each electrode carries one tone, so ``2πfA <= slew`` (with :data:`SLEW_MARGIN`) bounds
    it; the cap keeps HGE's perturbation no larger than the best FD step it is compared with.
    """
    return [
        min(FD_WIDE_STEP_V, SLEW_MARGIN * slew_v_per_s / (2 * math.pi * f)) for f in frequencies_hz
    ]


def octave_settings(
    n_controls: int, window_s: float, names: tuple[str, ...], slew_v_per_s: float
) -> dict[str, Any]:
    """The ``homodyne`` section of a one-octave plan with slew-limited amplitudes."""
    freqs = octave_frequencies(n_controls, window_s)
    assert freqs is not None
    amplitudes = slew_amplitudes(freqs, slew_v_per_s)
    return homodyne_settings(n_controls, window_s) | {
        "frequencies_hz": freqs,
        "insist": True,
        "max_order": 2,
        "amplitude_v": dict(zip(names, amplitudes, strict=True)),
    }


def plannable_windows(n_controls: int) -> tuple[list[float], list[str]]:
    """The HGE windows the planner fills with ``n_controls`` tones, and why others fail."""
    ok, notes = [], []
    for window in HGE_WINDOWS_S:
        try:
            plan_frequencies(
                SAMPLE_RATE_HZ,
                window,
                n_controls,
                band_hz=BAND_HZ,
                min_spacing_hz=None,
                mains_hz=[],
                max_order=max_order_for(n_controls),
            )
            ok.append(window)
        except PlanError as exc:
            notes.append(f"T = {window * 1e3:g} ms: {exc}")
    return ok, notes


def third_order_note(n_controls: int, window_s: float) -> str:
    """What the planner says when asked for a third-order-clean plan (empty: it finds one)."""
    try:
        plan_frequencies(
            SAMPLE_RATE_HZ,
            window_s,
            n_controls,
            band_hz=BAND_HZ,
            min_spacing_hz=None,
            mains_hz=[],
            max_order=3,
            node_limit=20_000,
        )
    except PlanError as exc:
        return str(exc)
    return ""


def fit_target(points: list[ScanPoint], target: float) -> AtTarget | None:
    """Knob and cost where ``error² = a + b/knob`` reaches ``target`` (None: fewer than 2)."""
    if len(points) < 2:
        return None
    knobs = np.array([p.knob for p in points])
    errors = np.array([p.rms_error for p in points])
    costs = np.array([p.device_s for p in points])
    weights = 1.0 / errors**2
    design = np.stack([np.ones_like(knobs), 1.0 / knobs], axis=1) * weights[:, None]
    (a, b), _ = nnls(design, errors**2 * weights)
    floor = math.sqrt(a)
    if target**2 <= a:
        return AtTarget(math.inf, math.inf, True, floor)
    knob = b / (target**2 - a)
    extrapolated = not knobs.min() <= knob <= knobs.max()
    if knob < knobs.min():  # met below the cheapest scanned setting: charge that setting
        cost = float(costs[np.argmin(knobs)])
    elif extrapolated:
        slope, intercept = np.polyfit(knobs, costs, 1)
        cost = float(intercept + slope * knob)
    else:
        cost = float(np.interp(knob, knobs, costs))
    return AtTarget(float(knob), cost, extrapolated, floor)


def _summary(
    knob: float,
    estimates: list[FloatArray],
    stderrs: list[FloatArray],
    costs: list[float],
    saturated: int,
    truth: FloatArray,
    repeats: int,
) -> ScanPoint:
    error = np.array(estimates) - np.tile(truth, (repeats, 1))
    return ScanPoint(
        knob,
        float(np.mean(costs)),
        float(np.sqrt(np.mean(error**2))),
        float(np.sqrt(np.mean(np.square(stderrs)))),
        saturated,
        len(costs),
    )


def scan_engine(
    device: SafeDevice,
    loaded: LoadedConfig,
    n_controls: int,
    mode: str,
    windows: list[float],
    points: FloatArray,
    truth: FloatArray,
    repeats: int,
    calibration: ChainResponse | None,
    fd_step_v: float = AMPLITUDE_V,
    settings_for: Callable[[float], dict[str, Any]] | None = None,
) -> list[ScanPoint]:
    """Scan the window of one engine mode (``settings_for``: the settings per window)."""
    out = []
    for window in windows:
        settings = (
            settings_for(window)
            if settings_for is not None
            else homodyne_settings(n_controls, window, fd=mode == "fd", fd_step_v=fd_step_v)
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PlanWarning)
                engine = engine_for(device, loaded, settings, calibration)
        except PlanError as exc:  # a window too short for this many tones: skip it
            logging.getLogger(__name__).warning("N = %d, %s, T = %g s: %s", n_controls, mode,
                                                window, exc)  # fmt: skip
            continue
        estimates, stderrs, costs, saturated = [], [], [], 0
        for _ in range(repeats):
            for point in points:
                batch = engine.measure(point, mode=mode)
                estimates.append(batch.gradients_a_per_v[0])
                stderrs.append(batch.stderr_a_per_v[0])
                costs.append(batch.device_seconds)
                saturated += int(batch.saturated)
        out.append(_summary(window, estimates, stderrs, costs, saturated, truth, repeats))
    return out


def scan_spsa(
    device: SafeDevice,
    indices: list[int],
    points: FloatArray,
    truth: FloatArray,
    repeats: int,
    seed: int,
) -> list[ScanPoint]:
    """Scan the number of SPSA pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for n_pairs in SPSA_PAIRS:
        estimates, stderrs, costs, saturated = [], [], [], 0
        for _ in range(repeats):
            for point in points:
                result = spsa_gradient(
                    device, point, indices, AMPLITUDE_V, n_pairs, rng,
                    window_s=SPSA_WINDOW_S, settle_s=SETTLE_S,
                )  # fmt: skip
                estimates.append(result.gradient_a_per_v)
                stderrs.append(result.stderr_a_per_v)
                costs.append(result.device_seconds)
                saturated += int(result.saturated)
        out.append(_summary(float(n_pairs), estimates, stderrs, costs, saturated, truth, repeats))
    return out


@dataclass
class SizeResult:
    """Everything measured for one parameter count."""

    n_controls: int
    plans: dict[float, tuple[float, ...]]
    notes: list[str]
    scans: dict[str, list[ScanPoint]]
    targets: dict[float, dict[str, AtTarget | None]]
    rms_gradient: float


def run_size(n_controls: int, n_points: int, repeats: int, log: Log) -> SizeResult:
    """All scans for one number of controls."""
    windows, notes = plannable_windows(n_controls)
    if max_order_for(n_controls) == 2:
        third = third_order_note(n_controls, windows[0] if windows else HGE_WINDOWS_S[-1])
        if third:
            notes.insert(0, f"third order asked at T = {windows[0] * 1e3:g} ms: {third}")
    if len(windows) < 2:
        raise PlanError(f"N = {n_controls}: fewer than two plannable windows: {notes}")
    base = homodyne_settings(n_controls, windows[0])
    with open_large_dnpu(n_controls, base, noise_seed=SEED + n_controls) as (device, loaded, model):
        engines = {
            w: engine_for(device, loaded, homodyne_settings(n_controls, w), None) for w in windows
        }
        plans = {w: e.plan.frequencies_hz for w, e in engines.items()}
        names = engines[windows[0]].electrodes
        slew = large_dnpu_settings(n_controls).slew_v_per_s
        octave_windows = [
            w
            for w in OCTAVE_WINDOWS_S
            if n_controls >= OCTAVE_MIN_CONTROLS and octave_frequencies(n_controls, w) is not None
        ]
        octave_freqs = [f for w in octave_windows for f in octave_frequencies(n_controls, w) or []]
        frequencies = sorted({f for plan in plans.values() for f in plan} | set(octave_freqs))
        log(f"cost: N = {n_controls}, calibrating at {len(frequencies)} frequencies")
        response = calibrate(device, loaded, frequencies, CALIBRATION_WINDOW_S)
        engine = engine_for(device, loaded, base, response)
        rng = np.random.default_rng(SEED + 1000 * n_controls)
        margin = FD_WIDE_STEP_V - AMPLITUDE_V
        points = random_points(device, engine, n_points, rng, margin_v=margin)
        indices = list(engine.electrode_indices)
        truth = model.gradient_a_per_v(points)[:, indices]
        scans: dict[str, list[ScanPoint]] = {}
        seq_windows = windows[:2] if n_controls > 10 else windows[:3]
        jobs: list[tuple[str, Any]] = [
            ("parallel HGE", lambda: scan_engine(device, loaded, n_controls, "parallel", windows,
                                                 points, truth, repeats, response)),
            ("sequential HGE", lambda: scan_engine(device, loaded, n_controls, "sequential",
                                                   seq_windows, points, truth, repeats, response)),
            ("central FD", lambda: scan_engine(device, loaded, n_controls, "fd",
                                               list(FD_WINDOWS_S), points, truth, repeats, None)),
            (f"central FD, h = {FD_WIDE_STEP_V * 1e3:g} mV",
             lambda: scan_engine(device, loaded, n_controls, "fd", list(FD_WINDOWS_S), points,
                                 truth, repeats, None, fd_step_v=FD_WIDE_STEP_V)),
            ("SPSA", lambda: scan_spsa(device, indices, points, truth, repeats,
                                       SEED + 7 * n_controls)),
        ]  # fmt: skip
        if len(octave_windows) >= 2:

            def octave_for(window_s: float) -> dict[str, Any]:
                return octave_settings(n_controls, window_s, names, slew)

            jobs.insert(1, (OCTAVE, lambda: scan_engine(
                device, loaded, n_controls, "parallel", octave_windows, points, truth, repeats,
                response, settings_for=octave_for)))  # fmt: skip
        for name, job in jobs:
            t0 = time.perf_counter()
            scans[name] = job()
            log(f"cost: N = {n_controls}, {name}: {time.perf_counter() - t0:.0f} s")
    targets: dict[float, dict[str, AtTarget | None]] = {}
    for t in TARGETS_A_PER_V:
        row = {m: fit_target(p, t) for m, p in scans.items()}
        fds = [a for m, a in row.items() if m.startswith("central FD") and a is not None]
        row[BEST_FD] = min(fds, key=lambda a: a.device_s) if fds else None
        targets[t] = row
    return SizeResult(n_controls, plans, notes, scans, targets, float(np.sqrt(np.mean(truth**2))))


def decomposition_lines(results: list[SizeResult]) -> list[str]:
    """Where the device-seconds go at the headline target: HGE's shortest record against FD's.

    HGE: the shortest plannable window and the fixed cost of one record around it (ramps from
    and back to rest, tone fades, settling); FD: 2N + 1 plateaus, each with its settling and
    ramp, at the plateau length that meets the target (from the fit), with the better step.
    """
    target = TARGETS_A_PER_V[0]
    rows = []
    for r in results:
        hge = r.scans.get("parallel HGE") or []
        best = r.targets[target].get(BEST_FD)
        fd_name = next(
            (m for m in r.scans if m.startswith("central FD") and r.targets[target].get(m) is best),
            None,
        )
        if not hge or best is None or fd_name is None or not math.isfinite(best.device_s):
            continue
        shortest = min(hge, key=lambda p: p.knob)
        hge_at = r.targets[target].get("parallel HGE")
        plateaus = 2 * r.n_controls + 1
        fd_scan = r.scans[fd_name]
        per_plateau = [(p.device_s / plateaus) - p.knob for p in fd_scan]
        rows.append(
            [
                r.n_controls,
                f"{shortest.knob * 1e3:g}",
                fmt((shortest.device_s - shortest.knob) * 1e3),
                fmt(hge_at.device_s) if hge_at is not None else "–",
                fd_name,
                plateaus,
                fmt(float(np.mean(per_plateau)) * 1e3),
                fmt(best.knob * 1e3),
                fmt(best.device_s),
                fmt(_ratio(r, BEST_FD, target)),
            ]
        )
    if not rows:
        return []
    header = [
        "N",
        "HGE shortest plannable window (ms)",
        "HGE fixed cost per record (ms)",
        f"HGE device-s at {target * NA:g} nA/V",
        "FD used",
        "FD plateaus",
        "FD fixed cost per plateau (ms)",
        f"FD plateau at {target * NA:g} nA/V (ms)",
        "FD device-s",
        "FD / HGE",
    ]
    return [
        f"Where the time goes at {target * NA:g} nA/V (fixed cost: ramps, tone fades, settling; "
        "the white-noise ideal 2N assumes neither fixed costs nor a floor on HGE's window):",
        "",
        *md_table(header, rows),
        "",
    ]


def _ratio(
    result: SizeResult, method: str, target: float, reference: str = "parallel HGE"
) -> float:
    ref = result.targets[target].get(reference)
    at = result.targets[target].get(method)
    if ref is None or at is None or not math.isfinite(ref.device_s):
        return math.nan
    return at.device_s / ref.device_s


def run(size: SuiteSize, out_dir: Path, log: Log) -> Section:
    """The gradient-cost part of the suite."""
    start = time.perf_counter()
    section = Section("cost", "Device-seconds per gradient at equal error")
    results = []
    for n in size.cost_sizes:
        n_points = size.cost_points if n <= 20 else max(1, size.cost_points // 2)
        results.append(run_size(n, n_points, size.cost_repeats, log))
    section.lines += [
        "Hopping-network device with N controls + 2 inputs (N = 5: the shipped DNPU; 10, 20, "
        "40: `HoppingParameters.scaled(N + 2)`), the shipped DNPU's chain (10 kS/s, 2 kHz "
        "amplifier, 1/f corner 100 Hz, drift), 10 mV perturbation for every method, 15 ms "
        "settling per operating-point change, ramps included. Targets: RMS error "
        f"{' and '.join(f'{t * NA:g}' for t in TARGETS_A_PER_V)} nA/V against the model's "
        "exact gradient. `*`: knob outside the scanned range (above it: cost extrapolated "
        "linearly; below it: the cost of the cheapest scanned setting, which already meets "
        "the target); ∞: the fitted error floor is above the target. Central FD (best step): "
        "the cheaper of the two FD steps.",
        "",
    ]
    methods = [*dict.fromkeys(m for r in results for m in r.scans), BEST_FD]
    rows = []
    for r in results:
        for m in methods:
            row: list[Any] = [r.n_controls, m]
            for t in TARGETS_A_PER_V:
                at = r.targets[t].get(m)
                if at is None:
                    row += ["–", "–"]
                    continue
                star = "*" if at.extrapolated and math.isfinite(at.device_s) else ""
                row += [fmt(at.device_s) + star, fmt(_ratio(r, m, t))]
            at0 = r.targets[TARGETS_A_PER_V[0]].get(m)
            row += [
                fmt(at0.floor * NA) if at0 is not None else "–",
                fmt(min(p.rms_error for p in r.scans[m]) * NA) if m in r.scans else "–",
            ]
            rows.append(row)
    header = ["N", "method"]
    for t in TARGETS_A_PER_V:
        header += [f"device-s/gradient at {t * NA:g} nA/V", "× parallel HGE"]
    header += ["fitted floor (nA/V)", "best scanned error (nA/V)"]
    section.lines += [*md_table(header, rows), ""]
    section.lines += ["Scanned settings (errors in nA/V):", ""]
    rows = []
    for r in results:
        for m, scan in r.scans.items():
            for p in scan:
                knob = f"{p.knob:g} pairs" if m == "SPSA" else f"T = {p.knob * 1e3:g} ms"
                rows.append(
                    [
                        r.n_controls,
                        m,
                        knob,
                        fmt(p.device_s),
                        fmt(p.rms_error * NA),
                        fmt(p.mean_stderr * NA),
                        f"{p.saturated}/{p.total}",
                    ]
                )
    header = ["N", "method", "knob", "device-s", "RMS error", "RMS reported se", "saturated"]
    section.lines += [*md_table(header, rows), ""]
    section.lines += decomposition_lines(results)
    section.lines += ["Plans and planner notes:", ""]
    for r in results:
        first = min(r.plans)
        shown = ", ".join(f"{f:g}" for f in r.plans[first])
        section.lines.append(
            f"- N = {r.n_controls} (RMS exact gradient {r.rms_gradient * NA:.1f} nA/V), "
            f"max_order {max_order_for(r.n_controls)}, windows "
            f"{', '.join(f'{w * 1e3:g}' for w in sorted(r.plans))} ms; plan at "
            f"{first * 1e3:g} ms: {shown} Hz"
        )
        section.lines.extend(f"  - {note}" for note in r.notes)
    section.lines.append("")

    target = TARGETS_A_PER_V[0]
    for r in results:
        for method in (BEST_FD, "SPSA", "sequential HGE"):
            ratio = _ratio(r, method, target)
            goal, met = "", None
            if method == BEST_FD and r.n_controls == 40 and OCTAVE not in r.scans:
                goal, met = "≥ 40× (white-noise ideal 2N = 80×)", bool(ratio >= 40)
            elif method == BEST_FD and r.n_controls == 40:
                goal = "planner's plan (tones ≤ f_s/10)"
            elif method == BEST_FD:
                goal = f"white-noise ideal 2N = {2 * r.n_controls}×"
            if method == BEST_FD or r.n_controls == max(size.cost_sizes):
                section.headline.append(
                    Headline(
                        f"{method} / parallel HGE device-seconds per gradient, N = "
                        f"{r.n_controls}, {target * NA:g} nA/V",
                        f"{fmt(ratio)}×",
                        goal or "–",
                        met,
                    )
                )
        if OCTAVE in r.scans:
            ratio = _ratio(r, BEST_FD, target, reference=OCTAVE)
            goal, met = "", None
            if r.n_controls == 40:
                goal, met = "≥ 40× (white-noise ideal 2N = 80×)", bool(ratio >= 40)
            section.headline.append(
                Headline(
                    f"{BEST_FD} / {OCTAVE} (slew-limited amplitudes) device-seconds per "
                    f"gradient, N = {r.n_controls}, {target * NA:g} nA/V",
                    f"{fmt(ratio)}×",
                    goal or "–",
                    met,
                )
            )

    fig, axes = new_figure(2, 1)
    for m in methods[:-1]:
        ns, costs = [], []
        for r in results:
            at = r.targets[target].get(m)
            if at is not None and math.isfinite(at.device_s):
                ns.append(r.n_controls)
                costs.append(at.device_s)
        axes[0].plot(ns, costs, "o-", label=m)
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("parameters N")
    axes[0].set_ylabel(f"device-s per gradient at {target * NA:g} nA/V")
    axes[0].legend(fontsize=8)
    last = results[-1]
    for m, scan in last.scans.items():
        axes[1].plot([p.device_s for p in scan], [p.rms_error * NA for p in scan], "o-", label=m)
    for t in TARGETS_A_PER_V:
        axes[1].axhline(t * NA, color="k", lw=0.8, ls="--")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("device-s per gradient")
    axes[1].set_ylabel("RMS error (nA/V)")
    axes[1].set_title(f"scans at N = {last.n_controls}")
    axes[1].legend(fontsize=8)
    section.figures.append(save_figure(fig, out_dir, "gradient_cost.png"))
    section.wall_s = time.perf_counter() - start
    return section
