"""The manual panel: poke the chip before a run.

An operating point set with a slider and a spin box per electrode, each bounded by the
electrode's range (a value outside cannot be entered); a live readout of the output current
at that point (repeated short records through the safety layer, in the device session's
thread); an I–V sweep of one electrode; the gradient (and, on request, the curvature) at the
present point with error bars. These are ``labctl measure`` and ``labctl gradient`` from the
window (:mod:`labctl.gui.manual_ops`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]
from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labctl.config import LoadedConfig
from labctl.gui import manual_ops
from labctl.gui.device_session import DeviceSession, SessionInfo
from labctl.gui.fields import discard
from labctl.gui.presenters import (
    NANO,
    ElectrodeRange,
    RingBuffer,
    slider_to_volts,
    volts_to_slider,
)

log = logging.getLogger(__name__)


class ElectrodeControl(QWidget):
    """A slider and a spin box for one electrode, kept in step, bounded by its range."""

    value_changed = pyqtSignal(float)

    def __init__(self, electrode: ElectrodeRange, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.electrode = electrode
        self.label = QLabel(f"{electrode.name} ({electrode.role})", self)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(volts_to_slider(electrode.min_v), volts_to_slider(electrode.max_v))
        self.slider.setSingleStep(10)
        self.slider.setPageStep(100)
        self.spin = QDoubleSpinBox(self)
        self.spin.setObjectName(f"manual.{electrode.name}")
        self.spin.setDecimals(3)
        self.spin.setSingleStep(0.01)
        self.spin.setRange(electrode.min_v, electrode.max_v)  # nothing outside can be entered
        self.spin.setSuffix(" V")
        self.spin.setKeyboardTracking(False)
        self.spin.setToolTip(f"range [{electrode.min_v:g}, {electrode.max_v:g}] V")
        self.slider.setToolTip(self.spin.toolTip())
        rest = QPushButton("rest", self)
        rest.setToolTip(f"back to the resting voltage {electrode.rest_v:g} V")
        rest.clicked.connect(lambda: self.set_value(electrode.rest_v))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)
        layout.addWidget(rest)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)
        self.set_value(electrode.rest_v)

    def value(self) -> float:
        """The voltage set (V), always inside the range."""
        return float(self.spin.value())

    def set_value(self, value_v: float) -> None:
        """Set the voltage (clipped into the range, as the spin box does)."""
        self.spin.setValue(self.electrode.clamp(value_v))

    def _from_slider(self, position: int) -> None:
        value = self.electrode.clamp(slider_to_volts(position))
        if abs(value - self.spin.value()) > 5e-4:
            self.spin.setValue(value)

    def _from_spin(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(volts_to_slider(value))
        self.slider.blockSignals(False)
        self.value_changed.emit(float(value))


class ManualPanel(QWidget):
    """Operating point, live readout, I–V sweep and gradient on the session's device.

    Args:
        session: The device session (every record goes through its worker thread).
        config: Returns the configuration to measure with (the edited one when its setup is
            the connected one's, else the one the device was built from).
    """

    connect_requested = pyqtSignal()
    sweep_done = pyqtSignal(object)
    gradient_done = pyqtSignal(object)
    readout_done = pyqtSignal(object)

    def __init__(
        self,
        session: DeviceSession,
        config: Callable[[], LoadedConfig | None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._session = session
        self._config = config
        self._controls: list[ElectrodeControl] = []
        self._readout_busy = False
        self._history = RingBuffer(2000, 2)
        self._t0 = time.monotonic()
        self.last_sweep: manual_ops.SweepResult | None = None
        self.last_gradient: Mapping[str, Any] | None = None
        self._build()
        self.set_session(None)

    # ------------------------------------------------------------------ public
    def set_session(self, info: SessionInfo | None) -> None:
        """Build the electrode controls for the connected device (None: disable the panel)."""
        for control in self._controls:
            discard(control)
        self._controls = []
        while self._points_layout.count():
            item = self._points_layout.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                discard(widget)
        connected = info is not None
        if info is not None:
            for row, electrode in enumerate(info.electrodes):
                control = ElectrodeControl(electrode, self)
                self._points_layout.addWidget(control, row, 0)
                self._controls.append(control)
            self._sweep_electrode.clear()
            for electrode in info.electrodes:
                self._sweep_electrode.addItem(electrode.name)
            self._sweep_range_for(0)
            self._apply_measure_defaults()
            self._note.setText("")
        else:
            self._live.setChecked(False)
            self._note.setText("Connect the device to use this panel (Setup → Device session).")
        self._connect.setVisible(not connected)
        for widget in (
            self._live,
            self._sweep_button,
            self._gradient_button,
            self._sweep_electrode,
            self._sweep_start,
            self._sweep_stop,
            self._sweep_points,
        ):
            widget.setEnabled(connected)

    def controls(self) -> list[ElectrodeControl]:
        """The per-electrode controls, in setup order."""
        return list(self._controls)

    def control(self, name: str) -> ElectrodeControl:
        """The control of electrode ``name``."""
        for control in self._controls:
            if control.electrode.name == name:
                return control
        raise KeyError(name)

    def point(self) -> list[float]:
        """The operating point (V), every electrode in setup order."""
        return [c.value() for c in self._controls]

    def set_live(self, on: bool) -> None:
        """Switch the live readout on or off."""
        self._live.setChecked(on)

    def run_sweep(self) -> bool:
        """Sweep the chosen electrode; False when nothing could be queued."""
        loaded = self._config()
        if loaded is None or not self._controls:
            return False
        electrode = self._sweep_electrode.currentText()
        start, stop = self._sweep_start.value(), self._sweep_stop.value()
        points = self._sweep_points.value()
        window = self._window.value() / 1e3
        point = self.point()
        self._sweep_button.setEnabled(False)
        self._note.setText(f"sweeping {electrode} {start:+.3f} → {stop:+.3f} V …")
        return self._session.submit(
            lambda device: manual_ops.sweep(
                device, loaded, point, electrode, start, stop, points, window, window / 4
            ),
            self._sweep_finished,
            lambda exc: self._failed("sweep", exc, self._sweep_button),
        )

    def run_gradient(self) -> bool:
        """Measure the gradient at the present point; False when nothing could be queued."""
        loaded = self._config()
        if loaded is None or not self._controls:
            return False
        point = self.point()
        mode = self._mode.currentText()
        curvature = self._curvature.isChecked()
        self._gradient_button.setEnabled(False)
        self._note.setText("measuring the gradient …")
        return self._session.submit(
            lambda device: manual_ops.gradient(device, loaded, point, mode, curvature),
            self._gradient_finished,
            lambda exc: self._failed("gradient", exc, self._gradient_button),
        )

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        point_box = QGroupBox("Operating point (bounded by each electrode's range)", self)
        self._points_layout = QGridLayout(point_box)

        live_box = QGroupBox("Live readout", self)
        self._live = QCheckBox("live", live_box)
        self._live.toggled.connect(self._live_toggled)
        self._window = QSpinBox(live_box)
        self._window.setRange(2, 2000)
        self._window.setValue(20)
        self._window.setSuffix(" ms")
        self._window.setToolTip("averaging window of each readout record and sweep point")
        self.current_label = QLabel("I = – nA", live_box)
        self.current_label.setStyleSheet("QLabel { font-size: 20pt; font-weight: bold; }")
        self._live_plot = pg.PlotWidget(live_box)
        self._live_plot.setLabel("left", "I", units="nA")
        self._live_plot.setLabel("bottom", "time", units="s")
        self._live_plot.getPlotItem().setDownsampling(auto=True, mode="peak")
        self._live_plot.getPlotItem().setClipToView(True)
        self._live_curve = self._live_plot.plot(pen=pg.mkPen("#4fc3f7", width=1))
        top = QHBoxLayout()
        top.addWidget(self._live)
        top.addWidget(QLabel("window", live_box))
        top.addWidget(self._window)
        top.addStretch(1)
        top.addWidget(self.current_label)
        live_layout = QVBoxLayout(live_box)
        live_layout.addLayout(top)
        live_layout.addWidget(self._live_plot, 1)

        sweep_box = QGroupBox("I–V sweep (labctl measure)", self)
        self._sweep_electrode = QComboBox(sweep_box)
        self._sweep_electrode.currentIndexChanged.connect(self._sweep_range_for)
        self._sweep_start = QDoubleSpinBox(sweep_box)
        self._sweep_stop = QDoubleSpinBox(sweep_box)
        for spin in (self._sweep_start, self._sweep_stop):
            spin.setDecimals(3)
            spin.setSingleStep(0.05)
            spin.setSuffix(" V")
        self._sweep_points = QSpinBox(sweep_box)
        self._sweep_points.setRange(2, 10_000)
        self._sweep_points.setValue(25)
        self._sweep_button = QPushButton("Sweep", sweep_box)
        self._sweep_button.clicked.connect(self._sweep_clicked)
        self.sweep_plot = pg.PlotWidget(sweep_box)
        self.sweep_plot.setLabel("left", "I", units="nA")
        self.sweep_plot.setLabel("bottom", "V", units="V")
        self.sweep_curve = self.sweep_plot.plot(
            pen=pg.mkPen("#ffb74d", width=2), symbol="o", symbolSize=5, symbolBrush="#ffb74d"
        )
        self._sweep_errors = pg.ErrorBarItem(pen=pg.mkPen("#ffb74d"))
        self.sweep_plot.addItem(self._sweep_errors)
        row = QHBoxLayout()
        for widget in (
            QLabel("electrode"),
            self._sweep_electrode,
            QLabel("from"),
            self._sweep_start,
            QLabel("to"),
            self._sweep_stop,
            QLabel("points"),
            self._sweep_points,
            self._sweep_button,
        ):
            row.addWidget(widget)
        sweep_layout = QVBoxLayout(sweep_box)
        sweep_layout.addLayout(row)
        sweep_layout.addWidget(self.sweep_plot, 1)

        gradient_box = QGroupBox("Gradient at the point (labctl gradient)", self)
        self._mode = QComboBox(gradient_box)
        self._mode.addItems(["parallel", "sequential", "fd"])
        self._curvature = QCheckBox("curvature (Hessian)", gradient_box)
        self._gradient_button = QPushButton("Measure gradient", gradient_box)
        self._gradient_button.clicked.connect(self._gradient_clicked)
        self.gradient_plot = pg.PlotWidget(gradient_box)
        self.gradient_plot.setLabel("left", "∂I/∂V", units="nA/V")
        self.gradient_plot.addLegend(offset=(5, 5))
        self._gradient_bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush="#4fc3f7")
        self.gradient_plot.addItem(self._gradient_bars)
        self._gradient_errors = pg.ErrorBarItem(pen=pg.mkPen("w", width=2), beam=0.2)
        self.gradient_plot.addItem(self._gradient_errors)
        self._gradient_truth = self.gradient_plot.plot(
            pen=None,
            symbol="x",
            symbolSize=12,
            symbolPen=pg.mkPen("#ff5252", width=2),
            name="model (simulated)",
        )
        self.gradient_info = QLabel(gradient_box)
        self.gradient_info.setWordWrap(True)
        self.hessian_table = QTableWidget(gradient_box)
        self.hessian_table.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(QLabel("mode"))
        row.addWidget(self._mode)
        row.addWidget(self._curvature)
        row.addStretch(1)
        row.addWidget(self._gradient_button)
        gradient_layout = QVBoxLayout(gradient_box)
        gradient_layout.addLayout(row)
        gradient_layout.addWidget(self.gradient_plot, 2)
        gradient_layout.addWidget(self.gradient_info)
        gradient_layout.addWidget(self.hessian_table, 1)

        self._note = QLabel(self)
        self._note.setWordWrap(True)
        self._connect = QPushButton("Connect the device", self)
        self._connect.setToolTip("open the device configured in Setup (a session between runs)")
        self._connect.clicked.connect(self.connect_requested.emit)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(point_box)
        left_layout.addWidget(live_box, 1)
        left_layout.addWidget(self._note)
        left_layout.addWidget(self._connect)
        right = QSplitter(Qt.Orientation.Vertical, self)
        right.addWidget(sweep_box)
        right.addWidget(gradient_box)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _sweep_clicked(self) -> None:
        self.run_sweep()

    def _gradient_clicked(self) -> None:
        self.run_gradient()

    def _apply_measure_defaults(self) -> None:
        loaded = self._config()
        if loaded is None:
            return
        point = loaded.config.measure.operating_point
        for control in self._controls:
            if control.electrode.name in point:
                control.set_value(point[control.electrode.name])
        self._window.setValue(max(2, round(min(loaded.config.measure.window_s, 2.0) * 1e3)))
        sweep = loaded.config.measure.sweep
        if sweep is not None and self._sweep_electrode.findText(sweep.electrode) >= 0:
            self._sweep_electrode.setCurrentIndex(self._sweep_electrode.findText(sweep.electrode))
            self._sweep_start.setValue(sweep.start_v)
            self._sweep_stop.setValue(sweep.stop_v)
            self._sweep_points.setValue(sweep.points)

    def _sweep_range_for(self, index: int) -> None:
        if not 0 <= index < len(self._controls):
            return
        electrode = self._controls[index].electrode
        for spin in (self._sweep_start, self._sweep_stop):
            spin.setRange(electrode.min_v, electrode.max_v)
        self._sweep_start.setValue(electrode.min_v)
        self._sweep_stop.setValue(electrode.max_v)

    # ------------------------------------------------------------------ live readout
    def _live_toggled(self, on: bool) -> None:
        if on:
            self._t0 = time.monotonic()
            self._history.clear()
            self._next_readout()

    def _next_readout(self) -> None:
        if not self._live.isChecked() or self._readout_busy or not self._controls:
            return
        loaded = self._config()
        if loaded is None:
            return
        point = self.point()
        window = self._window.value() / 1e3
        self._readout_busy = True
        queued = self._session.submit(
            lambda device: manual_ops.readout(device, loaded, point, window, window / 4),
            self._readout_finished,
            self._readout_failed,
        )
        if not queued:
            self._readout_busy = False
            self._live.setChecked(False)

    def _readout_finished(self, reading: manual_ops.Readout) -> None:
        self._readout_busy = False
        mean_na, std_na = reading.mean_a * NANO, reading.std_a * NANO
        flag = "  SATURATED" if reading.saturated else ""
        self.current_label.setText(f"I = {mean_na:+.3f} ± {std_na:.3f} nA{flag}")
        self._history.append((time.monotonic() - self._t0, mean_na))
        data = self._history.view()
        self._live_curve.setData(data[:, 0], data[:, 1])
        self.readout_done.emit(reading)
        QTimer.singleShot(0, self._next_readout)

    def _readout_failed(self, exc: BaseException) -> None:
        self._readout_busy = False
        self._live.setChecked(False)
        self._note.setText(f"live readout stopped: {exc}")
        log.warning("live readout stopped: %s", exc)

    # ------------------------------------------------------------------ results
    def _sweep_finished(self, result: manual_ops.SweepResult) -> None:
        self._sweep_button.setEnabled(True)
        self.last_sweep = result
        volts = result.voltages_v
        mean = result.mean_a * NANO
        std = result.std_a * NANO
        self.sweep_curve.setData(volts, mean)
        self._sweep_errors.setData(x=volts, y=mean, height=2 * std)
        self.sweep_plot.setLabel("bottom", result.electrode, units="V")
        flag = " (saturated)" if result.saturated else ""
        self._note.setText(f"sweep of {result.electrode}: {len(volts)} points{flag}")
        self.sweep_done.emit(result)

    def _gradient_finished(self, report: Mapping[str, Any]) -> None:
        self._gradient_button.setEnabled(True)
        self.last_gradient = report
        names: Sequence[str] = report["electrodes"]
        x = np.arange(len(names), dtype=np.float64)
        grad = np.asarray(report["gradient_a_per_v"]) * NANO
        err = np.asarray(report["stderr_a_per_v"]) * NANO
        self._gradient_bars.setOpts(x=x, height=grad, width=0.6)
        self._gradient_errors.setData(x=x, y=grad, top=err, bottom=err)
        truth = report.get("model_gradient_a_per_v")
        if truth is not None:
            self._gradient_truth.setData(x, np.asarray(truth) * NANO)
        else:
            self._gradient_truth.setData([], [])
        self.gradient_plot.getAxis("bottom").setTicks([list(enumerate(names))])
        info = [
            f"mode {report['mode']}, phase {report['phase_method']} ({report['calibration']}), "
            f"I = {report['dc_current_a'] * NANO:+.3f} nA, device time "
            f"{report['device_seconds']:.3f} s"
        ]
        if "cosine_similarity" in report:
            info.append(
                f"vs the model: cosine similarity {report['cosine_similarity']:.5f}, relative "
                f"error {report['relative_error']:.2%}"
            )
        hessian = report.get("hessian_a_per_v2")
        if hessian is not None:
            self._show_hessian(names, hessian, report.get("hessian_stderr_a_per_v2"))
            if "hessian_relative_error" in report:
                info.append(
                    f"Hessian vs the model: relative error {report['hessian_relative_error']:.2%}"
                )
        else:
            self.hessian_table.setVisible(False)
        if report.get("saturated"):
            info.append("SATURATED")
        self.gradient_info.setText("<br>".join(info))
        self._note.setText("gradient measured")
        self.gradient_done.emit(report)

    def _show_hessian(
        self, names: Sequence[str], hessian: Sequence[Sequence[float]], stderr: Any
    ) -> None:
        table = self.hessian_table
        n = len(names)
        table.setRowCount(n)
        table.setColumnCount(n)
        table.setHorizontalHeaderLabels(list(names))
        table.setVerticalHeaderLabels(list(names))
        for i in range(n):
            for j in range(n):
                value = hessian[i][j] * NANO
                text = f"{value:+.2f}"
                if stderr is not None:
                    text += f" ± {stderr[i][j] * NANO:.2f}"
                item = QTableWidgetItem(text)
                item.setFlags(
                    Qt.ItemFlags(Qt.ItemFlag.ItemIsSelectable) | Qt.ItemFlag.ItemIsEnabled
                )
                table.setItem(i, j, item)
        table.setToolTip("∂²I/∂Vᵢ∂Vⱼ in nA/V² ± standard error")
        table.resizeColumnsToContents()
        table.setVisible(True)

    def _failed(self, what: str, exc: BaseException, button: QPushButton) -> None:
        button.setEnabled(True)
        self._note.setText(f"{what} failed: {exc}")
        log.error("%s failed: %s", what, exc)
