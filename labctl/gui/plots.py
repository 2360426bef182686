"""Live plots of a run (and of a replayed one), redrawn on a ~30 Hz timer, never per event.

Panels: loss and accuracy vs iteration (restarts marked); control voltages vs iteration inside
their ranges; the output current per input case with the decision threshold; the gradient per
control electrode with error bars (one marker per case); the latest raw record and its
spectrum with the tone frequencies and their mixing products marked (when the run stores raw
records; otherwise a note says how to get them).

The data come from a :class:`~labctl.gui.presenters.RunHistory` (preallocated ring buffers);
time series use pyqtgraph's peak downsampling and clip-to-view, so traces of 1e5 points stay
fluid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import QVBoxLayout, QWidget

from labctl.gui.presenters import (
    NANO,
    ControlInfo,
    RunHistory,
    amplitude_spectrum,
    case_outputs,
    mixing_frequencies_hz,
)
from labctl.homodyne.plan import FrequencyPlan
from labctl.run.store import IterationRecord

PALETTE = ("#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#f06292")
CLASS_BRUSH = {1.0: pg.mkBrush("#66bb6a"), 0.0: pg.mkBrush("#ef6c00")}
REFRESH_HZ = 30
SNAPSHOT_HZ = 10
"""The per-iteration panels (outputs, gradients, raw record, spectrum) redraw at most this
often: a bar chart changing 30 times a second cannot be read, and each redraw costs the GUI
thread time it shares (GIL) with the run's worker."""
SAMPLES_PER_PIXEL = 1.5
"""Auto-downsampling target (pyqtgraph's default, 5, draws 3x more segments for no gain)."""


def colour(index: int) -> str:
    """A distinct colour per curve."""
    return PALETTE[index % len(PALETTE)]


def _time_series(plot: pg.PlotItem) -> None:
    plot.setDownsampling(auto=True, mode="peak")
    plot.setClipToView(True)
    plot.showGrid(x=True, y=True, alpha=0.15)


def _trace(plot: pg.PlotItem, **kwargs: object) -> pg.PlotDataItem:
    """A curve for long traces: peak-downsampled to ~1.5 samples per pixel, drawn as segments."""
    curve = plot.plot(autoDownsampleFactor=SAMPLES_PER_PIXEL, **kwargs)
    curve.curve.setSegmentedLineMode("on")
    return curve


class LivePlots(QWidget):
    """The run's plots, drawn from ``history`` on a timer when it changed.

    Args:
        history: Where the iterations are (shared with whoever feeds it).
        refresh_hz: Redraw rate (0: no timer, call :meth:`refresh` yourself).
    """

    def __init__(
        self, history: RunHistory, refresh_hz: float = REFRESH_HZ, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.history = history
        self.frames = 0
        self._drawn_version = -1
        self._drawn_record: IterationRecord | None = None
        self._drawn_raw: int | None = None
        self._pinned: IterationRecord | None = None
        self._sample_rate_hz: float | None = None
        self._plan: FrequencyPlan | None = None
        self._store_raw = True
        self._n_controls = -1
        self._following = True
        self._x_span: tuple[float, float] | None = None
        self._last_snapshot = -1.0
        self._build()
        self.timer = QTimer(self)
        if refresh_hz > 0:
            self.timer.setInterval(round(1000 / refresh_hz))
            self.timer.timeout.connect(self._tick)
            self.timer.start()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.canvas = pg.GraphicsLayoutWidget(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        c = self.canvas
        self.loss_plot = c.addPlot(row=0, col=0, title="loss")
        self.accuracy_plot = c.addPlot(row=0, col=1, title="accuracy")
        self.outputs_plot = c.addPlot(row=0, col=2, title="output per case")
        self.controls_plot = c.addPlot(row=1, col=0, colspan=2, title="control voltages")
        self.gradient_plot = c.addPlot(row=1, col=2, title="∂I/∂V per control (latest)")
        self.raw_plot = c.addPlot(row=2, col=0, title="latest raw record")
        self.spectrum_plot = c.addPlot(row=2, col=1, colspan=2, title="spectrum of the record")
        for plot in (self.loss_plot, self.accuracy_plot, self.controls_plot):
            _time_series(plot)
            plot.setLabel("bottom", "iteration")
        self.accuracy_plot.setXLink(self.loss_plot)  # same width: linked pixel for pixel
        self.accuracy_plot.setYRange(0, 1.05)  # fixed: its axis is not redrawn every frame
        for plot in (self.loss_plot, self.controls_plot):
            plot.getViewBox().sigRangeChangedManually.connect(self._stop_following)
        self.controls_plot.setLabel("left", "V", units="V")
        self.outputs_plot.setLabel("left", "I", units="nA")
        self.outputs_plot.setLabel("bottom", "case")
        self.gradient_plot.setLabel("left", "∂I/∂V", units="nA/V")
        self.raw_plot.setLabel("left", "I", units="nA")
        self.raw_plot.setLabel("bottom", "time", units="s")
        _time_series(self.raw_plot)
        self.spectrum_plot.setLabel("left", "amplitude", units="nA")
        self.spectrum_plot.setLabel("bottom", "frequency", units="Hz")
        self.spectrum_plot.setLogMode(y=True)
        self.spectrum_plot.setDownsampling(auto=True, mode="peak")
        self.spectrum_plot.setClipToView(True)
        self.spectrum_plot.addLegend(offset=(-5, 5))

        self.loss_curve = _trace(self.loss_plot, pen=pg.mkPen("#4fc3f7", width=1))
        self.accuracy_curve = _trace(self.accuracy_plot, pen=pg.mkPen("#81c784", width=1))
        self.restart_marks = self.loss_plot.plot(
            pen=pg.mkPen("#9e9e9e", style=Qt.PenStyle.DotLine), connect="pairs"
        )
        self.loss_plot.setLogMode(y=True)
        self._loss_log = True
        self.control_curves: list[pg.PlotDataItem] = []
        self.range_lines: list[pg.InfiniteLine] = []
        self.controls_legend = self.controls_plot.addLegend(offset=(5, 5))
        self.cursors = [
            pg.InfiniteLine(
                angle=90, movable=False, pen=pg.mkPen("#ffffff", style=Qt.PenStyle.DashLine)
            )
            for _ in range(3)
        ]
        for line, plot in zip(
            self.cursors, (self.loss_plot, self.accuracy_plot, self.controls_plot), strict=True
        ):
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)

        self.output_bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.outputs_plot.addItem(self.output_bars)
        self.threshold_line = pg.InfiniteLine(
            angle=0,
            movable=False,
            pen=pg.mkPen("#ffffff", width=2, style=Qt.PenStyle.DashLine),
            label="threshold",
            labelOpts={"position": 0.97, "color": "#ffffff", "anchors": [(1, 1), (1, 1)]},
        )
        self.threshold_line.setVisible(False)
        self.outputs_plot.addItem(self.threshold_line)

        self.gradient_points = pg.ScatterPlotItem(size=7)
        self.gradient_errors = pg.ErrorBarItem(pen=pg.mkPen("#bdbdbd"), beam=0.05)
        self.gradient_plot.addItem(self.gradient_errors)
        self.gradient_plot.addItem(self.gradient_points)
        self.gradient_plot.addLine(y=0, pen=pg.mkPen("#616161"))

        self.raw_curve = _trace(self.raw_plot, pen=pg.mkPen("#4fc3f7", width=1))
        self.raw_note = pg.TextItem("", color="#bdbdbd", anchor=(0, 0))
        self.raw_plot.addItem(self.raw_note, ignoreBounds=True)
        self.spectrum_curve = _trace(self.spectrum_plot, pen=pg.mkPen("#e0e0e0", width=1))
        self.product_marks = self.spectrum_plot.plot(
            pen=pg.mkPen("#ffb74d", width=1, style=Qt.PenStyle.DotLine),
            connect="pairs",
            name="mixing products",
        )
        self.tone_marks = self.spectrum_plot.plot(
            pen=pg.mkPen("#4fc3f7", width=2), connect="pairs", name="tones"
        )

    # ------------------------------------------------------------------ context
    def set_context(
        self,
        controls: Sequence[ControlInfo],
        sample_rate_hz: float | None,
        plan: FrequencyPlan | None,
        store_raw: bool,
    ) -> None:
        """Describe the run: its controls (names, ranges), rate and plan, raw storage on/off."""
        self._sample_rate_hz = sample_rate_hz
        self._plan = plan
        self._store_raw = store_raw
        self._setup_controls(controls)
        self._drawn_version = -1
        self._drawn_raw = None
        self._drawn_record = None
        self._pinned = None
        self._following = True
        self._x_span = None
        for line in self.cursors:
            line.setVisible(False)
        self.raw_curve.setData([], [])
        self.spectrum_curve.setData([], [])
        self.tone_marks.setData([], [])
        self.product_marks.setData([], [])
        self.raw_note.setText(
            "waiting for the first record"
            if store_raw
            else "raw records are not stored in this run:\nturn on run.store_raw (Setup → "
            "Stopping and storage)\nto see the record and its spectrum"
        )

    def _setup_controls(self, controls: Sequence[ControlInfo]) -> None:
        for curve in self.control_curves:
            self.controls_plot.removeItem(curve)
        for line in self.range_lines:
            self.controls_plot.removeItem(line)
        self.controls_legend.clear()
        self.control_curves = []
        self.range_lines = []
        for k, info in enumerate(controls):
            curve = _trace(self.controls_plot, pen=pg.mkPen(colour(k), width=1), name=info.name)
            self.control_curves.append(curve)
        ranges = sorted({(c.min_v, c.max_v) for c in controls})
        for low, high in ranges:
            for value in (low, high):
                line = pg.InfiniteLine(
                    pos=value,
                    angle=0,
                    movable=False,
                    pen=pg.mkPen("#757575", style=Qt.PenStyle.DashLine),
                )
                self.controls_plot.addItem(line)
                self.range_lines.append(line)
        self._n_controls = len(controls)
        finite = [v for c in controls for v in (c.min_v, c.max_v) if np.isfinite(v)]
        if finite:
            low, high = min(finite), max(finite)
            pad = 0.05 * (high - low)
            self.controls_plot.setYRange(low - pad, high + pad, padding=0)  # the ranges, fixed
        else:
            self.controls_plot.enableAutoRange(y=True)
        names = [c.name for c in controls]
        self.gradient_plot.getAxis("bottom").setTicks([list(enumerate(names))])

    def pin(self, record: IterationRecord | None) -> None:
        """Show ``record`` in the per-iteration plots (a replay cursor); None: the latest."""
        self._pinned = record
        for line in self.cursors:
            line.setVisible(record is not None)
            if record is not None:
                line.setValue(record.run_iteration)
        self._drawn_version = -1

    # ------------------------------------------------------------------ drawing
    def _tick(self) -> None:
        self.refresh()

    def refresh(self, force: bool = False) -> bool:
        """Redraw if the history changed since the last frame; whether it drew."""
        history = self.history
        if not force and history.version == self._drawn_version:
            return False
        self._drawn_version = history.version
        x = history.iteration.column(0)
        loss = history.loss.column(0)
        if self._loss_log and loss.size and np.nanmin(loss) <= 0:
            self._loss_log = False
            self.loss_plot.setLogMode(y=False)
        self.loss_curve.setData(x, loss)
        self.accuracy_curve.setData(x, history.accuracy.column(0))
        controls = history.controls.view()
        if controls.shape[1] != len(self.control_curves) and len(history):
            n = controls.shape[1]
            self._setup_controls(
                history.controls_info
                if len(history.controls_info) == n
                else [ControlInfo(f"c{k}", np.nan, np.nan) for k in range(n)]
            )
        for k, curve in enumerate(self.control_curves):
            if k < controls.shape[1]:
                curve.setData(x, controls[:, k])
        self._draw_restarts()
        if x.size:
            self._follow_x(float(x[0]), float(x[-1]))
        now = time.monotonic()
        if force or now - self._last_snapshot >= 1.0 / SNAPSHOT_HZ:
            record = self._pinned or history.latest
            if record is not None and record is not self._drawn_record:
                self._last_snapshot = now
                self._drawn_record = record
                self._draw_record(record)
            self._draw_raw()
        self.frames += 1
        return True

    def _stop_following(self, *_args: object) -> None:
        """The user zoomed or panned: leave the x range alone (the 'A' button follows again)."""
        self._following = False

    def _follow_x(self, first: float, last: float) -> None:
        """Keep the iterations in view, growing the x range in 25 % steps, not every frame.

        A range that changes every frame makes pyqtgraph regenerate every axis and grid of the
        time series at each refresh; stepping it keeps them cached between steps.
        """
        views = (self.loss_plot.getViewBox(), self.controls_plot.getViewBox())
        if any(v.autoRangeEnabled()[0] for v in views):  # the 'A' button: follow again
            self._following = True
            for view in views:
                view.enableAutoRange(x=False)
            self._x_span = None
        if not self._following:
            return
        span = self._x_span
        if span is not None and span[0] == first and last <= span[1]:
            return
        width = max(10.0, 1.25 * (last - first))
        self._x_span = (first, first + width)
        for plot in (self.loss_plot, self.controls_plot):
            plot.setXRange(first, first + width, padding=0.02)

    def _draw_restarts(self) -> None:
        restarts = self.history.restarts
        if not restarts or not len(self.history):
            self.restart_marks.setData([], [])
            return
        loss = self.history.loss.column(0)
        finite = loss[np.isfinite(loss) & (loss > 0 if self._loss_log else True)]
        if finite.size == 0:
            return
        low, high = float(finite.min()), float(finite.max())
        xs = np.repeat(np.asarray(restarts, dtype=np.float64), 2)
        ys = np.tile([low, high], len(restarts))
        self.restart_marks.setData(xs, ys)

    def _draw_record(self, record: IterationRecord) -> None:
        outputs = case_outputs(self.history, record)
        x = np.arange(record.n_cases, dtype=np.float64)
        if outputs.targets is not None:
            brushes = [CLASS_BRUSH.get(float(t), pg.mkBrush("#9e9e9e")) for t in outputs.targets]
        else:
            brushes = [pg.mkBrush("#4fc3f7")] * record.n_cases
        self.output_bars.setOpts(x=x, height=outputs.outputs_na, width=0.7, brushes=brushes)
        if outputs.threshold_na is not None:
            self.threshold_line.setValue(outputs.threshold_na)
            self.threshold_line.setVisible(True)
        else:
            self.threshold_line.setVisible(False)
        self.outputs_plot.setTitle(
            f"output per case, it. {record.run_iteration} (separation "
            f"{outputs.separation_na:+.2f} nA)"
        )
        grads = np.asarray(record.gradients_a_per_v, dtype=np.float64) * NANO
        errs = np.asarray(record.gradient_stderr_a_per_v, dtype=np.float64) * NANO
        n_cases, n_controls = grads.shape
        offsets = np.linspace(-0.25, 0.25, n_cases) if n_cases > 1 else np.zeros(1)
        xs = (np.arange(n_controls)[None, :] + offsets[:, None]).ravel()
        ys = grads.ravel()
        brushes = [pg.mkBrush(colour(c)) for c in range(n_cases) for _ in range(n_controls)]
        self.gradient_points.setData(x=xs, y=ys, brush=brushes, pen=None)
        self.gradient_errors.setData(x=xs, y=ys, top=errs.ravel(), bottom=errs.ravel())
        self.gradient_plot.setTitle(f"∂I/∂V per control, it. {record.run_iteration} (per case)")

    def _draw_raw(self) -> None:
        history = self.history
        raw = history.latest_raw
        iteration = history.raw_iteration
        pinned = self._pinned
        if pinned is not None:
            if pinned.raw is not None and "record_a" in pinned.raw:
                raw = np.asarray(pinned.raw["record_a"], dtype=np.float64)
                iteration = pinned.run_iteration
            else:
                raw, iteration = None, None
        if iteration == self._drawn_raw:
            return
        self._drawn_raw = iteration
        if raw is None or self._sample_rate_hz is None:
            self.raw_curve.setData([], [])
            self.spectrum_curve.setData([], [])
            return
        self.raw_note.setText("")
        samples = np.asarray(raw, dtype=np.float64).reshape(-1) * NANO
        rate = self._sample_rate_hz
        self.raw_curve.setData(np.arange(samples.size) / rate, samples)
        self.raw_plot.setTitle(f"raw record, it. {iteration}")
        freqs, amplitude = amplitude_spectrum(samples, rate)
        keep = freqs > 0
        freqs, amplitude = freqs[keep], np.maximum(amplitude[keep], 1e-9)
        self.spectrum_curve.setData(freqs, amplitude)
        if self._plan is not None and amplitude.size:
            highest = max(
                mixing_frequencies_hz(self._plan)[1].max(initial=0.0), *self._plan.frequencies_hz
            )
            self.spectrum_plot.setXRange(0, min(freqs[-1], 1.15 * highest), padding=0)
            tones, products = mixing_frequencies_hz(self._plan)
            products = products[products <= freqs[-1]]
            low, high = float(amplitude.min()), float(amplitude.max()) * 2
            self.tone_marks.setData(np.repeat(tones, 2), np.tile([low, high], tones.size))
            self.product_marks.setData(
                np.repeat(products, 2), np.tile([low, high * 0.5], products.size)
            )
