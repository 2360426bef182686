"""Per-gate training success rate and time to solution: the default (screened HGE), plain HGE,
finite differences, SPSA and the GA.

A part of the benchmark suite (`labctl bench`, code in `labctl/benchsuite/training.py`); this
script runs that part alone and prints its Markdown table. ``--runs``, ``--methods``,
``--gates`` and ``--budget`` override the size's figures (e.g. 20 runs per gate of the default
against plain HGE).

Run: ``.venv/bin/python bench/bench_training.py [--size smoke|quick|full] [--out DIR]
[--runs N] [--methods screened_hge,hge] [--gates AND,XOR] [--budget SECONDS] [--jobs N]``
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path


def main() -> int:
    from labctl.benchsuite import training
    from labctl.benchsuite.suite import SIZES
    from labctl.homodyne.plan import PlanWarning

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="quick", help="default quick")
    parser.add_argument("--out", default="bench-results/training", help="where the PNG goes")
    parser.add_argument("--runs", type=int, help="runs per device, gate and method")
    parser.add_argument("--methods", help=f"comma-separated, of {', '.join(training.METHODS)}")
    parser.add_argument("--gates", help="comma-separated gate names")
    parser.add_argument("--budget", type=float, help="device-seconds per run")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()
    size = SIZES[args.size]
    changes: dict[str, object] = {}
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be at least 1")
        changes["training_runs"] = args.runs
    if args.gates:
        changes["training_gates"] = tuple(g.strip().upper() for g in args.gates.split(","))
    if args.budget is not None:
        if args.budget <= 0:
            parser.error("--budget must be positive")
        changes["training_device_s"] = args.budget
    size = dataclasses.replace(size, **changes)  # type: ignore[arg-type]
    methods = None
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",")]
        unknown = sorted(set(methods) - set(training.METHODS))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; choose from {list(training.METHODS)}")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlanWarning)
        section = training.run(size, Path(args.out), log, n_jobs=args.jobs, methods=methods)
    print(f"## {section.title}\n")
    print("\n".join(section.lines))
    for headline in section.headline:
        print(f"- {headline.quantity}: {headline.measured}")
    for name in section.figures:
        print(f"figure: {Path(args.out) / name}")
    print(f"wall time {section.wall_s:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
