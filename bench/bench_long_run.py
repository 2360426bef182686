"""Long run: a simulated training run of many iterations, as fast as the simulator allows.

Measures, while the run grows:

- memory: the process's resident set size (VmRSS) after a warm-up and at the end, and the
  growth between them (the claim: under 10 %);
- the store stays queryable: a read-only ``RunStore`` opened beside the live writer counts the
  iterations and reads the last 100 of them, timed early and late in the run;
- ``labctl runs`` stays responsive: the command (a separate process) timed early and late.

The run is the XOR task of ``configs/xor_sim.yaml`` (hopping-network simulator, every chain
effect on) with a 10 ms window, no mains guard and second-order intermodulation rules, so an
iteration takes a few milliseconds of computer time; no stopping rule but the iteration budget.

Run: ``.venv/bin/python bench/bench_long_run.py [--iterations 50000] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from labctl.benchsuite.devices import fast_endless_xor_config
from labctl.config import parse_config
from labctl.run.control import RunController
from labctl.run.events import Event, IterationCompleted
from labctl.run.store import RunStore, list_runs
from labctl.training.session import execute, new_run

REPO = Path(__file__).resolve().parents[1]


def long_run_config(directory: Path, iterations: int) -> str:
    """configs/xor_sim.yaml made fast and endless (only the iteration budget stops it)."""
    return fast_endless_xor_config(directory, iterations, name="long-run")


def rss_bytes() -> int:
    """Resident set size of this process (bytes), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def probe_store(run_dir: Path) -> tuple[int, float]:
    """(iterations stored, seconds to open a read-only store, count and read the last 100)."""
    start = time.perf_counter()
    store = RunStore.open(run_dir, read_only=True)
    try:
        count = store.iteration_count()
        last = store.last_iteration()
        if last is not None:
            list(store.iter_records(since=last - 100, include_raw=False))
    finally:
        store.close()
    return count, time.perf_counter() - start


def time_labctl_runs(directory: Path) -> float:
    """Seconds ``labctl runs DIRECTORY`` takes (a separate process, start-up included)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "labctl.cli", "runs", str(directory)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000, help="iterations before the baseline")
    parser.add_argument("--keep", type=Path, help="keep the run in this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.keep or Path(scratch) / "runs"
        loaded = parse_config(
            long_run_config(directory, args.iterations), source=REPO / "configs" / "x.yaml"
        )
        controller = RunController()
        marks: dict[str, Any] = {}
        done = threading.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, IterationCompleted):
                n = event.record.run_iteration + 1
                if n == args.warmup:
                    marks["warm_rss"] = rss_bytes()
                    marks["warm_time"] = time.perf_counter()

        controller.bus.subscribe(on_event)
        controller.start("bench_long_run")
        run = new_run(loaded)
        started = time.perf_counter()
        outcome: dict[str, Any] = {}

        def worker() -> None:
            try:
                outcome["state"] = execute(run, controller)
            finally:
                done.set()

        thread = threading.Thread(target=worker, name="long-run")
        thread.start()
        probes: list[tuple[int, float, float, int]] = []  # iterations, store s, list_runs s, rss
        runs_cli: list[tuple[int, float]] = []
        while not done.wait(2.0):
            count, store_s = probe_store(run.store.path)
            t0 = time.perf_counter()
            list_runs(directory)
            probes.append((count, store_s, time.perf_counter() - t0, rss_bytes()))
            if len(probes) % 15 == 1:
                runs_cli.append((count, time_labctl_runs(directory)))
        thread.join()
        elapsed = time.perf_counter() - started
        end_rss = rss_bytes()
        final_count, final_store_s = probe_store(run.store.path)
        runs_cli.append((final_count, time_labctl_runs(directory)))

    iterations_s = (final_count - args.warmup) / (elapsed - (marks["warm_time"] - started))
    growth = end_rss / marks["warm_rss"] - 1.0
    early = [p for p in probes if p[0] < final_count / 4]
    late = [p for p in probes if p[0] >= 3 * final_count / 4]

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    print(f"run state: {outcome.get('state')}, iterations stored: {final_count}")
    print(f"wall time {elapsed:.1f} s, {iterations_s:.0f} iterations/s after warm-up")
    print(
        f"memory (RSS): {marks['warm_rss'] / 2**20:.1f} MiB after {args.warmup} iterations, "
        f"{end_rss / 2**20:.1f} MiB at {final_count}: growth {growth * 100:+.1f} %"
    )
    print(
        "store query (open read-only, count, read last 100) beside the live writer: median "
        f"{median([p[1] for p in early]) * 1e3:.1f} ms in the first quarter, "
        f"{median([p[1] for p in late]) * 1e3:.1f} ms in the last, "
        f"max {max(p[1] for p in probes) * 1e3:.1f} ms; at the end {final_store_s * 1e3:.1f} ms"
    )
    print(
        f"list_runs: median {median([p[2] for p in early]) * 1e3:.1f} ms early, "
        f"{median([p[2] for p in late]) * 1e3:.1f} ms late"
    )
    cli_early = [s for n, s in runs_cli if n < final_count / 4]
    cli_late = [s for n, s in runs_cli if n >= 3 * final_count / 4]
    print(
        f"`labctl runs` (a new process, {len(runs_cli)} times): median "
        f"{median(cli_early):.2f} s in the first quarter, {median(cli_late):.2f} s in the last, "
        f"max {max(s for _, s in runs_cli):.2f} s; {runs_cli[-1][1]:.2f} s at the end "
        f"({runs_cli[-1][0]} iterations)"
    )
    print(f"memory growth under 10 %: {'yes' if growth < 0.10 else 'NO'}")
    return 0 if growth < 0.10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
