"""Tests for the append-only, crash-safe run store."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import labctl
from labctl.run import store as store_module
from labctl.run.store import (
    CONFIG_FILE,
    DATABASE_FILE,
    PROVENANCE_FILE,
    IterationRecord,
    RunStore,
    RunStoreError,
    list_runs,
    writer_lock,
)
from labctl.run.store import runstore as runstore_module

REPO_ROOT = Path(__file__).resolve().parents[1]

# Shared by the test process and the child processes of the crash test: the record with number i
# is a pure function of i, so the parent can check every stored byte.
RECORD_FACTORY_SOURCE = """
import numpy as np
from labctl.run.store import IterationRecord

def make_record(i, raw_size=4096):
    rng = np.random.default_rng([2024, i])
    n_cases, n_controls = 4, 5
    return IterationRecord(
        run_iteration=i,
        restart_index=i // 7,
        controls_v=rng.uniform(-1.2, 0.6, n_controls),
        outputs_a=rng.normal(0.0, 1e-9, n_cases),
        gradients_a_per_v=rng.normal(0.0, 1e-9, (n_cases, n_controls)),
        gradient_stderr_a_per_v=rng.uniform(0.0, 1e-11, (n_cases, n_controls)),
        loss=float(rng.uniform()),
        accuracy=float(rng.integers(0, 5)) / 4,
        separation_a=float(rng.normal(0.0, 1e-9)),
        device_seconds=1.25 * (i + 1),
        wall_time_s=1.7e9 + 3.0 * i,
        extra={"learning_rate": 0.1 + 0.2, "note": f"iteration {i}", "vec": [1e-300, -0.0]},
        raw={"current_a": rng.normal(0.0, 1e-9, (n_cases, raw_size))},
    )
"""

_namespace: dict[str, Any] = {}
exec(RECORD_FACTORY_SOURCE, _namespace)
make_record = _namespace["make_record"]

CHILD_SCRIPT = (
    RECORD_FACTORY_SOURCE
    + """
import sys
from labctl.run.store import RunStore

store = RunStore.open(sys.argv[1])
i = store.next_iteration()
while True:
    store.append(make_record(i))
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
    i += 1
"""
)


def new_store(tmp_path: Path, name: str = "test", **kwargs: Any) -> RunStore:
    return RunStore.create(tmp_path, name, kwargs.pop("config", "task: xor\n"), **kwargs)


def awkward_record(i: int) -> IterationRecord:
    """A record full of values that lossy encodings get wrong."""
    values = np.array([0.1 + 0.2, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1.7976931348623157e308])
    return IterationRecord(
        run_iteration=i,
        restart_index=2,
        controls_v=values,
        outputs_a=np.array([1e-12, np.nextafter(1e-9, 1.0)], dtype=np.float64),
        gradients_a_per_v=np.arange(14, dtype=np.float32).reshape(2, 7) / 3,
        gradient_stderr_a_per_v=np.full((2, 7), np.nan),
        loss=math.nan,
        accuracy=0.75,
        separation_a=-math.inf,
        device_seconds=1 / 3,
        wall_time_s=1_700_000_000.123456789,
        extra={"nested": {"x": [0.1, math.pi]}, "flag": True, "none": None},
        raw={"trace": np.arange(10, dtype=np.int16), "mask": np.array([True, False])},
    )


# ---------------------------------------------------------------------- creation
def test_create_writes_layout_config_and_provenance(tmp_path: Path) -> None:
    config = {"task": "xor", "optimizer": {"name": "adam", "learning_rate": 0.01}}
    extra = {"instruments": {"daq": "SimDAQ #1"}, "calibration": {"gain_v_per_a": 1e8}}
    with RunStore.create(tmp_path / "runs", "xor on chip/7", config, extra) as store:
        assert re.fullmatch(r"\d{8}-\d{6}-xor-on-chip-7", store.name)
        assert store.path.parent == tmp_path / "runs"
        for name in (CONFIG_FILE, PROVENANCE_FILE, DATABASE_FILE):
            assert (store.path / name).is_file()
        assert yaml.safe_load(store.config_text()) == config
        provenance = json.loads((store.path / PROVENANCE_FILE).read_text())
        assert store.provenance() == provenance
        assert provenance["labctl_version"] == labctl.__version__
        assert provenance["instruments"] == extra["instruments"]
        assert provenance["calibration"] == extra["calibration"]
        assert provenance["packages"]["numpy"] == np.__version__
        assert provenance["python"] == sys.version
        start = datetime.fromisoformat(provenance["start_time_utc"])
        assert start.utcoffset() is not None and start.utcoffset().total_seconds() == 0
        assert start.strftime("%Y%m%d-%H%M%S") == store.name[:15]
        assert {"git", "platform", "hostname"} <= provenance.keys()
        assert store.status() == "created"
        assert store.iterations() == []
        assert store.last_iteration() is None
        assert store.next_iteration() == 0
    assert not list(store.path.glob("*.tmp"))


def test_config_text_is_stored_verbatim(tmp_path: Path) -> None:
    text = "# resolved\ntask: xor   # comment kept\nseed: 7\n"
    with new_store(tmp_path, config=text) as store:
        assert store.config_text() == text


def test_git_revision_recorded_inside_a_repository() -> None:
    revision = store_module.git_revision(REPO_ROOT)
    if revision is None:
        pytest.skip("not running inside a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}", revision["commit"])
    assert isinstance(revision["dirty"], bool)


def test_git_revision_tolerates_absence(tmp_path: Path) -> None:
    assert store_module.git_revision(tmp_path) is None


def test_provenance_extra_cannot_shadow_automatic_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hostname"):
        new_store(tmp_path, provenance_extra={"hostname": "fake"})


def test_directory_names_are_unique_within_one_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> FrozenDatetime:  # type: ignore[override]
            return fixed  # type: ignore[return-value]

    monkeypatch.setattr(runstore_module, "datetime", FrozenDatetime)
    names = [new_store(tmp_path, "same").name for _ in range(3)]
    assert names == ["20250304-050607-same", "20250304-050607-same-2", "20250304-050607-same-3"]
    assert new_store(tmp_path, "!!!").name == "20250304-050607-run"


def test_database_uses_wal_and_full_sync(tmp_path: Path) -> None:
    with new_store(tmp_path) as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        other = sqlite3.connect(store.path / DATABASE_FILE)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            other.close()


# ---------------------------------------------------------------------- records
def test_round_trip_is_exact(tmp_path: Path) -> None:
    records = [make_record(i, raw_size=64) for i in range(3)] + [awkward_record(3)]
    with new_store(tmp_path) as store:
        for record in records:
            store.append(record)
        run_dir = store.path
    with RunStore.open(run_dir) as store:
        loaded = store.iterations()
    assert loaded == records
    awkward = loaded[3]
    assert awkward.gradients_a_per_v.dtype == np.float32
    assert awkward.raw is not None and awkward.raw["trace"].dtype == np.int16
    assert np.signbit(awkward.controls_v[1])
    assert awkward.controls_v.tobytes() == records[3].controls_v.tobytes()
    assert math.isnan(awkward.loss) and awkward.separation_a == -math.inf
    assert awkward.wall_time_s == 1_700_000_000.123456789
    assert awkward.extra == {"nested": {"x": [0.1, math.pi]}, "flag": True, "none": None}


def test_record_equality_detects_single_bit_changes() -> None:
    a = make_record(1, raw_size=8)
    b = make_record(1, raw_size=8)
    assert a == b
    controls = a.controls_v.copy()
    controls[0] = np.nextafter(controls[0], 10.0)
    changed = IterationRecord(**{**a.__dict__, "controls_v": controls})
    assert changed != a
    assert IterationRecord(**{**a.__dict__, "raw": None}) != a
    assert IterationRecord(**{**a.__dict__, "extra": {}}) != a
    assert IterationRecord(**{**a.__dict__, "controls_v": a.controls_v.astype(np.float32)}) != a


def test_iterations_since_and_without_raw(tmp_path: Path) -> None:
    with new_store(tmp_path) as store:
        for i in range(5):
            store.append(make_record(i, raw_size=8))
        later = store.iterations(since=2)
        assert [r.run_iteration for r in later] == [3, 4]
        assert later[0] == make_record(3, raw_size=8)
        light = store.iterations(include_raw=False)
        assert all(r.raw is None for r in light)
        assert light[0].controls_v.tobytes() == make_record(0).controls_v.tobytes()
        assert store.iteration_count() == 5
        assert store.last_iteration() == 4
        assert store.next_iteration() == 5


def test_record_arrays_are_read_only_copies() -> None:
    controls = np.zeros(5)
    record = IterationRecord(
        0, 0, controls, np.zeros(2), np.zeros((2, 5)), np.zeros((2, 5)), 0, 0, 0, 0, 0
    )
    controls[0] = 1.0
    assert record.controls_v[0] == 0.0
    with pytest.raises(ValueError):
        record.controls_v[0] = 2.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"run_iteration": -1}, "run_iteration"),
        ({"run_iteration": 1.5}, "run_iteration"),
        ({"restart_index": True}, "restart_index"),
        ({"controls_v": np.zeros((5, 1))}, "1-D"),
        ({"gradients_a_per_v": np.zeros((5, 4))}, r"\(4, 5\)"),
        ({"gradient_stderr_a_per_v": np.zeros((4, 4))}, "gradient_stderr"),
        ({"outputs_a": np.array(["a", "b", "c", "d"])}, "numeric"),
        ({"loss": "low"}, "loss"),
        ({"extra": [1, 2]}, "mapping"),
        ({"raw": {"not an identifier": np.zeros(2)}}, "identifiers"),
    ],
)
def test_record_validation(changes: dict[str, Any], message: str) -> None:
    fields = {**make_record(0, raw_size=2).__dict__, **changes}
    with pytest.raises((ValueError, TypeError), match=message):
        IterationRecord(**fields)


def test_append_rejects_non_increasing_numbers(tmp_path: Path) -> None:
    with new_store(tmp_path) as store:
        store.append(make_record(3, raw_size=2))
        for bad in (3, 2):
            with pytest.raises(ValueError, match="next_iteration"):
                store.append(make_record(bad, raw_size=2))
        store.append(make_record(10, raw_size=2))  # gaps are allowed
        assert [r.run_iteration for r in store.iterations()] == [3, 10]


def test_rows_cannot_be_updated_or_deleted(tmp_path: Path) -> None:
    with new_store(tmp_path) as store:
        store.append(make_record(0, raw_size=2))
        store.set_status("running")
        db = store.path / DATABASE_FILE
    conn = sqlite3.connect(db)
    try:
        for statement in (
            "UPDATE iterations SET loss = 0",
            "DELETE FROM iterations",
            "UPDATE events SET status = 'finished'",
            "DELETE FROM events",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()
    with RunStore.open(db.parent) as store:
        assert store.iterations() == [make_record(0, raw_size=2)]
        assert store.status() == "running"


# ---------------------------------------------------------------------- status, listing
def test_status_events_are_appended(tmp_path: Path) -> None:
    with new_store(tmp_path) as store:
        store.set_status("running")
        store.set_status("finished", {"best_loss": 0.125, "iterations": np.int64(3)})
        assert store.status() == "finished"
        assert store.summary() == {"best_loss": 0.125, "iterations": 3}
        history = store.status_history()
        assert [status for _, status, _ in history] == ["created", "running", "finished"]
        times = [t for t, _, _ in history]
        assert times == sorted(times)
        assert all(t.tzinfo is UTC for t in times)
        with pytest.raises(ValueError, match="status"):
            store.set_status("")


def test_list_runs(tmp_path: Path) -> None:
    with new_store(tmp_path, "alpha") as a:
        for i, loss in enumerate([0.5, math.nan, 0.25, 0.75]):
            a.append(IterationRecord(**{**make_record(i, raw_size=2).__dict__, "loss": loss}))
        a.set_status("finished")
    with new_store(tmp_path, "beta") as b:
        b.set_status("running")
    (tmp_path / "not-a-run").mkdir()
    broken = tmp_path / "29990101-000000-broken"
    broken.mkdir()
    (broken / DATABASE_FILE).write_bytes(b"this is not sqlite" * 100)

    summaries = {s.name: s for s in list_runs(tmp_path)}
    assert set(summaries) == {a.name, b.name, broken.name}
    sa = summaries[a.name]
    assert (sa.status, sa.iterations, sa.best_loss, sa.path) == ("finished", 4, 0.25, a.path)
    assert sa.start_time is not None and sa.start_time.tzinfo is not None
    sb = summaries[b.name]
    # "running" in the store, but no process holds the writer lock: it was interrupted
    assert (sb.status, sb.iterations, sb.best_loss) == ("interrupted", 0, None)
    with writer_lock(b.path):
        live = {s.name: s for s in list_runs(tmp_path)}
        assert live[b.name].status == "running"
    assert summaries[broken.name].status == "unreadable"
    assert [s.name for s in list_runs(tmp_path)] == sorted(summaries)
    assert list_runs(tmp_path / "missing") == []


# ---------------------------------------------------------------------- handles
def test_open_errors_read_only_and_close(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunStore.open(tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / DATABASE_FILE).write_bytes(b"not a database" * 200)
    with pytest.raises(RunStoreError, match="not a readable run database"):
        RunStore.open(tmp_path / "junk")
    store = new_store(tmp_path)
    store.append(make_record(0, raw_size=2))
    reader = RunStore.open(store.path, read_only=True)
    assert reader.iterations() == store.iterations()
    with pytest.raises(RunStoreError, match="read-only"):
        reader.append(make_record(1, raw_size=2))
    with pytest.raises(RunStoreError, match="read-only"):
        reader.set_status("running")
    store.append(make_record(1, raw_size=2))  # readers see new commits
    assert reader.last_iteration() == 1
    reader.close()
    store.close()
    store.close()
    with pytest.raises(RunStoreError, match="closed"):
        store.iterations()
    with pytest.raises(TypeError):
        RunStore.open(store.path).append({"run_iteration": 2})  # type: ignore[arg-type]


def test_appends_from_worker_thread_with_concurrent_reads(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(30):
                store.append(make_record(i, raw_size=16))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    seen = 0
    while thread.is_alive() or seen < 30:
        records = store.iterations(include_raw=False)
        assert [r.run_iteration for r in records] == list(range(len(records)))
        seen = len(records)
        if not thread.is_alive() and seen < 30:
            break
    thread.join()
    assert errors == []
    assert store.iteration_count() == 30
    store.close()


# ---------------------------------------------------------------------- crash safety
def _run_child_and_kill(run_dir: Path, rng: np.random.Generator) -> list[int]:
    """Start a writer process, SIGKILL it at a random moment, return the iterations it reported."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    reported: list[int] = []
    target = int(rng.integers(1, 25))
    try:
        assert child.stdout is not None
        while len(reported) < target:
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"writer exited early: {child.stderr.read()}")  # type: ignore[union-attr]
            reported.append(int(line))
        # Land the kill at a random point of the following append (often mid-transaction).
        threading.Event().wait(float(rng.uniform(0.0, 0.004)))
    finally:
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reported += [int(line) for line in out.split()]
    return reported


def test_sigkill_loses_at_most_the_iteration_in_progress(tmp_path: Path) -> None:
    rng = np.random.default_rng(20240607)
    with new_store(tmp_path, "crash") as store:
        run_dir = store.path
    all_reported: list[int] = []
    for _ in range(6):
        reported = _run_child_and_kill(run_dir, rng)
        assert reported, "the writer reported nothing before being killed"
        all_reported += reported
        with RunStore.open(run_dir) as store:
            assert store._conn is not None
            assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = store.iterations()
        numbers = [r.run_iteration for r in stored]
        assert numbers == list(range(len(numbers))), "numbering must be contiguous"
        assert set(all_reported) <= set(numbers), "a reported commit was lost"
        assert numbers[-1] <= max(all_reported) + 1, "at most one unreported commit"
        for record in stored:
            assert record == make_record(record.run_iteration)
    with RunStore.open(run_dir) as store:
        next_number = store.next_iteration()
        assert next_number == numbers[-1] + 1
        store.append(make_record(next_number))
        assert store.last_iteration() == next_number
        assert store.iterations()[-1] == make_record(next_number)
