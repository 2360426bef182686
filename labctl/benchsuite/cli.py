"""``labctl bench``: arguments and the command (the parser lives in :mod:`labctl.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labctl.exit_codes import EXIT_BAD_INPUT, EXIT_OK

DEFAULT_OUT = "bench-results"
DEFAULT_RESULTS = "bench/RESULTS.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``labctl bench``."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--smoke", dest="size", action="store_const", const="smoke", help="tiny sizes (tests)"
    )
    size.add_argument(
        "--quick",
        dest="size",
        action="store_const",
        const="quick",
        help="a few minutes on 2 cores (the default)",
    )
    size.add_argument(
        "--full",
        dest="size",
        action="store_const",
        const="full",
        help="the sizes of the committed bench/RESULTS.md",
    )
    parser.set_defaults(size="quick")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--parts",
        help="comma-separated parts to run (crb, parallel, cost, training, speed; default all)",
    )
    parser.add_argument(
        "--readme-table",
        action="store_true",
        help="print the README figures block generated from --results, measure nothing",
    )
    parser.add_argument(
        "--results",
        default=DEFAULT_RESULTS,
        help=f"results file for --readme-table (default: {DEFAULT_RESULTS})",
    )


def command(args: argparse.Namespace) -> int:
    """Run the suite (or print the README block); the exit code."""
    from labctl.benchsuite.readme import ResultsFormatError, readme_block_from

    if args.readme_table:
        path = Path(args.results)
        if not path.is_file():
            print(f"labctl bench: --results: {path} not found", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            print(readme_block_from(path))
        except ResultsFormatError as exc:
            print(f"labctl bench: --results: {path}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return EXIT_OK
    from labctl.benchsuite.suite import PARTS, SIZES, run_suite

    parts = [p.strip() for p in args.parts.split(",") if p.strip()] if args.parts else None
    unknown = [p for p in parts or [] if p not in PARTS]
    if unknown:
        print(
            f"labctl bench: --parts: unknown part(s) {', '.join(unknown)}; choose from "
            f"{', '.join(PARTS)}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT

    def log(text: str) -> None:
        print(text, flush=True)

    words = ["labctl", "bench", f"--{args.size}", "--out", str(args.out)]
    if args.parts:
        words += ["--parts", args.parts]
    path = run_suite(SIZES[args.size], Path(args.out), log, parts, command=" ".join(words))
    print(f"wrote {path} and {path.parent / 'figures'}/*.png")
    return EXIT_OK
