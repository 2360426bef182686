"""The device session the application owns between runs.

A :class:`~labctl.device.safety.SafeDevice` built from the current configuration, opened,
driven and closed in the session's worker thread (never the GUI thread). The manual panel
sends its records through :meth:`DeviceSession.submit`; a run needs the instruments itself, so
the session is closed (electrodes ramped to 0 V) before a run starts and may be reopened after.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from PyQt5.QtCore import QObject, pyqtSignal

from labctl.config import LoadedConfig
from labctl.connect import build_device
from labctl.device.safety import SafeDevice, ShutdownFailed
from labctl.gui.presenters import ElectrodeRange
from labctl.gui.workers import ErrorCallback, JobThread, Relay, run_in_thread

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class SessionInfo:
    """What the opened device says about itself.

    Attributes:
        identity: Per instrument name, its identity.
        electrodes: Every electrode with its range (V).
        sample_rate_hz: The rate the source runs at (coerced by the hardware).
        setup_name: ``setup.name`` of the configuration.
        loaded: The configuration the device was built from.
    """

    identity: dict[str, Any]
    electrodes: tuple[ElectrodeRange, ...]
    sample_rate_hz: float
    setup_name: str
    loaded: LoadedConfig


def _describe(device: SafeDevice, loaded: LoadedConfig) -> SessionInfo:
    electrodes = tuple(
        ElectrodeRange(e.name, e.min_v, e.max_v, e.rest_v, str(getattr(e.role, "value", e.role)))
        for e in device.electrodes
    )
    return SessionInfo(
        identity=device.identity(),
        electrodes=electrodes,
        sample_rate_hz=device.sample_rate_hz,
        setup_name=loaded.setup.name,
        loaded=loaded,
    )


class DeviceSession(QObject):
    """Open, use and close the configured device in a worker thread.

    Signals:
        connected(SessionInfo): The device is open.
        disconnected(str): The device was closed; the shutdown report in words.
        failed(str): Connecting or disconnecting failed (the message says why).
        changed(): The connection state changed (for enabling buttons).
    """

    connected = pyqtSignal(object)
    disconnected = pyqtSignal(str)
    failed = pyqtSignal(str)
    changed = pyqtSignal()

    def __init__(self, relay: Relay, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._relay = relay
        self._jobs = JobThread(relay, "labctl-device-session")
        self._lock = threading.Lock()
        self._device: SafeDevice | None = None
        self._info: SessionInfo | None = None
        self._state = "disconnected"

    # -- queries ----------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``disconnected``, ``connecting``, ``connected`` or ``disconnecting``."""
        return self._state

    @property
    def is_connected(self) -> bool:
        """Whether the device is open and usable."""
        return self._state == "connected"

    @property
    def info(self) -> SessionInfo | None:
        """What the open device said at connection (None when not connected)."""
        return self._info

    @property
    def device(self) -> SafeDevice | None:
        """The open device, for park/unpark from another thread (None when closed)."""
        with self._lock:
            return self._device

    @property
    def pending(self) -> int:
        """Jobs queued or running in the session thread."""
        return self._jobs.pending

    # -- connection -------------------------------------------------------------------------
    def connect_device(self, loaded: LoadedConfig) -> None:
        """Build and open the configured device in the session thread."""
        if self._state != "disconnected":
            return
        self._set_state("connecting")

        def job() -> tuple[SafeDevice, SessionInfo]:
            device = build_device(loaded)
            device.open()
            return device, _describe(device, loaded)

        def done(result: tuple[SafeDevice, SessionInfo]) -> None:
            device, info = result
            with self._lock:
                self._device = device
            self._info = info
            self._set_state("connected")
            log.info("connected to %s: %s", info.setup_name, info.identity)
            self.connected.emit(info)

        def error(exc: BaseException) -> None:
            self._set_state("disconnected")
            log.error("could not connect: %s", exc)
            self.failed.emit(f"could not connect: {exc}")

        self._jobs.submit(job, done, error)

    def disconnect_device(self, then: Callable[[], None] | None = None) -> None:
        """Close the device (every electrode ramped to 0 V); then call ``then`` (GUI thread).

        The close runs in its own thread, so a record that waits in the session thread (for
        example while parked) cannot hold it up: that record ends with ``DeviceShutDown``.
        """
        device = self.device
        if device is None or self._state != "connected":
            if then is not None:
                then()
            return
        self._set_state("disconnecting")

        def finish(text: str, ok: bool) -> None:
            with self._lock:
                self._device = None
            self._info = None
            self._set_state("disconnected")
            (log.info if ok else log.error)("disconnected: %s", text)
            self.disconnected.emit(text)
            if not ok:
                self.failed.emit(f"disconnect: {text}")
            if then is not None:
                then()

        def done(_: object) -> None:
            report = device.last_shutdown_report
            finish(report.summary() if report is not None else "closed", True)

        def error(exc: BaseException) -> None:
            text = exc.report.summary() if isinstance(exc, ShutdownFailed) else repr(exc)
            finish(text, False)

        run_in_thread(self._relay, device.close, done, error, name="labctl-disconnect")

    # -- work -------------------------------------------------------------------------------
    def submit(
        self,
        fn: Callable[[SafeDevice], T],
        on_done: Callable[[T], None] | None = None,
        on_error: ErrorCallback | None = None,
    ) -> bool:
        """Run ``fn(device)`` in the session thread; False (nothing queued) when not connected."""
        device = self.device
        if device is None or not self.is_connected:
            return False
        self._jobs.submit(lambda: fn(device), on_done, on_error)
        return True

    def shutdown(self, timeout: float = 10.0) -> bool:
        """End the session thread (after a disconnect); whether it ended in time."""
        return self._jobs.stop(timeout)

    def _set_state(self, state: str) -> None:
        self._state = state
        self.changed.emit()
