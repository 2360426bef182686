"""A twin of the default simulated DNPU: sample 10⁵ points, fit, test RMSE against the noise.

Samples the hopping-network DNPU of ``configs/xor_sim.yaml`` (seed 0, the paper's noise level)
with ``labctl.twin.sampling`` (through the safety layer, as ``labctl twin sample`` does), fits the
brains-py architecture 7 → 5×90 → 1 (ReLU) with ``labctl.twin.fitting`` and prints, per drive:

- the test RMSE against the measured currents and against the noise floor of one point (from
  the noise record), and the RMSE against the noiseless model at the same voltages (what the
  twin gets wrong about the device itself);
- the device time the sampling took and the wall time of sampling and fitting.

The fit report (loss curves, predicted vs measured) goes to ``bench/figures/twin_fit_<drive>.png``.

Run: ``.venv/bin/python bench/bench_twin.py [--points 100000] [--waveform sine steps]
[--max-epochs 40] [--batch-size 512]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from labctl.config import load_config
from labctl.connect import build_device
from labctl.twin.fitting import FitSettings, fit_twin, save_report
from labctl.twin.sampling import SamplingPlan, read_samples, sample_device
from simulated_hw.hopping import HoppingNetworkModel

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "xor_sim.yaml"
FIGURES = REPO / "bench" / "figures"


def run(
    waveform: str, points: int, max_epochs: int, batch_size: int, workdir: Path
) -> dict[str, float]:
    loaded = load_config(CONFIG)
    plan = SamplingPlan(
        waveform=waveform,
        points=points,
        block_points=5000,
        window_s=0.001,
        settle_s=0.001 if waveform == "steps" else 0.01,
    )
    path = workdir / f"{waveform}.h5"
    t0 = time.perf_counter()
    with build_device(loaded) as device:
        sampled = sample_device(device, loaded, plan, path)
    t_sample = time.perf_counter() - t0
    data = read_samples(path)
    t0 = time.perf_counter()
    settings = FitSettings(max_epochs=max_epochs, batch_size=batch_size)
    result = fit_twin(
        data,
        settings,
        on_epoch=lambda e, tr, va: print(
            f"  epoch {e + 1}: train {tr:.3f} nA, validation {va:.3f} nA "
            f"({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
            flush=True,
        ),
    )
    t_fit = time.perf_counter() - t0
    truth_na = HoppingNetworkModel(seed=0).current_a(result.test_voltages_v) * 1e9
    FIGURES.mkdir(parents=True, exist_ok=True)
    save_report(result, FIGURES / f"twin_fit_{waveform}.png", title=f"{waveform}, {points} points")
    return {
        "points": points,
        "device_s": sampled.device_seconds,
        "noise_na": result.noise_floor_na,
        "rmse_na": result.test_rmse_na,
        "rmse_truth_na": float(np.sqrt(np.mean((result.test_predicted_na - truth_na) ** 2))),
        "spread_na": float(np.std(data.current_a) * 1e9),
        "epochs": len(result.val_rmse_na),
        "sample_s": t_sample,
        "fit_s": t_fit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument(
        "--waveform", nargs="+", choices=["sine", "steps"], default=["sine", "steps"]
    )
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for waveform in args.waveform:
            rows.append(
                (waveform, run(waveform, args.points, args.max_epochs, args.batch_size, Path(tmp)))
            )
    print(
        "| drive | points | sampling (device-s) | noise floor (nA) | test RMSE (nA) | "
        "RMSE / noise | RMSE vs noiseless model (nA) | current spread (nA) | epochs | "
        "wall: sample + fit (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for waveform, r in rows:
        print(
            f"| {waveform} | {r['points']:.0f} | {r['device_s']:.0f} | {r['noise_na']:.3f} | "
            f"{r['rmse_na']:.3f} | {r['rmse_na'] / r['noise_na']:.1f} | "
            f"{r['rmse_truth_na']:.3f} | {r['spread_na']:.1f} | {r['epochs']:.0f} | "
            f"{r['sample_s']:.0f} + {r['fit_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
