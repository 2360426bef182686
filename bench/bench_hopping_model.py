"""Speed of the hopping-network device model on one core.

Prints the first-call time (numba JIT compile, or loading the on-disk cache), the evaluation rate
of ``current_a`` and ``current_and_gradient`` for several batch sizes, and the multiple of real
time for a 7-electrode record at 10 kS/s (target: >= 20x, i.e. >= 200 000 samples/s for the whole
chain, so >= ~300 000 samples/s for the model alone).

Run: ``.venv/bin/python bench/bench_hopping_model.py``. For a cold compile, point
``NUMBA_CACHE_DIR`` at an empty directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from simulated_hw.hopping import HoppingNetworkModel, HoppingParameters

RECORD_RATE_HZ = 10_000.0
TOTAL_SAMPLES = 400_000
REPEATS = 3


def _rate(fn: Callable[[np.ndarray], object], volts: np.ndarray, batch: int) -> float:
    """Best-of-REPEATS samples/s of ``fn`` over ``volts`` called in chunks of ``batch`` rows."""
    best = 0.0
    for _ in range(REPEATS):
        start = time.perf_counter()
        for lo in range(0, volts.shape[0], batch):
            fn(volts[lo : lo + batch])
        best = max(best, volts.shape[0] / (time.perf_counter() - start))
    return best


def main() -> None:
    start = time.perf_counter()
    model = HoppingNetworkModel()
    model.current_a(np.zeros(7))
    model.current_and_gradient(np.zeros(7))
    first_call_s = time.perf_counter() - start
    params = model.params
    print(
        f"hopping model: {params.n_sites} sites, {model.n_pairs} site pairs; "
        f"first call (construct + JIT/cache load) {first_call_s:.2f} s"
    )
    ranges = model.voltage_ranges_v
    volts = np.random.default_rng(0).uniform(ranges[:, 0], ranges[:, 1], (TOTAL_SAMPLES, 7))
    for batch in (100, 1_000, 10_000, TOTAL_SAMPLES):
        rate = _rate(model.current_a, volts, batch)
        print(
            f"current_a            batch {batch:>7d}: {rate:>10.0f} samples/s = "
            f"{rate / RECORD_RATE_HZ:6.1f}x real time at 10 kS/s"
        )
    rate = _rate(model.current_and_gradient, volts, TOTAL_SAMPLES)
    print(f"current_and_gradient batch {TOTAL_SAMPLES:>7d}: {rate:>10.0f} samples/s")
    for n_sites in (12, 20, 24):
        other = HoppingNetworkModel(HoppingParameters(n_sites=n_sites))
        other.current_a(np.zeros(7))
        rate = _rate(other.current_a, volts, TOTAL_SAMPLES)
        print(
            f"current_a with {n_sites} sites: {rate:>10.0f} samples/s = "
            f"{rate / RECORD_RATE_HZ:6.1f}x real time"
        )


if __name__ == "__main__":
    main()
