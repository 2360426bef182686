"""Tests for the run state machine and the event bus."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from labctl.run.control import InvalidTransition, RunControlError, RunController
from labctl.run.events import Event, EventBus, RunFinished, RunMessage, StateChanged
from labctl.run.state import TERMINAL_STATES, TRANSITIONS, RunRequest, RunState

S = RunState
R = RunRequest

# Shortest request sequence from idle to each state.
PATHS: dict[RunState, list[RunRequest]] = {
    S.IDLE: [],
    S.RUNNING: [R.START],
    S.PAUSED: [R.START, R.PAUSE],
    S.STOPPING: [R.START, R.STOP],
    S.ABORTING: [R.START, R.ABORT],
    S.FINISHED: [R.START, R.FINISH],
    S.FAILED: [R.START, R.FAIL],
    S.ABORTED: [R.START, R.ABORT, R.MARK_ABORTED],
}

EXPECTED_TABLE: set[tuple[RunState, RunRequest, RunState]] = {
    (S.IDLE, R.START, S.RUNNING),
    (S.RUNNING, R.PAUSE, S.PAUSED),
    (S.PAUSED, R.RESUME, S.RUNNING),
    (S.RUNNING, R.STOP, S.STOPPING),
    (S.PAUSED, R.STOP, S.STOPPING),
    (S.RUNNING, R.ABORT, S.ABORTING),
    (S.PAUSED, R.ABORT, S.ABORTING),
    (S.STOPPING, R.ABORT, S.ABORTING),
    (S.STOPPING, R.FINISH, S.FINISHED),
    (S.RUNNING, R.FINISH, S.FINISHED),
    (S.RUNNING, R.FAIL, S.FAILED),
    (S.PAUSED, R.FAIL, S.FAILED),
    (S.STOPPING, R.FAIL, S.FAILED),
    (S.ABORTING, R.FAIL, S.FAILED),
    (S.ABORTING, R.MARK_ABORTED, S.ABORTED),
}

TIMEOUT_S = 10.0  # generous bound for waits that should end almost at once


def request(ctl: RunController, req: RunRequest) -> None:
    """Issue ``req`` through the public method that carries it."""
    actions: dict[RunRequest, Callable[[], object]] = {
        R.START: ctl.start,
        R.PAUSE: ctl.request_pause,
        R.RESUME: ctl.resume,
        R.STOP: ctl.request_stop,
        R.ABORT: ctl.abort,
        R.FINISH: ctl.finish,
        R.FAIL: lambda: ctl.fail(RuntimeError("boom")),
        R.MARK_ABORTED: ctl.mark_aborted,
    }
    actions[req]()


def controller_in(state: RunState) -> RunController:
    ctl = RunController()
    for req in PATHS[state]:
        request(ctl, req)
    assert ctl.state is state
    return ctl


def test_table_matches_specification() -> None:
    table = {(s, r, n) for s, out in TRANSITIONS.items() for r, n in out.items()}
    assert table == EXPECTED_TABLE
    assert set(TRANSITIONS) == set(RunState)
    assert {S.FINISHED, S.FAILED, S.ABORTED} == TERMINAL_STATES


@pytest.mark.parametrize(("state", "req", "new"), sorted(EXPECTED_TABLE))
def test_every_legal_transition(state: RunState, req: RunRequest, new: RunState) -> None:
    ctl = controller_in(state)
    seen: list[Event] = []
    ctl.bus.subscribe(seen.append)
    request(ctl, req)
    assert ctl.state is new
    assert isinstance(seen[0], StateChanged)
    assert (seen[0].old, seen[0].new) == (state, new)


ILLEGAL = sorted(
    (s, r)
    for s in RunState
    for r in RunRequest
    if r not in TRANSITIONS[s] and (s, r) != (S.ABORTING, R.ABORT)
)


@pytest.mark.parametrize(("state", "req"), ILLEGAL)
def test_every_illegal_transition_raises(state: RunState, req: RunRequest) -> None:
    ctl = controller_in(state)
    seen: list[Event] = []
    ctl.bus.subscribe(seen.append)
    with pytest.raises(InvalidTransition) as info:
        request(ctl, req)
    assert ctl.state is state
    assert seen == []
    message = str(info.value)
    assert repr(state.value) in message and repr(req.value) in message
    for allowed in TRANSITIONS[state]:
        assert allowed.value in message
    assert info.value.allowed == tuple(TRANSITIONS[state])
    if not TRANSITIONS[state]:
        assert "terminal" in message


def test_repeated_abort_is_idempotent_and_calls_hook_once() -> None:
    ctl = RunController()
    calls: list[str] = []
    ctl.set_abort_hook(lambda: calls.append(threading.current_thread().name))
    ctl.start()
    assert ctl.abort() is True
    assert ctl.abort() is False
    assert ctl.abort() is False
    assert ctl.state is S.ABORTING
    assert calls == [threading.current_thread().name]
    ctl.mark_aborted()
    with pytest.raises(InvalidTransition):
        ctl.abort()
    assert len(calls) == 1


def test_abort_from_paused_wakes_worker_and_calls_hook_once() -> None:
    ctl = RunController()
    hook_calls: list[str] = []
    ctl.set_abort_hook(lambda: hook_calls.append(threading.current_thread().name))
    iterations: list[int] = []
    paused_at_boundary = threading.Event()

    def body(c: RunController) -> dict[str, int]:
        i = 0
        while True:
            if c.state is S.PAUSED:
                paused_at_boundary.set()
            if not c.checkpoint():
                break
            iterations.append(i)
            i += 1
            if i == 3:
                c.request_pause()
        return {"done": i}

    worker = ctl.start_worker(body, name="worker")
    assert paused_at_boundary.wait(TIMEOUT_S)
    assert ctl.abort()
    assert ctl.wait(TIMEOUT_S) is S.ABORTED
    worker.join(TIMEOUT_S)
    assert iterations == [0, 1, 2]
    assert hook_calls == [threading.current_thread().name]  # the aborting thread, not the worker


def test_abort_hook_failure_is_reported_and_reraised(caplog: pytest.LogCaptureFixture) -> None:
    ctl = RunController()
    messages: list[Event] = []
    ctl.bus.subscribe(messages.append)

    def bad_hook() -> None:
        raise OSError("DAQ unreachable")

    ctl.set_abort_hook(bad_hook)
    ctl.start()
    with caplog.at_level(logging.ERROR), pytest.raises(OSError, match="DAQ unreachable"):
        ctl.abort()
    assert ctl.state is S.ABORTING
    assert any(isinstance(m, RunMessage) and "DAQ unreachable" in m.text for m in messages)
    assert "safe state" in caplog.text


def test_abort_hook_runs_before_subscribers_see_the_abort() -> None:
    ctl = RunController()
    hook_calls: list[str] = []
    ctl.set_abort_hook(lambda: hook_calls.append("shutdown"))
    ctl.start()
    hook_done_when_seen: list[bool] = []

    def view(event: Event) -> None:
        if isinstance(event, StateChanged) and event.new is S.ABORTING:
            hook_done_when_seen.append(bool(hook_calls))

    ctl.bus.subscribe(view)
    assert ctl.abort() is True
    assert hook_done_when_seen == [True]
    assert hook_calls == ["shutdown"]


def test_slow_subscriber_does_not_delay_abort_hook() -> None:
    ctl = RunController()
    hook_ran = threading.Event()
    ctl.set_abort_hook(hook_ran.set)
    ctl.start()
    release = threading.Event()
    hook_ran_before_release: list[bool] = []

    def hanging_view(event: Event) -> None:
        if isinstance(event, StateChanged) and event.new is S.ABORTING:
            hook_ran_before_release.append(hook_ran.is_set())
            release.wait(TIMEOUT_S)

    ctl.bus.subscribe(hanging_view)
    aborter = threading.Thread(target=ctl.abort)
    aborter.start()
    try:
        assert hook_ran.wait(TIMEOUT_S)
    finally:
        release.set()
        aborter.join(TIMEOUT_S)
    assert hook_ran_before_release == [True]


def test_abort_before_hook_registration_runs_hook_once_at_registration() -> None:
    ctl = RunController()
    ctl.start()
    assert ctl.abort() is True
    calls: list[str] = []
    registering = threading.Thread(
        target=ctl.set_abort_hook,
        args=(lambda: calls.append(threading.current_thread().name),),
        name="registering",
    )
    registering.start()
    registering.join(TIMEOUT_S)
    assert calls == ["registering"]  # at once, in the registering thread
    ctl.set_abort_hook(lambda: calls.append("second"))
    assert calls == ["registering"]  # once per run
    ctl.mark_aborted()
    assert calls == ["registering"]


def test_hook_registered_while_aborting_runs_immediately() -> None:
    ctl = RunController()
    ctl.set_abort_hook(None)
    ctl.start()
    ctl.abort()
    assert ctl.state is S.ABORTING
    calls: list[int] = []
    ctl.set_abort_hook(lambda: calls.append(1))
    assert calls == [1]


def test_hook_registered_after_abort_completed_runs_immediately() -> None:
    ctl = RunController()
    ctl.start()
    ctl.abort()
    ctl.mark_aborted()
    calls: list[int] = []
    ctl.set_abort_hook(lambda: calls.append(1))
    assert calls == [1]
    ctl.set_abort_hook(lambda: calls.append(2))
    assert calls == [1]


def test_hook_registered_after_abort_with_hook_does_not_run_again() -> None:
    ctl = RunController()
    calls: list[str] = []
    ctl.set_abort_hook(lambda: calls.append("first"))
    ctl.start()
    ctl.abort()
    ctl.set_abort_hook(lambda: calls.append("second"))
    assert calls == ["first"]


def test_hook_registered_without_abort_does_not_run() -> None:
    ctl = RunController()
    calls: list[int] = []
    ctl.set_abort_hook(lambda: calls.append(1))
    ctl.start()
    ctl.set_abort_hook(lambda: calls.append(2))
    ctl.request_stop()
    ctl.finish()
    assert calls == []


def test_late_hook_failure_is_reported_and_reraised(caplog: pytest.LogCaptureFixture) -> None:
    ctl = RunController()
    seen: list[Event] = []
    ctl.bus.subscribe(seen.append)
    ctl.start()
    ctl.abort()

    def bad_hook() -> None:
        raise OSError("DAQ unreachable")

    with caplog.at_level(logging.ERROR), pytest.raises(OSError, match="DAQ unreachable"):
        ctl.set_abort_hook(bad_hook)
    assert any(isinstance(m, RunMessage) and "DAQ unreachable" in m.text for m in seen)
    assert "safe state" in caplog.text
    ctl.set_abort_hook(bad_hook)  # not retried: once per run, even when it failed


def test_abort_hook_failure_still_delivers_events_in_order() -> None:
    ctl = RunController()
    seen: list[Event] = []
    ctl.bus.subscribe(seen.append)

    def bad_hook() -> None:
        raise OSError("DAQ unreachable")

    ctl.set_abort_hook(bad_hook)
    ctl.start()
    seen.clear()
    with pytest.raises(OSError):
        ctl.abort()
    assert isinstance(seen[0], StateChanged) and seen[0].new is S.ABORTING
    assert isinstance(seen[1], RunMessage) and seen[1].level == logging.ERROR
    assert len(seen) == 2


def test_concurrent_abort_and_registration_run_hook_exactly_once() -> None:
    for _ in range(200):
        ctl = RunController()
        ctl.start()
        calls: list[int] = []
        barrier = threading.Barrier(2)

        def register(
            c: RunController = ctl, out: list[int] = calls, b: threading.Barrier = barrier
        ) -> None:
            b.wait(TIMEOUT_S)
            c.set_abort_hook(lambda: out.append(1))

        def abort(c: RunController = ctl, b: threading.Barrier = barrier) -> None:
            b.wait(TIMEOUT_S)
            c.abort()

        threads = [threading.Thread(target=register), threading.Thread(target=abort)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT_S)
        assert calls == [1]


def test_pause_blocks_worker_until_resume() -> None:
    ctl = RunController()
    done: list[int] = []
    at_checkpoint = threading.Event()
    past_checkpoint = threading.Event()
    proceed = threading.Event()
    reached_one = threading.Event()

    def body(c: RunController) -> None:
        for i in range(4):
            if i == 2:
                at_checkpoint.set()
            if not c.checkpoint():
                return
            if i == 2:
                past_checkpoint.set()
            done.append(i)
            if i == 1:
                # Hold here until the test has paused the run; the pause applies at i == 2.
                reached_one.set()
                proceed.wait(TIMEOUT_S)

    worker = ctl.start_worker(body)
    assert reached_one.wait(TIMEOUT_S)
    ctl.request_pause()
    proceed.set()
    assert at_checkpoint.wait(TIMEOUT_S)
    # The worker must stay blocked in checkpoint() while paused.
    assert not past_checkpoint.wait(0.2)
    assert done == [0, 1]
    assert ctl.state is S.PAUSED
    ctl.resume()
    assert past_checkpoint.wait(TIMEOUT_S)
    assert ctl.wait(TIMEOUT_S) is S.FINISHED
    worker.join(TIMEOUT_S)
    assert done == [0, 1, 2, 3]


def test_stop_ends_at_next_iteration_boundary() -> None:
    ctl = RunController()
    done: list[int] = []
    seen: list[Event] = []
    ctl.bus.subscribe(seen.append)

    def body(c: RunController) -> dict[str, int]:
        for i in range(100):
            if not c.checkpoint():
                break
            if i == 4:
                c.request_stop()  # as if the GUI asked during iteration 4
                assert c.state is S.STOPPING
            done.append(i)  # iteration 4 still completes
        return {"iterations": len(done)}

    ctl.start()
    assert ctl.execute(body) is S.FINISHED
    assert done == [0, 1, 2, 3, 4]
    assert seen[-1] == RunFinished(S.FINISHED, {"iterations": 5})


def test_stop_while_paused_releases_worker() -> None:
    ctl = RunController()
    paused = threading.Event()
    results: list[bool] = []

    def worker() -> None:
        paused.set()
        results.append(ctl.checkpoint())

    ctl.start()
    ctl.request_pause()
    thread = threading.Thread(target=worker)
    thread.start()
    assert paused.wait(TIMEOUT_S)
    ctl.request_stop()
    thread.join(TIMEOUT_S)
    assert results == [False]
    assert ctl.state is S.STOPPING


def test_checkpoint_rules() -> None:
    ctl = RunController()
    with pytest.raises(RunControlError, match="start"):
        ctl.execute(lambda c: None)
    with pytest.raises(RunControlError, match="start"):
        ctl.checkpoint()
    ctl.start()
    assert ctl.checkpoint() is True
    ctl.request_pause()
    with pytest.raises(TimeoutError):
        ctl.checkpoint(timeout=0.05)
    ctl.request_stop()
    assert ctl.checkpoint() is False
    ctl.finish()
    assert ctl.checkpoint() is False


def test_events_published_in_order() -> None:
    ctl = RunController()
    seen: list[Event] = []
    ctl.bus.subscribe(seen.append)
    ctl.start("go")
    ctl.request_pause()
    ctl.resume()
    ctl.publish(RunMessage(logging.INFO, "halfway"))
    ctl.request_stop()
    ctl.finish({"best_loss": 0.25})
    assert seen == [
        StateChanged(S.IDLE, S.RUNNING, "go"),
        StateChanged(S.RUNNING, S.PAUSED, "pause requested"),
        StateChanged(S.PAUSED, S.RUNNING, "resume requested"),
        RunMessage(logging.INFO, "halfway"),
        StateChanged(S.RUNNING, S.STOPPING, "stop requested"),
        StateChanged(S.STOPPING, S.FINISHED, "finished"),
        RunFinished(S.FINISHED, {"best_loss": 0.25}),
    ]


def test_subscriber_may_issue_requests_and_order_is_kept() -> None:
    ctl = RunController()
    seen: list[tuple[str, str]] = []

    def first(event: Event) -> None:
        if isinstance(event, StateChanged):
            seen.append(("first", event.new.value))
            if event.new is S.PAUSED:
                ctl.resume("auto-resume")  # re-entrant request from inside a callback

    def second(event: Event) -> None:
        if isinstance(event, StateChanged):
            seen.append(("second", event.new.value))

    ctl.bus.subscribe(first)
    ctl.bus.subscribe(second)
    ctl.start()
    ctl.request_pause()
    assert ctl.state is S.RUNNING
    assert seen == [
        ("first", "running"),
        ("second", "running"),
        ("first", "paused"),
        ("second", "paused"),
        ("first", "running"),
        ("second", "running"),
    ]


def test_worker_exception_ends_in_failed(caplog: pytest.LogCaptureFixture) -> None:
    ctl = RunController()
    seen: list[Event] = []
    ctl.bus.subscribe(seen.append)

    def body(c: RunController) -> None:
        for i in range(10):
            if not c.checkpoint():
                return
            if i == 3:
                raise ValueError("device returned garbage")

    with caplog.at_level(logging.ERROR):
        worker = ctl.start_worker(body)
        assert ctl.wait(TIMEOUT_S) is S.FAILED
        worker.join(TIMEOUT_S)
    assert isinstance(ctl.error, ValueError)
    assert seen[-2] == StateChanged(
        S.RUNNING, S.FAILED, "failed: ValueError('device returned garbage')"
    )
    assert isinstance(seen[-1], RunFinished)
    assert seen[-1].state is S.FAILED
    assert "device returned garbage" in seen[-1].summary["error"]
    assert "run failed" in caplog.text


def test_worker_exception_while_aborting_ends_in_failed() -> None:
    ctl = RunController()
    release = threading.Event()

    def body(c: RunController) -> None:
        c.checkpoint()
        release.wait(TIMEOUT_S)
        raise RuntimeError("interrupted read")

    ctl.start_worker(body)
    ctl.abort()
    release.set()
    assert ctl.wait(TIMEOUT_S) is S.FAILED


def test_execute_honours_pause_after_last_iteration() -> None:
    ctl = RunController()
    body_done = threading.Event()

    def body(c: RunController) -> None:
        c.checkpoint()
        c.request_pause()  # arrives during the final iteration
        body_done.set()

    ctl.start_worker(body)
    assert body_done.wait(TIMEOUT_S)
    assert ctl.wait(0.1) is S.PAUSED  # holds at the final boundary instead of raising
    ctl.resume()
    assert ctl.wait(TIMEOUT_S) is S.FINISHED


def test_wait_times_out_with_current_state() -> None:
    ctl = RunController()
    ctl.start()
    assert ctl.wait(0.01) is S.RUNNING


def test_event_bus_isolates_failing_subscriber(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise KeyError("view bug")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(seen.append)
    event = RunMessage(logging.WARNING, "hello")
    with caplog.at_level(logging.ERROR):
        bus.publish(event)
    assert seen == [event]
    assert "view bug" in caplog.text
    unsubscribe()
    unsubscribe()
    bus.publish(event)
    assert seen == [event]
    assert bus.subscriber_count() == 1
    with pytest.raises(TypeError):
        bus.subscribe("not callable")  # type: ignore[arg-type]


def test_event_bus_thread_safety() -> None:
    bus = EventBus()
    counts = [0]
    lock = threading.Lock()

    def count(_: Event) -> None:
        with lock:
            counts[0] += 1

    bus.subscribe(count)
    n_threads, n_events = 4, 500

    def publisher() -> None:
        for i in range(n_events):
            bus.publish(RunMessage(logging.DEBUG, str(i)))
            unsub = bus.subscribe(lambda e: None)
            unsub()

    threads = [threading.Thread(target=publisher) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    assert counts[0] == n_threads * n_events
    assert bus.subscriber_count() == 1
