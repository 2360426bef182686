"""The frequency plan on one axis: tones, their mixing products, mains harmonics, collisions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QLabel, QVBoxLayout, QWidget

from labctl.gui.presenters import PlanMarkers

TONE_COLOUR = "#4fc3f7"
SECOND_COLOUR = "#ffb74d"
THIRD_COLOUR = "#ba68c8"
MAINS_COLOUR = "#9e9e9e"
COLLISION_COLOUR = "#ff1744"


def _sticks(freqs: Sequence[float], height: float) -> tuple[np.ndarray, np.ndarray]:
    """x, y of vertical sticks from 0 to ``height`` at ``freqs`` (for ``connect="pairs"``)."""
    f = np.asarray(freqs, dtype=np.float64)
    x = np.repeat(f, 2)
    y = np.tile([0.0, height], f.size)
    return x, y


class PlanView(QWidget):
    """Plot of a :class:`~labctl.gui.presenters.PlanMarkers` and the collision check in words."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(self)
        self.plot.setMenuEnabled(False)
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "frequency", units="Hz")
        item.hideAxis("left")
        item.setYRange(0, 1.45, padding=0)
        item.setMouseEnabled(y=False)
        item.showGrid(x=True, alpha=0.2)
        self.legend = item.addLegend(offset=(-5, 5), labelTextSize="8pt", colCount=5)
        self._band = pg.LinearRegionItem(
            (0, 1), movable=False, brush=pg.mkBrush(80, 160, 80, 35), pen=pg.mkPen(None)
        )
        item.addItem(self._band)
        self._mains = item.plot(
            pen=pg.mkPen(MAINS_COLOUR + "80", width=1, style=Qt.PenStyle.DashLine),
            connect="pairs",
            name="mains harmonics",
        )
        self._third = item.plot(
            pen=pg.mkPen(THIRD_COLOUR, width=1), connect="pairs", name="3rd order"
        )
        self._second = item.plot(
            pen=pg.mkPen(SECOND_COLOUR, width=2), connect="pairs", name="2nd order"
        )
        self._tones = item.plot(pen=pg.mkPen(TONE_COLOUR, width=3), connect="pairs", name="tones")
        self._collisions = item.plot(
            pen=None,
            symbol="x",
            symbolSize=14,
            symbolPen=pg.mkPen(COLLISION_COLOUR, width=3),
            name="collision",
        )
        self._labels: list[pg.TextItem] = []
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)
        self.markers: PlanMarkers | None = None

    def show_plan(self, markers: PlanMarkers | None, error: str | None = None) -> None:
        """Draw ``markers`` (None: clear, and show ``error`` instead)."""
        self.markers = markers
        item = self.plot.getPlotItem()
        for label in self._labels:
            item.removeItem(label)
        self._labels = []
        if markers is None:
            for curve in (self._tones, self._second, self._third, self._mains, self._collisions):
                curve.setData([], [])
            text = error or "no plan (the configuration does not validate)"
            self.summary.setText(f"<span style='color:#ff5252'>{text}</span>")
            return
        self._band.setRegion(markers.band_hz)
        self._mains.setData(*_sticks(markers.mains_hz, 1.15))
        self._third.setData(*_sticks(markers.third_hz, 0.35))
        self._second.setData(*_sticks(markers.second_hz, 0.6))
        self._tones.setData(*_sticks(markers.tones_hz, 1.0))
        self._collisions.setData(list(markers.collision_hz), [1.05] * len(markers.collision_hz))
        for k, (freq, name) in enumerate(zip(markers.tones_hz, markers.tone_labels, strict=True)):
            label = pg.TextItem(name.split()[-1], color=TONE_COLOUR, anchor=(0.5, 1.0))
            label.setPos(freq, 1.0 + 0.1 * (k % 2))  # staggered: neighbouring tones stay legible
            item.addItem(label)
            self._labels.append(label)
        item.setXRange(0, markers.span_hz, padding=0.01)
        tones = ", ".join(
            f"{n.split()[-1]} {f:g} Hz"
            for f, n in zip(markers.tones_hz, markers.tone_labels, strict=True)
        )
        if markers.collisions:
            shown = "; ".join(markers.collisions[:6])
            more = f" (+{len(markers.collisions) - 6} more)" if len(markers.collisions) > 6 else ""
            check = f"<span style='color:#ff5252'>collisions: {shown}{more}</span>"
        else:
            check = (
                "<span style='color:#66bb6a'>no collision: no 2nd/3rd-order product lands on a "
                "tone</span>"
            )
        self.summary.setText(f"tones: {tones}<br>{check}")
