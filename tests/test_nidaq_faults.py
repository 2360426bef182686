"""The NI gRPC Device Server dies in mid-record during a training run.

The run must end with its store intact (every committed iteration readable, status "failed"),
the driver reporting that it no longer knows the electrode voltages (NI AO cannot be read
back), and that knowledge persisted. After the server is back, a resume refuses to drive the
unknown electrodes: no waveform goes out, and its shutdown brings them to 0 V with the one
step that cannot leave their ranges, reported (exit 3). The next resume ramps from the
persisted 0 V and finishes the run.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.cli import EXIT_SHUTDOWN_FAILED, main
from labctl.config import parse_config
from labctl.run.control import RunController
from labctl.run.state import RunState
from labctl.run.store import RunStore
from labctl.training.session import execute, new_run
from tests.conftest import CONFIGS

nidaq_server = pytest.importorskip("simulated_hw.nidaq_server")

pytestmark = pytest.mark.slow


def training_config(tmp_path: Path, port: int) -> Path:
    """XOR through the nidaq driver on the simulated server at ``port``; runs in tmp_path."""
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    driver = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())["setup"]["backend"]
    driver["settings"]["grpc"]["port"] = port
    driver["settings"]["timeout_s"] = 2.0
    data["setup"]["backend"] = driver
    data["setup"]["safety"]["state_file"] = str(tmp_path / "voltages.json")
    data["run"].update(
        {
            "directory": str(tmp_path / "runs"),
            "max_iterations": 6,
            "accuracy_hold_iterations": None,
            "report": False,
        }
    )
    data["homodyne"] = {**data.get("homodyne", {}), "phase": "sign"}
    path = tmp_path / "xor_nidaq.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def realtime_server(port: int = 0, bench: Any = None) -> Any:
    config = nidaq_server.load_sim_daq_config(None)
    config = config.model_copy(update={"bench": config.bench.model_copy(update={"realtime": True})})
    return nidaq_server.serve(config, port=port, bench=bench)


def test_server_killed_mid_record_then_park_and_resume(tmp_path: Path) -> None:
    server = realtime_server()
    port, bench = server.port, server.bench
    config = training_config(tmp_path, port)
    assert main(["park", str(config)]) == EXIT_SHUTDOWN_FAILED  # first use: AO unknown
    run = new_run(parse_config(config.read_text(), source=config))
    controller = RunController()
    controller.start()
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(state=execute(run, controller)))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while run.store.iteration_count() < 2:  # two iterations committed, the third playing
            assert worker.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.1)
        server.stop()  # the server dies in mid-record
        worker.join(60)
    finally:
        server.stop()
    assert not worker.is_alive()
    committed = run.store.iteration_count()
    run_dir = run.path
    assert outcome["state"] is RunState.FAILED
    report = run.shutdown_report
    assert report is not None and not report.ok and not report.completed
    assert set(report.failed_electrodes) == {f"e{k}" for k in range(7)}
    run.store.close()

    # the store is intact: every committed iteration reads back, the status says what happened
    with RunStore.open(run_dir, read_only=True) as store:
        assert store.iteration_count() == committed >= 2
        assert [r.run_iteration for r in store.iter_records()] == list(range(committed))
        assert store.status() == "failed"
    persisted = json.loads((tmp_path / "voltages.json").read_text())
    assert persisted["held_v"] == [None] * 7  # unknown, and known to be unknown

    held_by_the_dac = bench.applied_v  # the outputs keep what they had when the server died
    with realtime_server(port=port, bench=bench) as revived:
        plays_before = revived.bench.audit.n_plays
        # refuses to drive the unknown electrodes; its shutdown steps them to 0 V, loudly
        assert main(["train", "--resume", str(run_dir)]) == EXIT_SHUTDOWN_FAILED
        assert revived.bench.audit.n_plays == plays_before + 1  # that one step, nothing else
        assert np.abs(held_by_the_dac).max() > 0.0
        np.testing.assert_array_equal(revived.bench.applied_v, np.zeros(7))
        assert json.loads((tmp_path / "voltages.json").read_text())["held_v"] == [0.0] * 7
        assert main(["park", str(config)]) == 0  # known at 0 V now: a clean park

        revived.bench.audit.reset()
        assert main(["train", "--resume", str(run_dir)]) == 0  # ramps from the persisted 0 V
        audit = revived.bench.audit
        assert np.all(audit.max_slew_v_per_s <= 200.0 * (1 + 1e-6))
        np.testing.assert_array_equal(revived.bench.applied_v, np.zeros(7))
    with RunStore.open(run_dir, read_only=True) as store:
        assert store.iteration_count() == 6
        assert store.status() == "finished"
