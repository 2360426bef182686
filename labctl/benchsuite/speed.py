"""Simulator speed as a multiple of real time, and demodulation throughput.

* Simulator: a realistic HGE record (rest → ramp → operating point with 10 mV tones on every
  control → ramp → rest, 1 s at 10 kS/s) played through the in-process simulated backend behind
  the safety layer, as labctl uses it (device model + amplifier, 1/f noise, drift, ADC), for the
  shipped DNPU (hopping model), the shared surrogate (skipped when absent) and the larger
  hopping devices (12, 22, 42 electrodes). Figure: simulated seconds per wall-clock second.
* Demodulation: samples per second through the joint least-squares fit, the boxcar and the
  streaming software lock-in for 5 and 40 tones on 0.1 s windows at 10 kS/s.

Calls are single-threaded (the model and the demodulators do not use threads); the machine may
run other work at the same time, so read the figures as lower bounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from labctl.benchsuite.common import (
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
    dnpu_config,
    large_dnpu_model,
    large_dnpu_settings,
    open_with_model,
)
from labctl.connect import build_device
from labctl.device.safety import SafeDevice
from labctl.homodyne.demod import boxcar_demodulate, fit_tones
from labctl.homodyne.lockin import StreamingLockIn
from labctl.homodyne.plan import plan_frequencies
from simulated_hw.surrogate import default_surrogate_path

RATE_HZ = 10_000.0
LARGE_CONTROLS = (10, 20, 40)


def drive(n_samples: int, rest: np.ndarray, point: np.ndarray, controls: list[int]) -> np.ndarray:
    """Rest → ramp → operating point with 10 mV tones on ``controls`` → ramp → rest (V)."""
    t = np.arange(n_samples) / RATE_HZ
    envelope = np.clip(np.minimum(t, t[-1] - t) / 0.1, 0.0, 1.0)
    wave = rest[:, None] + (point - rest)[:, None] * envelope[None, :]
    for k, row in enumerate(controls):
        wave[row] += 0.01 * envelope**2 * np.sin(2 * np.pi * (200.0 + 20.0 * k) * t)
    wave[:, 0] = rest
    wave[:, -1] = rest
    return wave


def realtime_factor(device: SafeDevice, controls: list[int], seconds: float) -> float:
    """Simulated seconds per wall second for 1 s records (after one warm-up record)."""
    rest = device.rest_voltages()
    point = rest.copy()
    point[controls] = np.linspace(-0.3, 0.3, len(controls))
    wave = drive(int(RATE_HZ), rest, point, controls)
    device.apply(wave)
    start = time.perf_counter()
    played = 0.0
    while played < seconds:
        device.apply(wave)
        played += 1.0
    return played / (time.perf_counter() - start)


def _rate(fn: Callable[[], object], n_samples: int, min_s: float = 0.3) -> float:
    """Samples per second of ``fn`` (which processes ``n_samples``), best of repeated calls."""
    fn()
    best = 0.0
    spent = 0.0
    while spent < min_s:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, n_samples / dt)
    return best


def run(size: SuiteSize, out_dir: Path, log: Log) -> Section:
    """The speed part of the suite."""
    start = time.perf_counter()
    section = Section("speed", "Simulator speed and demodulation throughput")
    sim_rows = []
    factors: dict[str, float] = {}
    log("speed: simulator, shipped DNPU")
    with build_device(dnpu_config({})) as device:
        factors["hopping DNPU, 7 electrodes"] = realtime_factor(
            device, [1, 2, 3, 4, 5], size.speed_seconds
        )
    if default_surrogate_path().is_file():
        log("speed: simulator, shared surrogate")
        loaded = dnpu_config(
            {
                "setup": {
                    "backend": {
                        "settings": {
                            "model": "surrogate",
                            "surrogate_path": str(default_surrogate_path()),
                        }
                    }
                }
            }
        )
        with build_device(loaded) as device:
            factors["MLP surrogate, 7 electrodes"] = realtime_factor(
                device, [1, 2, 3, 4, 5], size.speed_seconds
            )
    for n in LARGE_CONTROLS:
        log(f"speed: simulator, hopping device with {n + 2} electrodes")
        model = large_dnpu_model(n)
        with open_with_model(large_dnpu_settings(n), {}, model) as (device, _):
            factors[f"hopping, {n + 2} electrodes ({model.params.n_sites} sites)"] = (
                realtime_factor(device, list(range(1, n + 1)), size.speed_seconds / 2)
            )
    for name, factor in factors.items():
        sim_rows.append([name, f"{factor:.1f}×"])
    section.lines += [
        "Simulated seconds per wall-clock second, 1 s records at 10 kS/s through the whole "
        "simulated bench behind the safety layer (all chain effects on):",
        "",
        *md_table(["device model", "× real time"], sim_rows),
        "",
    ]
    demod_rows = []
    rng = np.random.default_rng(0)
    window = 0.1
    n_windows = 50
    n_samples = int(RATE_HZ * window)
    throughput: dict[str, float] = {}
    for n_tones in (5, 40):
        plan = plan_frequencies(
            RATE_HZ,
            window,
            n_tones,
            band_hz=(200, 1000),
            min_spacing_hz=None,
            mains_hz=[],
            max_order=3 if n_tones <= 10 else 2,
        )
        freqs = plan.frequencies_hz
        data = rng.normal(0, 1e-9, (n_windows, n_samples))
        flat = data.ravel()
        total = n_windows * n_samples

        def lockin(freqs: tuple[float, ...] = freqs, flat: np.ndarray = flat) -> object:
            return StreamingLockIn(RATE_HZ, freqs, time_constant_s=0.01, order=4).process(flat)

        def least_squares(freqs: tuple[float, ...] = freqs, data: np.ndarray = data) -> object:
            return fit_tones(data, RATE_HZ, freqs)

        def boxcar(freqs: tuple[float, ...] = freqs, data: np.ndarray = data) -> object:
            return boxcar_demodulate(data, RATE_HZ, freqs)

        rates = {
            "least squares": _rate(least_squares, total),
            "boxcar": _rate(boxcar, total),
            "streaming lock-in": _rate(lockin, total),
        }
        for name, rate in rates.items():
            throughput[f"{name}, {n_tones} tones"] = rate
            demod_rows.append([name, n_tones, f"{rate / 1e6:.2f}", f"{rate / RATE_HZ:.0f}×"])
    section.lines += [
        f"Demodulation throughput ({n_windows} windows of {window:g} s at 10 kS/s per call):",
        "",
        *md_table(["demodulator", "tones", "M samples/s", "× real time at 10 kS/s"], demod_rows),
        "",
    ]
    shipped = factors["hopping DNPU, 7 electrodes"]
    section.headline.append(
        Headline(
            "simulator speed, shipped DNPU (hopping model)",
            f"{shipped:.0f}× real time",
            "≥ 20×",
            shipped >= 20,
        )
    )
    if "MLP surrogate, 7 electrodes" in factors:
        value = factors["MLP surrogate, 7 electrodes"]
        section.headline.append(
            Headline(
                "simulator speed, shared surrogate", f"{value:.0f}× real time", "≥ 20×", value >= 20
            )
        )
    largest = list(factors)[-1]
    section.headline.append(
        Headline(f"simulator speed, {largest}", f"{factors[largest]:.1f}× real time", "–", None)
    )
    ls5 = throughput["least squares, 5 tones"]
    section.headline.append(
        Headline("least-squares demodulation, 5 tones", f"{ls5 / 1e6:.1f} M samples/s", "–", None)
    )
    fig, axes = new_figure(2, 1)
    axes[0].barh(list(factors), list(factors.values()))
    axes[0].axvline(20, color="k", ls="--", lw=0.8)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("× real time")
    axes[0].set_title("simulator speed")
    axes[1].barh(list(throughput), [v / 1e6 for v in throughput.values()])
    axes[1].set_xscale("log")
    axes[1].set_xlabel("M samples/s")
    axes[1].set_title("demodulation throughput")
    section.figures.append(save_figure(fig, out_dir, "speed.png"))
    section.wall_s = time.perf_counter() - start
    _ = fmt
    return section
