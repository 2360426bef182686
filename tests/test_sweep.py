"""labctl sweep: grid validation, placement of each run's files, scheduling, summary; the
process pool against a local Dask cluster (identical results for the same seeds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.cli import main
from labctl.exit_codes import EXIT_BAD_INPUT, EXIT_OK
from labctl.run.store import RunStore
from labctl.sweep.entry import read_result, run_stores, train_from_dict
from labctl.sweep.placement import (
    CALIBRATION_NAME,
    is_simulated_backend,
    max_concurrent_runs,
    place_run_files,
)
from labctl.sweep.runner import SweepRunner, read_sweep
from labctl.sweep.spec import SweepSpecError, load_sweep
from tests.conftest import CONFIGS

DETERMINISTIC = (
    "status",
    "complete",
    "solved",
    "iterations",
    "device_seconds",
    "final_loss",
    "best_loss",
    "final_accuracy",
    "stop_reason",
    "restarts",
)


def write_sweep_file(tmp_path: Path, body: dict[str, Any], name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def base_copy(tmp_path: Path, name: str = "or_sim.yaml") -> Path:
    """A shipped config copied next to the sweep file (to see what is written beside it)."""
    path = tmp_path / name
    path.write_text((CONFIGS / name).read_text())
    return path


def small_sweep(tmp_path: Path, directory: str, **grid: Any) -> Path:
    base = base_copy(tmp_path)
    body = {
        "base": base.name,
        "overrides": {"run": {"max_iterations": 12}},
        "grid": {"tasks": ["OR"], "seeds": [0, 1], **grid},
        "sweep": {"name": "small", "directory": directory},
    }
    return write_sweep_file(tmp_path, body, f"{directory}.yaml")


# ----------------------------------------------------------------------------- validation
def test_a_bad_point_names_the_point_and_the_field_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_sweep(tmp_path, "bad", params={"optimiser.learning_rate": [0.05, -1.0]})
    rc = main(["sweep", str(path)])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT
    assert "point 002-OR-learning_rate=-1.0-s0: optimiser.learning_rate" in err, err
    assert "point 003-OR-learning_rate=-1.0-s1: optimiser.learning_rate" in err, err
    assert "learning_rate=0.05" not in err  # the good points are not reported
    assert not (tmp_path / "bad").exists(), "a sweep directory was created for a bad grid"


def test_unknown_paths_methods_and_sweep_keys_are_errors(tmp_path: Path) -> None:
    path = small_sweep(tmp_path, "unknown", params={"optimiser.no_such_field": [1]})
    with pytest.raises(SweepSpecError, match=r"optimiser\.no_such_field"):
        load_sweep(path)
    path = small_sweep(tmp_path, "method", methods=["no_such_method"])
    with pytest.raises(SweepSpecError, match=r"point 000-OR-no_such_method-s0: method"):
        load_sweep(path)
    path = write_sweep_file(tmp_path, {"base": "or_sim.yaml", "grid": {"seed": [1]}})
    with pytest.raises(SweepSpecError, match=r"grid\.seed"):
        load_sweep(path)
    path = write_sweep_file(tmp_path, {"base": "or_sim.yaml", "grid": {"params": {"a..b": [1]}}})
    with pytest.raises(SweepSpecError, match="dotted path"):
        load_sweep(path)


def test_the_grid_expands_in_order_with_seeds_and_methods(tmp_path: Path) -> None:
    path = small_sweep(
        tmp_path,
        "grid",
        methods=["hge", {"name": "spsa", "params": {}}],
        params={"optimiser.learning_rate": [0.02, 0.05]},
    )
    sweep = load_sweep(path)
    assert len(sweep.points) == 1 * 2 * 2 * 2
    first, last = sweep.points[0], sweep.points[-1]
    assert first.id == "000-OR-hge-learning_rate=0.02-s0"
    assert last.labels == {
        "task": "OR",
        "method": "spsa",
        "optimiser.learning_rate": 0.05,
        "seed": 1,
    }
    config = last.config
    assert config["run"]["seed"] == 1
    assert config["setup"]["backend"]["settings"]["noise_seed"] == 1
    assert config["optimiser"]["learning_rate"] == 0.05
    assert config["method"]["name"] == "spsa"
    point_dir = sweep.directory / "points" / last.id
    assert config["run"]["directory"] == str(point_dir)
    assert config["homodyne"]["calibration"]["file"] == str(point_dir / CALIBRATION_NAME)
    assert config["setup"]["safety"]["state_file"] == str(point_dir / "voltages.json")
    assert all(p.simulated for p in sweep.points)


def test_the_shipped_example_validates(tmp_path: Path) -> None:
    sweep = load_sweep(CONFIGS / "sweep_example.yaml", tmp_path / "example")
    assert len(sweep.points) == 12  # 2 gates x 3 seeds x 2 learning rates
    assert {p.labels["task"] for p in sweep.points} == {"OR", "AND"}
    assert not (tmp_path / "example").exists()  # validating creates nothing
    assert main(["validate", str(CONFIGS / "sweep_example.yaml")]) == EXIT_OK
    bad = small_sweep(tmp_path, "bad", params={"optimiser.learning_rate": [-1.0]})
    assert main(["validate", str(bad)]) == EXIT_BAD_INPUT


# ----------------------------------------------------------------------------- scheduling
def test_a_sweep_on_a_real_backend_runs_one_run_at_a_time(tmp_path: Path) -> None:
    """configs/sim_cdaq_grpc.yaml names the nidaq driver (here it would talk to the simulated
    NI gRPC server, but for the sweep it is hardware: one chip serves one run)."""
    assert is_simulated_backend("simulated")
    assert not is_simulated_backend("nidaq")
    assert not is_simulated_backend("no-such-backend")
    body = {
        "base": str(CONFIGS / "sim_cdaq_grpc.yaml"),
        "grid": {"seeds": [0, 1, 2]},
        "sweep": {"directory": str(tmp_path / "hw")},
    }
    sweep = load_sweep(write_sweep_file(tmp_path, body))
    assert [p.simulated for p in sweep.points] == [False] * 3
    assert SweepRunner(sweep, workers=4).slots == 1
    config = sweep.points[0].config
    assert "noise_seed" not in config["setup"]["backend"]["settings"]  # not a simulator
    assert config["setup"]["safety"]["state_file"] is None  # the chip's own state file
    assert max_concurrent_runs([True, True], 3) == 3
    assert max_concurrent_runs([True, False], 3) == 1


def test_place_run_files_keeps_a_real_setups_named_calibration(tmp_path: Path) -> None:
    data = {
        "setup": {"backend": {"name": "nidaq"}},
        "homodyne": {"calibration": {"file": "/lab/chip7.calibration.json"}},
    }
    placed = place_run_files(data, tmp_path)
    assert placed["homodyne"]["calibration"]["file"] == "/lab/chip7.calibration.json"
    data["setup"] = {"backend": {"name": "simulated"}}
    placed = place_run_files(data, tmp_path)
    assert placed["homodyne"]["calibration"]["file"] == str(tmp_path / CALIBRATION_NAME)
    assert placed["setup"]["safety"]["state_file"] == str(tmp_path / "voltages.json")


def test_without_the_cluster_extra_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    path = small_sweep(tmp_path, "nodask")
    rc = main(["sweep", str(path), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT
    assert "'cluster' extra" in err and "labctl[cluster]" in err, err
    assert not (tmp_path / "nodask").exists()


def test_an_unreachable_scheduler_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from labctl.sweep.executors import ClusterUnavailable, dask_cluster

    with (
        pytest.raises(ClusterUnavailable, match="cannot reach the Dask scheduler"),
        dask_cluster("tcp://127.0.0.1:9", timeout_s=0.5),
    ):
        pass


# ----------------------------------------------------------------------------- runs
def test_train_from_dict_keeps_the_calibration_with_the_run_and_is_idempotent(
    tmp_path: Path,
) -> None:
    sweep = load_sweep(small_sweep(tmp_path, "entry"))
    point = sweep.points[0]
    config = json.loads(json.dumps(point.config))  # plain data, as a worker receives it
    run_dir = tmp_path / "entry-run"
    result = train_from_dict(config, str(run_dir))
    assert json.loads(json.dumps(result)) == result
    assert result["complete"] and result["status"] == "finished"
    assert 1 <= result["iterations"] <= 12
    (store_dir,) = run_stores(run_dir)
    assert result["run"] == store_dir.name
    assert (store_dir / "calibration.json").is_file()  # the run's own, written atomically
    assert not list(tmp_path.glob("*.calibration.json")), "a calibration next to the config"
    assert not list(Path.cwd().glob("labctl.calibration.json"))
    assert read_result(run_dir) == result
    again = train_from_dict(config, str(run_dir))
    assert again == result  # complete: not run again
    assert run_stores(run_dir) == [store_dir]


@pytest.mark.slow
def test_process_pool_and_dask_cluster_give_identical_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    distributed = pytest.importorskip("distributed")
    grid = {"params": {"optimiser.learning_rate": [0.02, 0.05]}}
    pool_file = small_sweep(tmp_path, "pool", **grid)
    assert main(["sweep", str(pool_file), "--workers", "2"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "## By optimiser.learning_rate" in out and "| 0.02 | 2 |" in out, out
    dask_file = small_sweep(tmp_path, "dask", **grid)
    with distributed.LocalCluster(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as cluster:
        rc = main(["sweep", str(dask_file), "--scheduler", cluster.scheduler_address])
    assert rc == EXIT_OK
    pool = json.loads((tmp_path / "pool" / "results.json").read_text())
    dask = json.loads((tmp_path / "dask" / "results.json").read_text())
    assert [r["labels"] for r in pool] == [r["labels"] for r in dask]
    assert len(pool) == 4 and all(r["complete"] for r in pool)
    for a, b in zip(pool, dask, strict=True):
        assert {k: a[k] for k in DETERMINISTIC} == {k: b[k] for k in DETERMINISTIC}, a["id"]
    assert pool[0]["final_loss"] != pool[1]["final_loss"], "the seeds made no difference"
    # the stored iterations agree bit for bit, not only the summaries
    for a, b in zip(pool, dask, strict=True):
        stores = []
        for root, r in (("pool", a), ("dask", b)):
            with RunStore.open(
                tmp_path / root / "points" / r["id"] / r["run"], read_only=True
            ) as s:
                stores.append(
                    [(x.loss, x.controls_v.tolist()) for x in s.iterations(include_raw=False)]
                )
        assert stores[0] == stores[1]
    summary = (tmp_path / "dask" / "summary.md").read_text()
    assert "## Points" in summary and "000-OR-learning_rate=0.02-s0" in summary
    assert read_sweep(tmp_path / "dask").name == "small"
    assert not list(tmp_path.glob("*.calibration.json"))
