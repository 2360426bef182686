"""The GUI's run browser on a long run: listing and replaying a 50 000-iteration store.

Builds a run store of ``--iterations`` XOR-shaped iterations (4 cases, 5 controls, as
``labctl train`` stores them) in a temporary folder, then, in a real offscreen Qt window:

- lists the folder (``RunBrowser.refresh``) and replays the run (``RunBrowser.open_run``),
  timing each until its signal arrives;
- records the lateness of a 10 ms timer in the GUI thread meanwhile (the browser reads in a
  worker thread, so the window must stay responsive).

    QT_QPA_PLATFORM=offscreen python bench/bench_run_browser.py [--iterations 50000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

from labctl.gui.run_browser import RunBrowser
from labctl.gui.workers import Relay
from labctl.run.store import IterationRecord, RunStore

TICK_MS = 10.0


def build_store(root: Path, iterations: int) -> Path:
    """A run of ``iterations`` synthetic iterations (s to build printed)."""
    config = (Path(__file__).resolve().parents[1] / "configs" / "xor_sim.yaml").read_text()
    store = RunStore.create(root, "gate-XOR", config)
    rng = np.random.default_rng(0)
    for k in range(iterations):
        store.append(
            IterationRecord(
                run_iteration=k,
                restart_index=k // 10_000,
                controls_v=rng.uniform(-1, 1, 5),
                outputs_a=rng.normal(0, 2e-8, 4),
                gradients_a_per_v=rng.normal(0, 2e-8, (4, 5)),
                gradient_stderr_a_per_v=np.full((4, 5), 1e-9),
                loss=float(1 + rng.random()),
                accuracy=0.75,
                separation_a=-1e-9,
                device_seconds=0.46 * (k + 1),
                wall_time_s=time.time(),
                extra={"cases": [0, 1, 2, 3]},
            )
        )
    store.set_status("finished")
    path = store.path
    store.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50_000)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        start = time.perf_counter()
        run = build_store(root, args.iterations)
        print(f"store of {args.iterations} iterations built in {time.perf_counter() - start:.1f} s")
        relay = Relay()
        browser = RunBrowser(relay, root)
        browser.show()
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(int(TICK_MS))
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        timings: dict[str, float] = {}

        def listed() -> None:
            timings["list"] = time.perf_counter() - timings["t0"]
            timings["t1"] = time.perf_counter()
            browser.open_run(run)

        def replayed(_replay: object) -> None:
            timings["replay"] = time.perf_counter() - timings["t1"]
            QTimer.singleShot(200, app.quit)

        browser.listed.connect(listed)
        browser.replayed.connect(replayed)
        timings["t0"] = time.perf_counter()
        QTimer.singleShot(0, browser.refresh)
        QTimer.singleShot(120_000, app.quit)  # a bound, whatever happens
        app.exec_()
        timer.stop()
        browser.shutdown()
    late = np.maximum(0.0, np.diff(ticks) * 1e3 - TICK_MS) if len(ticks) > 1 else np.zeros(0)
    print(f"list the runs folder: {timings.get('list', float('nan')):.2f} s")
    replay_s = timings.get("replay", float("nan"))
    print(f"replay the {args.iterations}-iteration run: {replay_s:.2f} s")
    if late.size:
        print(
            f"GUI thread meanwhile (10 ms timer, {late.size} ticks): lateness mean "
            f"{late.mean():.1f} ms, p99 {np.percentile(late, 99):.1f} ms, max {late.max():.1f} ms"
        )


if __name__ == "__main__":
    main()
