"""`labctl twin sample` and `labctl twin fit` on the simulated DNPU (small sizes).

Sampling goes through the safety layer (the bench's audit shows ranges and slew kept), is
stored block by block and resumes after a SIGKILL with exactly the trajectory an uninterrupted
run measures; the fitted twin is a surrogate the simulated backend loads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from labctl.cli import main
from labctl.config import parse_config
from labctl.connect import build_device
from labctl.twin.fitting import FitSettings, fit_twin, split_indices
from labctl.twin.sampling import (
    SampleStore,
    SamplingError,
    SamplingPlan,
    read_samples,
    sample_device,
)
from simulated_hw.hopping import HoppingNetworkModel
from simulated_hw.surrogate import SurrogateModel
from tests.conftest import CONFIGS, NO_EFFECTS, REPO, bench_of

SMALL = ["--points", "1500", "--block-points", "500", "--noise-points", "2", "--noise-groups", "20"]


def sim_config(tmp_path: Path, exact: bool = False, **settings: object) -> Path:
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    data["setup"]["backend"]["settings"].update(settings)
    if exact:
        data["setup"]["backend"]["settings"]["effects"] = NO_EFFECTS
    path = tmp_path / ("exact.yaml" if exact else "sim.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def test_sine_sampling_stays_in_ranges_and_slew_and_measures_the_device(tmp_path: Path) -> None:
    config = sim_config(tmp_path, exact=True)
    loaded = parse_config(config.read_text(), source=config)
    plan = SamplingPlan(points=2000, block_points=700, noise_points=2, noise_groups=10)
    with build_device(loaded) as device:
        result = sample_device(device, loaded, plan, tmp_path / "d.h5")
        audit = bench_of(device).audit
        slew = device.limits.slew_v_per_s
    assert result.complete and result.points == 2000 and result.blocks_measured == 3
    assert np.all(audit.max_slew_v_per_s <= slew * (1 + 1e-9))
    assert np.all(audit.min_v >= -1.2 - 1e-12) and np.all(audit.max_v <= 1.2 + 1e-12)
    data = read_samples(tmp_path / "d.h5")
    assert data.voltages_v.shape == (2000, 7) and not data.saturated.any()
    # every electrode sweeps (nearly) its whole range, each at its own frequency
    assert np.all(data.voltages_v.max(axis=0) - data.voltages_v.min(axis=0) > 1.0)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        freqs = np.asarray(f.attrs["sine_frequency_hz"])
    assert len(set(np.round(freqs, 9))) == 7
    # no noise, no bandwidth: the points are the model's current at the mean voltages
    model = HoppingNetworkModel(seed=0)
    expected = model.current_a(data.voltages_v)
    assert np.max(np.abs(data.current_a - expected)) < 0.02 * np.max(np.abs(expected))
    assert data.device_seconds == pytest.approx(result.device_seconds)
    assert data.device_seconds > 2000 * 10 / 10_000  # points x samples / rate, plus ramps


def test_steps_sampling_and_noise_floor(tmp_path: Path) -> None:
    config = sim_config(tmp_path)
    out = tmp_path / "steps.h5"
    assert main(["twin", "sample", str(config), "-o", str(out), "--waveform", "steps",
                 "--points", "300", "--block-points", "100", "--window-s", "0.002",
                 "--settle-s", "0.002", "--no-progress"]) == 0  # fmt: skip
    data = read_samples(out)
    assert data.voltages_v.shape == (300, 7)
    assert np.all(data.voltages_v >= -1.2) and np.all(data.voltages_v <= 1.2)
    # the paper's noise (1e-23 A^2/Hz) over a 2 ms window: about 0.07 nA; flicker adds a little
    assert 0.03e-9 < data.noise_floor_a < 0.5e-9
    expected = HoppingNetworkModel(seed=0).current_a(data.voltages_v)
    residual = data.current_a - expected
    assert np.std(residual) < 5 * data.noise_floor_a + 0.1e-9


def test_existing_file_mismatched_resume_and_bad_options_exit_2(tmp_path: Path, capsys) -> None:
    config = sim_config(tmp_path)
    out = tmp_path / "d.h5"
    assert main(["twin", "sample", str(config), "-o", str(out), *SMALL, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["twin", "sample", str(config), "-o", str(out), *SMALL]) == 2
    assert "--resume" in capsys.readouterr().err
    other = [*SMALL[:-1], "21"]
    assert main(["twin", "sample", str(config), "-o", str(out), *other, "--resume"]) == 2
    assert "noise_groups" in capsys.readouterr().err
    assert main(["twin", "sample", str(config), "-o", str(tmp_path / "x.h5"), "--points", "0"]) == 2
    assert "--points" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
    assert main(["twin", "sample", str(config), "-o", str(tmp_path / "y.h5"), "--resume"]) == 2
    # a complete file resumed: nothing more measured
    assert main(["twin", "sample", str(config), "-o", str(out), *SMALL, "--resume"]) == 0
    assert "0 blocks measured now" in capsys.readouterr().out


def test_resume_drops_a_block_written_but_not_recorded(tmp_path: Path) -> None:
    config = sim_config(tmp_path, exact=True)
    loaded = parse_config(config.read_text(), source=config)
    full = SamplingPlan(points=1500, block_points=500, noise_points=0)
    with build_device(loaded) as device:
        sample_device(device, loaded, full, tmp_path / "ref.h5")
    # the state a crash between appending a block and recording it leaves: 2 blocks recorded,
    # the third block's rows (here: garbage) written after them
    with build_device(loaded) as device:
        sample_device(device, loaded, full, tmp_path / "cut.h5")
    with h5py.File(tmp_path / "cut.h5", "r+", libver="latest") as f:
        f["progress"][0:2] = [1000, 2]
        f["current_a"][1000:] = np.nan
        f["block_device_seconds"].resize(3, axis=0)
    assert read_samples(tmp_path / "cut.h5").current_a.shape == (1000,)
    with build_device(loaded) as device:
        result = sample_device(device, loaded, full, tmp_path / "cut.h5", resume=True)
    assert result.blocks_measured == 1 and result.points == 1500
    ref, cut = read_samples(tmp_path / "ref.h5"), read_samples(tmp_path / "cut.h5")
    np.testing.assert_array_equal(cut.voltages_v, ref.voltages_v)
    np.testing.assert_allclose(cut.current_a, ref.current_a, rtol=1e-9, atol=1e-15)


@pytest.mark.slow
def test_sampling_killed_mid_run_resumes_after_its_last_complete_block(tmp_path: Path) -> None:
    realtime = sim_config(tmp_path, realtime=True)
    out = tmp_path / "d.h5"
    args = ["--points", "4000", "--block-points", "500", "--point-samples", "5",
            "--noise-points", "1", "--noise-groups", "10", "--no-progress"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from labctl.cli import main; sys.exit(main())",
         "twin", "sample", str(realtime), "-o", str(out), *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and done < 500:
            time.sleep(0.05)
            try:
                done = read_samples(out).current_a.size
            except (SamplingError, OSError, KeyError):
                continue
        assert done >= 500, proc.stderr.read() if proc.poll() is not None else "no block"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    interrupted = read_samples(out).current_a.size
    assert interrupted < 4000 and interrupted % 500 == 0
    fast = sim_config(tmp_path)  # same device, paced as fast as it goes
    assert main(["twin", "sample", str(fast), "-o", str(out), *args, "--resume"]) == 0
    resumed = read_samples(out)
    assert resumed.current_a.size == 4000
    assert main(["twin", "sample", str(fast), "-o", str(tmp_path / "ref.h5"), *args]) == 0
    reference = read_samples(tmp_path / "ref.h5")
    np.testing.assert_array_equal(resumed.voltages_v, reference.voltages_v)
    assert np.all(np.isfinite(resumed.current_a))


def test_fit_recovers_a_twin_that_loads_as_a_surrogate_backend(tmp_path: Path, capsys) -> None:
    config = sim_config(tmp_path)
    data_path = tmp_path / "d.h5"
    assert main(["twin", "sample", str(config), "-o", str(data_path), "--waveform", "steps",
                 "--points", "2000", "--block-points", "1000", "--window-s", "0.001",
                 "--settle-s", "0.001", "--noise-points", "2", "--noise-groups", "20",
                 "--no-progress"]) == 0  # fmt: skip
    data = read_samples(data_path)
    settings = FitSettings(hidden=(32, 32), max_epochs=60, patience=8, split_run_points=10)
    result = fit_twin(data, settings)
    assert result.counts["train"] + result.counts["validation"] + result.counts["test"] == 2000
    spread_na = float(np.std(data.current_a)) * 1e9
    assert result.test_rmse_na < 0.5 * spread_na
    # the saved arrays (scalings folded in) predict what the fitted network predicts
    from labctl.twin.convert import save_npz

    npz = save_npz(result.arrays, tmp_path / "direct.npz")
    model = SurrogateModel.from_npz(npz)
    np.testing.assert_allclose(
        model.current_na(result.test_voltages_v), result.test_predicted_na, rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(model.voltage_ranges_v, [[-1.2, 1.2]] * 7)

    twin = tmp_path / "twin.npz"
    fit = ["--hidden", "32,32", "--max-epochs", "20", "--split-run-points", "10", "--no-progress"]
    assert main(["twin", "fit", str(data_path), "-o", str(twin), *fit]) == 0
    out = capsys.readouterr().out
    assert "test RMSE" in out and "noise floor" in out
    report = tmp_path / "twin_report.png"
    assert report.stat().st_size > 10_000
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["test_rmse_na"] > 0 and summary["noise_floor_na"] > 0
    assert summary["sampling_device_seconds"] == pytest.approx(data.device_seconds)
    backend = yaml.safe_load(config.read_text())
    backend["setup"]["backend"]["settings"] = {"model": "surrogate", "surrogate_path": str(twin)}
    twin_config = tmp_path / "on_twin.yaml"
    twin_config.write_text(yaml.safe_dump(backend))
    assert main(["validate", str(twin_config)]) == 0


def test_fit_bad_input_exits_2(tmp_path: Path, capsys) -> None:
    not_h5 = tmp_path / "d.h5"
    not_h5.write_text("x")
    assert main(["twin", "fit", str(not_h5), "-o", str(tmp_path / "t.npz")]) == 2
    assert main(["twin", "fit", str(tmp_path / "none.h5"), "-o", str(tmp_path / "t.npz")]) == 2
    assert main(["twin", "fit", str(not_h5), "-o", "t.npz", "--hidden", "90,x"]) == 2
    assert "--hidden" in capsys.readouterr().err
    assert main(["twin", "fit", str(not_h5), "-o", "t.npz", "--val-fraction", "0.9"]) == 2
    assert "--val-fraction" in capsys.readouterr().err


def test_split_keeps_runs_of_neighbours_together() -> None:
    settings = FitSettings(split_run_points=10, seed=1)
    train, val, test = split_indices(1000, settings)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(1000))
    for part in (train, val, test):
        assert np.all(np.bincount(part // 10, minlength=100)[np.unique(part // 10)] == 10)
    assert 100 <= test.size <= 200 and 100 <= val.size <= 200


def test_store_refuses_another_setup(tmp_path: Path) -> None:
    config = sim_config(tmp_path, exact=True)
    loaded = parse_config(config.read_text(), source=config)
    plan = SamplingPlan(points=100, block_points=100, noise_points=0)
    with build_device(loaded) as device:
        sample_device(device, loaded, plan, tmp_path / "d.h5")
    other = parse_config(sim_config(tmp_path, exact=True, seed=5).read_text(), source=config)
    with build_device(other) as device, pytest.raises(SamplingError, match="another setup"):
        sample_device(device, other, plan, tmp_path / "d.h5", resume=True)
    assert SampleStore is not None
