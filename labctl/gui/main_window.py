"""The main window: the run bar above four panels, the log below, the status bar.

It composes the pieces and wires them; it owns nothing that touches hardware itself:

- :class:`~labctl.gui.device_session.DeviceSession` (the device between runs, its thread);
- :class:`~labctl.gui.run_manager.RunManager` (runs in a worker, events queued to the GUI);
- :class:`~labctl.gui.park.Parker` (Park / Unpark from threads of their own).

Panels: Setup (configuration, device session, frequency plan), Manual (operating point,
readout, sweep, gradient), Live plots, Runs (browser and replay). Closing the window during a
run asks, then aborts the run (safe shutdown), parks its electrodes, waits for the worker and
closes the device session before it closes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtGui import QCloseEvent
from PyQt5.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from labctl.config import LoadedConfig
from labctl.device.safety import SafeDevice
from labctl.gui.device_session import DeviceSession, SessionInfo
from labctl.gui.log_panel import LogPanel
from labctl.gui.manual_panel import ManualPanel
from labctl.gui.park import Parker
from labctl.gui.plots import LivePlots
from labctl.gui.presenters import (
    ControlInfo,
    EtaEstimator,
    RunHistory,
    Validation,
    plan_for,
    run_controls,
    status_text,
)
from labctl.gui.run_browser import RunBrowser
from labctl.gui.run_manager import RunManager, RunOutcome, RunStarted
from labctl.gui.run_panel import RunBar
from labctl.gui.setup_panel import SetupPanel
from labctl.gui.workers import Relay
from labctl.run.events import IterationCompleted, RunFinished, RunMessage, StateChanged
from labctl.run.state import RunState

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 60.0
"""How long closing waits for a run and the device session to shut down safely."""


class MainWindow(QMainWindow):
    """The labctl application window.

    Args:
        runs_dir: The runs directory the browser shows.
        config_path: A configuration to open (None: a starter configuration).
    """

    def __init__(self, runs_dir: Path, config_path: Path | None = None) -> None:
        super().__init__()
        self.setWindowTitle("labctl")
        self.resize(1500, 950)
        self.relay = Relay(self)
        self.session = DeviceSession(self.relay, self)
        self.runs = RunManager(
            self.relay,
            park_requested=lambda: self.parker.wants_parked,
            on_parked_at_open=lambda device, text: self.parker.hold(device, text),
            parent=self,
        )
        self.parker = Parker(
            self.relay,
            devices=self._open_devices,
            fallback=self._park_fallback,
            pending=lambda: self.runs.device_pending,
            parent=self,
        )
        self.history = RunHistory()
        self.eta: EtaEstimator | None = None
        self._starting = False
        self._reconnect_after_run = False
        self._closing = False
        self._close_ready = False
        self._close_started = 0.0
        self._max_iterations: int | None = None
        self.confirm: Callable[[str, str], bool] = self._ask_dialog
        """Asks a yes/no question (title, text); scripts and tests may replace it."""

        self.run_bar = RunBar(self)
        self.setup_panel = SetupPanel(self)
        self.manual_panel = ManualPanel(self.session, self._manual_config, self)
        self.live_plots = LivePlots(self.history, parent=self)
        self.browser = RunBrowser(self.relay, runs_dir, self)
        self.log_panel = LogPanel(parent=self)
        self.log_panel.install()

        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.setup_panel, "Setup")
        self.tabs.addTab(self.manual_panel, "Manual")
        self.tabs.addTab(self.live_plots, "Live plots")
        self.tabs.addTab(self.browser, "Runs")
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addWidget(self.run_bar)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        dock = QDockWidget("Log", self)
        dock.setObjectName("log")
        dock.setWidget(self.log_panel)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.resizeDocks([dock], [150], Qt.Orientation.Vertical)
        self.status_label = QLabel("run: none", self)
        self.session_label = QLabel("manual session: disconnected", self)
        status_bar = self.statusBar()
        assert status_bar is not None  # QMainWindow creates it on first use
        status_bar.addWidget(self.status_label, 1)
        status_bar.addPermanentWidget(self.session_label)

        self._wire()
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(250)
        self._status_timer.timeout.connect(self.update_status)
        self._status_timer.start()
        self._close_timer = QTimer(self)
        self._close_timer.setInterval(50)
        self._close_timer.timeout.connect(self._continue_close)
        if config_path is not None:
            self.setup_panel.open_file(Path(config_path))
        self.browser.refresh()
        self.update_controls()

    # ------------------------------------------------------------------ wiring
    def _wire(self) -> None:
        bar = self.run_bar
        bar.start_clicked.connect(self.start_run)
        bar.pause_clicked.connect(self._pause_clicked)
        bar.stop_clicked.connect(self._stop_clicked)
        bar.abort_clicked.connect(lambda: self.runs.abort("GUI: abort"))
        bar.park_clicked.connect(self.parker.park)
        bar.unpark_clicked.connect(self.parker.unpark)
        self.parker.changed.connect(self.update_controls)
        self.parker.reported.connect(bar.show_park)
        self.runs.run_event.connect(self._on_run_event)
        self.runs.started.connect(self._on_run_started)
        self.runs.finished.connect(self._on_run_finished)
        self.runs.device_opened.connect(self._on_run_device)
        self.runs.abort_failed.connect(lambda text: bar.show_park(False, f"abort: {text}"))
        self.setup_panel.validated.connect(self._on_validated)
        self.setup_panel.connect_requested.connect(self.connect_session)
        self.setup_panel.disconnect_requested.connect(lambda: self.session.disconnect_device())
        self.setup_panel.path_changed.connect(lambda path: self.setWindowTitle(f"labctl — {path}"))
        self.session.changed.connect(self._on_session_changed)
        self.session.connected.connect(self._on_session_connected)
        self.session.disconnected.connect(self._on_session_disconnected)
        self.session.failed.connect(lambda text: bar.show_park(False, text))
        self.manual_panel.connect_requested.connect(self.connect_session)
        self.browser.resume_requested.connect(self.resume_run)
        self.browser.load_config_requested.connect(self._load_stored_config)

    # ------------------------------------------------------------------ queries
    @property
    def validation(self) -> Validation:
        """The edited configuration's latest validation."""
        return self.setup_panel.validation

    def _open_devices(self) -> list[tuple[str, SafeDevice]]:
        devices: list[tuple[str, SafeDevice]] = []
        run_device = self.runs.device
        if run_device is not None:
            devices.append(("run", run_device))
        session_device = self.session.device
        if session_device is not None:
            devices.append(("manual session", session_device))
        return devices

    def _park_fallback(self) -> LoadedConfig | None:
        return self.validation.loaded

    def _manual_config(self) -> LoadedConfig | None:
        info = self.session.info
        if info is None:
            return None
        edited = self.validation.loaded
        if edited is not None and edited.config.setup == info.loaded.config.setup:
            return edited
        return info.loaded

    # ------------------------------------------------------------------ actions
    def connect_session(self) -> None:
        """Open the configured device for the manual panel (worker thread)."""
        loaded = self.validation.loaded
        if loaded is None:
            self.run_bar.show_park(False, "fix the configuration before connecting")
            return
        if self.runs.active:
            self.run_bar.show_park(False, "a run owns the instruments: connect after it")
            return
        self.session.connect_device(loaded)

    def start_run(self) -> None:
        """Start a training run with the edited configuration."""
        validation = self.validation
        if not (validation.ok and validation.has_task) or self.runs.active or self._starting:
            return
        loaded = validation.loaded
        assert loaded is not None
        self._starting = True
        self.update_controls()
        if self.session.is_connected:
            self._reconnect_after_run = True
            log.info("closing the manual session: the run opens the instruments itself")
            self.session.disconnect_device(
                then=lambda: self._launch(lambda: self.runs.start_new(loaded))
            )
        else:
            self._launch(lambda: self.runs.start_new(loaded))

    def resume_run(self, path: Path) -> None:
        """Continue a stored run (from the browser)."""
        if self.runs.active or self._starting:
            self.run_bar.show_park(False, "a run is in progress")
            return
        self._starting = True
        self.update_controls()
        if self.session.is_connected:
            self._reconnect_after_run = True
            self.session.disconnect_device(
                then=lambda: self._launch(lambda: self.runs.start_resume(path))
            )
        else:
            self._launch(lambda: self.runs.start_resume(path))

    def _launch(self, start: object) -> None:
        try:
            start()  # type: ignore[operator]
        except Exception as exc:
            log.error("could not start the run: %s", exc)
            self.run_bar.show_park(False, f"could not start: {exc}")
        finally:
            self._starting = False
        self.tabs.setCurrentWidget(self.live_plots)
        self.update_controls()

    def _pause_clicked(self) -> None:
        self._note_if_parked("pauses")
        self.runs.pause_or_resume()

    def _stop_clicked(self) -> None:
        self._note_if_parked("stops")
        self.runs.stop()

    def _note_if_parked(self, what: str) -> None:
        if self.parker.parked and self.runs.device is not None:
            text = (
                f"the run is parked: it {what} at the next iteration boundary, after Unpark "
                "(the cancelled record is replayed first); Abort ends it now"
            )
            log.warning(text)
            self.run_bar.show_park(True, text)

    def _ask_dialog(self, title: str, text: str) -> bool:
        """A modal yes/no question (the default :attr:`confirm`)."""
        answer = QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No)
        return answer == QMessageBox.Yes

    # ------------------------------------------------------------------ run events
    def _on_run_started(self, started: RunStarted) -> None:
        loaded = started.loaded
        config = loaded.config
        setup = loaded.setup
        controls = [
            ControlInfo(
                n,
                setup.electrodes[setup.electrode_index(n)].min_v,
                setup.electrodes[setup.electrode_index(n)].max_v,
            )
            for n in config.perturbed_electrodes()
        ]
        targets = None
        try:
            from labctl.training.trainer import build_task

            task = build_task(loaded)
            targets = np.asarray((task.subset("train") if task.split is not None else task).targets)
        except Exception as exc:
            log.debug("no targets for the outputs plot: %s", exc)
        try:
            plan = plan_for(config)
        except Exception:
            plan = None
        self.history.reset(controls, targets)
        self.history.extend(started.previous)
        self.live_plots.set_context(controls, setup.sample_rate_hz, plan, config.run.store_raw)
        self.eta = EtaEstimator(config.run.max_iterations, config.run.max_device_seconds)
        self._max_iterations = config.run.max_iterations
        self.run_bar.run_label.setText(started.path.name)
        self.run_bar.run_label.setToolTip(str(started.path))
        log.info("run %s started", started.path.name)
        self.browser.refresh()
        self.update_controls()

    def _on_run_event(self, event: object) -> None:
        if isinstance(event, IterationCompleted):
            record = event.record
            self.history.add(record)
            if self.eta is not None:
                self.eta.update(record.run_iteration, record.wall_time_s, record.device_seconds)
        elif isinstance(event, StateChanged | RunFinished):
            self.update_controls()
            self.update_status()
        elif isinstance(event, RunMessage):
            self.log_panel.message(event.level, event.text)

    def _on_run_device(self, identity: dict[str, object]) -> None:
        log.info("run device open: %s", identity)
        self.update_controls()

    def _on_run_finished(self, outcome: RunOutcome) -> None:
        device = self.runs.last_device
        if device is not None:
            self.parker.forget(device)
        text = f"run ended: {outcome.state.value}"
        if outcome.shutdown_text:
            text += f"; electrodes: {outcome.shutdown_text}"
        if outcome.error:
            text += f"; {outcome.error}"
        self.run_bar.show_park(outcome.shutdown_ok and outcome.state is not RunState.FAILED, text)
        self.live_plots.refresh(force=True)
        self.update_controls()
        self.update_status()
        if outcome.path is not None:
            self.browser.refresh()
        if self._reconnect_after_run and not self._closing:
            self._reconnect_after_run = False
            self.connect_session()

    # ------------------------------------------------------------------ session
    def _on_session_changed(self) -> None:
        state = self.session.state
        self.session_label.setText(f"manual session: {state}")
        self.setup_panel.set_session(state, self.session.info)
        self.update_controls()

    def _on_session_connected(self, info: SessionInfo) -> None:
        self.setup_panel.set_session("connected", info)
        self.setup_panel.set_device_rate(info.sample_rate_hz)
        self.manual_panel.set_session(info)

    def _on_session_disconnected(self, text: str) -> None:
        self.manual_panel.set_session(None)
        self.setup_panel.set_device_rate(None)
        self.setup_panel.set_session("disconnected", None)
        for device in self.parker.holding:
            if device is not self.runs.device:
                self.parker.forget(device)

    def _on_validated(self, _validation: Validation) -> None:
        self.update_controls()

    def _load_stored_config(self, text: str, source: Path) -> None:
        if self.setup_panel.load_text(text, source, save_path=None):
            self.tabs.setCurrentWidget(self.setup_panel)
            log.info("loaded the configuration of %s (Save as… to keep it)", source.parent.name)

    # ------------------------------------------------------------------ view state
    def update_controls(self) -> None:
        """Enable the run and park controls for the present state."""
        validation = self.validation
        states = run_controls(
            self.runs.state,
            self.runs.allowed(),
            config_ok=validation.ok and not self._closing,
            has_task=validation.has_task,
            parked=self.parker.parked,
            park_busy=self.parker.busy,
            starting=self._starting or self.session.state in ("connecting", "disconnecting"),
        )
        self.run_bar.show_controls(states)
        self.setup_panel.set_connect_allowed(not self.runs.active and not self._closing)

    def update_status(self) -> None:
        """The status bar: run state, iteration, device time, ETA."""
        eta = self.eta
        self.status_label.setText(
            status_text(
                self.runs.state,
                eta.iteration if eta is not None else None,
                self._max_iterations,
                eta.device_seconds if eta is not None and eta.iteration is not None else None,
                eta.eta_s if eta is not None else None,
            )
        )

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802 (Qt's name)
        """Ask during a run; then abort it, park, wait for the worker and close the session."""
        if event is None:
            return
        if self._close_ready:
            self._cleanup()
            event.accept()
            return
        if self._closing:
            event.ignore()
            return
        if self.runs.active and not self.confirm(
            "Quit during a run?",
            "A run is in progress. Quit anyway?\n\nThe run is aborted (safe shutdown), every "
            "electrode is parked at 0 V, and the window closes once the run has ended.",
        ):
            event.ignore()
            return
        if (
            self.setup_panel.model.dirty
            and not self.runs.active
            and not self.confirm(
                "Unsaved configuration", "The configuration has unsaved changes. Quit anyway?"
            )
        ):
            event.ignore()
            return
        if self.runs.active or self.session.state != "disconnected":
            event.ignore()
            self._begin_close()
            return
        self._cleanup()
        event.accept()

    def _begin_close(self) -> None:
        self._closing = True
        self._close_started = time.monotonic()
        self.manual_panel.set_live(False)
        self.status_label.setText("closing: bringing every electrode to 0 V …")
        log.warning("closing: aborting the run and parking the electrodes")
        if self.runs.active:
            self.runs.abort("window closed", then=self._park_after_abort)
        if self.session.state == "connected":
            self.session.disconnect_device()
        self.update_controls()
        self._close_timer.start()

    def _park_after_abort(self) -> None:
        if self.runs.device is not None or self.session.device is not None:
            self.parker.park()

    def _continue_close(self) -> None:
        done = (
            not self.runs.active and self.session.state == "disconnected" and not self.parker.busy
        )
        if self.session.state == "connected":
            self.session.disconnect_device()
        timed_out = time.monotonic() - self._close_started > CLOSE_TIMEOUT_S
        if done or timed_out:
            if timed_out and not done:
                log.critical(
                    "closing: the run or the device session did not end within %.0f s; the "
                    "device's exit hook will still ramp it to 0 V",
                    CLOSE_TIMEOUT_S,
                )
            self._close_timer.stop()
            self._close_ready = True
            self.close()

    def _cleanup(self) -> None:
        self._status_timer.stop()
        self._close_timer.stop()
        self.live_plots.timer.stop()
        self.browser.plots.timer.stop()
        self.manual_panel.set_live(False)
        self.log_panel.uninstall()
        self.session.shutdown(2.0)
        self.browser.shutdown(2.0)
