"""Fault matrix, first part: faults of the readout and the output injected into the in-process
simulated instrument during a real training run (trainer, run store, safety layer).

For each fault: the run ends (or, where continuing is safe, goes on under its bounded policy),
the simulated electrodes end at 0 V (or the report says loudly that they could not be
verified), every completed iteration stays readable, the stored outcome says what happened, and
the run can be resumed once the fault is gone. The faults are switched per test on the
instrument class (not in the configuration, so a resume runs without them).

The disk filling while the store writes is a real kernel refusal: the run's process gets a file
size limit (RLIMIT_FSIZE) its store outgrows.

Other faults of the matrix are tested elsewhere: the NI gRPC server dying mid-record
(tests/test_nidaq_faults.py), lying and failing instruments against the safety layer
(tests/test_safety_faults.py), signals (tests/test_safety_processes.py).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

from labctl.cli import main
from labctl.config import SetupConfig, parse_config
from labctl.device import Acquisition, FloatArray, RecordInterrupted
from labctl.device.registry import BackendSpec, register_backend, unregister_backend
from labctl.run.control import RunController
from labctl.run.store import RunStore
from labctl.training.session import execute, new_run, resume_run
from simulated_hw.backend import SimulatedBackend, SimulatedSettings, _check_setup

REPO = Path(__file__).resolve().parents[1]
BUDGET = 8
FAULT_AT_RECORD = 4
"""The first faulty record: one record per iteration (sign-by-phase: no start-up calibration)."""

pytestmark = pytest.mark.slow


class FaultyInstrument(SimulatedBackend):
    """The simulated instrument with one fault from record :attr:`at_record` on.

    ``fault``: ``nan`` / ``inf`` (non-finite readings), ``saturation`` (the amplifier pinned at
    its swing), ``drift_jump`` (a 5 nA step in the output current), ``underflow`` (an AO buffer
    underflow half-way through one record) or ``dead`` (every record from then on stops
    half-way with an underflow: the instrument is gone, its electrodes cannot be verified).
    """

    fault: ClassVar[str] = "none"
    at_record: ClassVar[int] = FAULT_AT_RECORD
    records = 0

    def _faulty(self) -> bool:
        return self.fault != "none" and self.records >= self.at_record

    def play(self, waveform_v: FloatArray, sample_rate_hz: float, cancel: Any) -> None:
        self.records += 1
        once = self.fault == "underflow" and self.records == self.at_record
        if once or (self.fault == "dead" and self._faulty()):
            half = waveform_v.shape[1] // 2
            super().play(waveform_v[:, :half], sample_rate_hz, cancel)
            raise RecordInterrupted("AO buffer underflow (injected)", half, cancelled=False)
        super().play(waveform_v, sample_rate_hz, cancel)

    def fetch(self) -> Acquisition:
        acquisition = super().fetch()
        if not self._faulty():
            return acquisition
        current = np.array(acquisition.current_a)
        saturated = acquisition.saturated
        if self.fault == "nan":
            current[:, ::7] = np.nan
        elif self.fault == "inf":
            current[:, ::11] = np.inf
        elif self.fault == "saturation":
            current[:] = self._setup.amplifier.saturation_a
            saturated = np.ones_like(saturated, dtype=bool)
        elif self.fault == "drift_jump":
            current += 5e-9
        return dataclasses.replace(acquisition, current_a=current, saturated=saturated)


def _factory(
    setup: SetupConfig, settings: SimulatedSettings, built: Mapping[str, object]
) -> FaultyInstrument:
    return FaultyInstrument(setup, settings)


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[Path]:
    """The faulty backend registered; yields the configuration file of a short XOR run."""
    register_backend(
        BackendSpec(
            name="faulty-sim",
            description="simulated instrument with injected faults (tests)",
            settings_model=SimulatedSettings,
            factory=_factory,
            check_setup=_check_setup,
        )
    )
    data = yaml.safe_load((REPO / "configs" / "xor_sim.yaml").read_text())
    settings = {**data["setup"]["backend"]["settings"], "state_file": str(tmp_path / "bench.json")}
    data["setup"]["backend"] = {"name": "faulty-sim", "settings": settings}
    data["setup"]["safety"]["state_file"] = str(tmp_path / "volts.json")
    data["homodyne"].update(
        {"window_s": 0.01, "settle_s": 0.002, "mains_hz": [], "max_order": 2, "fade_periods": 1}
    )
    data["homodyne"].update({"min_spacing_hz": None, "phase": "sign"})
    data["method"] = {"name": "hge", "params": {}}  # one record per iteration: faults by count
    data["run"].update(
        {
            "max_iterations": BUDGET,
            "accuracy_hold_iterations": None,
            "directory": str(tmp_path / "runs"),
            "report": False,
        }
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield path
    finally:
        FaultyInstrument.fault = "none"
        unregister_backend("faulty-sim")


def _run(run: Any) -> str:
    controller = RunController()
    controller.start("test_fault_matrix")
    return str(execute(run, controller))


def _held_v(path: Path) -> list[float]:
    return list(json.loads(path.read_text())["applied_v"])


@pytest.mark.parametrize(
    ("fault", "ends", "words"),
    [
        ("nan", "failed", "NaN or inf samples"),
        ("inf", "failed", "NaN or inf samples"),
        ("underflow", "failed", "AO buffer underflow"),
        ("saturation", "finished", "saturation"),  # restarts from fresh controls, bounded
        ("drift_jump", "finished", "max_iterations"),  # HGE ignores a DC step
    ],
)
def test_fault_during_training(faulty: Path, fault: str, ends: str, words: str) -> None:
    tmp = faulty.parent
    FaultyInstrument.fault = fault
    run = new_run(parse_config(faulty.read_text(), source=faulty))
    assert _run(run) == ends
    store = RunStore.open(run.store.path, read_only=True)
    try:
        records = list(store.iter_records(include_raw=False))
        assert [r.run_iteration for r in records] == list(range(len(records)))
        assert all(np.isfinite(r.loss) for r in records)
        assert words in json.dumps(store.summary())
        assert store.status() == ends
    finally:
        store.close()
    assert _held_v(tmp / "bench.json") == [0.0] * 7  # the electrodes end at 0 V
    if ends == "failed":
        assert len(records) == FAULT_AT_RECORD - 1  # every iteration before the fault kept
        FaultyInstrument.fault = "none"
        resumed = resume_run(run.store.path)
        assert _run(resumed) == "finished"
        store = RunStore.open(run.store.path, read_only=True)
        try:
            assert store.iteration_count() == BUDGET
        finally:
            store.close()
        assert _held_v(tmp / "bench.json") == [0.0] * 7


def test_instrument_gone_mid_run_is_reported_not_verified(faulty: Path) -> None:
    FaultyInstrument.fault = "dead"
    run = new_run(parse_config(faulty.read_text(), source=faulty))
    assert _run(run) == "failed"
    store = RunStore.open(run.store.path, read_only=True)
    try:
        summary = json.dumps(store.summary())
        assert store.iteration_count() == FAULT_AT_RECORD - 1
    finally:
        store.close()
    assert "NOT verified at 0 V" in summary and "AO buffer underflow" in summary
    assert run.shutdown_report is not None and not run.shutdown_report.ok
    # the instrument is back: a resume starts from the persisted state and finishes
    FaultyInstrument.fault = "none"
    assert _run(resume_run(run.store.path)) == "finished"
    assert _held_v(faulty.parent / "bench.json") == [0.0] * 7


def _train_with_file_size_limit(config: Path, limit_bytes: int) -> subprocess.CompletedProcess[str]:
    """``labctl train CONFIG`` in a process that may write no file beyond ``limit_bytes``: the
    kernel refuses the store's writes past it (EFBIG), as a full disk does (ENOSPC)."""

    def limit() -> None:  # pragma: no cover - runs in the child
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "labctl.cli", "train", str(config)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def disk_config(tmp_path: Path) -> Path:
    """A short XOR run on the plain simulated backend that stores every raw record."""
    data = yaml.safe_load((REPO / "configs" / "xor_sim.yaml").read_text())
    data["setup"]["backend"]["settings"]["state_file"] = str(tmp_path / "bench.json")
    data["setup"]["safety"]["state_file"] = str(tmp_path / "volts.json")
    data["homodyne"].update(
        {"window_s": 0.01, "settle_s": 0.002, "mains_hz": [], "max_order": 2, "fade_periods": 1}
    )
    data["homodyne"].update({"min_spacing_hz": None, "phase": "sign"})
    data["run"].update(
        {
            "max_iterations": 30,
            "accuracy_hold_iterations": None,
            "directory": str(tmp_path / "runs"),
            "report": False,
            "store_raw": True,
        }
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_disk_full_while_the_store_writes(disk_config: Path) -> None:
    proc = _train_with_file_size_limit(disk_config, 300_000)
    assert proc.returncode == 1, proc.stderr
    assert "electrodes ramped to 0 V" in proc.stdout
    assert _held_v(disk_config.parent / "bench.json") == [0.0] * 7
    (run_dir,) = (disk_config.parent / "runs").iterdir()
    store = RunStore.open(run_dir, read_only=True)
    try:
        kept = store.iteration_count()
        assert 0 < kept < 30
        assert [r.run_iteration for r in store.iter_records(include_raw=True)] == list(range(kept))
        assert store.status() == "failed"
    finally:
        store.close()
    # space again: the run resumes where it stopped and finishes its budget
    assert main(["train", "--resume", str(run_dir)]) == 0
    store = RunStore.open(run_dir, read_only=True)
    try:
        assert store.iteration_count() == 30
    finally:
        store.close()


def test_disk_full_message_says_the_disk_is_full(disk_config: Path) -> None:
    proc = _train_with_file_size_limit(disk_config, 300_000)
    store = RunStore.open(next((disk_config.parent / "runs").iterdir()), read_only=True)
    try:
        summary = json.dumps(store.summary())
    finally:
        store.close()
    assert "cannot rollback" not in proc.stderr + summary
    assert "the disk may be full" in proc.stderr
    assert "labctl train --resume" in proc.stderr


@pytest.mark.parametrize(("fault", "words"), [("nan", "NaN or inf samples"),
                                              ("underflow", "AO buffer underflow")])  # fmt: skip
def test_fault_in_the_screening_record_of_screened_hge(
    faulty: Path, fault: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default method's first record is its DC screen: a fault there fails the run safely
    (electrodes at 0 V, nothing stored), and the resumed run screens again and finishes."""
    tmp = faulty.parent
    data = yaml.safe_load(faulty.read_text())
    data["method"] = {"name": "screened_hge", "params": {}}
    faulty.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setattr(FaultyInstrument, "at_record", 1)
    FaultyInstrument.fault = fault
    run = new_run(parse_config(faulty.read_text(), source=faulty))
    assert _run(run) == "failed"
    store = RunStore.open(run.store.path, read_only=True)
    try:
        assert store.iteration_count() == 0
        assert words in json.dumps(store.summary())
    finally:
        store.close()
    assert _held_v(tmp / "bench.json") == [0.0] * 7
    FaultyInstrument.fault = "none"
    assert _run(resume_run(run.store.path)) == "finished"
    store = RunStore.open(run.store.path, read_only=True)
    try:
        assert store.iteration_count() == BUDGET
    finally:
        store.close()
    assert _held_v(tmp / "bench.json") == [0.0] * 7
