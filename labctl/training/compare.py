"""Device time to a solved gate, per training method, on the simulated DNPU.

``python -m labctl.training.compare --gate OR --seeds 0 1 2 3 4`` trains the gate from
``configs/<gate>_sim.yaml`` once per method and seed (``run.seed`` and the simulator's noise
seed both set to the seed; everything else as shipped) and prints a Markdown table: success
rate, and for the solved runs the median iterations and device-seconds (the safe device's
count, ramps and settling included, final evaluation excluded) to the stop (which waits for
``run.accuracy_hold_iterations`` perfect iterations) and to the first iteration of that perfect
streak. Runs are written to a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from labctl.config import merge_overrides, parse_config
from labctl.run.store import RunStore
from labctl.training.methods import method_names
from labctl.training.session import train_to_end

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def train_once(
    gate: str, method: str, seed: int, budget: int, folder: Path, config_dir: Path = CONFIGS
) -> dict[str, Any]:
    """Train ``gate`` by ``method`` with ``seed``; iterations, device-seconds, solved."""
    data = yaml.safe_load((config_dir / f"{gate.lower()}_sim.yaml").read_text())
    data = merge_overrides(
        data,
        {
            "setup": {"backend": {"settings": {"noise_seed": seed}}},
            "run": {
                "seed": seed,
                "max_iterations": budget,
                "directory": str(folder),
                "report": False,
            },
            "homodyne": {"calibration": {"file": str(folder / f"{gate}-{seed}.cal.json")}},
        },
    )
    data["method"] = {"name": method, "params": {}}
    path = folder / f"{gate}-{method}-{seed}.yaml"
    path.write_text(yaml.safe_dump(data))
    run = train_to_end(parse_config(path.read_text(), source=path))
    with RunStore.open(run.path, read_only=True) as store:
        records = store.iterations(include_raw=False)
    run.store.close()
    outcome = run.outcome
    assert outcome is not None
    first = len(records)
    while first > 0 and records[first - 1].accuracy >= 1.0:
        first -= 1  # back to the start of the final perfect streak
    return {
        "solved": outcome.solved,
        "iterations": len(records),
        "device_seconds": records[-1].device_seconds if records else 0.0,
        "first_perfect_s": records[first].device_seconds if first < len(records) else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gate", default="OR")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=300, help="iterations (GA: generations)")
    parser.add_argument("--methods", nargs="+", default=list(method_names()))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            results = [
                train_once(args.gate, method, seed, args.budget, Path(tmp)) for seed in args.seeds
            ]
            solved = [r for r in results if r["solved"]]
            median = (
                (
                    statistics.median(r["iterations"] for r in solved),
                    statistics.median(r["device_seconds"] for r in solved),
                    statistics.median(r["first_perfect_s"] for r in solved),
                )
                if solved
                else (float("nan"), float("nan"), float("nan"))
            )
            rows.append((method, len(solved), len(results), *median))
    out = sys.stdout
    out.write(f"gate {args.gate}, seeds {args.seeds}, budget {args.budget} iterations\n\n")
    out.write(
        "| method | solved | median iterations | median device-s to solved "
        "| median device-s to first 100 % |\n"
    )
    out.write("|---|---|---|---|---|\n")
    for method, n_solved, n, iterations, seconds, first in rows:
        out.write(f"| {method} | {n_solved}/{n} | {iterations:g} | {seconds:.1f} | {first:.1f} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
