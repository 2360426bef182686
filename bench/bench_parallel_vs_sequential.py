"""Parallel vs sequential homodyne gradients on the simulated DNPU (paper Fig. 3c,d).

Device: ``configs/sim_dnpu.yaml`` (7-electrode hopping-network DNPU, every chain effect on:
1e-5 nA²/Hz at 1 kHz with 1/f noise, drift, 2 kHz amplifier, 16-bit ADC), inputs e0/e6, controls
e1–e5, 10 mV tones, 0.1 s window per point, 15 ms settling, least-squares demodulation projected
onto a chain calibration measured first through the reference resistor (1 s windows).

``--points`` seeded random operating points (controls uniform inside the engine's control bounds,
inputs uniform over their ranges) are measured with parallel HGE (all five tones in one record)
and sequential HGE (one electrode at a time, same frequency), for two explicit frequency plans
with consecutive bins ``f0 + k·Δf``, Δf = 10 Hz and 40 Hz. Such arithmetic progressions always
have third-order products on their own tones (e.g. 2f1 − f0 = f2), and at Δf = 10 Hz they sit
near mains harmonics; the plans are accepted with ``insist`` and the accepted violations printed
(the simulated chain has no mains pickup; third-order products are O(A³)).

Printed per Δf: least-squares fit of parallel against sequential over all components (slope,
intercept, R²), R² of each against the model's exact gradient (y = x, i.e.
1 − Σ(est − true)² / Σ(true − mean)²), RMS errors, and the device time per point.

Run: ``.venv/bin/python bench/bench_parallel_vs_sequential.py [--points 1000]``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
import warnings
from typing import Any

import numpy as np
from _setup import calibrate, engine_for, linear_fit, open_dnpu, r2_against, random_points

from labctl.homodyne.plan import PlanWarning, find_collisions
from simulated_hw.backend import SimulatedSettings

NA = 1e9
SPACINGS_HZ = (10.0, 40.0)
CALIBRATION_WINDOW_S = 1.0


def homodyne_settings(frequencies_hz: list[float], window_s: float, demodulation: str) -> dict:
    """The ``homodyne`` section for one explicit plan."""
    return {
        "amplitude_v": 0.01,
        "frequencies_hz": frequencies_hz,
        "insist": True,
        "window_s": window_s,
        "settle_s": 0.015,
        "demodulation": demodulation,
        "min_spacing_hz": None,
    }


def plan_report(settings: dict[str, Any], engine_factory: Any) -> tuple[Any, list[str]]:
    """Build the engine and collect the rule violations accepted with ``insist``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PlanWarning)
        engine = engine_factory(settings)
    accepted = [str(w.message) for w in caught if issubclass(w.category, PlanWarning)]
    return engine, accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000, help="random operating points")
    parser.add_argument("--seed", type=int, default=2025, help="seed of the operating points")
    parser.add_argument("--f0", type=float, default=210.0, help="lowest tone (Hz)")
    parser.add_argument("--window", type=float, default=0.1, help="window per point (s)")
    parser.add_argument("--chunk", type=int, default=100, help="points per engine call")
    parser.add_argument(
        "--demodulation",
        choices=["least_squares", "boxcar", "software_lockin"],
        default="least_squares",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print("command: " + shlex.join([sys.executable, *sys.argv]), flush=True)

    plans = {df: [args.f0 + k * df for k in range(5)] for df in SPACINGS_HZ}  # one tone per control
    first = homodyne_settings(plans[SPACINGS_HZ[0]], args.window, args.demodulation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlanWarning)
        context = open_dnpu({"homodyne": first})
    with context as (device, loaded):
        backend = loaded.backend_settings
        assert isinstance(backend, SimulatedSettings)  # open_dnpu loads the simulated DNPU
        print(
            f"device: configs/sim_dnpu.yaml, hopping model seed {backend.seed} (also the noise "
            f"seed), {loaded.setup.sample_rate_hz:g} S/s, noise "
            f"{backend.noise_psd_at_1khz_a2_per_hz * 1e18:g} nA^2/Hz at 1 kHz, 1/f corner "
            f"{backend.flicker_corner_hz:g} Hz, drift {backend.drift_a_per_sqrt_s * 1e12:g} "
            f"pA/sqrt(s), amplifier {loaded.setup.amplifier.bandwidth_hz:g} Hz; points seed "
            f"{args.seed}; window {args.window:g} s, settle 15 ms, A = 10 mV, "
            f"{args.demodulation} demodulation"
        )
        frequencies = sorted({f for plan in plans.values() for f in plan})
        response = calibrate(device, loaded, frequencies, CALIBRATION_WINDOW_S)
        phases = ", ".join(
            f"{f:g} Hz {math.degrees(float(np.angle(c))):+.1f} deg"
            for f, c in zip(frequencies, response.at(frequencies), strict=True)
        )
        print(f"chain calibration (resistor): {phases}")

        engines = {}
        for df, plan in plans.items():
            settings = homodyne_settings(plan, args.window, args.demodulation)
            engine, accepted = plan_report(
                settings, lambda s: engine_for(device, loaded, s, response)
            )
            engines[df] = engine
            bins = engine.plan.bins
            third = find_collisions(bins, max_order=3, n_samples=engine.plan.n_samples)
            print(f"\nplan df = {df:g} Hz: {', '.join(f'{f:g}' for f in plan)} Hz (bins {bins})")
            others = [m for m in accepted if not m.startswith("collision:")]
            listed = "; ".join(str(c) for c in third)
            print(
                f"  accepted with insist ({len(accepted)} warnings): {len(third)} third-order "
                f"collisions: {listed}"
            )
            for message in others:
                print(f"  accepted with insist: {message}")

        rng = np.random.default_rng(args.seed)
        reference_engine = engines[SPACINGS_HZ[0]]
        points = random_points(device, reference_engine, args.points, rng)
        controls = list(reference_engine.electrode_indices)
        truth_rows = []
        for point in points:
            exact = device.reference_gradient(point)
            assert exact is not None  # a simulated device has the model's gradient
            truth_rows.append(exact[controls])
        truth = np.array(truth_rows)

        summary = {}
        for df, engine in engines.items():
            results: dict[str, list[np.ndarray]] = {"parallel": [], "sequential": []}
            saturated = np.zeros(args.points, dtype=bool)
            seconds = {"parallel": 0.0, "sequential": 0.0}
            for lo in range(0, args.points, args.chunk):
                chunk = points[lo : lo + args.chunk]
                for mode in ("parallel", "sequential"):
                    batch = engine.measure(chunk, mode=mode)
                    results[mode].append(batch.gradients_a_per_v)
                    seconds[mode] += batch.device_seconds
                    saturated[lo : lo + len(chunk)] |= [r.saturated for r in batch.results]
            par = np.concatenate(results["parallel"])
            seq = np.concatenate(results["sequential"])
            summary[df] = (par, seq, saturated, seconds)

        flagged = sum(int(saturated.sum()) for _, _, saturated, _ in summary.values())
        print(
            f"\n{args.points} points; statistics over all 5 components; {flagged} point "
            "measurement(s) flagged as saturated and left out (a saturated record flags every "
            "point of its chunk)"
        )
        header = (
            f"{'df (Hz)':>7} {'points':>6} {'slope':>7} {'icept':>7} {'R2 fit':>7} "
            f"{'R2 y=x':>7} {'RMS p-s':>8} {'R2 par':>7} {'R2 seq':>7} {'RMS par':>8} "
            f"{'RMS seq':>8} {'dev-s/pt par':>12} {'dev-s/pt seq':>12}"
        )
        print(header)
        for df, (par, seq, saturated, seconds) in summary.items():
            keep = ~saturated
            p, s, t = par[keep] * NA, seq[keep] * NA, truth[keep] * NA
            slope, intercept, r2_fit = linear_fit(s, p)
            print(
                f"{df:7g} {int(keep.sum()):6d} {slope:7.4f} {intercept:7.3f} {r2_fit:7.4f} "
                f"{r2_against(s, p):7.4f} {np.sqrt(np.mean((p - s) ** 2)):8.3f} "
                f"{r2_against(t, p):7.4f} {r2_against(t, s):7.4f} "
                f"{np.sqrt(np.mean((p - t) ** 2)):8.3f} {np.sqrt(np.mean((s - t) ** 2)):8.3f} "
                f"{seconds['parallel'] / args.points:12.4f} "
                f"{seconds['sequential'] / args.points:12.4f}"
            )
        print(
            "columns: slope/icept/R2 fit = least squares parallel = slope * sequential + icept "
            "(nA/V); R2 y=x = parallel as a prediction of sequential; R2 par/seq = against the "
            "model's exact gradient; RMS in nA/V; gradient spread (sd of true components) "
            f"{np.std(truth) * NA:.2f} nA/V"
        )
        white = backend.noise_psd_at_1khz_a2_per_hz / (1 + backend.flicker_corner_hz / 1000)
        for df, plan in plans.items():
            psd = white * (1 + backend.flicker_corner_hz / np.array(plan))
            sd = np.sqrt(np.mean(psd) / args.window) / 0.01
            print(
                f"noise limit df = {df:g} Hz: sd(g) = sqrt(S(f)/T)/A = {sd * NA:.3f} nA/V per "
                f"component (mean over tones); expected RMS parallel - sequential "
                f"{math.sqrt(2) * sd * NA:.3f} nA/V"
            )
    print(f"wall time {time.perf_counter() - start:.0f} s (default aims at < 5 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
