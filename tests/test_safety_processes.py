"""The safety layer across processes: signals during ramps, open and calibration; SIGKILL.

Every test runs the real ``labctl`` command line in a child process on the simulated backend
with a ``state_file``: the simulator writes, after every chunk of at most 50 ms, what the
electrodes hold and its own audit (lowest/highest voltage and largest slew per electrode since
the bench was created in that process). The tests follow the electrodes through that file,
never through fixed sleeps, and judge the outcome from it: exit code, message, final voltages,
and whether any sample broke the slew limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.config import merge_overrides
from labctl.run.store import RunStore
from tests.conftest import CONFIGS, NO_EFFECTS, REPO

pytestmark = pytest.mark.slow

WAIT_S = 30.0
"""Upper bound on every wait for the child (s): a broken test fails, it never hangs."""
SLEW_V_PER_S = 200.0
"""The slew limit of the shipped configs (setup.safety.slew_v_per_s)."""
RATE_HZ = 10_000.0
"""Their sample rate (setup.sample_rate_hz)."""
E1, E2 = 1, 2
"""Rows of the electrodes the operating points move."""


# -- helpers ------------------------------------------------------------------------------------


def write_config(
    tmp_path: Path,
    base: str,
    override: dict[str, Any],
    *,
    replace: dict[str, Any] | None = None,
    name: str = "cfg.yaml",
) -> Path:
    """configs/BASE with ``override`` merged in and top-level ``replace`` keys set, in tmp_path.

    ``replace`` maps a dotted path (``"measure.operating_point"``) to a value that replaces,
    rather than merges with, the shipped one.
    """
    data = yaml.safe_load((CONFIGS / base).read_text())
    data = merge_overrides(data, override)
    for dotted, value in (replace or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def edit_config(path: Path, override: dict[str, Any]) -> None:
    """Merge ``override`` into the config file at ``path``."""
    data = merge_overrides(yaml.safe_load(path.read_text()), override)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def sim_settings(state: Path, **extra: Any) -> dict[str, Any]:
    """An override of the simulated backend's settings: state file, effects off, and more."""
    return {
        "setup": {
            "backend": {
                "settings": {"state_file": str(state), "effects": dict(NO_EFFECTS), **extra}
            }
        }
    }


def read_state(path: Path) -> dict[str, Any] | None:
    """The simulator's state file, or None while it is missing or being replaced."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


@dataclass
class Child:
    """A ``labctl`` child process with stdout/stderr in files (no pipe can fill and block)."""

    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int) -> None:
        assert self.alive(), f"child ended before signal {sig} could be sent:\n{self.output()}"
        os.kill(self.proc.pid, sig)

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"

    def finish(self, timeout: float = WAIT_S) -> int:
        """Wait for the exit code (bounded)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"labctl did not exit within {timeout} s:\n{self.output()}")


@contextlib.contextmanager
def labctl(tmp_path: Path, *args: str, tag: str = "labctl") -> Iterator[Child]:
    """Run ``labctl ARGS`` in a child; it is killed in the end whatever happens."""
    out_path = tmp_path / f"{tag}.stdout"
    err_path = tmp_path / f"{tag}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labctl.cli", *args],
            cwd=REPO,
            stdout=out,
            stderr=err,
            env=os.environ.copy(),  # LABCTL_STATE_DIR of this test (conftest)
        )
    child = Child(proc, out_path, err_path)
    try:
        yield child
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def wait_for(
    child: Child,
    probe: Callable[[], Any],
    what: str,
    timeout: float = WAIT_S,
    interval: float = 0.005,
) -> Any:
    """Poll ``probe()`` until it returns something truthy; fail if the child ends first."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if not child.alive():
            value = probe()
            if value:
                return value
            pytest.fail(f"labctl exited ({child.proc.returncode}) before {what}:\n{child.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out ({timeout} s) waiting for {what}:\n{child.output()}")
        time.sleep(interval)


def wait_state(
    child: Child, state: Path, pred: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """The first state file contents that satisfy ``pred`` (bounded wait)."""

    def probe() -> dict[str, Any] | None:
        s = read_state(state)
        return s if s is not None and pred(s) else None

    return wait_for(child, probe, what)


def final_state(state: Path) -> dict[str, Any]:
    s = read_state(state)
    assert s is not None, f"no simulator state file at {state}"
    return s


def assert_at_zero_and_closed(s: dict[str, Any]) -> None:
    assert s["applied_v"] == [0.0] * 7, f"electrodes not at 0 V: {s['applied_v']}"
    assert s["open"] is False, "the instrument was not closed"


def assert_slew_within_limit(s: dict[str, Any], limit: float = SLEW_V_PER_S) -> None:
    slews = s["max_slew_v_per_s"]
    assert all(v <= limit * (1 + 1e-6) for v in slews), (
        f"a sample broke the slew limit {limit} V/s: max slew per electrode {slews}"
    )


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/run.sqlite")) if root.is_dir() else []


def run_status(run_dir: Path) -> tuple[str, dict[str, Any]]:
    store = RunStore.open(run_dir, read_only=True)
    try:
        return store.status(), store.summary()
    finally:
        store.close()


def created_store(root: Path) -> Path | None:
    """The run directory once its store is complete (status readable), else None."""
    for run_dir in run_dirs(root):
        with contextlib.suppress(Exception):
            run_status(run_dir)
            return run_dir
    return None


def iteration_count(run_dir: Path) -> int:
    try:
        store = RunStore.open(run_dir, read_only=True)
    except Exception:
        return 0
    try:
        return store.iteration_count()
    except Exception:
        return 0
    finally:
        store.close()


# -- 1. Ctrl-C pressed again while the shutdown ramp plays --------------------------------------

HOLD_V = 0.5
SLOW_RAMP_V_PER_S = 0.4  # shutdown from 0.5 V takes 1.25 s: time to press Ctrl-C again


def measure_config(tmp_path: Path, state: Path, ramp_v_per_s: float | None, **sim: Any) -> Path:
    override = merge_overrides(
        sim_settings(state, realtime=True, **sim),
        {"measure": {"sweep": None, "window_s": 20.0, "settle_s": 0.01}},
    )
    if ramp_v_per_s is not None:
        override = merge_overrides(override, {"setup": {"safety": {"ramp_v_per_s": ramp_v_per_s}}})
    return write_config(
        tmp_path,
        "sim_dnpu.yaml",
        override,
        replace={"measure.operating_point": {"e1": HOLD_V, "e2": -0.3}},
    )


def holding(s: dict[str, Any]) -> bool:
    v = s["applied_v"]
    return abs(v[E1] - HOLD_V) < 1e-9 and abs(v[E2] + 0.3) < 1e-9


@pytest.mark.parametrize("extra_presses", [1, 2], ids=["twice", "three-times"])
def test_repeated_ctrl_c_does_not_cut_the_shutdown_ramp(tmp_path: Path, extra_presses) -> None:
    state = tmp_path / "bench.json"
    config = measure_config(tmp_path, state, SLOW_RAMP_V_PER_S)
    with labctl(tmp_path, "measure", str(config)) as child:
        wait_state(child, state, holding, f"e1 holding {HOLD_V} V")
        child.send(signal.SIGINT)  # interrupts the record: the shutdown ramp starts
        wait_state(
            child,
            state,
            lambda s: 0.05 < s["applied_v"][E1] < HOLD_V - 0.05,
            "e1 ramping down",
        )
        for _ in range(extra_presses):
            child.send(signal.SIGINT)
            time.sleep(0.02)  # distinct presses, not one coalesced signal
        assert child.alive(), "labctl ended on the extra Ctrl-C, before the ramp could finish"
        rc = child.finish()
    s = final_state(state)
    assert rc == 130, f"exit code {rc}\n{child.output()}"
    assert "electrodes ramped to 0 V" in child.stderr(), child.output()
    assert_at_zero_and_closed(s)
    assert_slew_within_limit(s)
    assert s["max_v"][E1] == pytest.approx(HOLD_V)


# -- 4. SIGKILL mid-record; the next process finds the electrodes where they were ---------------


def kill_while_holding(tmp_path: Path, state: Path, config: Path) -> None:
    with labctl(tmp_path, "measure", str(config), tag="measure") as child:
        wait_state(child, state, holding, f"e1 holding {HOLD_V} V")
        child.proc.send_signal(signal.SIGKILL)
        assert child.finish() == -signal.SIGKILL
    s = final_state(state)
    assert s["applied_v"][E1] == pytest.approx(HOLD_V), "the DAC should keep its voltage"
    assert s["open"] is True  # nobody closed it: the process died
    persisted = labctl_state()
    assert persisted["in_flight"], f"labctl did not note the record in flight: {persisted}"
    assert persisted["in_flight"]["max_v"][E1] == pytest.approx(HOLD_V)


def labctl_state() -> dict[str, Any]:
    """labctl's own persisted voltages of the setup (sim-dnpu) in this test's state dir."""
    path = Path(os.environ["LABCTL_STATE_DIR"]) / "sim-dnpu.voltages.json"
    return json.loads(path.read_text())


def test_park_after_sigkill_ramps_down_from_the_held_voltage(tmp_path: Path) -> None:
    state = tmp_path / "bench.json"
    config = measure_config(tmp_path, state, None)
    kill_while_holding(tmp_path, state, config)
    with labctl(tmp_path, "park", str(config), tag="park") as child:
        rc = child.finish()
    s = final_state(state)
    assert rc == 0, child.output()
    assert "electrodes ramped to 0 V" in child.stdout(), child.output()
    assert_at_zero_and_closed(s)
    assert_slew_within_limit(s)  # the new process's own audit: a ramp, not a step
    # it ramped from the held voltages: the first sample is one ramp step (<= slew / rate) away
    step = SLEW_V_PER_S / RATE_HZ * (1 + 1e-6)
    assert HOLD_V - step <= s["max_v"][E1] <= HOLD_V
    assert -0.3 <= s["min_v"][E2] <= -0.3 + step
    assert s["total_samples"] > 1
    persisted = labctl_state()
    assert persisted["held_v"] == [0.0] * 7 and not persisted["in_flight"], persisted


def test_park_after_sigkill_without_readback_steps_and_exits_3(tmp_path: Path) -> None:
    state = tmp_path / "bench.json"
    kill_while_holding(tmp_path, state, measure_config(tmp_path, state, None))
    blind = measure_config(tmp_path, state, None, readback=False)  # same setup, like NI AO
    with labctl(tmp_path, "park", str(blind), tag="park") as child:
        rc = child.finish()
    s = final_state(state)
    assert rc == 3, child.output()
    message = child.stdout() + child.stderr()
    assert "unknown" in message, message
    for name in ("e1", "e2"):  # in flight when the process died: unknown, named
        assert name in message, message
    assert "electrodes ramped to 0 V" not in message
    assert_at_zero_and_closed(s)


# -- 2./3. SIGTERM while labctl train opens the device or calibrates ----------------------------


def train_config(tmp_path: Path, state: Path, **sim: Any) -> tuple[Path, Path]:
    runs = tmp_path / "runs"
    override = merge_overrides(
        sim_settings(state, **sim),
        {"run": {"directory": str(runs), "report": False, "max_iterations": 2000}},
    )
    return write_config(tmp_path, "xor_sim.yaml", override, name="train.yaml"), runs


def test_sigterm_during_device_open_aborts_the_run(tmp_path: Path) -> None:
    state = tmp_path / "bench.json"
    config, runs = train_config(tmp_path, state, open_delay_s=3.0)
    with labctl(tmp_path, "train", str(config), tag="train") as child:
        (run_dir,) = wait_for(child, lambda: run_dirs(runs), "the run directory")
        # the store exists before the device opens; let the CLI reach the open (3 s long)
        time.sleep(0.5)
        assert read_state(state) is None, "the device finished opening before the signal"
        child.send(signal.SIGTERM)
        rc = child.finish()
    s = final_state(state)
    status, _ = run_status(run_dir)
    assert rc == 143, f"exit code {rc}\n{child.output()}"
    assert status == "aborted", child.output()
    assert_at_zero_and_closed(s)
    assert s["total_samples"] == 0, "samples were played after SIGTERM"
    assert not (tmp_path / "train.calibration.json").exists()


def test_sigterm_right_after_the_run_store_is_created(tmp_path: Path) -> None:
    """The earliest SIGTERM after the run store exists must not leave the run 'created'."""
    state = tmp_path / "bench.json"
    config, runs = train_config(tmp_path, state, open_delay_s=3.0)
    with labctl(tmp_path, "train", str(config), tag="train") as child:
        run_dir = wait_for(child, lambda: created_store(runs), "the run store", interval=0.001)
        child.send(signal.SIGTERM)
        rc = child.finish()
    status, _ = run_status(run_dir)
    assert rc == 143, f"exit code {rc}\n{child.output()}"
    assert status == "aborted", f"run left {status!r} by an early SIGTERM\n{child.output()}"
    s = read_state(state)
    assert s is None or (s["applied_v"] == [0.0] * 7 and s["total_samples"] == 0)


def test_sigterm_during_startup_calibration_aborts_safely(tmp_path: Path) -> None:
    state = tmp_path / "bench.json"
    config, runs = train_config(tmp_path, state, realtime=True)
    calibration = tmp_path / "train.calibration.json"
    with labctl(tmp_path, "train", str(config), tag="train") as child:
        playing = wait_state(
            child, state, lambda s: s["total_samples"] > 0, "calibration records playing"
        )
        (run_dir,) = run_dirs(runs)
        assert not calibration.exists()
        child.send(signal.SIGTERM)
        rc = child.finish()
    s = final_state(state)
    status, _ = run_status(run_dir)
    assert rc == 143, f"exit code {rc}\n{child.output()}"
    assert status == "aborted", child.output()
    assert_at_zero_and_closed(s)
    assert_slew_within_limit(s)
    assert s["total_samples"] >= playing["total_samples"]
    assert iteration_count(run_dir) == 0  # training never started
    assert not calibration.exists(), "an interrupted calibration was saved as valid"


# -- 5. one Ctrl-C during training: stop after the iteration ------------------------------------


def test_one_ctrl_c_stops_training_after_the_iteration(tmp_path: Path) -> None:
    state = tmp_path / "bench.json"
    config, runs = train_config(tmp_path, state, realtime=True)
    # sign-by-phase: no start-up calibration, training starts at once
    edit_config(config, {"homodyne": {"phase": "sign"}})
    with labctl(tmp_path, "train", str(config), tag="train") as child:
        (run_dir,) = wait_for(child, lambda: run_dirs(runs), "the run directory")
        seen = wait_for(child, lambda: iteration_count(run_dir), "a stored iteration")
        child.send(signal.SIGINT)
        rc = child.finish()
    s = final_state(state)
    status, summary = run_status(run_dir)
    assert rc == 0, f"exit code {rc}\n{child.output()}"
    assert status == "finished", child.output()
    assert summary.get("stop_reason") == "stop requested", summary
    assert seen <= iteration_count(run_dir) <= seen + 1  # the iteration in progress, no more
    assert_at_zero_and_closed(s)
    assert_slew_within_limit(s)
