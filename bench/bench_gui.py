"""GUI responsiveness during a simulated training run at full speed.

The main window runs ``configs/xor_sim.yaml`` (the simulated DNPU with every chain effect on,
``realtime: false``: the worker trains as fast as the simulator goes, raw records stored so
the spectrum is drawn too). Before the first iteration the live plots' ring buffers are filled
with ``--prefill`` synthetic iterations (default 1e5), so every time series on screen holds
1e5 points and more while the run appends to them. Measured, for ``--seconds``:

- **event-loop latency** of the GUI thread: a precise ``QTimer`` is expected every 10 ms; the
  lateness of each tick (interval - 10 ms) is recorded (goal: never above 100 ms);
- **plot refresh rate**: frames drawn per second by the live plots' ~30 Hz timer, forced to
  redraw every tick (all curves re-set from the 1e5-point buffers) and counted as paint events
  of the plot canvas (goal: >= 30 frames per second, the timer's rate);
- after the run, the cost of one full frame (refresh + synchronous repaint): the frame rate
  the plots could reach without the timer's cap.

Run: ``.venv/bin/python bench/bench_gui.py [--seconds 20] [--prefill 100000]``.
``--screenshot docs/gui.png --prefill 0`` saves the window mid-run (a real run, no synthetic
history). Without a display the offscreen Qt platform is used (set ``QT_QPA_PLATFORM=xcb``
under Xvfb for a real window).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PyQt5.QtCore import QEvent, QObject, Qt, QTimer  # noqa: E402
from PyQt5.QtWidgets import QApplication  # noqa: E402

from labctl.config import merge_overrides  # noqa: E402
from labctl.gui.app import apply_dark_theme, create_window  # noqa: E402
from labctl.gui.main_window import MainWindow  # noqa: E402
from labctl.gui.run_manager import RunStarted  # noqa: E402

TICK_MS = 10


class PaintCounter(QObject):
    """Counts paint events of a widget (frames actually rendered)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:  # noqa: N802
        if event is not None and event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def write_config(directory: Path, iterations: int) -> Path:
    data = yaml.safe_load((REPO / "configs" / "xor_sim.yaml").read_text())
    data = merge_overrides(
        data,
        {
            "homodyne": {"calibration": {"file": str(directory / "xor.calibration.json")}},
            "run": {
                "max_iterations": iterations,
                "accuracy_hold_iterations": None,
                "store_raw": True,
                "report": False,
                "directory": str(directory / "runs"),
            },
        },
    )
    path = directory / "bench_gui.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def prefill(window: MainWindow, points: int) -> None:
    """Fill the live history with ``points`` synthetic iterations before iteration 0."""
    if points <= 0:
        return
    history = window.history
    rng = np.random.default_rng(0)
    iterations = np.arange(-points, 0, dtype=np.float64)
    history.iteration.extend(iterations)
    history.loss.extend(1.0 + np.abs(np.cumsum(rng.normal(0, 0.01, points))))
    history.accuracy.extend(rng.choice([0.5, 0.75, 1.0], points))
    history.device_s.extend(np.linspace(0, points * 0.5, points))
    n = history.controls.width
    walk = np.cumsum(rng.normal(0, 0.002, (points, n)), axis=0)
    history.controls.extend(np.clip(walk, -1.1, 1.1))
    history.version += 1


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement time (s)")
    parser.add_argument("--prefill", type=int, default=100_000, help="synthetic points per trace")
    parser.add_argument("--screenshot", type=Path, help="save the window mid-run (PNG)")
    parser.add_argument("--frames", type=int, default=60, help="frames timed after the run")
    parser.add_argument("--iterations", type=int, default=5000, help="the run's budget")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="labctl-bench-gui-"))
    os.environ.setdefault("LABCTL_STATE_DIR", str(workdir / "state"))
    app = QApplication(sys.argv[:1])
    apply_dark_theme(app)
    window = create_window(write_config(workdir, args.iterations), workdir / "runs")
    window.confirm = lambda _title, _text: True
    window.resize(1600, 1000)
    window.show()
    window.tabs.setCurrentWidget(window.live_plots)
    plots = window.live_plots

    # every tick is a frame with new data (as when the run is faster than 30 it/s), whatever
    # the run's pace: the time series are redrawn from the 1e5-point buffers at each tick
    plots.timer.timeout.disconnect()
    plots.timer.timeout.connect(
        lambda: setattr(window.history, "version", window.history.version + 1)
    )

    def redraw() -> None:
        plots.refresh()

    plots.timer.timeout.connect(redraw)
    paints = PaintCounter()
    viewport = plots.canvas.viewport()
    assert viewport is not None
    viewport.installEventFilter(paints)

    state: dict[str, Any] = {"ticks": []}

    def on_started(_started: RunStarted) -> None:
        prefill(window, args.prefill)

    window.runs.started.connect(on_started)  # after the window's own handler (which resets)

    ticker = QTimer()
    ticker.setTimerType(Qt.TimerType.PreciseTimer)
    ticker.setInterval(TICK_MS)
    ticker.timeout.connect(lambda: state["ticks"].append(time.perf_counter()))

    def begin() -> None:
        """The run is in (first iteration done): measure from here, in the real event loop."""
        if not window.history.latest:
            QTimer.singleShot(5, begin)
            return
        state["frames0"], state["paints0"] = plots.frames, paints.count
        state["its0"] = len(window.history)
        state["t0"] = time.perf_counter()
        ticker.start()
        if args.screenshot:
            QTimer.singleShot(round(args.seconds * 500), screenshot)
        QTimer.singleShot(round(args.seconds * 1000), end)

    def screenshot() -> None:
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(args.screenshot))
        state["shot"] = True

    def end() -> None:
        ticker.stop()
        state["elapsed"] = time.perf_counter() - state["t0"]
        state["frames"] = plots.frames - state["frames0"]
        state["painted"] = paints.count - state["paints0"]
        state["iterations"] = len(window.history) - state["its0"]
        state["points"] = len(window.history)
        app.quit()

    window.runs.started.connect(lambda _started: QTimer.singleShot(0, begin))
    window.start_run()
    app.exec_()  # the application's own event loop, as `labctl gui` runs it
    elapsed, frames, painted = state["elapsed"], state["frames"], state["painted"]
    iterations, points = state["iterations"], state["points"]
    shot_done = state.get("shot", False)

    window.runs.stop()
    while window.runs.active:
        app.processEvents()
        time.sleep(0.005)

    # one full frame, untimed by the 30 Hz cap: refresh every item, repaint synchronously
    cost = []
    for _ in range(args.frames):
        start = time.perf_counter()
        plots.refresh(force=True)
        viewport.repaint()
        cost.append(time.perf_counter() - start)
    frame_ms = 1e3 * np.asarray(cost)

    ticks = np.asarray(state["ticks"])
    lateness_ms = np.maximum(0.0, np.diff(ticks) * 1e3 - TICK_MS) if ticks.size > 1 else np.zeros(0)
    print(
        f"simulated run: {iterations} iterations in {elapsed:.1f} s "
        f"({iterations / elapsed:.1f} it/s), traces of {points} points (prefill {args.prefill})"
    )
    print(
        f"event-loop latency (10 ms timer, {lateness_ms.size} ticks): lateness mean "
        f"{lateness_ms.mean():.2f} ms, p50 {percentile(lateness_ms, 50):.2f} ms, p99 "
        f"{percentile(lateness_ms, 99):.2f} ms, max {lateness_ms.max(initial=0):.1f} ms; "
        f"ticks later than 100 ms: {int((lateness_ms > 100).sum())} (goal 0)"
    )
    print(
        f"plot refresh during the run: {frames / elapsed:.1f} frames/s, every trace redrawn "
        f"(goal >= 30; the timer's rate is {1e3 / plots.timer.interval():.0f}); "
        f"{painted / elapsed:.0f} paint events/s"
    )
    print(
        f"one full frame after the run (refresh + repaint, {len(cost)} frames): median "
        f"{np.median(frame_ms):.1f} ms, p95 {percentile(frame_ms, 95):.1f} ms "
        f"-> up to {1e3 / np.median(frame_ms):.0f} frames/s uncapped"
    )
    if args.screenshot and shot_done:
        print(f"screenshot: {args.screenshot}")
    window.close()
    for _ in range(200):
        app.processEvents()
        if not window.isVisible():
            break
        time.sleep(0.01)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
