"""Parallel vs sequential homodyne gradients on the simulated DNPU (paper Fig. 3c,d).

Device: ``configs/sim_dnpu.yaml`` (7-electrode hopping-network DNPU, every chain effect on),
inputs e0/e6, controls e1–e5, 10 mV tones, 0.1 s window per point, 15 ms settling,
least-squares demodulation projected onto a chain calibration measured first through the
reference resistor (1 s windows).

Seeded random operating points (controls uniform inside the engine's control bounds, inputs
uniform over their ranges) are measured with parallel HGE (all five tones in one record) and
sequential HGE (one electrode at a time, same frequency), for explicit plans of consecutive bins
``f0 + k·Δf``, Δf = 10 Hz and 40 Hz. Such arithmetic progressions always have third-order
products on their own tones (e.g. 2f1 − f0 = f2); the plans are accepted with ``insist`` (the
simulated chain has no mains pickup; third-order products are O(A³)).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    linear_fit,
    open_dnpu,
    r2_against,
    random_points,
)
from labctl.device import FloatArray
from labctl.homodyne.plan import PlanWarning, find_collisions
from simulated_hw.backend import SimulatedSettings

SPACINGS_HZ = (10.0, 40.0)
F0_HZ = 210.0
WINDOW_S = 0.1
CHUNK = 50
SEED = 2025


@dataclass(frozen=True)
class Comparison:
    """Parallel and sequential gradients at the same points for one spacing (A/V).

    Attributes:
        spacing_hz: Tone spacing Δf (Hz).
        frequencies_hz: The plan.
        third_order: Third-order collisions of the plan, as text.
        parallel: Shape ``(n_points, 5)``.
        sequential: Shape ``(n_points, 5)``.
        truth: The model's exact gradient, same shape.
        saturated: Per point, whether either record saturated.
        device_s_parallel: Device time per point, parallel (s).
        device_s_sequential: Device time per point, sequential (s).
        noise_sd_a_per_v: Expected noise sd of one component, ``sqrt(S(f)/T)/A`` (A/V).
    """

    spacing_hz: float
    frequencies_hz: tuple[float, ...]
    third_order: str
    parallel: FloatArray
    sequential: FloatArray
    truth: FloatArray
    saturated: np.ndarray
    device_s_parallel: float
    device_s_sequential: float
    noise_sd_a_per_v: float

    def stats(self) -> dict[str, float]:
        """Fit of parallel against sequential and errors against the truth (nA/V)."""
        keep = ~self.saturated
        p, s, t = self.parallel[keep] * NA, self.sequential[keep] * NA, self.truth[keep] * NA
        slope, intercept, r2_fit = linear_fit(s, p)
        return {
            "points": int(keep.sum()),
            "slope": slope,
            "intercept": intercept,
            "r2_fit": r2_fit,
            "r2_identity": r2_against(s, p),
            "rms_p_s": float(np.sqrt(np.mean((p - s) ** 2))),
            "r2_par": r2_against(t, p),
            "r2_seq": r2_against(t, s),
            "rms_par": float(np.sqrt(np.mean((p - t) ** 2))),
            "rms_seq": float(np.sqrt(np.mean((s - t) ** 2))),
        }


def _settings(frequencies_hz: list[float], window_s: float) -> dict[str, Any]:
    return {
        "amplitude_v": 0.01,
        "frequencies_hz": frequencies_hz,
        "insist": True,
        "window_s": window_s,
        "settle_s": 0.015,
        "min_spacing_hz": None,
    }


def compare(
    n_points: int,
    *,
    spacings_hz: tuple[float, ...] = SPACINGS_HZ,
    f0_hz: float = F0_HZ,
    window_s: float = WINDOW_S,
    seed: int = SEED,
    log: Log | None = None,
) -> list[Comparison]:
    """Measure parallel and sequential HGE at ``n_points`` seeded points for each spacing."""
    plans = {df: [f0_hz + k * df for k in range(5)] for df in spacings_hz}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlanWarning)
        context = open_dnpu({"homodyne": _settings(plans[spacings_hz[0]], window_s)})
    out = []
    with context as (device, loaded):
        backend = loaded.backend_settings
        assert isinstance(backend, SimulatedSettings)
        frequencies = sorted({f for plan in plans.values() for f in plan})
        response = calibrate(device, loaded, frequencies, 1.0)
        engines = {}
        for df, plan in plans.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PlanWarning)
                engines[df] = engine_for(device, loaded, _settings(plan, window_s), response)
        rng = np.random.default_rng(seed)
        first = engines[spacings_hz[0]]
        points = random_points(device, first, n_points, rng)
        controls = list(first.electrode_indices)
        truth_rows = []
        for point in points:
            exact = device.reference_gradient(point)
            assert exact is not None  # a simulated device has the model's gradient
            truth_rows.append(exact[controls])
        truth = np.array(truth_rows)
        white = backend.noise_psd_at_1khz_a2_per_hz / (1 + backend.flicker_corner_hz / 1000)
        for df, engine in engines.items():
            if log is not None:
                log(f"parallel: df = {df:g} Hz, {n_points} points")
            found: dict[str, list[FloatArray]] = {"parallel": [], "sequential": []}
            seconds = {"parallel": 0.0, "sequential": 0.0}
            saturated = np.zeros(n_points, dtype=bool)
            for lo in range(0, n_points, CHUNK):
                chunk = points[lo : lo + CHUNK]
                for mode in ("parallel", "sequential"):
                    batch = engine.measure(chunk, mode=mode)
                    found[mode].append(batch.gradients_a_per_v)
                    seconds[mode] += batch.device_seconds
                    saturated[lo : lo + len(chunk)] |= [r.saturated for r in batch.results]
            bins = engine.plan.bins
            third = find_collisions(bins, max_order=3, n_samples=engine.plan.n_samples)
            psd = white * (1 + backend.flicker_corner_hz / np.array(plans[df]))
            out.append(
                Comparison(
                    spacing_hz=df,
                    frequencies_hz=tuple(plans[df]),
                    third_order="; ".join(str(c) for c in third),
                    parallel=np.concatenate(found["parallel"]),
                    sequential=np.concatenate(found["sequential"]),
                    truth=truth,
                    saturated=saturated,
                    device_s_parallel=seconds["parallel"] / n_points,
                    device_s_sequential=seconds["sequential"] / n_points,
                    noise_sd_a_per_v=math.sqrt(float(np.mean(psd)) / window_s) / 0.01,
                )
            )
    return out


def table(comparisons: list[Comparison]) -> list[str]:
    """The comparison table (Markdown)."""
    rows = []
    for c in comparisons:
        s = c.stats()
        rows.append(
            [
                f"{c.spacing_hz:g}",
                s["points"],
                f"{s['slope']:.4f}",
                f"{s['intercept']:.3f}",
                f"{s['r2_fit']:.4f}",
                f"{s['rms_p_s']:.3f}",
                f"{math.sqrt(2) * c.noise_sd_a_per_v * NA:.3f}",
                f"{s['r2_par']:.4f}",
                f"{s['r2_seq']:.4f}",
                f"{s['rms_par']:.3f}",
                f"{s['rms_seq']:.3f}",
                fmt(c.device_s_parallel),
                fmt(c.device_s_sequential),
            ]
        )
    return md_table(
        [
            "Δf (Hz)",
            "points",
            "slope par/seq",
            "intercept (nA/V)",
            "R² fit",
            "RMS par−seq (nA/V)",
            "noise limit √2·sd",
            "R² par vs exact",
            "R² seq vs exact",
            "RMS par err",
            "RMS seq err",
            "device-s/pt par",
            "device-s/pt seq",
        ],
        rows,
    )


def scatter_figure(comparisons: list[Comparison], out_dir: Path, name: str) -> str:
    """Parallel against sequential, one panel per spacing, with y = x."""
    fig, axes = new_figure(len(comparisons), 1, width_in=4.2, height_in=4.0)
    for ax, c in zip(axes, comparisons, strict=True):
        keep = ~c.saturated
        s, p = c.sequential[keep].ravel() * NA, c.parallel[keep].ravel() * NA
        ax.scatter(s, p, s=4, alpha=0.5)
        lo, hi = min(s.min(), p.min()), max(s.max(), p.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="y = x")
        ax.set_title(f"Δf = {c.spacing_hz:g} Hz ({int(keep.sum())} points)")
        ax.set_xlabel("sequential dI/dV (nA/V)")
        ax.set_ylabel("parallel dI/dV (nA/V)")
        ax.legend(fontsize=8)
    return save_figure(fig, out_dir, name)


def run(size: SuiteSize, out_dir: Path, log: Log) -> Section:
    """The parallel-vs-sequential part of the suite."""
    start = time.perf_counter()
    section = Section("parallel", "Parallel vs sequential HGE")
    comparisons = compare(size.pvs_points, log=log)
    section.lines += [
        f"Simulated DNPU (`configs/sim_dnpu.yaml`), {size.pvs_points} seeded operating points, "
        "5 controls, 10 mV, T = 0.1 s, plans f0 + k·Δf from 210 Hz (accepted with `insist`: "
        "arithmetic progressions carry third-order products on their own tones), calibrated "
        "least-squares demodulation. Noise limit: √2 × the expected sd of one component, "
        "`sqrt(S(f)/T)/A`, the RMS difference two independent CRB-limited estimates would have.",
        "",
        *table(comparisons),
        "",
    ]
    for c in comparisons:
        s = c.stats()
        section.headline.append(
            Headline(
                f"parallel vs sequential HGE, Δf = {c.spacing_hz:g} Hz: slope, R²",
                f"{s['slope']:.3f}, {s['r2_fit']:.4f}",
                "on y = x (paper Fig. 3c,d)",
                None,
            )
        )
    section.figures.append(scatter_figure(comparisons, out_dir, "parallel_vs_sequential.png"))
    section.wall_s = time.perf_counter() - start
    return section
