"""``labctl gui``: create the Qt application and the main window."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import pyqtgraph as pg  # type: ignore[import-untyped]
from PyQt5.QtGui import QColor, QPalette
from PyQt5.QtWidgets import QApplication

from labctl.exit_codes import EXIT_BAD_INPUT, EXIT_OK
from labctl.gui.main_window import MainWindow


def apply_dark_theme(app: QApplication) -> None:
    """Fusion with a dark palette (matches pyqtgraph's dark plots)."""
    app.setStyle("Fusion")
    palette = QPalette()
    base, window, text = QColor(30, 30, 30), QColor(45, 45, 48), QColor(220, 220, 220)
    roles = {
        QPalette.Window: window,
        QPalette.WindowText: text,
        QPalette.Base: base,
        QPalette.AlternateBase: window,
        QPalette.ToolTipBase: QColor(60, 60, 60),
        QPalette.ToolTipText: text,
        QPalette.Text: text,
        QPalette.Button: window,
        QPalette.ButtonText: text,
        QPalette.Highlight: QColor(42, 130, 218),
        QPalette.HighlightedText: QColor(0, 0, 0),
        QPalette.PlaceholderText: QColor(130, 130, 130),
    }
    for role, colour in roles.items():
        palette.setColor(role, colour)
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        palette.setColor(QPalette.Disabled, role, QColor(120, 120, 120))
    app.setPalette(palette)


def create_window(config: str | Path | None, runs: str | Path) -> MainWindow:
    """The main window for a configuration file (or None) and a runs directory."""
    pg.setConfigOptions(antialias=False, foreground="#d0d0d0", background="#1e1e1e")
    return MainWindow(Path(runs), Path(config) if config else None)


def display_problem(environ: Mapping[str, str], platform: str) -> str | None:
    """Why Qt would find no screen to open a window on (it aborts the process then), or None.

    Only on Linux and the BSDs, where a window needs an X or Wayland display unless a Qt
    platform is chosen explicitly (``QT_QPA_PLATFORM``, e.g. ``offscreen``).
    """
    if platform.startswith(("win", "darwin")) or environ.get("QT_QPA_PLATFORM"):
        return None
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY is set). Run it "
        "in a desktop session, under `xvfb-run -a labctl gui ...`, or set "
        "QT_QPA_PLATFORM=offscreen for a window nobody sees"
    )


def run_gui(args: argparse.Namespace) -> int:
    """Open the desktop application; returns the exit code when its window is closed.

    ``args.config``: a YAML configuration to open, or None; ``args.runs``: the runs directory
    of the run browser.
    """
    logging.getLogger("labctl").setLevel(logging.INFO)
    problem = display_problem(os.environ, sys.platform)
    if problem is not None and QApplication.instance() is None:
        print(f"labctl gui: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("labctl")
    apply_dark_theme(app)
    window = create_window(getattr(args, "config", None), getattr(args, "runs", "runs"))
    window.show()
    code = app.exec_()
    return EXIT_OK if code == 0 else code
