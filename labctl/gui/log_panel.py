"""The log panel, fed by :mod:`logging` through a queued Qt signal.

:class:`QtLogHandler` is a :class:`logging.Handler` that may be called from any thread (the
run worker, the device session, park threads); it only formats the record and emits a signal,
which a queued connection delivers to :class:`LogPanel` in the GUI thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque

from PyQt5.QtCore import QObject, pyqtSignal, pyqtSlot
from PyQt5.QtGui import QColor, QTextCharFormat
from PyQt5.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from labctl.gui.workers import connect_queued

LEVEL_COLOURS = {
    logging.DEBUG: "#888888",
    logging.INFO: "#d0d0d0",
    logging.WARNING: "#f0b030",
    logging.ERROR: "#ff5050",
    logging.CRITICAL: "#ff2020",
}


class _Emitter(QObject):
    record = pyqtSignal(int, str, str)


class QtLogHandler(logging.Handler):
    """A logging handler whose records arrive as the Qt signal :attr:`emitter.record`.

    Args:
        level: Lowest level handled.
    """

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.emitter = _Emitter()
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and signal it (from whichever thread logged it)."""
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with contextlib.suppress(RuntimeError):  # the panel was deleted with its window
            self.emitter.record.emit(record.levelno, text, record.getMessage())


class LogPanel(QWidget):
    """Log messages with a level filter; keeps the last ``max_lines`` lines."""

    def __init__(self, max_lines: int = 5000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = QPlainTextEdit(self)
        self._text.setReadOnly(True)
        self._text.setMaximumBlockCount(max_lines)
        self._text.setLineWrapMode(QPlainTextEdit.NoWrap)
        self._text.setStyleSheet("QPlainTextEdit { background: #1e1e1e; font-family: monospace; }")
        self._level = QComboBox(self)
        for name in ("DEBUG", "INFO", "WARNING", "ERROR"):
            self._level.addItem(name, getattr(logging, name))
        self._level.setCurrentIndex(1)
        clear = QPushButton("Clear", self)
        clear.clicked.connect(self._text.clear)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show from", self))
        bar.addWidget(self._level)
        bar.addStretch(1)
        bar.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(self._text)
        self.handler = QtLogHandler(logging.DEBUG)
        connect_queued(self.handler.emitter.record, self._logged)
        self._recent: deque[str] = deque(maxlen=50)
        self.lines = 0

    def install(self, logger: logging.Logger | None = None) -> None:
        """Receive the records of ``logger`` (default the root logger)."""
        (logger or logging.getLogger()).addHandler(self.handler)

    def uninstall(self, logger: logging.Logger | None = None) -> None:
        """Stop receiving records."""
        (logger or logging.getLogger()).removeHandler(self.handler)

    @pyqtSlot(int, str, str)
    def _logged(self, level: int, text: str, message: str) -> None:
        self._recent.append(message)
        self.append(level, text)

    def append(self, level: int, text: str) -> None:
        """Add one line (GUI thread) if its level passes the filter."""
        if level < int(self._level.currentData()):
            return
        fmt = QTextCharFormat()
        colour = next(
            (c for lv, c in sorted(LEVEL_COLOURS.items(), reverse=True) if level >= lv), "#d0d0d0"
        )
        fmt.setForeground(QColor(colour))
        cursor = self._text.textCursor()
        cursor.movePosition(cursor.End)
        document = self._text.document()
        if document is not None and not document.isEmpty():
            cursor.insertBlock()
        cursor.insertText(text, fmt)
        self._text.setTextCursor(cursor)
        self._text.ensureCursorVisible()
        self.lines += 1

    def message(self, level: int, text: str) -> None:
        """Add a line that did not come through logging (a run message, unless logged)."""
        if text in self._recent:
            return
        stamp = time.strftime("%H:%M:%S")
        self.append(level, f"{stamp} {logging.getLevelName(level):<7} run: {text}")

    def text(self) -> str:
        """Everything shown (tests)."""
        return self._text.toPlainText()
