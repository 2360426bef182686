"""Absurd values are refused at validation (sample rates beyond the hardware, records beyond the
memory budget, windows too short to sample), and `labctl gradient` says when a gradient is
below the noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.cli import main
from labctl.config import ConfigError, load_config, parse_config
from labctl.device.registry import get_backend
from labctl.exit_codes import EXIT_BAD_INPUT
from labctl.homodyne.report import MEASURABLE_SNR, below_noise

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SURROGATE = REPO.parent / "shared" / "devices" / "dnpu_surrogate_a.npz"


def _sim_config(tmp_path: Path, extra: str = "", **replace: str) -> Path:
    """configs/sim_dnpu.yaml with a bench state file (proof of any device contact) and edits."""
    text = (CONFIGS / "sim_dnpu.yaml").read_text()
    text = text.replace(
        "      seed: 0 ", f"      state_file: {tmp_path / 'bench.json'}\n      seed: 0 ", 1
    )
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "config.yaml"
    path.write_text(text + extra)
    return path


def _problems(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_every_sampling_backend_declares_its_maximum_rate() -> None:
    for name in ("simulated", "nidaq", "sr830", "sr860"):
        assert get_backend(name).max_sample_rate_hz is not None, name


@pytest.mark.parametrize("rate", ["1e12", "3e6"])
def test_rate_above_the_simulated_daq_is_refused_before_any_device(
    tmp_path: Path, rate: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sim_config(tmp_path, **{"sample_rate_hz: 10000": f"sample_rate_hz: {rate}"})
    message = _problems(path)
    assert "setup.sample_rate_hz" in message and "fastest rate" in message
    assert main(["gradient", str(path)]) == EXIT_BAD_INPUT
    assert "setup.sample_rate_hz" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()  # the simulated backend was never opened


def test_nidaq_rate_ceiling_default_and_configured() -> None:
    text = (CONFIGS / "sim_cdaq_grpc.yaml").read_text()
    fast = text.replace("sample_rate_hz: 10000 ", "sample_rate_hz: 2e6 ")
    with pytest.raises(ConfigError, match=r"setup\.sample_rate_hz: 2e\+06 Hz is above 1e\+06"):
        parse_config(fast, source=CONFIGS / "x.yaml")
    declared = fast.replace("      grpc:\n", "      max_sample_rate_hz: 2.5e6\n      grpc:\n")
    parse_config(declared, source=CONFIGS / "x.yaml")
    slow = text.replace("      grpc:\n", "      max_sample_rate_hz: 5000\n      grpc:\n")
    with pytest.raises(ConfigError, match="above 5000 Hz"):
        parse_config(slow, source=CONFIGS / "x.yaml")


def test_huge_window_is_refused_with_the_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sim_config(tmp_path, "homodyne:\n  window_s: 100000\n")
    message = _problems(path)
    assert "homodyne.window_s" in message
    assert "1e+09 samples x 8 channels (7 electrodes + 1 output(s)) x 8 bytes" in message
    assert "59.6 GiB" in message and "setup.record_budget_mib = 512 MiB" in message
    assert main(["gradient", str(path)]) == EXIT_BAD_INPUT
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    assert "homodyne.window_s" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()


def test_training_record_counts_every_case_and_the_budget_is_configurable(
    tmp_path: Path,
) -> None:
    # 4 cases x (20 s + 0.015 s) x 10 kHz x 8 channels x 8 B = 41 MiB: above a 32 MiB budget
    text = (CONFIGS / "xor_sim.yaml").read_text()
    assert "  window_s: 0.1 " in text
    text = text.replace("  window_s: 0.1 ", "  window_s: 20 ", 1)
    small = text.replace(
        "  sample_rate_hz: 10000", "  sample_rate_hz: 10000\n  record_budget_mib: 32"
    )
    with pytest.raises(ConfigError, match=r"a training record of 4 window\(s\)"):
        parse_config(small, source=CONFIGS / "x.yaml")
    parse_config(text, source=CONFIGS / "x.yaml")  # the default 512 MiB holds it


def test_measure_sweep_record_and_tiny_window(tmp_path: Path) -> None:
    path = _sim_config(tmp_path, **{"window_s: 0.05": "window_s: 1000"})
    assert "measure.window_s: a `labctl measure` record of 13 window(s)" in _problems(path)
    path = _sim_config(tmp_path, **{"window_s: 0.05": "window_s: 1.0e-7"})
    message = _problems(path)
    assert "measure.window_s" in message and "at least 10" in message


def test_impossible_frequency_plan_is_refused_before_any_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sim_config(tmp_path, "homodyne:\n  band_hz: [150, 160]\n")
    load_config(path)  # the schema holds: `labctl measure` needs no plan
    for command in ("validate", "gradient", "calibrate", "train"):
        assert main([command, str(path)]) == EXIT_BAD_INPUT, command
        assert "homodyne: frequency plan" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.parametrize(
    "edit",
    [
        {"slew_v_per_s: 200": "slew_v_per_s: .inf"},
        {"gain_v_per_a: 2.53e7": "gain_v_per_a: .nan"},
        {"sample_rate_hz: 10000": "sample_rate_hz: .inf"},
        {"e1: 0.2,": "e1: .nan,"},
        {"noise_psd_at_1khz_a2_per_hz: 1.0e-23": "noise_psd_at_1khz_a2_per_hz: .inf"},
    ],
)
def test_nan_and_infinity_are_refused(tmp_path: Path, edit: dict[str, str]) -> None:
    message = _problems(_sim_config(tmp_path, **edit))
    assert "finite" in message


def test_below_noise_flagging() -> None:
    report = {"electrodes": ["e1", "e2", "e3"], "snr": [0.5, MEASURABLE_SNR, float("nan")]}
    assert below_noise(report) == ["e1", "e3"]


@pytest.mark.skipif(not SURROGATE.is_file(), reason="the shared surrogate is absent")
def test_gradient_says_when_gradients_are_below_the_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = CONFIGS / "sim_surrogate.yaml"
    assert main(["gradient", str(shipped), "--at", "e0=0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert not any(report["below_noise"]), report["snr"]
    assert min(report["snr"]) > 5 and report["cosine_similarity"] > 0.99
    # the old default operating point: every gradient at the noise level
    old = ["--at", "e1=0.1", "--at", "e2=-0.3", "--at", "e3=0.4", "--at", "e4=-0.2"]
    assert main(["gradient", str(shipped), *old, "--at", "e5=0.1"]) == 0
    out = capsys.readouterr().out
    assert "below the noise:" in out and "below noise" in out.splitlines()[4]


def test_csv_task_records_count_the_cases_of_the_file() -> None:
    text = (CONFIGS / "majority_sim.yaml").read_text()
    cases = len((CONFIGS / "majority.csv").read_text().strip().splitlines()) - 1
    small = text.replace(
        "  sample_rate_hz: 10000", "  sample_rate_hz: 10000\n  record_budget_mib: 0.5"
    )
    with pytest.raises(ConfigError, match=rf"a training record of {cases} window\(s\)"):
        parse_config(small, source=CONFIGS / "majority_sim.yaml")
