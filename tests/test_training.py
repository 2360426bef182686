"""Training runs end to end on the simulated DNPU: learning, run control, store, crash safety."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from labctl.cli import main
from labctl.config import parse_config
from labctl.run.control import RunController, RunState
from labctl.run.events import IterationCompleted, StateChanged
from labctl.run.store import RunBusyError, RunStore, list_runs, writer_lock
from labctl.training.session import execute, new_run, resume_run
from tests.conftest import CONFIGS, REPO


def gate_config(tmp_path: Path, gate: str = "XOR", **run) -> Path:
    """configs/<gate>_sim.yaml with runs stored under tmp_path and run overrides."""
    data = yaml.safe_load((CONFIGS / f"{gate.lower()}_sim.yaml").read_text())
    data["run"].update({"directory": str(tmp_path / "runs"), **run})
    path = tmp_path / f"{gate.lower()}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start(path: Path):
    loaded = parse_config(path.read_text(), source=path)
    return new_run(loaded)


@pytest.mark.parametrize("gate", ["XOR", "NAND"])
def test_gate_trains_to_full_accuracy(tmp_path: Path, gate: str) -> None:
    run = start(gate_config(tmp_path, gate, max_iterations=300))
    controller = RunController()
    controller.start()
    assert execute(run, controller) is RunState.FINISHED
    outcome = run.outcome
    assert outcome is not None and outcome.solved, outcome.as_dict()
    # the shipped default (screened HGE) stops on a separation of 5 x its noise
    assert outcome.stop_reason == "solved_with_margin"
    assert outcome.separation_in_noise >= 5.0, outcome.as_dict()
    records = run.store.iterations()
    assert len(records) == outcome.iterations
    assert [r.run_iteration for r in records] == list(range(len(records)))
    # device time is cumulative, honest and includes ramps and settling: > 4 x 0.1 s windows
    seconds = [r.device_seconds for r in records]
    assert all(b > a for a, b in itertools.pairwise(seconds))
    assert seconds[0] > 0.4
    assert run.store.status() == "finished"
    assert run.store.summary()["solved"] is True


def test_events_reach_subscribers_in_order(tmp_path: Path) -> None:
    run = start(gate_config(tmp_path, max_iterations=6, accuracy_hold_iterations=None))
    controller = RunController()
    seen: list[object] = []
    controller.bus.subscribe(seen.append)
    controller.start()
    execute(run, controller)
    iterations = [e.record.run_iteration for e in seen if isinstance(e, IterationCompleted)]
    assert iterations == list(range(6))
    states = [e.new for e in seen if isinstance(e, StateChanged)]
    assert states == [RunState.RUNNING, RunState.FINISHED]


def test_pause_resume_stop_from_another_thread(tmp_path: Path) -> None:
    run = start(gate_config(tmp_path, max_iterations=300, accuracy_hold_iterations=None))
    controller = RunController()
    counts: list[int] = []
    controller.bus.subscribe(
        lambda e: (
            counts.append(e.record.run_iteration) if isinstance(e, IterationCompleted) else None
        )
    )
    controller.start()
    worker = threading.Thread(target=execute, args=(run, controller))
    worker.start()
    while len(counts) < 3:
        time.sleep(0.01)
    controller.request_pause()
    time.sleep(0.3)
    paused_at = len(counts)
    time.sleep(0.3)
    assert len(counts) <= paused_at + 1  # at most the iteration in progress completes
    assert controller.state is RunState.PAUSED
    controller.resume()
    while len(counts) < paused_at + 3:
        time.sleep(0.01)
    controller.request_stop()
    worker.join(30)
    assert controller.state is RunState.FINISHED
    assert run.outcome is not None and run.outcome.stop_reason == "stop requested"
    assert run.store.iteration_count() == len(counts) < 300


def test_abort_shuts_the_device_down_now(tmp_path: Path) -> None:
    state_file = tmp_path / "bench.json"
    path = gate_config(tmp_path, max_iterations=300, accuracy_hold_iterations=None)
    data = yaml.safe_load(path.read_text())
    data["setup"]["backend"]["settings"]["state_file"] = str(state_file)
    path.write_text(yaml.safe_dump(data))
    run = start(path)
    controller = RunController()
    controller.start()
    worker = threading.Thread(target=execute, args=(run, controller))
    worker.start()
    while run.store.iteration_count() < 2:
        time.sleep(0.01)
    assert controller.abort() is True
    worker.join(30)
    assert controller.state is RunState.ABORTED
    assert run.store.status() == "aborted"
    assert json.loads(state_file.read_text())["applied_v"] == [0.0] * 7


def test_a_live_run_cannot_be_executed_twice(tmp_path: Path) -> None:
    run = start(gate_config(tmp_path, max_iterations=300, accuracy_hold_iterations=None))
    controller = RunController()
    controller.start()
    worker = threading.Thread(target=execute, args=(run, controller))
    worker.start()
    while run.store.iteration_count() < 1:
        time.sleep(0.01)
    assert list_runs(tmp_path / "runs")[0].status == "running"
    with pytest.raises(RunBusyError, match="another process"), writer_lock(run.path):
        pass
    controller.request_stop()
    worker.join(30)
    assert list_runs(tmp_path / "runs")[0].status == "finished"


def test_resume_continues_numbering_and_finishes(tmp_path: Path) -> None:
    path = gate_config(tmp_path, max_iterations=8, accuracy_hold_iterations=None)
    run = start(path)
    controller = RunController()
    controller.start()
    execute(run, controller)
    first = run.store.iterations()
    assert len(first) == 8
    run.store.close()
    # raise the budget in the stored config and resume
    config_file = run.path / "config.yaml"
    data = yaml.safe_load(config_file.read_text())
    data["run"]["max_iterations"] = 12
    config_file.write_text(yaml.safe_dump(data))
    resumed = resume_run(run.path)
    controller = RunController()
    controller.start()
    assert execute(resumed, controller) is RunState.FINISHED
    records = resumed.store.iterations()
    assert [r.run_iteration for r in records] == list(range(12))
    assert records[:8] == first
    # the resumed run continues exactly: the step the last iteration took, with Adam's moments
    np.testing.assert_array_equal(records[8].controls_v, first[-1].extra["next_controls_v"])
    assert records[8].extra["optimiser_state"]["t"] == first[-1].extra["optimiser_state"]["t"] + 1


def test_sigkill_at_random_moments_loses_at_most_one_iteration(tmp_path: Path) -> None:
    total = 120
    path = gate_config(
        tmp_path, max_iterations=total, accuracy_hold_iterations=None, store_raw=True
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = np.random.default_rng(7)
    command = [sys.executable, "-m", "labctl.cli", "train", str(path)]
    run_dir: Path | None = None
    seen_before = 0
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        # wait until the store holds more iterations than before, then kill at a random moment
        while time.monotonic() < deadline:
            runs = list_runs(tmp_path / "runs")
            if runs and runs[0].iterations > seen_before:
                break
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.0, 0.25)))
        proc.send_signal(signal.SIGKILL)
        kills += 1
        proc.wait(30)
        runs = list_runs(tmp_path / "runs")
        assert len(runs) == 1
        assert runs[0].status == "interrupted"  # no live process executes it any more
        run_dir = runs[0].path
        with RunStore.open(run_dir, read_only=True) as store:
            records = store.iterations()
        numbers = [r.run_iteration for r in records]
        assert numbers == list(range(len(numbers)))  # every completed iteration, no gaps
        assert len(numbers) >= seen_before
        seen_before = len(numbers)
        if seen_before >= total:
            break
        command = [sys.executable, "-m", "labctl.cli", "train", "--resume", str(run_dir)]
    assert kills == 6 and seen_before < total, "the run ended before six kills"
    assert run_dir is not None
    final = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "train", "--resume", str(run_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr
    with RunStore.open(run_dir, read_only=True) as store:
        assert store.iteration_count() == total
        assert all("record_a" in (r.raw or {}) for r in store.iterations())
        assert store.status() == "finished"


def test_cli_train_runs_export(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = gate_config(tmp_path, max_iterations=5, accuracy_hold_iterations=None)
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ended: finished" in out and "report:" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "report.png").stat().st_size > 10_000
    assert main(["runs", str(tmp_path / "runs")]) == 0
    assert run_dir.name in capsys.readouterr().out
    assert main(["export", str(run_dir), "--format", "csv"]) == 0
    assert main(["export", str(run_dir), "--format", "hdf5"]) == 0
    import h5py
    import pandas as pd

    frame = pd.read_csv(next(run_dir.glob("*.csv")))
    assert len(frame) == 5
    with h5py.File(next(run_dir.glob("*.h5")), "r") as h5:
        assert h5["loss"].shape == (5,)


def test_cli_train_bad_input_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["train"]) == 2
    assert "CONFIG" in capsys.readouterr().err
    broken = tmp_path / "bad.yaml"
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    data["task"]["name"] = "XAND"
    broken.write_text(yaml.safe_dump(data))
    assert main(["train", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "task" in err and "XOR" in err
    assert not (tmp_path / "runs").exists()


def _train_subprocess(tmp_path: Path, signals: list[int]) -> tuple[int, RunStore, dict]:
    """Start `labctl train`, wait for 3 iterations, send ``signals``; return rc, store, bench."""
    state_file = tmp_path / "bench.json"
    path = gate_config(tmp_path, max_iterations=300, accuracy_hold_iterations=None)
    data = yaml.safe_load(path.read_text())
    data["setup"]["backend"]["settings"]["state_file"] = str(state_file)
    data["setup"]["backend"]["settings"]["realtime"] = True  # slow enough to interrupt
    path.write_text(yaml.safe_dump(data))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "train", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = list_runs(tmp_path / "runs")
        if runs and runs[0].iterations >= 3:
            break
        time.sleep(0.05)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    proc.communicate(timeout=60)
    (run,) = list_runs(tmp_path / "runs")
    store = RunStore.open(run.path, read_only=True)
    return proc.returncode, store, json.loads(state_file.read_text())


def test_ctrl_c_stops_after_the_iteration_and_saves(tmp_path: Path) -> None:
    rc, store, bench = _train_subprocess(tmp_path, [signal.SIGINT])
    assert rc == 0
    assert store.status() == "finished"
    assert store.summary()["stop_reason"] == "stop requested"
    assert 3 <= store.iteration_count() < 300
    assert bench["applied_v"] == [0.0] * 7 and bench["open"] is False
    assert (store.path / "report.png").is_file()


@pytest.mark.parametrize(
    ("signals", "rc"), [([signal.SIGINT, signal.SIGINT], 130), ([signal.SIGTERM], 143)]
)
def test_second_ctrl_c_or_sigterm_aborts_with_safe_shutdown(tmp_path: Path, signals, rc) -> None:
    code, store, bench = _train_subprocess(tmp_path, signals)
    assert code == rc
    assert store.status() == "aborted"
    assert store.iteration_count() >= 3
    assert bench["applied_v"] == [0.0] * 7


def test_start_up_calibration_is_kept_with_the_run_not_next_to_the_config(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    data["run"].update({"directory": str(tmp_path / "runs"), "max_iterations": 2, "report": False})
    path = tmp_path / "xor.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["train", str(path)]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    with RunStore.open(run_dir, read_only=True) as store:
        kept = store.calibration()
    assert kept is not None and kept["response"] is not None
    assert "calibrated at start" in kept["note"]
    assert not list(tmp_path.glob("*.calibration.json")), "a calibration next to the config"
