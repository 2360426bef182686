"""The desktop GUI on the simulated bench (pytest-qt, offscreen): runs, plots, validation,
manual panel, Park, closing mid-run, run browser and replay, screenshots."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt creates the app
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from labctl.config import merge_overrides
from labctl.gui.app import create_window
from labctl.gui.fields import is_marked
from labctl.gui.main_window import MainWindow
from labctl.run.events import IterationCompleted
from labctl.run.state import RunState
from labctl.run.store import RunStore
from tests.conftest import CONFIGS, NO_EFFECTS, bench_of

WAIT_MS = 30_000


def write_config(tmp_path: Path, override: dict[str, Any] | None = None) -> Path:
    """xor_sim.yaml, fast and exact, everything it writes inside ``tmp_path``."""
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    base = {
        "setup": {"backend": {"settings": {"effects": NO_EFFECTS}}},
        "homodyne": {
            "phase": "sign",  # no start-up calibration: the tests are about the GUI
            "calibration": {"file": str(tmp_path / "xor.calibration.json")},
        },
        "run": {
            "max_iterations": 400,
            "accuracy_hold_iterations": None,
            "stall_patience": 1000,
            "report": False,
            "directory": str(tmp_path / "runs"),
        },
    }
    data = merge_overrides(merge_overrides(data, base), override or {})
    path = tmp_path / "gui_xor.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def make_window(qtbot: QtBot, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    windows: list[MainWindow] = []

    def make(override: dict[str, Any] | None = None) -> MainWindow:
        window = create_window(write_config(tmp_path, override), tmp_path / "runs")
        window.confirm = lambda _title, _text: True
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        if window.isVisible():
            window.close()
            qtbot.waitUntil(window.isHidden, timeout=WAIT_MS)
        window.deleteLater()


def click(qtbot: QtBot, button: Any) -> None:
    assert button.isEnabled(), f"{button.text()} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_state(qtbot: QtBot, window: MainWindow, state: RunState) -> None:
    qtbot.waitUntil(lambda: window.runs.state is state, timeout=WAIT_MS)


def wait_iterations(qtbot: QtBot, window: MainWindow, n: int) -> None:
    qtbot.waitUntil(lambda: len(window.history) >= n, timeout=WAIT_MS)


def wait_finished(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.runs.active, timeout=WAIT_MS)
    qtbot.wait(50)  # the finished signal is delivered after the worker returned


def test_start_pause_resume_stop_and_the_plots_receive_data(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    bar = window.run_bar
    assert window.validation.ok and bar.start_button.isEnabled()
    assert not bar.pause_button.isEnabled() and not bar.stop_button.isEnabled()
    click(qtbot, bar.start_button)
    wait_iterations(qtbot, window, 3)
    assert not bar.start_button.isEnabled() and bar.abort_button.isEnabled()
    assert bar.pause_button.text() == "Pause"

    click(qtbot, bar.pause_button)
    wait_state(qtbot, window, RunState.PAUSED)
    qtbot.waitUntil(lambda: bar.pause_button.text() == "Resume")
    assert bar.stop_button.isEnabled() and bar.abort_button.isEnabled()
    held = len(window.history)
    qtbot.wait(300)
    assert len(window.history) <= held + 1  # at most the iteration that was in progress

    click(qtbot, bar.pause_button)
    wait_state(qtbot, window, RunState.RUNNING)
    wait_iterations(qtbot, window, held + 3)

    click(qtbot, bar.stop_button)
    wait_finished(qtbot, window)
    assert window.runs.state is RunState.FINISHED
    assert bar.start_button.isEnabled() and not bar.stop_button.isEnabled()
    assert not bar.abort_button.isEnabled() and not bar.pause_button.isEnabled()
    path = window.runs.path
    assert path is not None
    with RunStore.open(path, read_only=True) as store:
        stored = store.iteration_count()
        assert store.status() == "finished"
    assert stored == len(window.history) < 400

    plots = window.live_plots
    plots.refresh(force=True)
    x, loss = plots.loss_curve.xData, plots.loss_curve.yData
    assert len(x) == stored and np.all(np.isfinite(loss))
    assert len(plots.control_curves) == 5
    for curve in plots.control_curves:
        assert len(curve.xData) == stored
    assert len(plots.output_bars.opts["height"]) == 4
    assert plots.threshold_line.isVisible()
    assert len(plots.gradient_points.data) == 4 * 5
    assert "iteration" in window.status_label.text()
    assert "raw records are not stored" in plots.raw_note.toPlainText()


def test_abort_is_a_safe_shutdown_now(qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    window = make_window()
    click(qtbot, window.run_bar.start_button)
    wait_iterations(qtbot, window, 2)
    click(qtbot, window.run_bar.abort_button)
    wait_finished(qtbot, window)
    assert window.runs.state is RunState.ABORTED
    device = window.runs.last_device
    assert device is not None
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    report = device.last_shutdown_report
    assert report is not None and report.ok
    assert window.run_bar.start_button.isEnabled()


def _type(qtbot: QtBot, edit: QLineEdit, text: str) -> None:
    edit.selectAll()
    qtbot.keyClicks(edit, text)


def test_an_invalid_setting_shows_at_its_field_and_blocks_start(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    panel = window.setup_panel
    start = window.run_bar.start_button
    window_s = panel.field("homodyne.window_s")
    assert isinstance(window_s, QLineEdit)
    _type(qtbot, window_s, "-1")
    qtbot.waitUntil(lambda: is_marked(window_s), timeout=WAIT_MS)
    assert "greater than 0" in window_s.toolTip()
    assert "homodyne.window_s" in panel.issues_label.text()
    assert not start.isEnabled()
    click_blocked = window.validation.ok
    assert not click_blocked

    max_v = panel.field("setup.electrodes[2].max_v")
    assert isinstance(max_v, QLineEdit)
    _type(qtbot, max_v, "3")  # above the safety ceiling of 1.6 V
    qtbot.waitUntil(lambda: is_marked(max_v), timeout=WAIT_MS)
    assert "ceiling" in max_v.toolTip()
    assert not is_marked(panel.field("setup.electrodes[1].max_v"))

    _type(qtbot, window_s, "0.1")
    _type(qtbot, max_v, "1.2")
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=WAIT_MS)
    assert not is_marked(window_s) and not is_marked(max_v)

    amplitude = panel.field("homodyne.amplitude_v")
    assert isinstance(amplitude, QLineEdit)
    _type(qtbot, amplitude, "2.0")  # a cross-section check: reported at the root
    qtbot.waitUntil(lambda: is_marked(amplitude), timeout=WAIT_MS)
    assert "does not fit" in amplitude.toolTip() and not start.isEnabled()

    _type(qtbot, amplitude, "0.01")
    band = panel.field("homodyne.band_hz")
    assert isinstance(band, QLineEdit)
    _type(qtbot, band, "[150, 155]")  # valid schema, but five tones cannot be planned there
    qtbot.waitUntil(lambda: window.validation.plan_error is not None, timeout=WAIT_MS)
    assert not start.isEnabled()
    assert "cannot place" in panel.plan_view.summary.text()

    _type(qtbot, band, "[150, 1000]")
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=WAIT_MS)
    assert panel.plan_view.markers is not None and not panel.plan_view.markers.collisions
    saved = panel.save_path
    assert saved is not None and panel.save()
    assert yaml.safe_load(saved.read_text())["homodyne"]["band_hz"] == [150, 1000]


def test_manual_panel_bounds_the_point_and_sweeps_an_iv_curve(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    manual = window.manual_panel
    assert manual.controls() == []  # nothing to set before connecting
    window.setup_panel._connect.click()
    qtbot.waitUntil(lambda: window.session.is_connected, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(manual.controls()) == 7, timeout=WAIT_MS)
    assert "simulated" in window.setup_panel._identity.toPlainText()

    control = manual.control("e1")
    control.set_value(5.0)
    assert control.value() == 1.2
    control.spin.selectAll()
    qtbot.keyClicks(control.spin, "-7")
    qtbot.keyClick(control.spin, Qt.Key.Key_Return)
    assert -1.2 <= control.value() <= 1.2
    control.slider.setValue(control.slider.maximum() + 500)
    assert control.value() == 1.2
    control.set_value(0.3)
    assert control.slider.value() == 300

    manual.set_live(True)
    qtbot.waitUntil(
        lambda: "nA" in manual.current_label.text() and "–" not in manual.current_label.text(),
        timeout=WAIT_MS,
    )

    manual._sweep_electrode.setCurrentIndex(0)
    manual._sweep_start.setValue(-5.0)  # clipped to e0's range
    assert manual._sweep_start.value() == -1.2
    manual._sweep_points.setValue(9)
    with qtbot.waitSignal(manual.sweep_done, timeout=WAIT_MS):
        click(qtbot, manual._sweep_button)
    x, y = manual.sweep_curve.xData, manual.sweep_curve.yData
    assert len(x) == 9 and x[0] == pytest.approx(-1.2) and x[-1] == pytest.approx(1.2)
    assert np.all(np.isfinite(y)) and np.ptp(y) > 0

    manual._curvature.setChecked(True)
    with qtbot.waitSignal(manual.gradient_done, timeout=WAIT_MS):
        click(qtbot, manual._gradient_button)
    report = manual.last_gradient
    assert report is not None and len(report["gradient_a_per_v"]) == 5
    assert report["cosine_similarity"] > 0.99  # exact simulation: HGE matches the model
    assert not manual.hessian_table.isHidden() and manual.hessian_table.rowCount() == 5
    manual.set_live(False)

    device = window.session.device
    assert device is not None
    audit = bench_of(device).audit
    for row, electrode in enumerate(device.electrodes):
        assert (
            electrode.min_v - 1e-12
            <= audit.min_v[row]
            <= audit.max_v[row]
            <= electrode.max_v + 1e-12
        )
    window.setup_panel._disconnect.click()
    qtbot.waitUntil(lambda: window.session.state == "disconnected", timeout=WAIT_MS)
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)


def test_park_during_a_running_record_holds_every_electrode_at_0_v(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window({"setup": {"backend": {"settings": {"realtime": True}}}})
    bar = window.run_bar
    click(qtbot, bar.start_button)
    qtbot.waitUntil(lambda: window.runs.device is not None, timeout=WAIT_MS)
    device = window.runs.device
    assert device is not None
    bench = bench_of(device)
    wait_iterations(qtbot, window, 1)
    qtbot.waitUntil(lambda: np.abs(bench.applied_v).max() > 0.05, timeout=WAIT_MS)  # in a record
    record_s = 4 * (0.1 + 0.015)  # one iteration's record is longer than this
    before_s = bench.timebase.now_s
    click(qtbot, bar.park_button)
    qtbot.waitUntil(lambda: window.parker.parked and not window.parker.busy, timeout=WAIT_MS)
    assert bench.timebase.now_s - before_s < record_s  # cancelled, not waited for
    assert device.is_parked
    assert "parked" in bar.park_label.text() and "0 V" in bar.park_label.text()
    assert bar.unpark_button.isEnabled() and not bar.park_button.isEnabled()
    count = len(window.history)
    for _ in range(6):
        np.testing.assert_array_equal(bench.applied_v, 0.0)
        qtbot.wait(50)
    assert len(window.history) <= count + 1
    assert window.runs.state is RunState.RUNNING  # parking does not end the run

    click(qtbot, bar.unpark_button)
    qtbot.waitUntil(lambda: not window.parker.parked, timeout=WAIT_MS)
    wait_iterations(qtbot, window, count + 2)  # the run continues after unpark
    click(qtbot, bar.abort_button)
    wait_finished(qtbot, window)
    assert window.runs.state is RunState.ABORTED
    np.testing.assert_array_equal(bench.applied_v, 0.0)


def test_closing_the_window_mid_run_leaves_the_electrodes_at_0_v(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    asked: list[str] = []

    def confirm(title: str, _text: str) -> bool:
        asked.append(title)
        return True

    window.confirm = confirm
    click(qtbot, window.run_bar.start_button)
    wait_iterations(qtbot, window, 2)
    device = window.runs.device
    assert device is not None
    window.close()
    assert asked == ["Quit during a run?"]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT_MS)
    assert window.runs.state is RunState.ABORTED and not window.runs.active
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    assert device.last_shutdown_report is not None and device.last_shutdown_report.ok
    assert not device.is_open


def test_closing_can_be_refused(qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    window = make_window()
    window.confirm = lambda _title, _text: False
    click(qtbot, window.run_bar.start_button)
    wait_iterations(qtbot, window, 1)
    window.close()
    assert window.isVisible() and window.runs.state is RunState.RUNNING
    window.confirm = lambda _title, _text: True


def test_a_past_run_replays_exports_resumes_and_gives_its_configuration(
    qtbot: QtBot, make_window: Callable[..., MainWindow], tmp_path: Path
) -> None:
    window = make_window({"run": {"max_iterations": 6, "store_raw": True}})
    click(qtbot, window.run_bar.start_button)
    controller = window.runs.controller
    assert controller is not None

    def pause_after_the_third(event: object) -> None:  # in the worker: exactly 3 iterations
        if isinstance(event, IterationCompleted) and event.record.run_iteration == 2:
            controller.request_pause("test")

    controller.bus.subscribe(pause_after_the_third)
    wait_state(qtbot, window, RunState.PAUSED)
    click(qtbot, window.run_bar.stop_button)
    wait_finished(qtbot, window)
    path = window.runs.path
    assert path is not None
    with RunStore.open(path, read_only=True) as stored:
        count = stored.iteration_count()
    assert count == 3

    browser = window.browser
    qtbot.waitUntil(lambda: any(r.path == path for r in browser.rows()), timeout=WAIT_MS)
    if next(r for r in browser.rows() if r.path == path).status != "finished":
        # listed while the run was still writing its end: list again now that it has ended
        with qtbot.waitSignal(browser.listed, timeout=WAIT_MS):
            browser.refresh()
    row = next(r for r in browser.rows() if r.path == path)
    assert row.task == "gate XOR" and row.iterations == count and row.status == "finished"
    assert browser.select(path.name)
    with qtbot.waitSignal(browser.replayed, timeout=WAIT_MS):
        browser._open_selected()
    plots = browser.plots
    assert len(browser.history) == count
    assert len(plots.loss_curve.xData) == count
    assert len(plots.raw_curve.xData) > 1000  # the stored raw record of the last one
    assert len(plots.spectrum_curve.xData) > 100
    assert len(plots.tone_marks.xData) == 2 * 5
    browser._slider.setValue(0)
    assert plots._pinned is not None and plots._pinned.run_iteration == 0
    plots.refresh(force=True)
    assert plots.cursors[0].isVisible()
    qtbot.waitUntil(
        lambda: plots._pinned is not None and plots._pinned.raw is not None, timeout=WAIT_MS
    )

    out = tmp_path / "export.csv"
    browser.export("csv", out)
    qtbot.waitUntil(out.exists, timeout=WAIT_MS)
    assert len(out.read_text().splitlines()) == count + 1

    browser.sort_by("result", ascending=False)
    browser.sort_by("started (UTC)")
    assert browser.sorted_names() == [path.name]

    with qtbot.waitSignal(browser.load_config_requested, timeout=WAIT_MS):
        browser._load_selected()
    qtbot.waitUntil(lambda: window.setup_panel.save_path is None, timeout=WAIT_MS)
    assert window.validation.ok
    assert window.setup_panel.model.get(("run", "max_iterations")) == 6

    browser.resume_requested.emit(path)
    wait_finished(qtbot, window)
    qtbot.waitUntil(lambda: window.runs.state is RunState.FINISHED, timeout=WAIT_MS)
    with RunStore.open(path, read_only=True) as store:
        assert store.iteration_count() == 6  # continued where it stopped, to the budget
    assert len(window.history) == 6


def test_screenshots_of_the_main_window_mid_run(
    qtbot: QtBot, make_window: Callable[..., MainWindow], tmp_path: Path
) -> None:
    artefacts = Path(os.environ.get("LABCTL_GUI_ARTIFACTS", tmp_path / "artifacts"))
    artefacts.mkdir(parents=True, exist_ok=True)
    window = make_window({"run": {"store_raw": True}})
    window.resize(1600, 1000)
    click(qtbot, window.run_bar.start_button)
    wait_iterations(qtbot, window, 5)
    shots = []
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        window.live_plots.refresh(force=True)
        qtbot.wait(50)
        name = window.tabs.tabText(index).lower().replace(" ", "_")
        shot = artefacts / f"gui_{name}_mid_run.png"
        assert window.grab().save(str(shot))
        shots.append(shot)
    click(qtbot, window.run_bar.stop_button)
    wait_finished(qtbot, window)
    for shot in shots:
        assert shot.stat().st_size > 10_000


def test_abort_while_parked_ends_the_run_at_0_v(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window({"setup": {"backend": {"settings": {"realtime": True}}}})
    bar = window.run_bar
    click(qtbot, bar.start_button)
    qtbot.waitUntil(lambda: window.runs.device is not None, timeout=WAIT_MS)
    device = window.runs.device
    assert device is not None
    click(qtbot, bar.park_button)
    qtbot.waitUntil(lambda: window.parker.parked and not window.parker.busy, timeout=WAIT_MS)
    click(qtbot, bar.stop_button)  # waits for Unpark: said so, and nothing moves
    assert "after Unpark" in bar.park_label.text()
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    click(qtbot, bar.abort_button)  # the safe shutdown wakes the parked record
    wait_finished(qtbot, window)
    assert window.runs.state is RunState.ABORTED
    assert not window.parker.parked and bar.park_button.isEnabled()
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)


def test_park_with_no_device_open_ramps_the_configured_setup_to_0_v(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    with qtbot.waitSignal(window.parker.reported, timeout=WAIT_MS) as report:
        click(qtbot, window.run_bar.park_button)
    ok, text = report.args
    assert ok and "no device was open" in text and "ramped to 0 V" in text
    assert not window.parker.parked and window.run_bar.park_button.isEnabled()


def test_log_records_from_worker_threads_reach_the_log_panel(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    import logging
    import threading

    window = make_window()
    thread = threading.Thread(
        target=lambda: logging.getLogger("labctl.test").warning("hello from a worker")
    )
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: "hello from a worker" in window.log_panel.text(), timeout=WAIT_MS)


def test_labctl_gui_entry_point_opens_the_window_and_returns_0(
    qtbot: QtBot, tmp_path: Path
) -> None:
    import argparse

    from PyQt5.QtCore import QTimer
    from PyQt5.QtWidgets import QApplication

    from labctl.gui.app import run_gui

    config = write_config(tmp_path)
    seen: list[str] = []

    def close_all() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow):
                seen.append(widget.windowTitle())
                widget.close()

    QTimer.singleShot(300, close_all)
    assert run_gui(argparse.Namespace(config=str(config), runs=str(tmp_path / "runs"))) == 0
    assert seen and str(config) in seen[0]


def test_closing_with_the_manual_session_open_ramps_it_to_0_v(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    window.connect_session()
    qtbot.waitUntil(lambda: window.session.is_connected, timeout=WAIT_MS)
    device = window.session.device
    assert device is not None
    manual = window.manual_panel
    manual.control("e3").set_value(0.8)
    manual.set_live(True)
    with qtbot.waitSignal(manual.readout_done, timeout=WAIT_MS):
        pass
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT_MS)
    assert not device.is_open
    np.testing.assert_array_equal(bench_of(device).applied_v, 0.0)
    assert bench_of(device).audit.max_v[3] == pytest.approx(0.8)  # it was driven, then parked
