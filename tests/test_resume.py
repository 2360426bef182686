"""Exact resume: every piece of state persists, for every training method.

8 iterations, a stop, then a resume for 4 must store exactly what 12 uninterrupted iterations
store, on the simulated DNPU with every chain effect on (white and 1/f noise, drift, amplifier
bandwidth, saturation, quantisation) and fixed seeds: controls, outputs, losses, gradients and
the decisions in ``extra``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.cli import main
from labctl.config import parse_config
from labctl.run.control import RunController, RunState
from labctl.run.events import Event, IterationCompleted
from labctl.run.store import IterationRecord, RunStore
from labctl.training.resume import RunNotResumable
from labctl.training.session import execute, new_run, resume_run
from tests.conftest import CONFIGS

METHODS = ["hge", "finite_difference", "spsa", "genetic", "screened_hge"]
PARAMS: dict[str, dict[str, Any]] = {
    "spsa": {"n_pairs": 2},
    # one kept set per screen: the stall's restart screens again (generator and queue resume)
    "screened_hge": {
        "screen_sets": 6,
        "candidates": 1,
        "stall_patience": 2,
        "margin_noise_multiple": None,
    },
}


def resume_config(folder: Path, method: str, **run: Any) -> Path:
    """XOR (not solved in 12 iterations) with restarts due: stall patience 2, one restart."""
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    effects = data["setup"]["backend"]["settings"].get("effects", {})
    assert all(effects.get(k, True) for k in ("noise", "flicker", "drift", "bandwidth"))
    data["run"].update(
        {
            "directory": str(folder / "runs"),
            "report": False,
            "max_iterations": 12,
            "accuracy_hold_iterations": None,
            "stall_patience": 2,
            "stall_min_improvement": 0.2,
            "max_restarts": 1,
            "seed": 5,
            **run,
        }
    )
    data["task"]["batch_size"] = 3  # exercises the batch generator
    data["method"] = {"name": method, "params": PARAMS.get(method, {})}
    path = folder / "xor.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_to_end(run, stop_after: int | None = None) -> RunState:
    controller = RunController()
    controller.start()
    if stop_after is not None:

        def on_event(event: Event) -> None:
            if (
                isinstance(event, IterationCompleted)
                and event.record.run_iteration == stop_after - 1
            ):
                controller.request_stop("test")

        controller.bus.subscribe(on_event)
    state = execute(run, controller)
    run.store.close()
    return state


def assert_same_trajectory(a: list[IterationRecord], b: list[IterationRecord]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.run_iteration == y.run_iteration
        assert x.restart_index == y.restart_index
        for name in ("controls_v", "outputs_a", "gradients_a_per_v", "gradient_stderr_a_per_v"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
        assert (x.loss, x.accuracy, x.separation_a) == (y.loss, y.accuracy, y.separation_a) or (
            np.isnan(x.accuracy) and np.isnan(y.accuracy)
        )
        assert json.dumps(x.extra, sort_keys=True) == json.dumps(y.extra, sort_keys=True)
        assert x.device_seconds == pytest.approx(y.device_seconds, rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_8_then_resume_4_equals_12_uninterrupted(tmp_path: Path, method: str) -> None:
    whole = new_run(parse_config((p := resume_config(tmp_path / "a", method)).read_text(), p))
    assert run_to_end(whole) is RunState.FINISHED
    with RunStore.open(whole.path, read_only=True) as store:
        reference = store.iterations()
    assert len(reference) == 12

    path = resume_config(tmp_path / "b", method)
    first = new_run(parse_config(path.read_text(), source=path))
    assert run_to_end(first, stop_after=8) is RunState.FINISHED
    assert first.outcome is not None and first.outcome.stop_reason == "stop requested"
    # the calibration next to the configuration is gone: resume uses the run's own
    for stale in path.parent.glob("*.calibration.json"):
        stale.unlink()
    second = resume_run(first.path)
    assert run_to_end(second) is RunState.FINISHED
    with RunStore.open(first.path, read_only=True) as store:
        resumed = store.iterations()
        running = [s for _t, status, s in store.status_history() if status == "running"]
    assert_same_trajectory(reference, resumed)
    if method == "hge":
        assert running[0]["phase_method"] == running[1]["phase_method"] == "projection"
        assert running[1]["calibration"] == running[0]["calibration"]
    if method != "genetic":  # the restart budget carried over the resume, it did not reset
        restarts = [r.restart_index for r in resumed]
        assert max(restarts) == 1, restarts
        assert second.outcome is not None and len(second.outcome.restarts) == 1


def test_resuming_a_finished_run_is_refused(tmp_path: Path, capsys) -> None:
    path = resume_config(tmp_path, "spsa", max_iterations=3)
    run = new_run(parse_config(path.read_text(), source=path))
    assert run_to_end(run) is RunState.FINISHED
    with pytest.raises(RunNotResumable, match="already finished"):
        resume_run(run.path)
    assert main(["train", "--resume", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert "already finished (max_iterations after 3 iterations)" in err
    with RunStore.open(run.path, read_only=True) as store:
        assert store.iteration_count() == 3  # nothing measured past the budget
        assert store.status() == "finished"


def test_stored_configuration_has_absolute_paths_and_csv_resume(
    tmp_path: Path, monkeypatch
) -> None:
    folder = tmp_path / "project"
    path = resume_config(folder, "hge", max_iterations=4)
    shutil.copy(CONFIGS / "majority.csv", folder / "cases.csv")
    majority = yaml.safe_load((CONFIGS / "majority_sim.yaml").read_text())
    data = yaml.safe_load(path.read_text())
    data["setup"] = majority["setup"]
    data["task"] = {**majority["task"], "csv_path": "cases.csv", "batch_size": None}
    data["homodyne"] = majority.get("homodyne", data["homodyne"])
    path.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(folder)
    run = new_run(parse_config(path.read_text(), source=path))
    stored = yaml.safe_load(run.store.config_text())
    assert Path(stored["task"]["csv_path"]) == (folder / "cases.csv").resolve()
    assert run_to_end(run, stop_after=2) is RunState.FINISHED
    monkeypatch.chdir(tmp_path)
    moved = tmp_path / "elsewhere"
    shutil.move(str(run.path), moved)
    resumed = resume_run(moved)
    assert run_to_end(resumed) is RunState.FINISHED
    with RunStore.open(moved, read_only=True) as store:
        assert store.iteration_count() == 4


@pytest.mark.parametrize("method", ["hge", "genetic"])
def test_a_run_stored_without_checkpoints_still_resumes(tmp_path: Path, method: str) -> None:
    import sqlite3

    path = resume_config(tmp_path, method, max_iterations=5)
    run = new_run(parse_config(path.read_text(), source=path))
    assert run_to_end(run, stop_after=3) is RunState.FINISHED
    with sqlite3.connect(run.path / "run.sqlite") as db:  # as a store from before checkpoints
        db.execute("DROP TABLE checkpoint")
    with RunStore.open(run.path, read_only=True) as store:
        assert store.checkpoint() is None
        last = store.iterations()[-1]
    resumed = resume_run(run.path)
    assert run_to_end(resumed) is RunState.FINISHED
    with RunStore.open(run.path, read_only=True) as store:
        records = store.iterations()
    assert [r.run_iteration for r in records] == list(range(5))
    if method == "hge":
        np.testing.assert_array_equal(records[3].controls_v, last.extra["next_controls_v"])
