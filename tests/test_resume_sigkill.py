"""SIGKILL at every stage of a training run, with resume after each kill.

A child process trains (the code path of ``labctl train``: ``new_run``/``resume_run`` and
``session.execute``) on the simulated DNPU in real time, and reports every stage it reaches and
every iteration it finished (after the store committed it) to a file. The test kills it during
start-up, during the start-up calibration, in the middle of records (at random fractions of the
measured iteration time) and during the final evaluation and shutdown, resumes after each kill,
and checks that

* every iteration the child reported finished is stored, with no gaps: at most the one in
  progress is lost;
* each resumed session continues the interrupted trajectory (its first controls are the ones
  the last stored iteration decided on);
* the run ends finished with every iteration and its final evaluation.

A child that does not reach an expected stage within a minute fails the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from labctl.run.store import RunStore
from tests.conftest import CONFIGS, REPO

TOTAL = 14
WAIT_S = 60.0

CHILD = """
import os, sys, time
from pathlib import Path
from labctl.config import load_config
from labctl.run.control import RunController
from labctl.run.events import IterationCompleted, RunMessage
from labctl.training.session import execute, new_run, resume_run

report = open(sys.argv[2], "a", buffering=1)
def say(text):
    report.write(f"{time.monotonic():.6f} {text}\\n")
    report.flush()
    os.fsync(report.fileno())

say("started")
mode, target = sys.argv[1], sys.argv[3]
run = new_run(load_config(target)) if mode == "new" else resume_run(Path(target))
say(f"run {run.path}")
controller = RunController()
def on_event(event):
    if isinstance(event, IterationCompleted):
        say(f"iteration {event.record.run_iteration}")
        if event.record.run_iteration == int(sys.argv[4]) - 1:
            say("evaluating")
    elif isinstance(event, RunMessage) and event.text.startswith("phase:"):
        say("calibrated")
controller.bus.subscribe(on_event)
controller.start()
state = execute(run, controller, on_device=lambda device: say("open"))
say(f"done {state}")
"""


class Child:
    """One training process and its report file."""

    def __init__(self, tmp_path: Path, mode: str, target: Path, index: int) -> None:
        self.report = tmp_path / f"report-{index}.txt"
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), mode, str(self.report), str(target), str(TOTAL)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def lines(self) -> list[tuple[float, str]]:
        if not self.report.exists():
            return []
        out = []
        for line in self.report.read_text().splitlines():
            stamp, _, text = line.partition(" ")
            out.append((float(stamp), text))
        return out

    def wait_for(self, predicate, what: str) -> tuple[float, str]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for entry in self.lines():
                if predicate(entry[1]):
                    return entry
            if self.proc.poll() is not None:
                for entry in self.lines():
                    if predicate(entry[1]):
                        return entry
                _, err = self.proc.communicate()
                pytest.fail(f"child exited ({self.proc.returncode}) before {what}: {err!r}")
            time.sleep(0.005)
        self.kill()
        pytest.fail(f"child did not reach {what} within {WAIT_S} s: {self.lines()}")

    def iterations(self) -> list[int]:
        return [int(t.split()[1]) for _, t in self.lines() if t.startswith("iteration ")]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def stored(run_dir: Path) -> tuple[list, tuple[int, dict] | None]:
    with RunStore.open(run_dir, read_only=True) as store:
        return store.iterations(include_raw=False), store.checkpoint()


@pytest.mark.slow
def test_sigkill_at_every_stage_loses_at_most_the_iteration_in_progress(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    settings = data["setup"]["backend"]["settings"]
    settings.update({"realtime": True, "open_delay_s": 0.6})
    data["run"].update(
        {
            "directory": str(tmp_path / "runs"),
            "max_iterations": TOTAL,
            "accuracy_hold_iterations": None,
            "report": False,
        }
    )
    data["homodyne"]["calibration"] = {"file": str(tmp_path / "cal.json")}  # none yet
    config = tmp_path / "xor.yaml"
    config.write_text(yaml.safe_dump(data))
    rng = np.random.default_rng(11)
    index = 0
    kills: list[str] = []

    # 1. fresh run, killed during the start-up calibration (tones through the resistor)
    child = Child(tmp_path, "new", config, index)
    _, text = child.wait_for(lambda t: t.startswith("run "), "creating the run")
    run_dir = Path(text.split(" ", 1)[1])
    child.wait_for(lambda t: t == "open", "opening the device")
    time.sleep(0.3)
    assert not any(t == "calibrated" for _, t in child.lines()), "calibration ended too soon"
    child.kill()
    kills.append("calibration")
    records, _ = stored(run_dir)
    assert records == []

    seen = 0
    iteration_s: float | None = None
    stages = ["start-up", "mid-record", "mid-record", "mid-record", "shutdown"]
    for stage in stages:
        index += 1
        records, checkpoint = stored(run_dir)
        expected_next = None if checkpoint is None else checkpoint[1]["method"]["controls_v"]
        child = Child(tmp_path, "resume", run_dir, index)
        child.wait_for(lambda t: t == "started", "start")
        if stage == "start-up":
            time.sleep(float(rng.uniform(0.0, 0.4)))  # store, config, device open (0.6 s)
            assert not any(t == "open" for _, t in child.lines()), "killed too late"
        elif stage == "mid-record":
            target = seen + 2
            child.wait_for(
                lambda t, target=target: t == f"iteration {target - 1}", f"iteration {target}"
            )
            if iteration_s is None:  # measured, so a faster machine still kills mid-record
                stamps = [s for s, t in child.lines() if t.startswith("iteration ")]
                iteration_s = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 0.5
            time.sleep(float(rng.uniform(0.2, 0.8)) * iteration_s)
        else:
            child.wait_for(lambda t: t == "evaluating", "the final evaluation")
            time.sleep(float(rng.uniform(0.05, 0.3)))
        child.kill()
        kills.append(stage)
        reported = child.iterations()
        after, _ = stored(run_dir)
        numbers = [r.run_iteration for r in after]
        assert numbers == list(range(len(numbers))), numbers
        assert all(n in numbers for n in reported), (reported, numbers)
        assert len(numbers) <= max(reported, default=len(records) - 1) + 2  # + in progress
        if len(after) > len(records) and expected_next is not None:
            # the resumed session continued the interrupted trajectory exactly
            np.testing.assert_array_equal(after[len(records)].controls_v, expected_next)
        seen = len(numbers)
        if stage != "shutdown":
            assert seen < TOTAL, f"the run ended before the {stage} kill: size it larger"
    assert seen == TOTAL
    assert kills == ["calibration", *stages]

    # the last resume only evaluates and records the end
    index += 1
    child = Child(tmp_path, "resume", run_dir, index)
    child.wait_for(lambda t: t.startswith("done "), "the end")
    assert child.proc.wait(30) == 0
    assert child.iterations() == []
    with RunStore.open(run_dir, read_only=True) as store:
        assert store.iteration_count() == TOTAL
        assert store.status() == "finished"
        assert store.summary()["iterations"] == TOTAL
        assert store.calibration() is not None
