"""Ctrl-C on a running ``labctl sweep`` (a real subprocess and its worker process): finished
points stay intact, the run in progress stops safely at 0 V, and ``--resume`` runs the rest."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labctl.exit_codes import EXIT_INTERRUPTED, EXIT_OK
from labctl.run.store import RunStore
from labctl.sweep.entry import read_result, run_stores
from tests.conftest import CONFIGS, NO_EFFECTS, REPO

pytestmark = pytest.mark.slow


def start(tmp_path: Path, tag: str, *args: str) -> subprocess.Popen[bytes]:
    """``labctl ARGS`` in its own process group (as a terminal runs it: Ctrl-C reaches the
    whole group, the parent and its pool workers alike)."""
    return subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", *args],
        cwd=REPO,
        stdout=(tmp_path / f"{tag}.stdout").open("wb"),
        stderr=(tmp_path / f"{tag}.stderr").open("wb"),
        env=os.environ.copy(),
        start_new_session=True,
    )


def output(tmp_path: Path, tag: str) -> str:
    return (tmp_path / f"{tag}.stdout").read_text() + (tmp_path / f"{tag}.stderr").read_text()


def iterations(point: Path) -> int:
    for store in run_stores(point):
        with contextlib.suppress(Exception), RunStore.open(store, read_only=True) as s:
            return s.iteration_count()
    return 0


def test_ctrl_c_stops_safely_and_resume_skips_finished_points(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    body = {
        "base": str(CONFIGS / "or_sim.yaml"),
        "overrides": {
            "run": {"accuracy_hold_iterations": None, "loss_threshold": None},
            "setup": {"backend": {"settings": {"state_file": str(bench), "effects": NO_EFFECTS}}},
        },
        "grid": {"seeds": [0], "params": {"run.max_iterations": [8, 200]}},
        "sweep": {"directory": str(tmp_path / "sweep"), "workers": 1},
    }
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(body))
    points = tmp_path / "sweep" / "points"
    short, long = points / "000-max_iterations=8-s0", points / "001-max_iterations=200-s0"
    child = start(tmp_path, "sweep", "sweep", str(sweep_file))
    try:
        deadline = time.monotonic() + 60
        while iterations(long) < 3:
            assert child.poll() is None, output(tmp_path, "sweep")
            assert time.monotonic() < deadline, "the second point never got going"
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGINT)
        rc = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    log = output(tmp_path, "sweep")
    assert rc == EXIT_INTERRUPTED, log
    assert "labctl sweep --resume" in log
    done = read_result(short)
    assert done is not None and done["complete"] and done["iterations"] == 8, done
    stopped = read_result(long)
    assert stopped is not None and not stopped["complete"], stopped
    assert stopped["stop_reason"] == "stop requested" and stopped["shutdown_ok"], stopped
    assert 3 <= stopped["iterations"] < 200
    state = json.loads(bench.read_text())
    assert state["applied_v"] == [0.0] * 7, f"electrodes not at 0 V: {state['applied_v']}"
    assert state["open"] is False
    assert "finished (unfinished)" in (tmp_path / "sweep" / "summary.md").read_text()
    short_bytes = (short / "result.json").read_bytes()
    (short_store,) = run_stores(short)
    short_iterations = iterations(short)

    child = start(tmp_path, "resume", "sweep", "--resume", str(tmp_path / "sweep"))
    try:
        rc = child.wait(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    log = output(tmp_path, "resume")
    assert rc == EXIT_OK, log
    assert "1 already finished" in log
    assert (short / "result.json").read_bytes() == short_bytes, "a finished point was rerun"
    assert run_stores(short) == [short_store] and iterations(short) == short_iterations
    resumed = read_result(long)
    assert resumed is not None and resumed["complete"] and resumed["resumed"], resumed
    assert resumed["iterations"] == 200 and resumed["stop_reason"] == "max_iterations"
    assert len(run_stores(long)) == 1, "the interrupted run was restarted instead of resumed"
    assert not (tmp_path / "sweep" / "STOP").exists()
    results = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert [r["iterations"] for r in results] == [8, 200]
