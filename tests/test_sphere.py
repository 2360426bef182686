"""The sphere task's shipped configuration and the per-input voltage windows
(``task.input_windows_v``) that map the task range onto part of an input electrode's range."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.config import ConfigError, LoadedConfig, parse_config
from labctl.training.session import train_to_end
from labctl.training.trainer import build_task, input_mapping

SPHERE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sphere_sim.yaml"


def _shipped() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SPHERE_CONFIG.read_text())
    return data


def _parse(data: dict[str, Any], tmp_path: Path) -> LoadedConfig:
    path = tmp_path / "sphere.yaml"
    path.write_text(yaml.safe_dump(data))
    return parse_config(path.read_text(), source=path)


def test_windows_map_the_cube_onto_each_inputs_window(tmp_path: Path) -> None:
    loaded = _parse(_shipped(), tmp_path)
    windows = loaded.config.task.input_windows_v  # type: ignore[union-attr]
    assert windows is not None
    names = loaded.config.task_inputs()
    task = build_task(loaded)
    mapping = input_mapping(loaded, task)
    corners = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    volts = mapping.to_volts(corners)
    low = np.array([windows[n][0] for n in names])
    high = np.array([windows[n][1] for n in names])
    assert np.allclose(volts[0], low)
    assert np.allclose(volts[1], high)
    assert np.allclose(volts[2], 0.5 * (low + high))
    every = mapping.to_volts(task.inputs)
    assert np.all(every >= low - 1e-12) and np.all(every <= high + 1e-12)


def test_without_windows_the_whole_electrode_range_is_used(tmp_path: Path) -> None:
    data = _shipped()
    del data["task"]["input_windows_v"]
    loaded = _parse(data, tmp_path)
    volts = input_mapping(loaded, build_task(loaded)).to_volts(np.array([[-1.0, 1.0, 0.0]]))
    assert np.allclose(volts, [[-1.2, 1.2, 0.0]])


def test_a_window_on_one_input_leaves_the_others_whole(tmp_path: Path) -> None:
    data = _shipped()
    data["task"]["input_windows_v"] = {"e3": [0.0, 0.5]}
    loaded = _parse(data, tmp_path)
    volts = input_mapping(loaded, build_task(loaded)).to_volts(np.array([[1.0, 1.0, 1.0]]))
    assert np.allclose(volts, [[1.2, 0.5, 1.2]])


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ({"e0": [0.0, 0.5]}, "task.input_windows_v.e0: not a task input"),
        ({"nope": [0.0, 0.5]}, "task.input_windows_v.nope: not a task input"),
        ({"e1": [0.5, 0.5]}, "task.input_windows_v.e1: window [0.5, 0.5] V needs low < high"),
        ({"e1": [0.6, 0.2]}, "task.input_windows_v.e1: window [0.6, 0.2] V needs low < high"),
        ({"e4": [-0.1, 1.3]}, "task.input_windows_v.e4: window [-0.1, 1.3] V lies outside"),
    ],
)
def test_bad_windows_are_refused_with_their_field(
    tmp_path: Path, windows: dict[str, list[float]], message: str
) -> None:
    data = _shipped()
    data["task"]["input_windows_v"] = windows
    with pytest.raises(ConfigError) as info:
        _parse(data, tmp_path)
    assert message in str(info.value)


def test_a_window_that_is_not_a_pair_is_refused(tmp_path: Path) -> None:
    data = _shipped()
    data["task"]["input_windows_v"] = {"e1": [0.1]}
    with pytest.raises(ConfigError, match="input_windows_v"):
        _parse(data, tmp_path)


@pytest.mark.slow
def test_shipped_sphere_config_trains_above_a_floor_on_a_small_budget(tmp_path: Path) -> None:
    """A short HGE run of the shipped configuration (fewer iterations and points) classifies
    well above chance, training and held-out points alike."""
    data = copy.deepcopy(_shipped())
    data["task"]["n_points"] = 200
    data["run"].update(max_iterations=120, directory=str(tmp_path / "runs"), report=False)
    outcome = train_to_end(_parse(data, tmp_path)).outcome
    assert outcome is not None
    assert outcome.final_accuracy >= 0.8
    assert outcome.test_accuracy is not None and outcome.test_accuracy >= 0.8
