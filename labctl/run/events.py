"""Synchronous, thread-safe event bus and the event types a run publishes.

A run executes in a worker thread; the GUI, the CLI and scripts subscribe to its :class:`EventBus`.
Callbacks run synchronously in the publishing thread, so a subscriber that needs to hand events to
another thread (a Qt view, for example) must queue them itself. A subscriber that raises is logged
and skipped: it never breaks the run or prevents the other subscribers from seeing the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labctl.run.state import RunState

if TYPE_CHECKING:
    from labctl.run.store.records import IterationRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateChanged:
    """The run controller moved from state ``old`` to state ``new`` because of ``reason``."""

    old: RunState
    new: RunState
    reason: str


@dataclass(frozen=True)
class IterationCompleted:
    """One training iteration finished and was committed to the run store."""

    record: IterationRecord


@dataclass(frozen=True)
class RunMessage:
    """A human-readable message for views; ``level`` is a :mod:`logging` level (e.g. 20 = INFO)."""

    level: int
    text: str


@dataclass(frozen=True)
class RunFinished:
    """The run reached the terminal ``state``; ``summary`` holds JSON-compatible final figures."""

    state: RunState
    summary: dict[str, Any] = field(default_factory=dict)


Event = StateChanged | IterationCompleted | RunMessage | RunFinished
Subscriber = Callable[[Event], None]


class EventBus:
    """Deliver events synchronously to every subscriber, in subscription order.

    Thread-safe: subscribing, unsubscribing and publishing may happen from any thread. Publishing
    iterates over a snapshot of the subscribers, so a callback may (un)subscribe without deadlock.
    Events published from one thread reach each subscriber in publication order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[int, Subscriber]] = []
        self._next_token = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Register ``callback`` for every future event; return a function that unsubscribes it.

        Calling the returned function more than once is harmless.
        """
        if not callable(callback):
            raise TypeError(f"subscriber must be callable, got {type(callback).__name__}")
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._subscribers.append((token, callback))

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [(t, cb) for t, cb in self._subscribers if t != token]

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Call every subscriber with ``event``; subscriber exceptions are logged, not raised."""
        with self._lock:
            snapshot = list(self._subscribers)
        for _, callback in snapshot:
            try:
                callback(event)
            except Exception:
                logger.exception(
                    "event subscriber %r raised while handling %s; the run continues",
                    callback,
                    type(event).__name__,
                )

    def subscriber_count(self) -> int:
        """Return the number of currently registered subscribers."""
        with self._lock:
            return len(self._subscribers)
