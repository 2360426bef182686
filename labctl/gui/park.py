"""Park: every electrode to 0 V, whatever the run or the manual panel is doing.

:meth:`Parker.park` calls :meth:`~labctl.device.safety.SafeDevice.park` on every open device
(the run's and the session's) from a worker thread of its own: park is safe from any thread,
cancels the record in flight at the sample it reached and ramps to 0 V, so it never waits
behind a record. With no device open, it does what ``labctl park`` does (open the configured
setup, ramp to 0 V, close). While parked, a run's device that opens is parked at once
(:attr:`Parker.wants_parked`, read by the run worker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from PyQt5.QtCore import QObject, pyqtSignal

from labctl.config import LoadedConfig
from labctl.connect import build_device
from labctl.device.safety import SafeDevice, ShutdownFailed
from labctl.gui.workers import Relay, run_in_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParkResult:
    """What a park did: per device, its report in words; whether all ended verified at 0 V."""

    ok: bool
    lines: tuple[str, ...]
    holding: tuple[SafeDevice, ...]
    """The devices now held at 0 V (unpark releases them)."""

    @property
    def text(self) -> str:
        """The reports, one line each."""
        return "\n".join(self.lines)


def park_devices(
    devices: list[tuple[str, SafeDevice]], fallback: LoadedConfig | None
) -> ParkResult:
    """Park each open device; with none, ramp the configured setup to 0 V and close it.

    Runs in a worker thread. A park that cannot verify 0 V is reported (``ok=False``) with the
    layer's report, never raised.
    """
    lines: list[str] = []
    holding: list[SafeDevice] = []
    ok = True
    for label, device in devices:
        try:
            report = device.park()
            holding.append(device)
            lines.append(f"{label}: parked, {report.summary()}")
        except ShutdownFailed as exc:
            ok = False
            holding.append(device)
            lines.append(f"{label}: PARK NOT VERIFIED: {exc.report.summary()}")
        except Exception as exc:  # closed meanwhile (the run ended): nothing to hold
            lines.append(f"{label}: not parked ({exc})")
    if not devices:
        if fallback is None:
            return ParkResult(False, ("no device open and no valid configuration to park",), ())
        device = build_device(fallback)
        try:
            with device:
                report = device.park()
            lines.append(f"{fallback.setup.name}: no device was open; {report.summary()}, closed")
        except ShutdownFailed as exc:
            ok = False
            lines.append(f"{fallback.setup.name}: PARK NOT VERIFIED: {exc.report.summary()}")
    return ParkResult(ok, tuple(lines), tuple(holding))


class Parker(QObject):
    """The Park / Unpark buttons' logic.

    Args:
        relay: Delivers results to the GUI thread.
        devices: Returns the open devices to park, labelled (``[("run", d), ("manual", d)]``).
        fallback: Returns the configuration to park when no device is open (or None).
        pending: Whether a run is starting whose device is not open yet (it is parked as it
            opens, instead of opening the setup a second time).

    Signals:
        changed(): :attr:`parked` or :attr:`busy` changed.
        reported(bool, str): A park's outcome (ok, report in words).
    """

    changed = pyqtSignal()
    reported = pyqtSignal(bool, str)

    def __init__(
        self,
        relay: Relay,
        devices: Callable[[], list[tuple[str, SafeDevice]]],
        fallback: Callable[[], LoadedConfig | None],
        pending: Callable[[], bool] = lambda: False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._relay = relay
        self._devices = devices
        self._fallback = fallback
        self._pending = pending
        self._holding: tuple[SafeDevice, ...] = ()
        self._wants_parked = False
        self._busy = False
        self._parked = False

    @property
    def parked(self) -> bool:
        """Electrodes are held at 0 V until :meth:`unpark`."""
        return self._parked

    @property
    def busy(self) -> bool:
        """A park or unpark is under way."""
        return self._busy

    @property
    def wants_parked(self) -> bool:
        """Park was pressed and not yet undone (read from worker threads: a plain bool)."""
        return self._wants_parked

    @property
    def holding(self) -> tuple[SafeDevice, ...]:
        """The devices held at 0 V."""
        return self._holding

    def hold(self, device: SafeDevice, report_text: str) -> None:
        """A run's device was parked as it opened: hold it (and release it on unpark)."""
        if device not in self._holding:
            self._holding = (*self._holding, device)
        self._set(parked=True)
        self.reported.emit(True, f"run: parked as it opened, {report_text}")

    def park(self) -> None:
        """Park every open device now (in a worker thread)."""
        if self._busy:
            return
        self._wants_parked = True  # before looking for devices: a run opening now parks itself
        devices = self._devices()
        log.warning("PARK: ramping all electrodes to 0 V")
        if not devices and self._pending():
            self._set(parked=True)
            self.reported.emit(True, "the run's device is parked as soon as it opens")
            return
        fallback = self._fallback() if not devices else None
        self._set(busy=True)

        def done(result: ParkResult) -> None:
            self._holding = tuple(dict.fromkeys((*self._holding, *result.holding)))
            parked = bool(self._holding) or (self._wants_parked and self._pending())
            self._wants_parked = parked
            self._set(busy=False, parked=parked)
            (log.warning if result.ok else log.error)("park: %s", result.text)
            self.reported.emit(result.ok, result.text)

        def error(exc: BaseException) -> None:
            self._wants_parked = bool(self._holding)
            self._set(busy=False, parked=bool(self._holding))
            log.error("park failed: %r", exc)
            self.reported.emit(False, f"park failed: {exc!r}")

        run_in_thread(
            self._relay, lambda: park_devices(devices, fallback), done, error, name="labctl-park"
        )

    def unpark(self) -> None:
        """Release the parked devices (waiting records ramp up and replay)."""
        if self._busy:
            return
        holding = self._holding
        self._wants_parked = False
        self._set(busy=True)

        def release() -> None:
            for device in holding:
                device.unpark()

        def done(_: object) -> None:
            self._holding = tuple(d for d in self._holding if d not in holding)
            self._set(busy=False, parked=bool(self._holding))
            log.info("unparked")
            self.reported.emit(True, "unparked: records continue")

        def error(exc: BaseException) -> None:
            self._set(busy=False)
            self.reported.emit(False, f"unpark failed: {exc!r}")

        run_in_thread(self._relay, release, done, error, name="labctl-unpark")

    def forget(self, device: SafeDevice) -> None:
        """A device was closed (its run ended, the session closed): stop holding it."""
        self._holding = tuple(d for d in self._holding if d is not device)
        if not self._holding and not self._pending() and (self._parked or self._wants_parked):
            self._wants_parked = False
            self._set(parked=False)

    def _set(self, *, busy: bool | None = None, parked: bool | None = None) -> None:
        if busy is not None:
            self._busy = busy
        if parked is not None:
            self._parked = parked
        self.changed.emit()
