"""GUI presenter logic, tested without a window: controls per state, form model and issue
mapping, plan markers, plot buffers, spectrum, ETA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from labctl.config import ConfigIssue
from labctl.gui.presenters import (
    ConfigFormModel,
    ControlInfo,
    EtaEstimator,
    RingBuffer,
    RunHistory,
    amplitude_spectrum,
    case_outputs,
    format_duration,
    get_in,
    parse_path,
    path_text,
    plan_for,
    plan_markers,
    resolve_issue,
    run_controls,
    set_in,
    status_text,
)
from labctl.run.control import RunController
from labctl.run.state import TERMINAL_STATES, TRANSITIONS, RunRequest, RunState
from labctl.run.store import IterationRecord
from tests.conftest import CONFIGS


@pytest.mark.parametrize("state", list(RunState))
def test_run_controls_follow_the_allowed_requests(state: RunState) -> None:
    allowed = tuple(TRANSITIONS[state])
    c = run_controls(state, allowed, config_ok=True, has_task=True, parked=False)
    assert c.stop == (RunRequest.STOP in allowed)
    assert c.abort == (RunRequest.ABORT in allowed)
    assert c.pause == (RunRequest.PAUSE in allowed or RunRequest.RESUME in allowed)
    assert c.pause_label == ("Resume" if state is RunState.PAUSED else "Pause")
    assert c.start == (state is RunState.IDLE or state in TERMINAL_STATES)
    assert c.park and not c.unpark
    assert c.state_text == state.value


def test_run_controls_block_start_when_invalid_parked_or_starting() -> None:
    def start(**kw: bool) -> bool:
        args = {"config_ok": True, "has_task": True, "parked": False} | kw
        return run_controls(None, (), **args).start

    assert start()
    assert not start(config_ok=False)
    assert not start(has_task=False)
    assert not start(parked=True)
    assert not start(starting=True)
    parked = run_controls(RunState.RUNNING, (), config_ok=True, has_task=True, parked=True)
    assert parked.unpark and not parked.park
    busy = run_controls(None, (), config_ok=True, has_task=True, parked=False, park_busy=True)
    assert not busy.park and not busy.unpark


def test_run_controls_track_a_real_controller() -> None:
    controller = RunController()
    seen = []
    for step in (controller.start, controller.request_pause, controller.resume):
        step()
        c = run_controls(
            controller.state,
            controller.allowed_requests(),
            config_ok=True,
            has_task=True,
            parked=False,
        )
        seen.append((controller.state, c.pause_label, c.start))
    assert seen == [
        (RunState.RUNNING, "Pause", False),
        (RunState.PAUSED, "Resume", False),
        (RunState.RUNNING, "Pause", False),
    ]


def test_paths_round_trip_and_nested_set_get() -> None:
    path = ("setup", "electrodes", 2, "max_v")
    assert path_text(path) == "setup.electrodes[2].max_v"
    assert parse_path("setup.electrodes[2].max_v") == path
    data: dict = {"setup": {"electrodes": [{}, {}, {"max_v": 1.0}]}}
    set_in(data, path, 0.5)
    assert get_in(data, path) == 0.5
    set_in(data, ("homodyne", "calibration", "file"), "x.json")
    assert data["homodyne"] == {"calibration": {"file": "x.json"}}
    set_in(data, ("homodyne", "calibration", "file"), None)  # None removes: the default applies
    assert get_in(data, ("homodyne", "calibration", "file"), "absent") == "absent"
    set_in(data, ("run", "max_iterations"), None)  # removing what is not there creates nothing
    assert "run" not in data


def _model(tmp_path: Path) -> ConfigFormModel:
    text = (CONFIGS / "xor_sim.yaml").read_text()
    return ConfigFormModel.from_text(text, tmp_path / "xor.yaml")


def test_form_model_validates_with_the_schema_and_keeps_unedited_text(tmp_path: Path) -> None:
    model = _model(tmp_path)
    original = (CONFIGS / "xor_sim.yaml").read_text()
    assert model.to_yaml() == original  # comments kept while nothing is edited
    result = model.validate()
    assert result.ok and result.has_task and result.plan is not None
    assert model.set(("homodyne", "window_s"), -1.0)
    assert model.dirty
    bad = model.validate()
    assert bad.loaded is None and not bad.ok
    assert [i.path for i in bad.issues] == ["homodyne.window_s"]
    model.set(("homodyne", "window_s"), 0.1)
    assert model.validate().ok
    assert yaml.safe_load(model.to_yaml())["task"] == {"kind": "gate", "name": "XOR"}
    model.saved_as(tmp_path / "saved.yaml")
    assert not model.dirty and model.source == tmp_path / "saved.yaml"


def test_form_model_reports_an_impossible_plan(tmp_path: Path) -> None:
    model = _model(tmp_path)
    model.set(("homodyne", "band_hz"), [150.0, 160.0])  # five tones cannot fit in 10 Hz
    result = model.validate()
    assert result.loaded is not None and result.plan_error and not result.ok
    assert "band_hz" in result.plan_error


KNOWN = [
    "homodyne.window_s",
    "homodyne.band_hz",
    "homodyne.amplitude_v",
    "task.name",
    "setup.backend.name",
    "setup.backend.settings",
    "setup.electrodes[2]",
    "setup.electrodes[2].max_v",
    "setup.electrodes[2].min_v",
    "setup.safety.max_abs_v",
]


@pytest.mark.parametrize(
    ("issue", "expected"),
    [
        (ConfigIssue("homodyne.window_s", "Input should be greater than 0"), "homodyne.window_s"),
        (
            ConfigIssue("", "homodyne.amplitude_v: 2.0 V tone on 'e1' does not fit its range"),
            "homodyne.amplitude_v",
        ),
        (
            ConfigIssue("homodyne", "band_hz [500.0, 100.0] must be [low, high] with low < high"),
            "homodyne.band_hz",
        ),
        (ConfigIssue("task", "task.name must be one of AND, OR for kind 'gate'"), "task.name"),
        (
            ConfigIssue(
                "setup",
                "electrode 'e2': range [-1.2, 3.0] V exceeds the safety ceiling "
                "safety.max_abs_v = 1.6 V",
            ),
            "setup.electrodes[2]",
        ),
        (ConfigIssue("setup.electrodes[2]", "range must contain 0 V"), "setup.electrodes[2]"),
        (ConfigIssue("setup.backend.settings.seed", "must be >= 0"), "setup.backend.settings"),
        (ConfigIssue("nowhere", "unknown"), None),
    ],
)
def test_issues_resolve_to_their_field(issue: ConfigIssue, expected: str | None) -> None:
    names = ["e0", "e1", "e2"]
    assert resolve_issue(issue, KNOWN, names) == expected


def test_plan_markers_separate_tones_products_mains_and_collisions(tmp_path: Path) -> None:
    loaded = _model(tmp_path).validate().loaded
    assert loaded is not None
    config = loaded.config
    plan = plan_for(config)
    markers = plan_markers(plan, config.perturbed_electrodes(), [50.0], config.homodyne.band_hz)
    assert markers.tones_hz == plan.frequencies_hz
    assert markers.tone_labels[0] == "f0 e1"
    assert markers.collisions == ()  # a planned set is clean
    tones = set(markers.tones_hz)
    assert not tones & set(markers.second_hz) and not tones & set(markers.third_hz)
    assert 2 * plan.frequencies_hz[0] in markers.second_hz
    assert 3 * plan.frequencies_hz[0] in markers.second_hz + markers.third_hz
    assert (
        plan.frequencies_hz[0] + plan.frequencies_hz[1] + plan.frequencies_hz[3] in markers.third_hz
    )
    assert markers.mains_hz[:3] == (50.0, 100.0, 150.0)
    bad = plan_markers(
        type(plan)(plan.sample_rate_hz, plan.window_s, (100.0, 200.0), (10, 20)),
        ["a", "b"],
        [],
        (0, 1),
    )
    assert any("2f0" in c for c in bad.collisions) and 200.0 in bad.collision_hz


def test_ring_buffer_views_are_contiguous_slices_in_order() -> None:
    ring = RingBuffer(4, 2)
    for k in range(6):
        ring.append([k, 10 * k])
    view = ring.view()
    np.testing.assert_array_equal(view[:, 0], [2, 3, 4, 5])
    assert not view.flags.writeable and np.shares_memory(view, ring._buf)
    ring.extend(np.arange(6, 9)[:, None] * [1, 10])
    np.testing.assert_array_equal(ring.column(0), [5, 6, 7, 8])
    big = RingBuffer(100_000)
    big.extend(np.arange(250_000.0))
    assert len(big) == 100_000 and big.column(0)[0] == 150_000 and big.column(0)[-1] == 249_999
    with pytest.raises(ValueError):
        ring.append([1.0])


def _record(i: int, restart: int = 0, cases: list[int] | None = None) -> IterationRecord:
    return IterationRecord(
        run_iteration=i,
        restart_index=restart,
        controls_v=np.full(2, 0.1 * i),
        outputs_a=np.array([1e-9, 5e-9, 4e-9, 2e-9]),
        gradients_a_per_v=np.ones((4, 2)) * 1e-9,
        gradient_stderr_a_per_v=np.ones((4, 2)) * 1e-11,
        loss=1.0 / (i + 1),
        accuracy=0.75,
        separation_a=-1e-9,
        device_seconds=0.5 * (i + 1),
        wall_time_s=1000.0 + i,
        extra={"cases": cases} if cases is not None else {},
        raw={"record_a": np.zeros(10)} if i == 2 else None,
    )


def test_run_history_keeps_series_latest_record_raw_and_restarts() -> None:
    history = RunHistory(capacity=100)
    history.reset([ControlInfo("e1", -1, 1), ControlInfo("e2", -1, 1)], [0, 1, 1, 0])
    version = history.version
    for i in range(5):
        history.add(_record(i, restart=0 if i < 3 else 1))
    assert len(history) == 5 and history.version == version + 5
    np.testing.assert_allclose(history.controls.view()[:, 1], 0.1 * np.arange(5))
    assert history.restarts == [3]
    assert history.raw_iteration == 2 and history.latest is not None
    outputs = case_outputs(history, history.latest)
    np.testing.assert_allclose(outputs.outputs_na, [1, 5, 4, 2])
    assert outputs.threshold_na is not None and 2 < outputs.threshold_na < 4
    subset = case_outputs(history, _record(9, cases=[1, 2, 0, 3]))
    assert subset.targets is not None and list(subset.targets) == [1, 1, 0, 0]


def test_run_history_extend_equals_adding_one_record_at_a_time() -> None:
    records = [_record(i, restart=0 if i < 3 else 1) for i in range(7)]
    one_by_one, bulk = RunHistory(capacity=5), RunHistory(capacity=5)  # wraps around
    for history in (one_by_one, bulk):
        history.reset([ControlInfo("e1", -1, 1), ControlInfo("e2", -1, 1)], [0, 1, 1, 0])
        history.add(records[0])
    for record in records[1:]:
        one_by_one.add(record)
    bulk.extend(records[1:])
    for name in ("iteration", "loss", "accuracy", "device_s", "controls"):
        np.testing.assert_array_equal(getattr(bulk, name).view(), getattr(one_by_one, name).view())
    assert bulk.restarts == one_by_one.restarts == [3]
    assert bulk.latest is records[-1] and bulk.raw_iteration == one_by_one.raw_iteration
    np.testing.assert_array_equal(bulk.latest_raw, one_by_one.latest_raw)
    assert bulk.version > 0 and len(bulk) == len(one_by_one) == 5


def test_amplitude_spectrum_reads_a_tone_amplitude() -> None:
    rate, n = 10_000.0, 10_000
    t = np.arange(n) / rate
    freqs, amp = amplitude_spectrum(3.0 * np.sin(2 * np.pi * 220 * t) + 7.0, rate)
    assert freqs[np.argmax(amp)] == pytest.approx(220.0)
    assert amp.max() == pytest.approx(3.0, rel=0.01)


def test_eta_and_status_text() -> None:
    eta = EtaEstimator(max_iterations=10)
    assert eta.eta_s is None
    for i in range(4):
        eta.update(i, 100.0 + 2.0 * i, 0.5 * i)
    assert eta.eta_s == pytest.approx(6 * 2.0)
    budget = EtaEstimator(max_iterations=1000, max_device_seconds=3.0)
    for i in range(4):
        budget.update(i, 100.0 + 2.0 * i, 0.5 * (i + 1))
    assert budget.eta_s == pytest.approx(2 * 2.0)  # the device-time budget ends it first
    text = status_text(RunState.RUNNING, 3, 10, 1.5, 75.0)
    assert "iteration 4/10" in text and "device time 1.5 s" in text and "ETA 1:15" in text
    assert "ETA" not in status_text(RunState.FINISHED, 9, 10, 5.0, None)
    assert format_duration(3700) == "1:01:40" and format_duration(None) == "–"


def test_no_display_is_a_clear_error_not_a_qt_abort() -> None:
    from labctl.gui.app import display_problem

    assert "xvfb-run" in (display_problem({}, "linux") or "")
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({}, "win32") is None
