"""Device-seconds per gradient at equal gradient error: HGE (parallel, sequential), FD, SPSA.

Device: the synthetic smooth device of ``bench/_setup.py`` (``I = I_0 + Σ_j a_j tanh(w_j·V +
b_j)``, 8 hidden units, RMS gradient ~20 nA/V) with N = 5 and N = 20 control electrodes plus two
inputs, behind the safety layer, with the default measurement chain of ``simulated_hw.chain``
(white + 1/f noise 1e-5 nA²/Hz at 1 kHz, 1/f corner 100 Hz, drift 2 pA/√s, 16-bit ADC), an
amplifier of 1e7 V/A (saturates at ±400 nA) with its bandwidth raised to 20 kHz, 50 kS/s, DC
ramps at 200 V/s (slew limit 1000 V/s so 10 mV tones up to 4 kHz fit), 15 ms settling after
every operating-point change.

Every method perturbs by 10 mV: HGE tone amplitude, FD half step and SPSA c; one extra FD row
uses a larger half step (``--fd-step-mv``, default 30 mV), because at DC the 1/f noise sets an
error floor ∝ 1/h that a longer window does not lower (on this smooth model the larger step costs
no noticeable curvature bias; on a real device it may). Each gradient is
one call at one operating point (ramps from and back to rest, tone fades, settling: everything
the device spends on it), measured at ``--points`` seeded operating points, ``--repeats`` times
each (fresh noise). Error: RMS over points, repeats and components of (estimate − exact model
gradient). Knob per method: window length (parallel, sequential: per record; FD: per plateau) or
number of ± pairs (SPSA, 2 ms plateaus). The scanned (cost, error) pairs are fitted with
``error² = a + b / knob`` (a: floor, e.g. 1/f noise at DC; b/knob: averaging) and the cost with a
straight line in the knob; the knob that meets each target error gives the device-seconds per
gradient. Knobs outside the scanned range are flagged as extrapolated.

HGE plans: the planner (``plan_frequencies``) in 200–4000 Hz, no mains guard (the simulated chain
has no mains pickup), 3rd-order-clean for 5 tones, 2nd-order-clean for 20 tones (3rd-order-clean
20-tone plans were not found at these windows); chain calibrated through a 1 MΩ reference
resistor (0.4 s windows) before measuring.

Run: ``.venv/bin/python bench/bench_gradient_cost.py`` (about 3–5 min on 2 cores).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from _setup import (
    SyntheticSettings,
    calibrate,
    engine_for,
    open_synthetic,
    random_points,
)
from scipy.optimize import nnls

from labctl.config import LoadedConfig
from labctl.device import FloatArray
from labctl.device.safety import SafeDevice
from labctl.homodyne.calibration import ChainResponse
from labctl.homodyne.plan import PlanWarning
from labctl.training.baselines import spsa_gradient

NA = 1e9
AMPLITUDE_V = 0.01
SETTLE_S = 0.015
BAND_HZ = (200.0, 4000.0)
CALIBRATION_WINDOW_S = 0.4
SPSA_WINDOW_S = 0.002
HGE_WINDOWS_S = (0.01, 0.02, 0.04, 0.08)
FD_WINDOWS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16)
SPSA_PAIRS = (16, 64, 256)


@dataclass(frozen=True)
class ScanPoint:
    """One scanned setting of one method."""

    knob: float
    device_s: float
    rms_error: float
    mean_stderr: float
    saturated: int
    total: int


@dataclass(frozen=True)
class AtTarget:
    """A method's cost at a target error."""

    knob: float
    device_s: float
    extrapolated: bool
    floor: float


def homodyne_settings(
    n_controls: int, window_s: float, fd: bool = False, fd_step_v: float = AMPLITUDE_V
) -> dict[str, object]:
    """The ``homodyne`` section for one window.

    FD never plays tones, but the engine still builds a plan; for FD the plan is any set of
    bins on the window's grid (``insist``: its collisions do not matter).
    """
    extra: dict[str, object] = {}
    if fd:
        extra = {"frequencies_hz": [k / window_s for k in range(1, n_controls + 1)], "insist": True}
    return extra | {
        "amplitude_v": AMPLITUDE_V,
        "window_s": window_s,
        "settle_s": SETTLE_S,
        "band_hz": list(BAND_HZ),
        "min_spacing_hz": None,
        "mains_hz": [],
        "max_order": 3 if n_controls <= 8 else 2,
        "fd_step_v": fd_step_v,
        "calibration": {"resistance_ohm": 1e6},
    }


def fit_target(points: list[ScanPoint], target: float) -> AtTarget | None:
    """Knob and cost where ``error² = a + b/knob`` reaches ``target`` (None: never)."""
    knobs = np.array([p.knob for p in points])
    errors = np.array([p.rms_error for p in points])
    costs = np.array([p.device_s for p in points])
    weights = 1.0 / errors**2  # relative errors count equally
    design = np.stack([np.ones_like(knobs), 1.0 / knobs], axis=1) * weights[:, None]
    (a, b), _ = nnls(design, errors**2 * weights)
    floor = math.sqrt(a)
    if target**2 <= a:
        return AtTarget(math.inf, math.inf, True, floor)
    knob = b / (target**2 - a)
    extrapolated = not knobs.min() <= knob <= knobs.max()
    if extrapolated:
        slope, intercept = np.polyfit(knobs, costs, 1)
        cost = intercept + slope * knob
    else:  # the plan (and so the fade time) changes with the window: interpolate piecewise
        cost = np.interp(knob, knobs, costs)
    return AtTarget(float(knob), float(cost), extrapolated, floor)


def scan_engine(
    device: SafeDevice,
    loaded: LoadedConfig,
    n_controls: int,
    mode: str,
    windows: tuple[float, ...],
    points: FloatArray,
    truth: FloatArray,
    repeats: int,
    calibrations: dict[float, ChainResponse],
    fd_step_v: float = AMPLITUDE_V,
) -> list[ScanPoint]:
    """Scan the window of an engine mode."""
    out = []
    for window in windows:
        settings = homodyne_settings(n_controls, window, fd=mode == "fd", fd_step_v=fd_step_v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlanWarning)
            engine = engine_for(device, loaded, settings, calibrations.get(window))
        estimates, stderrs, costs, saturated = [], [], [], 0
        for _ in range(repeats):
            for point in points:
                batch = engine.measure(point, mode=mode)
                estimates.append(batch.gradients_a_per_v[0])
                stderrs.append(batch.stderr_a_per_v[0])
                costs.append(batch.device_seconds)
                saturated += int(batch.saturated)
        out.append(scan_point(window, estimates, stderrs, costs, saturated, truth, repeats))
    return out


def scan_point(
    knob: float,
    estimates: list[FloatArray],
    stderrs: list[FloatArray],
    costs: list[float],
    saturated: int,
    truth: FloatArray,
    repeats: int,
) -> ScanPoint:
    """Summarise the estimates of one setting against the model's truth (tiled per repeat)."""
    error = np.array(estimates) - np.tile(truth, (repeats, 1))
    return ScanPoint(
        knob,
        float(np.mean(costs)),
        float(np.sqrt(np.mean(error**2))),
        float(np.sqrt(np.mean(np.square(stderrs)))),
        saturated,
        len(costs),
    )


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
                    device,
                    point,
                    indices,
                    AMPLITUDE_V,
                    n_pairs,
                    rng,
                    window_s=SPSA_WINDOW_S,
                    settle_s=SETTLE_S,
                )
                estimates.append(result.gradient_a_per_v)
                stderrs.append(result.stderr_a_per_v)
                costs.append(result.device_seconds)
                saturated += int(result.saturated)
        out.append(scan_point(float(n_pairs), estimates, stderrs, costs, saturated, truth, repeats))
    return out


def run_size(
    n_controls: int, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, list[ScanPoint]]:
    """All scans for one number of controls."""
    settings = SyntheticSettings(
        n_controls=n_controls, model_seed=args.seed, noise_seed=args.seed + n_controls
    )
    base = homodyne_settings(n_controls, HGE_WINDOWS_S[0])
    with open_synthetic(settings, base) as (device, loaded, model):
        plans = {
            w: engine_for(device, loaded, homodyne_settings(n_controls, w), None).plan
            for w in HGE_WINDOWS_S
        }
        frequencies = sorted({f for plan in plans.values() for f in plan.frequencies_hz})
        response = calibrate(device, loaded, frequencies, CALIBRATION_WINDOW_S)
        calibrations = {w: response for w in HGE_WINDOWS_S}
        engine = engine_for(device, loaded, base, response)
        rng = np.random.default_rng(args.seed + 1000 * n_controls)
        margin = max(0.0, args.fd_step_mv * 1e-3 - AMPLITUDE_V)  # room for the larger FD step
        points = random_points(device, engine, args.points, rng, margin_v=margin)
        indices = list(engine.electrode_indices)
        truth = model.gradient_a_per_v(points)[:, indices]
        currents = model.current_a(points)
        log(
            f"\n=== N = {n_controls} controls (+2 inputs), {args.points} points x "
            f"{args.repeats} repeats, model seed {settings.model_seed}, noise seed "
            f"{settings.noise_seed}, points seed {args.seed + 1000 * n_controls} ==="
        )
        log(
            f"model: I at points {currents.min() * NA:.1f} .. {currents.max() * NA:.1f} nA, "
            f"RMS |dI/dV| {np.sqrt(np.mean(truth**2)) * NA:.1f} nA/V; chain calibrated at "
            f"{len(frequencies)} frequencies ({device.device_seconds:.1f} device-s)"
        )
        for window, plan in plans.items():
            shown = ", ".join(f"{f:g}" for f in plan.frequencies_hz)
            log(
                f"  plan T = {window * 1e3:g} ms (max_order {plan.max_order}, "
                f"{plan.bin_width_hz:g} Hz bins): {shown} Hz"
            )
        scans = {
            "parallel HGE": scan_engine(
                device,
                loaded,
                n_controls,
                "parallel",
                HGE_WINDOWS_S,
                points,
                truth,
                args.repeats,
                calibrations,
            ),
            "sequential HGE": scan_engine(
                device,
                loaded,
                n_controls,
                "sequential",
                HGE_WINDOWS_S,
                points,
                truth,
                args.repeats,
                calibrations,
            ),
            "central FD": scan_engine(
                device, loaded, n_controls, "fd", FD_WINDOWS_S, points, truth, args.repeats, {}
            ),
            f"FD, h={args.fd_step_mv:g} mV": scan_engine(
                device,
                loaded,
                n_controls,
                "fd",
                FD_WINDOWS_S,
                points,
                truth,
                args.repeats,
                {},
                fd_step_v=args.fd_step_mv * 1e-3,
            ),
            "SPSA": scan_spsa(
                device, indices, points, truth, args.repeats, args.seed + 7 * n_controls
            ),
        }
    return scans


def print_scans(scans: dict[str, list[ScanPoint]], log: Callable[[str], None]) -> None:
    """The scanned settings."""
    log(
        f"  {'method':<15} {'knob':>12} {'device-s/grad':>13} {'RMS err':>9} "
        f"{'RMS stderr':>10} {'saturated':>9}   (errors in nA/V)"
    )
    for method, points in scans.items():
        for p in points:
            knob = f"{p.knob:g} pairs" if method == "SPSA" else f"T={p.knob * 1e3:g} ms"
            log(
                f"  {method:<15} {knob:>12} {p.device_s:13.3f} {p.rms_error * NA:9.2f} "
                f"{p.mean_stderr * NA:10.2f} {f'{p.saturated}/{p.total}':>9}"
            )


def print_targets(
    scans: dict[str, list[ScanPoint]], targets: list[float], log: Callable[[str], None]
) -> dict[float, dict[str, AtTarget | None]]:
    """Cost of each method at each target error, and its ratio to parallel HGE."""
    results: dict[float, dict[str, AtTarget | None]] = {}
    for target in targets:
        log(f"\n  target RMS error {target:g} nA/V   (* = outside the scanned range)")
        log(
            f"  {'method':<15} {'knob':>14} {'device-s/grad':>13} {'x parallel':>10} "
            f"{'fitted floor':>12}"
        )
        row = {m: fit_target(p, target / NA) for m, p in scans.items()}
        results[target] = row
        reference = row["parallel HGE"]
        for method, at in row.items():
            if at is None or not math.isfinite(at.device_s):
                floor = at.floor * NA if at is not None else float("nan")
                log(f"  {method:<15} {'not reached':>14} {'-':>13} {'-':>10} {floor:10.2f}")
                continue
            flag = "*" if at.extrapolated else " "
            knob = f"{at.knob:.0f} pairs" if method == "SPSA" else f"T={at.knob * 1e3:.1f} ms"
            ratio = (
                at.device_s / reference.device_s
                if reference is not None and math.isfinite(reference.device_s)
                else float("nan")
            )
            log(
                f"  {method:<15} {knob + flag:>14} {at.device_s:13.3f} {ratio:10.1f} "
                f"{at.floor * NA:10.2f}"
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20, help="operating points per size")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per point")
    parser.add_argument("--seed", type=int, default=2025, help="base seed")
    parser.add_argument(
        "--targets", type=float, nargs="+", default=[3.0, 2.0], help="RMS errors (nA/V)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20], help="control counts")
    parser.add_argument(
        "--fd-step-mv",
        type=float,
        default=30.0,
        help="half step (mV) of the extra FD row with a larger step than the common 10 mV",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def log(text: str) -> None:
        print(text, flush=True)

    log("command: " + shlex.join([sys.executable, *sys.argv]))
    log(
        f"settings: perturbation {AMPLITUDE_V * 1e3:g} mV for every method, settle "
        f"{SETTLE_S * 1e3:g} ms per operating-point change, 50 kS/s, amplifier 1e7 V/A and "
        "20 kHz, noise "
        "1e-5 nA^2/Hz at 1 kHz with 1/f (corner 100 Hz) and drift 2 pA/sqrt(s) (chain "
        f"defaults), HGE band {BAND_HZ[0]:g}-{BAND_HZ[1]:g} Hz, SPSA plateaus "
        f"{SPSA_WINDOW_S * 1e3:g} ms; base seed {args.seed}"
    )
    summary = {}
    for n_controls in args.sizes:
        scans = run_size(n_controls, args, log)
        print_scans(scans, log)
        summary[n_controls] = print_targets(scans, args.targets, log)
    log("\nsummary: device-seconds per gradient relative to parallel HGE (* = extrapolated)")
    for target in args.targets:
        for n_controls, results in summary.items():
            row = results[target]
            ref = row["parallel HGE"]
            parts = []
            for method, at in row.items():
                if method == "parallel HGE":
                    continue
                if at is None or ref is None or not math.isfinite(at.device_s):
                    parts.append(f"{method} not reached")
                else:
                    star = "*" if at.extrapolated else ""
                    parts.append(f"{method} {at.device_s / ref.device_s:.1f}x{star}")
            log(
                f"  target {target:g} nA/V, N = {n_controls}: parallel "
                f"{ref.device_s if ref else float('nan'):.3f} s; " + "; ".join(parts)
            )
    log(f"wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
