"""Tests for CSV and HDF5 export of stored runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from labctl.run.export import export_run
from labctl.run.store import IterationRecord, RunStore

N_CASES, N_CONTROLS, N_ITERATIONS = 4, 5, 6
CONFIG = {"task": "xor", "seed": 11, "optimizer": {"name": "adam", "learning_rate": 0.01}}
PROVENANCE_EXTRA = {"instruments": {"daq": "SimDAQ"}, "calibration": {"gain_v_per_a": 1e8}}


def read_csv_exact(path: Path) -> pd.DataFrame:
    """Read a CSV with exact float parsing (default from pandas 3; opt-in before)."""
    if int(pd.__version__.split(".")[0]) >= 3:
        return pd.read_csv(path)
    return pd.read_csv(path, float_precision="round_trip")


def record(i: int) -> IterationRecord:
    rng = np.random.default_rng([7, i])
    return IterationRecord(
        run_iteration=i,
        restart_index=i // 3,
        controls_v=rng.uniform(-1.2, 0.6, N_CONTROLS),
        outputs_a=rng.normal(0.0, 1e-9, N_CASES),
        gradients_a_per_v=rng.normal(0.0, 1e-9, (N_CASES, N_CONTROLS)),
        gradient_stderr_a_per_v=rng.uniform(0.0, 1e-11, (N_CASES, N_CONTROLS)),
        loss=math.nan if i == 2 else float(rng.uniform()),
        accuracy=float(rng.integers(0, 5)) / 4,
        separation_a=float(rng.normal(0.0, 1e-9)),
        device_seconds=0.1 + 0.2 * i,
        wall_time_s=1.7e9 + 0.001 * i,
        extra={"learning_rate": 0.01 * (i + 1), "label": f"it{i}"},
        raw={"current_a": rng.normal(0.0, 1e-9, (N_CASES, 32))} if i % 2 == 0 else None,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    with RunStore.create(tmp_path, "export", CONFIG, PROVENANCE_EXTRA) as store:
        for i in range(N_ITERATIONS):
            store.append(record(i))
        store.set_status("finished", {"best_loss": 0.1})
        return store.path


def test_csv_round_trips_through_pandas(run_dir: Path) -> None:
    out = export_run(run_dir, "csv")
    assert out == run_dir / "iterations.csv"
    frame = read_csv_exact(out)
    assert len(frame) == N_ITERATIONS
    assert list(frame.columns[:7]) == [
        "run_iteration",
        "restart_index",
        "wall_time_s",
        "device_seconds_s",
        "loss",
        "accuracy",
        "separation_a",
    ]
    expected = [record(i) for i in range(N_ITERATIONS)]
    assert frame["run_iteration"].tolist() == list(range(N_ITERATIONS))
    assert frame["restart_index"].tolist() == [r.restart_index for r in expected]
    for column, attr in [
        ("wall_time_s", "wall_time_s"),
        ("device_seconds_s", "device_seconds"),
        ("loss", "loss"),
        ("accuracy", "accuracy"),
        ("separation_a", "separation_a"),
    ]:
        np.testing.assert_array_equal(
            frame[column].to_numpy(), [getattr(r, attr) for r in expected]
        )
    assert math.isnan(frame["loss"][2])
    controls = frame[[f"control_{j}_v" for j in range(N_CONTROLS)]].to_numpy()
    np.testing.assert_array_equal(controls, np.stack([r.controls_v for r in expected]))
    outputs = frame[[f"output_case{k}_a" for k in range(N_CASES)]].to_numpy()
    np.testing.assert_array_equal(outputs, np.stack([r.outputs_a for r in expected]))
    for prefix, attr in [("grad", "gradients_a_per_v"), ("grad_stderr", "gradient_stderr_a_per_v")]:
        cols = [
            f"{prefix}_case{k}_control{j}_a_per_v"
            for k in range(N_CASES)
            for j in range(N_CONTROLS)
        ]
        values = frame[cols].to_numpy().reshape(N_ITERATIONS, N_CASES, N_CONTROLS)
        np.testing.assert_array_equal(values, np.stack([getattr(r, attr) for r in expected]))
    assert [json.loads(x) for x in frame["extra_json"]] == [r.extra for r in expected]


def test_csv_custom_path_and_empty_run(tmp_path: Path) -> None:
    with RunStore.create(tmp_path, "empty", "task: xor\n") as store:
        empty_dir = store.path
    out = export_run(empty_dir, "csv", tmp_path / "out" / "empty.csv")
    assert out == tmp_path / "out" / "empty.csv"
    frame = pd.read_csv(out)
    assert len(frame) == 0
    assert "loss" in frame.columns


def test_hdf5_datasets_and_attributes(run_dir: Path, tmp_path: Path) -> None:
    out = export_run(run_dir, "hdf5", tmp_path / "run.h5")
    expected = [record(i) for i in range(N_ITERATIONS)]
    with h5py.File(out, "r") as h5:
        assert h5["run_iteration"][()].tolist() == list(range(N_ITERATIONS))
        assert h5["run_iteration"].dtype == np.int64
        for name in ("restart_index", "loss", "accuracy", "separation_a", "device_seconds"):
            np.testing.assert_array_equal(h5[name][()], [getattr(r, name) for r in expected])
        np.testing.assert_array_equal(h5["wall_time_s"][()], [r.wall_time_s for r in expected])
        for name, units in [
            ("controls_v", "V"),
            ("outputs_a", "A"),
            ("gradients_a_per_v", "A/V"),
            ("gradient_stderr_a_per_v", "A/V"),
        ]:
            data = h5[name][()]
            np.testing.assert_array_equal(data, np.stack([getattr(r, name) for r in expected]))
            assert h5[name].attrs["units"] == units
        assert h5["gradients_a_per_v"].shape == (N_ITERATIONS, N_CASES, N_CONTROLS)
        assert h5["separation_a"].attrs["units"] == "A"
        extras = [json.loads(x) for x in h5["extra_json"].asstr()[()]]
        assert extras == [r.extra for r in expected]
        assert sorted(h5["raw"].keys(), key=int) == ["0", "2", "4"]
        for key in h5["raw"]:
            raw = expected[int(key)].raw
            assert raw is not None
            np.testing.assert_array_equal(h5["raw"][key]["current_a"][()], raw["current_a"])
        assert yaml.safe_load(h5.attrs["config_yaml"]) == CONFIG
        provenance = json.loads(h5.attrs["provenance_json"])
        assert provenance["instruments"] == PROVENANCE_EXTRA["instruments"]
        assert provenance["calibration"] == PROVENANCE_EXTRA["calibration"]
        assert "labctl_version" in provenance
        assert h5.attrs["status"] == "finished"
        history = json.loads(h5.attrs["status_history_json"])
        assert [h["status"] for h in history] == ["created", "finished"]
        assert history[-1]["summary"] == {"best_loss": 0.1}
        assert h5.attrs["run_name"] == run_dir.name


def test_hdf5_default_path(run_dir: Path) -> None:
    out = export_run(run_dir, "hdf5")
    assert out == run_dir / "run.h5"
    with h5py.File(out, "r") as h5:
        assert h5["loss"].shape == (N_ITERATIONS,)


def test_hdf5_rejects_inconsistent_shapes(tmp_path: Path) -> None:
    with RunStore.create(tmp_path, "ragged", "task: xor\n") as store:
        store.append(record(0))
        short = record(1)
        store.append(
            IterationRecord(
                **{
                    **short.__dict__,
                    "controls_v": short.controls_v[:3],
                    "gradients_a_per_v": short.gradients_a_per_v[:, :3],
                    "gradient_stderr_a_per_v": short.gradient_stderr_a_per_v[:, :3],
                }
            )
        )
        ragged = store.path
    with pytest.raises(ValueError, match="controls_v"):
        export_run(ragged, "hdf5")
    frame = read_csv_exact(export_run(ragged, "csv"))
    assert frame["control_4_v"].isna().tolist() == [False, True]


def test_unknown_format(run_dir: Path) -> None:
    with pytest.raises(ValueError, match="csv"):
        export_run(run_dir, "xlsx")  # type: ignore[arg-type]
