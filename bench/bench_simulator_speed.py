"""Simulator speed as a multiple of real time, for both device models, on one core.

A 7-electrode record at 10 kS/s (a realistic HGE drive: DC plus five tones) is played through
the whole simulated bench (device model + amplifier, 1/f noise, drift, ADC) and through the
in-process backend behind the safety layer, as labctl uses it. The figure printed is
simulated seconds per wall-clock second (target: >= 20x for both models).

The process is pinned to one core and BLAS is limited to one thread before numpy loads.

Run: ``.venv/bin/python bench/bench_simulator_speed.py [--seconds 5]``
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.connect import build_device  # noqa: E402
from simulated_hw.surrogate import default_surrogate_path  # noqa: E402
from tests.conftest import config_from  # noqa: E402

RATE_HZ = 10_000.0
TONES_HZ = (220.0, 270.0, 330.0, 520.0, 620.0)


def drive(n_samples: int, rest: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Rest → slow ramp → operating point with 10 mV tones on e1..e5 → ramp → rest."""
    t = np.arange(n_samples) / RATE_HZ
    envelope = np.clip(np.minimum(t, t[-1] - t) / 0.1, 0.0, 1.0)
    wave = rest[:, None] + (point - rest)[:, None] * envelope[None, :]
    for k, f in enumerate(TONES_HZ):
        wave[k + 1] += 0.01 * envelope**2 * np.sin(2 * np.pi * f * t)
    wave[:, 0] = rest
    wave[:, -1] = rest
    return wave


def measure(name: str, config_name: str, override: dict, seconds: float) -> float:
    loaded = config_from(config_name, override)
    with build_device(loaded) as device:
        rest = device.rest_voltages()
        point = rest.copy()
        point[1:6] = [0.1, -0.2, 0.3, -0.1, 0.05]
        n = int(RATE_HZ)  # one-second records
        wave = drive(n, rest, point)
        device.apply(wave)  # warm-up: JIT cache load, first allocations
        start = time.perf_counter()
        played = 0.0
        while played < seconds:
            device.apply(wave)
            played += n / RATE_HZ
        wall = time.perf_counter() - start
    factor = played / wall
    print(f"{name:34s} {played:6.1f} s simulated in {wall:6.3f} s wall: {factor:6.1f}x real time")
    return factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="simulated seconds per model")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"7 electrodes, {RATE_HZ:.0f} S/s, 1 s records, all chain effects on, one core")
    measure("hopping-network physics model", "sim_dnpu.yaml", {}, args.seconds)
    if default_surrogate_path().is_file():
        measure("MLP surrogate (shared device)", "sim_surrogate.yaml", {}, args.seconds)
    else:
        print(f"surrogate skipped: {default_surrogate_path()} not found")
    print("target: >= 20x real time for both models")


if __name__ == "__main__":
    main()
