"""Configuration schema: shipped configs validate; broken ones get a clear error and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labctl.cli import main
from labctl.config import ConfigError, load_config
from tests.conftest import CONFIGS

BROKEN = Path(__file__).parent / "configs" / "broken"

SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name != "cdaq_template.yaml")

# file -> (field path that must be named, words the reason must contain)
EXPECTED = {
    "wrong_type_rate.yaml": ("setup.sample_rate_hz", "number"),
    "wrong_type_gain.yaml": ("setup.amplifier.gain_v_per_a", "number"),
    "unknown_key_setup.yaml": ("setup.colour", "unknown key"),
    "unknown_key_backend.yaml": ("setup.backend.settings.nosie", "unknown key"),
    "inverted_range.yaml": ("setup.electrodes[3]", "inverted range"),
    "range_beyond_ceiling.yaml": ("setup", "exceeds the safety ceiling"),
    "ceiling_too_high.yaml": ("setup.safety.max_abs_v", "less than or equal"),
    "missing_electrode.yaml": ("setup", "7 voltage electrodes but 6"),
    "duplicated_electrode.yaml": ("setup", "duplicated"),
    "wrong_role.yaml": ("setup.electrodes[0].role", "input"),
    "range_without_zero.yaml": ("setup.electrodes[0]", "contain 0 V"),
    "unknown_backend.yaml": ("setup.backend.name", "installed backends"),
    "missing_rate.yaml": ("setup.sample_rate_hz", "missing"),
    "not_yaml.yaml": ("", "not valid YAML at line"),
    "empty.yaml": ("", "empty"),
    "top_level_list.yaml": ("", "mapping"),
    "measure_unknown_electrode.yaml": ("", "no electrode named 'e9'"),
    "measure_out_of_range.yaml": ("", "outside electrode 'e1' range"),
    "duplicate_section.yaml": ("", "key 'measure' appears twice, at line 8 and at line 10"),
    "deeply_nested.yaml": ("", "nested more than 64 levels deep"),
}


def test_corpus_is_complete() -> None:
    assert sorted(p.name for p in BROKEN.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate(name: str, capsys) -> None:
    path = CONFIGS / name
    if "surrogate" in name and not (CONFIGS.parent.parent / "shared" / "devices").is_dir():
        pytest.skip("the surrogate config needs ../shared/devices")
    assert main(["validate", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_config_is_reported_with_path_and_reason(name: str, capsys) -> None:
    path_fragment, reason = EXPECTED[name]
    with pytest.raises(ConfigError) as info:
        load_config(BROKEN / name)
    text = str(info.value)
    assert reason in text
    assert any(str(issue).startswith(path_fragment) for issue in info.value.issues), text
    assert main(["validate", str(BROKEN / name)]) == 2
    err = capsys.readouterr().err
    assert str(BROKEN / name) in err and reason in err


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (BROKEN / "wrong_type_rate.yaml").read_text().replace("  name: broken", "  nme: x")
    path = tmp_path / "two.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    paths = {issue.path for issue in info.value.issues}
    assert {"setup.sample_rate_hz", "setup.nme"} <= paths


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_invalid_config_never_touches_a_device(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    text = (
        (BROKEN / "inverted_range.yaml")
        .read_text()
        .replace("model: hopping", f"model: hopping, state_file: {state}")
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "measure", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "inverted range" in proc.stderr
    assert not state.exists()


def test_schema_is_json_schema(capsys) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "labctl configuration"
    assert "setup" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_measure_prints_and_saves_the_sweep(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep.json"
    assert main(["measure", str(CONFIGS / "sim_dnpu.yaml"), "-o", str(out)]) == 0
    table = capsys.readouterr().out
    assert "I mean (nA)" in table and "device time" in table
    points = json.loads(out.read_text())
    assert len(points) == 13
    assert [p["voltages_v"]["e0"] for p in points] == pytest.approx(
        list(np.linspace(-1.2, 1.2, 13))
    )
    currents = np.array([p["mean_current_a"] for p in points])
    assert np.all(np.abs(currents) > 1e-9) and np.all(np.abs(currents) < 200e-9)
    assert np.ptp(currents) > 1e-9  # the sweep electrode changes the output


def test_the_old_software_lockin_name_still_works_with_a_warning(sim_config) -> None:
    with pytest.warns(FutureWarning, match="software_lockin"):
        loaded = sim_config({"homodyne": {"demodulation": "lockin"}})
    assert loaded.config.homodyne.demodulation == "software_lockin"


def test_duplicate_keys_are_refused_at_any_depth() -> None:
    from labctl.config import parse_config

    text = (
        (CONFIGS / "sim_dnpu.yaml")
        .read_text()
        .replace("  sample_rate_hz: 10000\n", "  sample_rate_hz: 10000\n  sample_rate_hz: 20000\n")
    )
    with pytest.raises(ConfigError, match="'sample_rate_hz' appears twice"):
        parse_config(text)


def test_gradient_json_is_strict_json(capsys) -> None:
    """NaN (e.g. the quadrature of an uncalibrated run) is written as null."""
    assert main(["gradient", str(CONFIGS / "sim_dnpu.yaml"), "--json"]) == 0
    out = capsys.readouterr().out

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    report = json.loads(out, parse_constant=refuse)
    assert isinstance(report, dict) and "NaN" not in out
