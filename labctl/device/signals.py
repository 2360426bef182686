"""Signals and the safety layer: SIGTERM as an exception, and signals held off during ramps.

:func:`shutdown_on_signals` (installed by applications, never by library code) turns SIGTERM
into :class:`TerminatedBySignal`, so ``finally`` blocks and context managers, and therefore the
safe shutdown, run. :func:`signals_deferred` holds SIGINT and SIGTERM back while a shutdown or
park ramp plays: the ramp finishes, then the signal takes effect with the handler that was in
force before. Both act only in the main thread, where Python runs signal handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals held back while a shutdown or park ramp plays."""


class TerminatedBySignal(SystemExit):
    """Raised in the main thread when SIGTERM (or a handled SIGINT) arrives.

    A :class:`SystemExit` so that ``except Exception`` blocks do not swallow it while ``finally``
    blocks and context managers (and so the safe shutdown) still run.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(128 + signum)


@contextlib.contextmanager
def shutdown_on_signals(*, sigint: bool = False) -> Iterator[None]:
    """Turn SIGTERM (and SIGINT if asked) into :class:`TerminatedBySignal` in the main thread.

    Previous handlers are restored on exit. Does nothing outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, _frame: FrameType | None) -> None:
        raise TerminatedBySignal(signum)

    signals = [signal.SIGTERM] + ([signal.SIGINT] if sigint else [])
    previous = {sig: signal.signal(sig, _raise) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Deferral:
    """Process-wide bookkeeping of deferred signals (signal handlers are process-wide too)."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: list[int] = []
        self.previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}


_DEFERRAL = _Deferral()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them (re-entrant).

    In a thread other than the main thread this does nothing: signals are handled in the main
    thread, and a handler there that needs the device waits for the device lock, which the
    ramp holds.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = _DEFERRAL
    if state.depth == 0:
        state.pending = []

        def _hold(signum: int, _frame: FrameType | None) -> None:
            state.pending.append(signum)

        state.previous = {sig: signal.signal(sig, _hold) for sig in DEFERRED_SIGNALS}
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
        if state.depth == 0:
            for sig, handler in state.previous.items():
                signal.signal(sig, handler)
            pending, state.pending = state.pending, []
            for sig in dict.fromkeys(pending):  # each signal once, in arrival order
                signal.raise_signal(sig)
