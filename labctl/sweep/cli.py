"""``labctl sweep SWEEP.yaml [--scheduler ADDRESS] [--workers N] [--resume DIR]``.

Validates every grid point first (exit 2 on any problem, nothing runs), then runs the points in
parallel into one sweep directory with a progress bar, and prints and writes the summary
(``summary.md``). Ctrl-C stops every run after its current iteration (their devices shut down
at 0 V, finished points stay as they are); a second Ctrl-C (or SIGTERM) shuts them down at
once. ``--resume DIR`` skips the finished points and continues the others.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from labctl.exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SHUTDOWN_FAILED,
    EXIT_TERMINATED,
)

if TYPE_CHECKING:
    from labctl.sweep.executors import ExecutorInfo
    from labctl.sweep.spec import Sweep, SweepPoint

SUMMARY_FILE = "summary.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``labctl sweep`` arguments."""
    parser.add_argument("sweep", nargs="?", help="sweep file (YAML); not needed with --resume")
    parser.add_argument(
        "--scheduler",
        help="Dask scheduler address (tcp://host:port) instead of local processes; "
        "needs the 'cluster' extra",
    )
    parser.add_argument(
        "--workers", type=int, help="runs at once (default: sweep.workers, else the CPU count)"
    )
    parser.add_argument("--resume", metavar="DIR", help="continue the sweep in DIR")
    parser.add_argument(
        "--directory", metavar="DIR", help="sweep directory (default: sweep.directory)"
    )


def _load(args: argparse.Namespace) -> Sweep:
    from labctl.sweep.runner import read_sweep
    from labctl.sweep.spec import SweepSpecError, load_sweep

    if args.resume:
        if args.sweep:
            raise SweepSpecError("give either a sweep file or --resume DIR, not both")
        return read_sweep(args.resume)
    if not args.sweep:
        raise SweepSpecError("give a sweep file (or --resume DIR)")
    return load_sweep(args.sweep, Path(args.directory) if args.directory else None)


class _Progress:
    def __init__(self, total: int, initial: int) -> None:
        from tqdm import tqdm

        self.solved = 0
        self.ended = 0
        self._bar = tqdm(
            total=total, initial=initial, unit="run", dynamic_ncols=True, file=sys.stderr
        )

    def __call__(self, point: SweepPoint, result: dict[str, Any]) -> None:
        if result.get("complete"):
            self.ended += 1
            self.solved += bool(result.get("solved"))
            self._bar.update(1)
        else:
            self._bar.write(f"{point.id}: {result.get('status')} (unfinished)")
        self._bar.set_postfix_str(f"solved {self.solved}/{self.ended}")

    def close(self) -> None:
        self._bar.close()


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or resume) a sweep; the exit code (0 all points ended, 1 a run failed, 2 bad
    input, 3 electrodes not verified at 0 V, 130/143 interrupted)."""
    from tqdm import tqdm

    from labctl.sweep.executors import (
        ClusterUnavailable,
        dask_cluster,
        default_workers,
        local_pool,
        require_distributed,
    )
    from labctl.sweep.runner import SweepRunner, write_sweep
    from labctl.sweep.spec import SweepSpecError
    from labctl.sweep.summary import summary_markdown

    try:
        if args.workers is not None and args.workers < 1:
            raise SweepSpecError(f"--workers must be at least 1, got {args.workers}")
        sweep = _load(args)
        scheduler = args.scheduler or sweep.scheduler
        if scheduler:
            require_distributed()
        if not args.resume:
            write_sweep(sweep)
    except (SweepSpecError, ClusterUnavailable) as exc:
        print(f"labctl sweep: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    workers = args.workers or sweep.workers
    # on a cluster, without --workers, the cluster's worker threads bound the runs at once
    runner = SweepRunner(sweep, workers or (len(sweep.points) if scheduler else default_workers()))

    @contextlib.contextmanager
    def executor(slots: int) -> Iterator[ExecutorInfo]:
        if scheduler:
            with dask_cluster(scheduler, workers) as info:
                yield info
        else:
            with local_pool(slots) as info:
                yield info

    terminated = False

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        if runner.interrupted:
            tqdm.write("aborting: every run's electrodes ramp to 0 V now", sys.stderr)
            runner.request_abort()
        else:
            tqdm.write(
                "stopping: every run ends after its current iteration (Ctrl-C again to abort)",
                sys.stderr,
            )
            runner.request_stop()

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        nonlocal terminated
        terminated = True
        runner.request_abort()

    todo, done = runner.pending()
    print(
        f"sweep {sweep.name}: {len(sweep.points)} point(s), {len(done)} already finished, "
        f"in {sweep.directory}"
        + ("" if runner.slots > 1 or len(todo) < 2 else " (one run at a time)")
    )
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
    }
    progress = _Progress(len(sweep.points), len(done))
    try:
        outcome = runner.run(executor, progress)
    except ClusterUnavailable as exc:
        progress.close()
        print(f"labctl sweep: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.close()
    text = summary_markdown(sweep.name, sweep.points, outcome.results)
    (sweep.directory / SUMMARY_FILE).write_text(text, encoding="utf-8")
    print(text)
    print(f"summary: {sweep.directory / SUMMARY_FILE}")
    if outcome.shutdown_failed:
        print(
            "labctl sweep: electrodes not verified at 0 V after: "
            + ", ".join(outcome.shutdown_failed),
            file=sys.stderr,
        )
        return EXIT_SHUTDOWN_FAILED
    if outcome.interrupted:
        print(
            f"labctl sweep: interrupted; continue with `labctl sweep --resume {sweep.directory}`",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    if outcome.failed:
        print(f"labctl sweep: failed point(s): {', '.join(outcome.failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
