"""The run life cycle as data: states, requests and the transition table between them.

This module depends on nothing else in :mod:`labctl.run`, so the event types
(:mod:`labctl.run.events`) and the controller (:mod:`labctl.run.control`) can both use it without
importing each other::

    idle ──start──▶ running ──pause──▶ paused ──resume──▶ running
    running/paused ──stop──▶ stopping          (finish cleanly at the next iteration boundary)
    running/paused/stopping ──abort──▶ aborting (safe shutdown now, via the abort hook)
    running/stopping ──finish──▶ finished
    running/paused/stopping/aborting ──fail──▶ failed
    aborting ──mark_aborted──▶ aborted

``finished``, ``failed`` and ``aborted`` are terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class RunState(StrEnum):
    """Where a run is in its life cycle."""

    IDLE = "idle"
    """Created, not started."""
    RUNNING = "running"
    """The worker is executing iterations."""
    PAUSED = "paused"
    """The worker holds at an iteration boundary until resume, stop or abort."""
    STOPPING = "stopping"
    """The worker ends cleanly at the next iteration boundary."""
    ABORTING = "aborting"
    """Safe shutdown was triggered; the worker must wind down and call ``mark_aborted``."""
    FINISHED = "finished"
    """Ended normally (all iterations done, or a requested stop)."""
    FAILED = "failed"
    """Ended by an exception."""
    ABORTED = "aborted"
    """Ended by an abort after safe shutdown."""


class RunRequest(StrEnum):
    """A request that may move a run controller to another state."""

    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    ABORT = "abort"
    FINISH = "finish"
    FAIL = "fail"
    MARK_ABORTED = "mark_aborted"


_S = RunState
_R = RunRequest

TRANSITIONS: Mapping[RunState, Mapping[RunRequest, RunState]] = MappingProxyType(
    {
        _S.IDLE: MappingProxyType({_R.START: _S.RUNNING}),
        _S.RUNNING: MappingProxyType(
            {
                _R.PAUSE: _S.PAUSED,
                _R.STOP: _S.STOPPING,
                _R.ABORT: _S.ABORTING,
                _R.FINISH: _S.FINISHED,
                _R.FAIL: _S.FAILED,
            }
        ),
        _S.PAUSED: MappingProxyType(
            {
                _R.RESUME: _S.RUNNING,
                _R.STOP: _S.STOPPING,
                _R.ABORT: _S.ABORTING,
                _R.FAIL: _S.FAILED,
            }
        ),
        _S.STOPPING: MappingProxyType(
            {_R.ABORT: _S.ABORTING, _R.FINISH: _S.FINISHED, _R.FAIL: _S.FAILED}
        ),
        _S.ABORTING: MappingProxyType({_R.MARK_ABORTED: _S.ABORTED, _R.FAIL: _S.FAILED}),
        _S.FINISHED: MappingProxyType({}),
        _S.FAILED: MappingProxyType({}),
        _S.ABORTED: MappingProxyType({}),
    }
)
"""The transition table: ``TRANSITIONS[state][request]`` is the next state; absent = illegal."""

TERMINAL_STATES: frozenset[RunState] = frozenset(s for s, out in TRANSITIONS.items() if not out)
"""States that accept no further request."""
