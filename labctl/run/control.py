"""Run control: an explicit, thread-safe state machine with cooperative checkpoints.

States and the requests that move between them are data, defined in :mod:`labctl.run.state`
(:data:`~labctl.run.state.TRANSITIONS`); this module enforces them. Control requests (start,
pause, resume, stop, abort) come from any thread (GUI, CLI, signal handler); the worker thread
that runs the training loop calls :meth:`RunController.checkpoint` at every iteration boundary
and ends the run with :meth:`~RunController.finish`, :meth:`~RunController.fail` or
:meth:`~RunController.mark_aborted`.
The simplest correct worker is :meth:`RunController.execute` (or
:meth:`~RunController.start_worker`) around a body like::

    def body(ctl: RunController) -> dict:
        for i in range(n_iterations):
            if not ctl.checkpoint():      # blocks while paused; False = stop or abort
                break
            ...one iteration...
        return {"best_loss": best}
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from labctl.run.events import Event, EventBus, RunFinished, RunMessage, StateChanged
from labctl.run.state import TERMINAL_STATES, TRANSITIONS, RunRequest, RunState

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AbortHook",
    "InvalidTransition",
    "RunControlError",
    "RunController",
    "RunRequest",
    "RunState",
    "WorkerBody",
]

logger = logging.getLogger(__name__)


class RunControlError(RuntimeError):
    """Base class for run-control errors."""


class InvalidTransition(RunControlError):
    """A request is not allowed in the controller's current state."""

    def __init__(self, state: RunState, request: RunRequest) -> None:
        self.state = state
        self.request = request
        self.allowed: tuple[RunRequest, ...] = tuple(TRANSITIONS[state])
        allowed_text = ", ".join(r.value for r in self.allowed) or "nothing (terminal state)"
        super().__init__(
            f"cannot {request.value!r} a run that is {state.value!r}; "
            f"allowed in this state: {allowed_text}"
        )


# What the hook returns (e.g. a shutdown report) is ignored.
AbortHook = Callable[[], object]
WorkerBody = Callable[["RunController"], Mapping[str, Any] | None]


class RunController:
    """Thread-safe run state machine; every transition publishes :class:`StateChanged`.

    Args:
        bus: Event bus to publish on; a new one is created when omitted.

    Events are delivered synchronously, in transition order, outside the internal lock, so
    subscribers may query the controller or issue requests from their callback.
    """

    def __init__(self, bus: EventBus | None = None) -> None:
        self._bus = bus if bus is not None else EventBus()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = RunState.IDLE
        self._abort_hook: AbortHook | None = None
        self._abort_hook_owed = False  # aborted with no hook: the next one registered runs
        self._error: BaseException | None = None
        self._pending: deque[Event] = deque()
        self._pending_lock = threading.Lock()
        self._draining = False

    # ------------------------------------------------------------------ queries
    @property
    def bus(self) -> EventBus:
        """The event bus this controller publishes on."""
        return self._bus

    @property
    def state(self) -> RunState:
        """The current state (a snapshot: it may change right after reading)."""
        with self._lock:
            return self._state

    @property
    def error(self) -> BaseException | None:
        """The exception passed to :meth:`fail`, if the run failed."""
        with self._lock:
            return self._error

    def allowed_requests(self) -> tuple[RunRequest, ...]:
        """Requests legal in the current state."""
        with self._lock:
            return tuple(TRANSITIONS[self._state])

    def is_terminal(self) -> bool:
        """Whether the run has ended (finished, failed or aborted)."""
        with self._lock:
            return self._state in TERMINAL_STATES

    # ------------------------------------------------------------------ control requests
    def set_abort_hook(self, hook: AbortHook | None) -> None:
        """Register the function :meth:`abort` calls (e.g. the device's safe shutdown).

        The hook runs at most once per run, in the thread that calls :meth:`abort`, before the
        abort's events reach any subscriber, while the worker may still be inside an iteration;
        it must therefore be safe to call concurrently with the worker (the safety layer's
        shutdown is). If the run was aborted before any hook was registered, ``hook`` runs here,
        at once, in the registering thread. A hook that raises is logged, announced as a
        :class:`RunMessage` and re-raised, and is not retried.
        """
        if hook is not None and not callable(hook):
            raise TypeError(f"abort hook must be callable or None, got {type(hook).__name__}")
        with self._lock:
            self._abort_hook = hook
            owed = hook is not None and self._abort_hook_owed
            if owed:
                self._abort_hook_owed = False
        if owed and hook is not None:
            self._run_abort_hook(hook)

    def start(self, reason: str = "start requested") -> None:
        """Move idle → running."""
        self._transition(RunRequest.START, reason)

    def request_pause(self, reason: str = "pause requested") -> None:
        """Move running → paused; the worker holds at its next :meth:`checkpoint`."""
        self._transition(RunRequest.PAUSE, reason)

    def resume(self, reason: str = "resume requested") -> None:
        """Move paused → running and wake the worker."""
        self._transition(RunRequest.RESUME, reason)

    def request_stop(self, reason: str = "stop requested") -> None:
        """Move running/paused → stopping; the worker ends cleanly at its next checkpoint."""
        self._transition(RunRequest.STOP, reason)

    def abort(self, reason: str = "abort requested") -> bool:
        """Move running/paused/stopping → aborting and call the abort hook from this thread.

        The hook (the safe shutdown) runs before the transition's events are delivered, so a
        slow subscriber cannot delay it. Without a registered hook, the next one registered with
        :meth:`set_abort_hook` runs at registration. Idempotent while aborting: a repeated call
        does nothing and returns ``False``. Returns ``True`` when this call triggered the abort.
        If the hook raises, the error is logged, announced as a :class:`RunMessage` and
        re-raised: a failed safe shutdown must not pass silently. Raises
        :class:`InvalidTransition` in idle and terminal states.
        """
        with self._lock:
            if self._state is RunState.ABORTING:
                return False
            self._apply_locked(RunRequest.ABORT, reason)  # a run enters aborting only once
            hook = self._abort_hook
            self._abort_hook_owed = hook is None
        try:
            if hook is not None:
                self._run_abort_hook(hook)
        finally:
            self._drain()
        return True

    # ------------------------------------------------------------------ worker side
    def checkpoint(self, timeout: float | None = None) -> bool:
        """Iteration boundary for the worker: block while paused; return whether to continue.

        Returns ``True`` when running (do the next iteration) and ``False`` when the run must end
        (stopping, aborting, or already terminal). While paused it blocks until resume, stop or
        abort. ``timeout`` (s) bounds that wait; when it expires the call raises
        :class:`TimeoutError` rather than returning, so a pause is never mistaken for permission
        to run. ``None`` waits indefinitely.

        Raises:
            RunControlError: if the run was never started.
            TimeoutError: if still paused after ``timeout`` seconds.
        """
        with self._lock:
            if self._state is RunState.IDLE:
                raise RunControlError("checkpoint() called before start(); call start() first")
            if not self._changed.wait_for(
                lambda: self._state is not RunState.PAUSED, timeout=timeout
            ):
                raise TimeoutError(f"run still paused after {timeout} s")
            return self._state is RunState.RUNNING

    def finish(self, summary: Mapping[str, Any] | None = None, reason: str = "finished") -> None:
        """Worker: end normally from running or stopping; publishes :class:`RunFinished`."""
        self._end(RunRequest.FINISH, reason, summary)

    def fail(self, exc: BaseException, summary: Mapping[str, Any] | None = None) -> None:
        """Worker: end because ``exc`` was raised; publishes :class:`RunFinished`.

        ``summary`` gains an ``"error"`` entry holding ``repr(exc)``.
        """
        full = dict(summary or {})
        full.setdefault("error", repr(exc))
        with self._lock:
            self._apply_locked(RunRequest.FAIL, f"failed: {exc!r}")
            self._error = exc
            self._enqueue(RunFinished(self._state, full))
        self._drain()

    def mark_aborted(
        self, summary: Mapping[str, Any] | None = None, reason: str = "aborted"
    ) -> None:
        """Worker: confirm the abort after the loop wound down; publishes :class:`RunFinished`."""
        self._end(RunRequest.MARK_ABORTED, reason, summary)

    def publish(self, event: Event) -> None:
        """Publish ``event`` on the bus, ordered after every transition already made."""
        with self._lock:
            self._enqueue(event)
        self._drain()

    def wait(self, timeout: float | None = None) -> RunState:
        """Block until the run is terminal or ``timeout`` (s) passes; return the state then."""
        with self._lock:
            self._changed.wait_for(lambda: self._state in TERMINAL_STATES, timeout=timeout)
            return self._state

    def execute(self, body: WorkerBody) -> RunState:
        """Run ``body(self)`` in this thread and end the run according to how it returned.

        The run must already be started. ``body`` calls :meth:`checkpoint` at each iteration
        boundary and may return a summary mapping. After it returns, one final checkpoint
        honours a pause requested during the last iteration; then the run is finished (running
        or stopping) or marked aborted (aborting). If ``body`` raises, the run fails; the
        exception is logged, recorded in :attr:`error` and not re-raised. ``KeyboardInterrupt``
        and ``SystemExit`` also fail the run but are re-raised.
        """
        if self.state is RunState.IDLE:
            raise RunControlError("execute() needs a started run; call start() first")
        try:
            summary = body(self)
            if not self.is_terminal():
                self.checkpoint()
        except Exception as exc:
            logger.exception("run failed")
            self._fail_if_live(exc)
            return self.state
        except BaseException as exc:
            self._fail_if_live(exc)
            raise
        with self._lock:
            state = self._state
        if state in (RunState.RUNNING, RunState.STOPPING):
            self.finish(summary)
        elif state is RunState.ABORTING:
            self.mark_aborted(summary)
        return self.state

    def start_worker(self, body: WorkerBody, name: str = "labctl-run") -> threading.Thread:
        """Start the run and execute ``body`` in a new daemon thread (see :meth:`execute`)."""
        self.start()
        thread = threading.Thread(target=self.execute, args=(body,), name=name, daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------ internals
    def _run_abort_hook(self, hook: AbortHook) -> None:
        """Call ``hook``; if it raises, log, announce and re-raise (outside ``self._lock``)."""
        try:
            hook()
        except Exception as exc:
            logger.exception("abort hook failed; the device may not be in its safe state")
            self.publish(RunMessage(logging.ERROR, f"safe shutdown failed: {exc!r}"))
            raise

    def _fail_if_live(self, exc: BaseException) -> None:
        try:
            self.fail(exc)
        except InvalidTransition:
            logger.warning("run already ended as %s when %r was raised", self.state, exc)

    def _end(self, request: RunRequest, reason: str, summary: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._apply_locked(request, reason)
            self._enqueue(RunFinished(self._state, dict(summary or {})))
        self._drain()

    def _transition(self, request: RunRequest, reason: str) -> None:
        with self._lock:
            self._apply_locked(request, reason)
        self._drain()

    def _apply_locked(self, request: RunRequest, reason: str) -> None:
        """Apply ``request``; caller holds ``self._lock``."""
        old = self._state
        new = TRANSITIONS[old].get(request)
        if new is None:
            raise InvalidTransition(old, request)
        self._state = new
        logger.info("run state %s -> %s (%s)", old.value, new.value, reason)
        self._enqueue(StateChanged(old, new, reason))
        self._changed.notify_all()

    def _enqueue(self, event: Event) -> None:
        with self._pending_lock:
            self._pending.append(event)

    def _drain(self) -> None:
        """Publish queued events in order; exactly one thread drains at a time.

        A thread that finds another one draining leaves its events to that thread, which keeps
        the global order and avoids re-entrant delivery when a subscriber issues a request.
        """
        with self._pending_lock:
            if self._draining:
                return
            self._draining = True
        try:
            while True:
                with self._pending_lock:
                    if not self._pending:
                        self._draining = False
                        return
                    event = self._pending.popleft()
                self._bus.publish(event)
        except BaseException:
            with self._pending_lock:
                self._draining = False
            raise
