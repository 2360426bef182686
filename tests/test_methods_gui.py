"""The GUI runs, replays and resumes every baseline training method (real Qt, offscreen)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from labctl.gui.main_window import MainWindow
from labctl.run.events import IterationCompleted
from labctl.run.state import RunState
from labctl.run.store import RunStore
from tests.test_gui import (
    WAIT_MS,
    click,
    make_window,  # noqa: F401  (the fixture)
    wait_finished,
    wait_state,
)


@pytest.mark.parametrize("method", ["finite_difference", "spsa", "genetic"])
def test_gui_runs_replays_and_resumes_a_baseline(
    qtbot: QtBot,
    make_window: Callable[..., MainWindow],  # noqa: F811
    method: str,
) -> None:
    window = make_window({"run": {"max_iterations": 4}, "method": {"name": method, "params": {}}})
    assert window.validation.ok
    click(qtbot, window.run_bar.start_button)
    controller = window.runs.controller
    assert controller is not None

    def pause_after_the_second(event: object) -> None:
        if isinstance(event, IterationCompleted) and event.record.run_iteration == 1:
            controller.request_pause("test")

    controller.bus.subscribe(pause_after_the_second)
    wait_state(qtbot, window, RunState.PAUSED)
    click(qtbot, window.run_bar.stop_button)
    wait_finished(qtbot, window)
    path = window.runs.path
    assert path is not None

    browser = window.browser
    qtbot.waitUntil(lambda: any(r.path == path for r in browser.rows()), timeout=WAIT_MS)
    assert browser.select(path.name)
    with qtbot.waitSignal(browser.replayed, timeout=WAIT_MS):
        browser._open_selected()
    assert len(browser.history) == 2
    assert len(browser.plots.loss_curve.xData) == 2
    browser.plots.refresh(force=True)

    browser.resume_requested.emit(path)
    wait_finished(qtbot, window)
    qtbot.waitUntil(lambda: window.runs.state is RunState.FINISHED, timeout=WAIT_MS)
    with RunStore.open(path, read_only=True) as store:
        records = store.iterations()
    assert [r.run_iteration for r in records] == [0, 1, 2, 3]
    assert np.isnan(records[0].gradients_a_per_v).all() == (method == "genetic")
