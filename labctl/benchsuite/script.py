"""Entry point shared by the thin ``bench/bench_*.py`` scripts: one part of the suite."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from labctl.homodyne.plan import PlanWarning


def main_for(part: str, argv: Sequence[str] | None = None, description: str = "") -> int:
    """Run one part of the suite and print its Markdown (``--size``, ``--out``)."""
    from labctl.benchsuite.suite import PARTS, SIZES

    parser = argparse.ArgumentParser(
        description=description or f"labctl benchmark suite, part {part!r}"
    )
    parser.add_argument("--size", choices=list(SIZES), default="quick", help="default quick")
    parser.add_argument("--out", default=f"bench-results/{part}", help="where the PNG figures go")
    args = parser.parse_args(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlanWarning)
        section = PARTS[part](SIZES[args.size], Path(args.out), log)
    print(f"## {section.title}\n")
    print("\n".join(section.lines))
    for name in section.figures:
        print(f"figure: {Path(args.out) / name}")
    print(f"wall time {section.wall_s:.0f} s")
    return 0
