"""One training run at a time, executed in a worker thread, seen through its events.

:class:`RunManager` owns the run's :class:`~labctl.run.control.RunController`: Start creates
(or reopens) the run directory and calls :func:`labctl.training.session.execute` in a worker
thread; the run opens its own device there and hands it back through ``on_device`` (kept for
Park, and parked at once if Park was pressed while it opened). Pause, resume and stop are
state changes of the controller; abort runs the safe shutdown, so it is called from a worker
thread of its own. Every run event reaches the GUI through :class:`~labctl.gui.workers.EventBridge`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QObject, pyqtSignal

from labctl.config import LoadedConfig
from labctl.device.safety import SafeDevice, ShutdownFailed
from labctl.gui.workers import EventBridge, Relay, run_in_thread
from labctl.run.control import InvalidTransition, RunController
from labctl.run.state import TERMINAL_STATES, RunRequest, RunState
from labctl.run.store import IterationRecord
from labctl.training.session import TrainingRun, execute, new_run, resume_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStarted:
    """The run directory exists; the run is about to open its device."""

    path: Path
    loaded: LoadedConfig
    previous: tuple[IterationRecord, ...] = ()
    """Iterations already stored (a resumed run), without raw arrays."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended.

    Attributes:
        state: The terminal state.
        path: The run directory (None if it could not be created).
        summary: The run's final summary (as stored).
        shutdown_text: The device's last shutdown report in words (None: never opened).
        shutdown_ok: Whether the electrodes were verified at 0 V at the end.
        error: Why the run failed, in words.
        report_path: ``report.png`` when written.
    """

    state: RunState
    path: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    shutdown_text: str | None = None
    shutdown_ok: bool = True
    error: str | None = None
    report_path: Path | None = None


class RunManager(QObject):
    """Start, control and watch one run at a time.

    Args:
        relay: Delivers worker results to the GUI thread.
        park_requested: Read in the run's worker when its device opens: park it at once.
        on_parked_at_open: Called in the GUI thread with (device, report text) after that.

    Signals:
        run_event(object): Every run event (StateChanged, IterationCompleted, ...), GUI thread.
        started(RunStarted), device_opened(dict identity), finished(RunOutcome),
        abort_failed(str).
    """

    run_event = pyqtSignal(object)
    started = pyqtSignal(object)
    device_opened = pyqtSignal(object)
    finished = pyqtSignal(object)
    abort_failed = pyqtSignal(str)

    def __init__(
        self,
        relay: Relay,
        park_requested: Callable[[], bool] = lambda: False,
        on_parked_at_open: Callable[[SafeDevice, str], None] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._relay = relay
        self._park_requested = park_requested
        self._on_parked_at_open = on_parked_at_open
        self._bridge = EventBridge(self)
        self._bridge.run_event.connect(self.run_event.emit)
        self._controller: RunController | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._device: SafeDevice | None = None
        self._last_device: SafeDevice | None = None
        self._loaded: LoadedConfig | None = None
        self._path: Path | None = None

    # -- queries ----------------------------------------------------------------------------
    @property
    def controller(self) -> RunController | None:
        """The current (or last) run's controller."""
        return self._controller

    @property
    def state(self) -> RunState | None:
        """The run's state (None before the first run)."""
        return self._controller.state if self._controller is not None else None

    def allowed(self) -> tuple[RunRequest, ...]:
        """Requests the controller accepts now (none without a run)."""
        return self._controller.allowed_requests() if self._controller is not None else ()

    @property
    def active(self) -> bool:
        """A run is live, or its worker is still winding down."""
        if self._thread is not None and self._thread.is_alive():
            return True
        return self._controller is not None and self._controller.state not in TERMINAL_STATES

    @property
    def device(self) -> SafeDevice | None:
        """The run's open device (None before it opened and after the run ended)."""
        with self._lock:
            return self._device

    @property
    def last_device(self) -> SafeDevice | None:
        """The device of the current or last run, open or closed (tests read its bench)."""
        with self._lock:
            return self._last_device

    @property
    def device_pending(self) -> bool:
        """A run is live and its device not open yet."""
        return self.active and self.device is None

    @property
    def loaded(self) -> LoadedConfig | None:
        """The configuration of the current or last run."""
        return self._loaded

    @property
    def path(self) -> Path | None:
        """The run directory of the current or last run."""
        return self._path

    # -- control ----------------------------------------------------------------------------
    def start_new(self, loaded: LoadedConfig) -> None:
        """Create a run directory for ``loaded`` and run it."""
        self._loaded = loaded
        self._start(lambda: new_run(loaded), "GUI: start")

    def start_resume(self, run_dir: Path) -> None:
        """Continue the run in ``run_dir`` with its stored configuration."""
        self._start(lambda: resume_run(run_dir), "GUI: resume")

    def pause_or_resume(self) -> None:
        """Pause a running run, resume a paused one."""
        controller = self._controller
        if controller is None:
            return
        with contextlib.suppress(InvalidTransition):
            if controller.state is RunState.PAUSED:
                controller.resume("GUI: resume")
            else:
                controller.request_pause("GUI: pause")

    def stop(self) -> None:
        """End after the iteration in progress (everything saved)."""
        if self._controller is not None:
            with contextlib.suppress(InvalidTransition):
                self._controller.request_stop("GUI: stop")

    def abort(self, reason: str = "GUI: abort", then: Callable[[], None] | None = None) -> None:
        """Safe shutdown now: the abort hook ramps every electrode to 0 V (worker thread)."""
        controller = self._controller
        if controller is None or controller.state in TERMINAL_STATES:
            if then is not None:
                then()
            return

        def do_abort() -> None:
            with contextlib.suppress(InvalidTransition):
                controller.abort(reason)

        def done(_: object) -> None:
            if then is not None:
                then()

        def error(exc: BaseException) -> None:
            text = exc.report.summary() if isinstance(exc, ShutdownFailed) else repr(exc)
            log.error("abort: safe shutdown failed: %s", text)
            self.abort_failed.emit(text)
            if then is not None:
                then()

        run_in_thread(self._relay, do_abort, done, error, name="labctl-abort")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ended (tests, shutdown); whether it did."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- worker -----------------------------------------------------------------------------
    def _start(self, make: Callable[[], TrainingRun], reason: str) -> None:
        if self.active:
            raise RuntimeError("a run is already in progress")
        controller = RunController()
        self._controller = controller
        self._bridge.attach(controller.bus)
        with self._lock:
            self._device = None
        controller.start(reason)
        self._thread = threading.Thread(
            target=self._work, args=(controller, make), name="labctl-gui-run", daemon=True
        )
        self._thread.start()

    def _on_device(self, device: SafeDevice) -> None:
        """``execute``'s hook, in the worker thread, right after the device opened."""
        with self._lock:
            self._device = device
            self._last_device = device
        self._relay.call_soon(lambda: self.device_opened.emit(device.identity()))
        if self._park_requested():
            try:
                text = device.park().summary()
            except ShutdownFailed as exc:  # parked, but 0 V not verified: say so, loudly
                text = f"PARK NOT VERIFIED: {exc.report.summary()}"
                log.error("run device parked as it opened: %s", text)
            if self._on_parked_at_open is not None:
                callback = self._on_parked_at_open
                self._relay.call_soon(lambda: callback(device, text))

    def _work(self, controller: RunController, make: Callable[[], TrainingRun]) -> None:
        try:
            run = make()
        except Exception as exc:
            log.error("could not start the run: %s", exc)
            with contextlib.suppress(InvalidTransition):
                controller.fail(exc)
            outcome = RunOutcome(controller.state, None, error=str(exc))
            self._relay.call_soon(lambda: self._finished(outcome))
            return
        try:
            previous = tuple(run.store.iterations(include_raw=False))
        except Exception:
            previous = ()
        started = RunStarted(run.path, run.loaded, previous)
        self._relay.call_soon(lambda: self._started(started))
        error: str | None = None
        try:
            execute(run, controller, on_device=self._on_device)
        except ShutdownFailed as exc:
            error = f"the electrodes were not verified at 0 V: {exc.report.summary()}"
            log.error(error)
        except Exception as exc:
            error = repr(exc)
            log.exception("run worker failed")
        finally:
            with self._lock:
                self._device = None
        if controller.error is not None and error is None:
            error = repr(controller.error)
        report_path = None
        if run.outcome is not None and run.loaded.config.run.report:
            try:
                from labctl.training.report import write_report
                from labctl.training.trainer import build_task

                report_path = write_report(run.store, build_task(run.loaded), run.store.summary())
            except Exception as exc:
                log.warning("could not write the report: %s", exc)
        try:
            summary = run.store.summary()
        except Exception:
            summary = {}
        run.store.close()
        shutdown = run.shutdown_report
        outcome = RunOutcome(
            state=controller.state,
            path=run.path,
            summary=summary,
            shutdown_text=shutdown.summary() if shutdown is not None else None,
            shutdown_ok=shutdown.ok if shutdown is not None else True,
            error=error,
            report_path=report_path,
        )
        self._relay.call_soon(lambda: self._finished(outcome))

    def _started(self, started: RunStarted) -> None:
        self._loaded = started.loaded
        self._path = started.path
        self.started.emit(started)

    def _finished(self, outcome: RunOutcome) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(2.0)  # it only has to return: its last act was to queue this call
        log.info(
            "run %s ended: %s; electrodes: %s",
            outcome.path.name if outcome.path else "-",
            outcome.state.value,
            outcome.shutdown_text or "device never opened",
        )
        self.finished.emit(outcome)
