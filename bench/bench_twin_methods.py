"""What in-materia training gains over training on a twin, in device-seconds, per gate.

1. Sample the default simulated DNPU (``configs/twin_sample_sim.yaml``: hopping model, seed 0,
   paper noise) with ``labctl twin sample`` and fit a twin with ``labctl twin fit``.
2. Per gate and seed, train with ``twin_transfer`` (controls trained on the twin, applied
   once), ``twin_hge`` (in-materia HGE from the twin's solution) and ``hge`` (from random
   controls), on the device the twin was sampled from and on "the chip after a thermal cycle"
   (the simulated device with another seed: the twin is then out of date).

Device-seconds include the sampling for both twin methods (the sample file is given to them).

    python bench/bench_twin_methods.py [--points 100000] [--seeds 5] [--gates AND,OR,...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from labctl.cli import main as labctl
from labctl.config import merge_overrides, parse_config
from labctl.training.session import train_to_end

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
METHODS = ("twin_transfer", "twin_hge", "hge")


def _run(
    gate: str, method: str, seed: int, device_seed: int, folder: Path, twin: Path, samples: Path
) -> dict[str, Any]:
    data = yaml.safe_load((CONFIGS / f"{gate.lower()}_sim.yaml").read_text())
    override: dict[str, Any] = {
        "setup": {"backend": {"settings": {"seed": device_seed}}},
        "run": {
            "seed": seed,
            "directory": str(folder),
            "report": False,
            "max_iterations": 400,
        },
    }
    if method != "hge":
        override["method"] = {
            "name": method,
            "params": {"twin": str(twin), "samples": str(samples)},
        }
    data = merge_overrides(data, override)
    loaded = parse_config(yaml.safe_dump(data), source=folder / "bench.yaml")
    run = train_to_end(loaded)
    outcome = run.outcome
    run.store.close()
    assert outcome is not None
    return {"solved": outcome.solved, "device_s": outcome.device_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000, help="points sampled for the twin")
    parser.add_argument("--seeds", type=int, default=5, help="runs per gate and method")
    parser.add_argument("--gates", default="AND,OR,NAND,NOR,XOR,XNOR")
    parser.add_argument("--max-epochs", type=int, default=60)
    args = parser.parse_args()
    gates = args.gates.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["LABCTL_STATE_DIR"] = str(folder / "state")
        samples, twin = folder / "dnpu.h5", folder / "dnpu_twin.npz"
        sample_config = CONFIGS / "twin_sample_sim.yaml"
        if (
            labctl(
                [
                    "twin",
                    "sample",
                    str(sample_config),
                    "-o",
                    str(samples),
                    "--points",
                    str(args.points),
                    "--no-progress",
                ]
            )
            != 0
        ):
            raise SystemExit("sampling failed")
        if (
            labctl(
                ["twin", "fit", str(samples), "-o", str(twin), "--max-epochs", str(args.max_epochs)]
            )
            != 0
        ):
            raise SystemExit("fitting failed")
        rows = []
        for device, device_seed in (
            ("sampled device (seed 0)", 0),
            ("after a thermal cycle (seed 1)", 1),
        ):
            for gate in gates:
                for method in METHODS:
                    results = [
                        _run(gate, method, seed, device_seed, folder / "runs", twin, samples)
                        for seed in range(args.seeds)
                    ]
                    solved = [r["device_s"] for r in results if r["solved"]]
                    median = statistics.median(solved) if solved else float("nan")
                    rows.append((device, gate, method, len(solved), len(results), median))
                    print(
                        f"{device} {gate} {method}: {len(solved)}/{len(results)}, "
                        f"median {median:.1f} device-s",
                        flush=True,
                    )
    print(
        f"\ntwin: {args.points} points sampled (sines), fitted with `labctl twin fit "
        f"--max-epochs {args.max_epochs}`; device-s include the sampling for the twin methods\n"
    )
    print("| device | gate | method | solved | median device-s (solved runs) |")
    print("|---|---|---|---|---|")
    for device, gate, method, n_solved, n, median in rows:
        print(f"| {device} | {gate} | {method} | {n_solved}/{n} | {median:.1f} |")


if __name__ == "__main__":
    main()
