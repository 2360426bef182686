"""``labctl reproduce``: arguments and the command (the parser lives in :mod:`labctl.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from labctl.exit_codes import EXIT_OK

DEFAULT_OUT = "reproduce-results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``labctl reproduce``."""
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes (tests): a few points, one gate, a few iterations",
    )


def command(args: argparse.Namespace) -> int:
    """Regenerate the figures; the exit code."""
    from labctl.reproduce.report import SIZES, reproduce

    def log(text: str) -> None:
        print(text, flush=True)

    words = ["labctl", "reproduce", "--out", str(args.out)] + (["--smoke"] if args.smoke else [])
    size = SIZES["smoke" if args.smoke else "full"]
    path = reproduce(size, Path(args.out), log, " ".join(words))
    print(f"wrote {path} and {path.parent / 'figures'}/*.png")
    return EXIT_OK
