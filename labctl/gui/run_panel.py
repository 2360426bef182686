"""The run controls and the always-visible Park button, in one bar above every panel.

Start, Pause/Resume, Stop (end after the iteration, saved) and Abort (safe shutdown now); the
run state; and "Park: all electrodes to 0 V" / Unpark with the park report. Which buttons are
enabled comes from :func:`labctl.gui.presenters.run_controls` (derived from the controller's
``allowed_requests()``); the bar only shows it and emits what was clicked.
"""

from __future__ import annotations

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from labctl.gui.presenters import ControlStates

STATE_COLOURS = {
    "running": "#66bb6a",
    "paused": "#ffca28",
    "stopping": "#ffa726",
    "aborting": "#ef5350",
    "aborted": "#ef5350",
    "failed": "#ef5350",
    "finished": "#90caf9",
    "starting": "#a5d6a7",
}


class RunBar(QFrame):
    """Run and park controls.

    Signals:
        start_clicked, pause_clicked (pause or resume), stop_clicked, abort_clicked,
        park_clicked, unpark_clicked.
    """

    start_clicked = pyqtSignal()
    pause_clicked = pyqtSignal()
    stop_clicked = pyqtSignal()
    abort_clicked = pyqtSignal()
    park_clicked = pyqtSignal()
    unpark_clicked = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.StyledPanel)
        self.start_button = QPushButton("▶ Start", self)
        self.start_button.setToolTip("start a training run with the configuration in Setup")
        self.pause_button = QPushButton("Pause", self)
        self.pause_button.setToolTip("hold at the next iteration boundary / continue")
        self.stop_button = QPushButton("■ Stop", self)
        self.stop_button.setToolTip("end after the iteration in progress; everything is saved")
        self.abort_button = QPushButton("Abort", self)
        self.abort_button.setToolTip("safe shutdown now: every electrode ramped to 0 V")
        self.abort_button.setStyleSheet("QPushButton:enabled { color: #ff8a80; }")
        self.state_label = QLabel("no run", self)
        self.state_label.setMinimumWidth(110)
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.run_label = QLabel("", self)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.park_button = QPushButton("PARK: all electrodes to 0 V", self)
        self.park_button.setToolTip(
            "ramp every electrode to 0 V now and hold it there, whatever the run or the manual "
            "panel is doing (the record in flight is cancelled and replayed after Unpark)"
        )
        self.park_button.setStyleSheet(
            "QPushButton { background: #b71c1c; color: white; font-weight: bold; "
            "padding: 4px 10px; }"
            "QPushButton:disabled { background: #5d4037; color: #bdbdbd; }"
        )
        self.unpark_button = QPushButton("Unpark", self)
        self.unpark_button.setToolTip("let records ramp up from 0 V again")
        self.park_label = QLabel("", self)
        self.park_label.setWordWrap(True)
        self.park_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        for widget in (self.start_button, self.pause_button, self.stop_button, self.abort_button):
            layout.addWidget(widget)
        layout.addWidget(self.state_label)
        layout.addWidget(self.run_label, 1)
        layout.addWidget(self.park_button)
        layout.addWidget(self.unpark_button)
        layout.addWidget(self.park_label, 1)
        self.start_button.clicked.connect(self.start_clicked.emit)
        self.pause_button.clicked.connect(self.pause_clicked.emit)
        self.stop_button.clicked.connect(self.stop_clicked.emit)
        self.abort_button.clicked.connect(self.abort_clicked.emit)
        self.park_button.clicked.connect(self.park_clicked.emit)
        self.unpark_button.clicked.connect(self.unpark_clicked.emit)

    def show_controls(self, states: ControlStates) -> None:
        """Enable the buttons as ``states`` says and show the run state."""
        self.start_button.setEnabled(states.start)
        self.pause_button.setEnabled(states.pause)
        self.pause_button.setText(states.pause_label)
        self.stop_button.setEnabled(states.stop)
        self.abort_button.setEnabled(states.abort)
        self.park_button.setEnabled(states.park)
        self.unpark_button.setEnabled(states.unpark)
        colour = STATE_COLOURS.get(states.state_text, "#bdbdbd")
        self.state_label.setText(states.state_text.upper())
        self.state_label.setStyleSheet(
            f"QLabel {{ color: {colour}; font-weight: bold; border: 1px solid {colour}; "
            "border-radius: 3px; padding: 2px; }"
        )

    def show_park(self, ok: bool, text: str) -> None:
        """Show a park report (red when the electrodes were not verified at 0 V)."""
        colour = "#a5d6a7" if ok else "#ff5252"
        self.park_label.setText(text)
        self.park_label.setStyleSheet(f"QLabel {{ color: {colour}; }}")
        self.park_label.setToolTip(text)
