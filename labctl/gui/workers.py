"""Threads of the GUI and the bridges that bring their results to the GUI thread.

- :class:`Relay`: runs callables in the GUI thread, handed over by a queued Qt signal from
  any thread. Every other piece here uses it; no worker ever calls a widget.
- :class:`JobThread`: one worker thread that runs submitted jobs in order (the device
  session's thread: every record of the manual panel goes through it).
- :func:`run_in_thread`: a one-shot worker thread (park, unpark, abort: they must not wait
  behind a record, and must not block the GUI).
- :class:`EventBridge`: subscribes to a run's :class:`~labctl.run.events.EventBus` and
  re-emits every event as a queued Qt signal (``run_event``), so views only ever see events
  in the GUI thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from PyQt5.QtCore import QObject, Qt, pyqtBoundSignal, pyqtSignal, pyqtSlot

from labctl.run.events import Event, EventBus

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]
ErrorCallback = Callable[[BaseException], None]
_Job = tuple[Callable[[], Any], Callback | None, ErrorCallback | None]


def connect_queued(signal: pyqtBoundSignal, slot: Callable[..., None]) -> None:
    """Connect ``signal`` to ``slot`` so the slot always runs later, in its object's thread."""
    signal.connect(slot, Qt.ConnectionType.QueuedConnection)  # type: ignore[call-arg]


class Relay(QObject):
    """Call functions in the thread this object lives in (the GUI thread).

    :meth:`call_soon` may be called from any thread; the function runs later, from the Qt
    event loop, through a queued connection.
    """

    _call = pyqtSignal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        connect_queued(self._call, self._run)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Queue ``fn()`` for the GUI thread."""
        try:
            self._call.emit(fn)
        except RuntimeError:  # the relay was deleted (window closed): nobody to tell
            log.debug("relay gone; dropped a callback")

    @pyqtSlot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("GUI callback failed")


def _deliver(
    relay: Relay,
    fn: Callable[[], Any],
    on_done: Callback | None,
    on_error: ErrorCallback | None,
) -> None:
    """Run ``fn`` here (a worker thread) and hand its result or error to the GUI thread."""
    try:
        result = fn()
    except BaseException as exc:
        if on_error is not None:
            handler, error = on_error, exc
            relay.call_soon(lambda: handler(error))
        else:
            log.error("background job failed: %r", exc, exc_info=exc)
        if not isinstance(exc, Exception):
            raise
        return
    if on_done is not None:
        relay.call_soon(lambda: on_done(result))


class JobThread:
    """A worker thread that runs jobs one at a time, in submission order.

    Args:
        relay: Where results are delivered (the GUI thread).
        name: Thread name (shows in logs and debuggers).
    """

    def __init__(self, relay: Relay, name: str) -> None:
        self._relay = relay
        self._queue: queue.Queue[
            tuple[Callable[[], Any], Callback | None, ErrorCallback | None] | None
        ] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[], Any],
        on_done: Callback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        """Queue ``fn`` for the worker; ``on_done(result)`` or ``on_error(exc)`` run in the GUI."""
        with self._lock:
            self._pending += 1
        self._queue.put((fn, on_done, on_error))

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return self._pending

    def stop(self, timeout: float | None = None) -> bool:
        """Finish the queued jobs, then end the thread; whether it ended within ``timeout``."""
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, on_done, on_error = item
            try:
                _deliver(self._relay, fn, on_done, on_error)
            except BaseException:
                log.exception("job thread stopped by a fatal error")
                return
            finally:
                with self._lock:
                    self._pending -= 1


def run_in_thread(
    relay: Relay,
    fn: Callable[[], Any],
    on_done: Callback | None = None,
    on_error: ErrorCallback | None = None,
    name: str = "labctl-gui-task",
) -> threading.Thread:
    """Run ``fn`` in a new daemon thread; deliver its result or error to the GUI thread."""
    thread = threading.Thread(
        target=_deliver, args=(relay, fn, on_done, on_error), name=name, daemon=True
    )
    thread.start()
    return thread


class EventBridge(QObject):
    """Run events, re-emitted in the GUI thread.

    :meth:`attach` subscribes to a bus; each event the run publishes (in its worker thread) is
    emitted as :attr:`run_event` through a queued connection, in publication order.
    """

    run_event = pyqtSignal(object)
    _queued = pyqtSignal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        connect_queued(self._queued, self._emit)
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, bus: EventBus) -> None:
        """Listen to ``bus`` (and stop listening to the previous one)."""
        self.detach()
        self._unsubscribe = bus.subscribe(self._on_event)

    def detach(self) -> None:
        """Stop listening."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @pyqtSlot(object)
    def _emit(self, event: Event) -> None:
        self.run_event.emit(event)

    def _on_event(self, event: Event) -> None:
        try:
            self._queued.emit(event)
        except RuntimeError:  # the bridge was deleted with its window
            self.detach()
