"""Imported twins run as the simulated device: `labctl train` solves a gate on each fixture, a
`.pt` file works directly as `surrogate_path`, and controls trained on a twin with its exact
gradients (labctl.twin.transfer) solve the gate on the twin and on the device it stands for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.cli import main
from labctl.config import parse_config
from labctl.connect import build_device
from labctl.homodyne.drive import device_drive
from labctl.run.store import RunStore
from labctl.training.metrics import separation
from labctl.training.tasks import InputMapping, boolean_gate
from labctl.twin.convert import load_surrogate
from labctl.twin.transfer import case_voltages, surrogate_gradient, train_on_twin
from simulated_hw.models import gradient_fd
from simulated_hw.surrogate import SurrogateModel
from tests.conftest import CONFIGS, NO_EFFECTS, SHARED_DEVICES
from tests.test_twin_import import random_network, tensors, write_zip

BRAINSPY = SHARED_DEVICES / "brainspy"
# fixture, import options, gate: the amplifications bring the raw network outputs to nA scale
TRAINING_CASES = [
    ("random_state_dict.pt", ["--activation", "relu", "--amplification", "1000",
                              "--voltage-ranges=-1.2:0.6"], "AND"),
    ("training_data.pickle", ["--activation", "relu"], "NAND"),
    ("TEST_NN.pt", ["--amplification", "10", "--voltage-ranges=-1.2:0.6"], "AND"),
]  # fmt: skip


def surrogate_config(
    tmp_path: Path, surrogate: Path, ranges_v: np.ndarray, gate: str, **run: Any
) -> Path:
    """configs/xor_sim.yaml on the surrogate ``surrogate``, electrodes in its ranges."""
    data = yaml.safe_load((CONFIGS / "xor_sim.yaml").read_text())
    data["setup"]["backend"]["settings"] = {
        "model": "surrogate",
        "surrogate_path": str(surrogate),
        "seed": 0,
    }
    for electrode, (low, high) in zip(data["setup"]["electrodes"], ranges_v, strict=True):
        electrode["min_v"], electrode["max_v"] = float(low), float(high)
    data["task"]["name"] = gate
    data["optimiser"]["learning_rate"] = 0.1
    data["run"].update(
        {"directory": str(tmp_path / "runs"), "report": False, "max_iterations": 200, **run}
    )
    path = tmp_path / f"{gate.lower()}_twin.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.shared
@pytest.mark.parametrize(("name", "options", "gate"), TRAINING_CASES)
def test_each_imported_fixture_trains_a_gate_through_labctl_train(
    tmp_path: Path, capsys, monkeypatch, name: str, options: list[str], gate: str
) -> None:
    source = BRAINSPY / name
    if not source.is_file():
        pytest.skip(f"../shared/devices/brainspy/{name} is not available")
    monkeypatch.chdir(tmp_path)
    twin = tmp_path / "twin.npz"
    assert main(["twin", "import", str(source), "-o", str(twin), *options]) == 0
    model = SurrogateModel.from_npz(twin)
    config = surrogate_config(tmp_path, twin, model.voltage_ranges_v, gate)
    assert main(["train", str(config)]) == 0
    capsys.readouterr()
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = RunStore.open(run_dir, read_only=True).summary()
    assert summary["solved"] is True, summary


def test_a_pt_file_is_a_surrogate_path(tmp_path: Path) -> None:
    """A zip-format brainspy-smg training file loads straight into the simulated backend."""
    state, _, _ = random_network(21)
    ranges = np.array([[-1.2, 0.6]] * 7)
    info = {
        "model_structure": {"activation": "relu"},
        "electrode_info": {"voltage_ranges": ranges, "amplification": [50.0]},
    }
    path = write_zip(tmp_path / "chip.pt", {"model_state_dict": tensors(state), "info": info})
    config = surrogate_config(tmp_path, path, ranges, "AND")
    assert main(["validate", str(config)]) == 0
    loaded = parse_config(config.read_text(), source=config)
    points = np.random.default_rng(0).uniform(-1.2, 0.6, (3, 7))
    expected = load_surrogate(path).current_a(points)
    exact = parse_config(yaml.safe_dump(_with_effects(config, NO_EFFECTS)), source=config)
    with build_device(exact) as device:
        drive = device_drive(device, points, None, 0.01, 0.01)
        record = device.apply(drive.waveform_v)
    measured = [drive.window_samples(record.current_a[0], c).mean() for c in range(3)]
    np.testing.assert_allclose(measured, expected, rtol=1e-3, atol=1e-12)
    assert loaded.setup.backend is not None


def _with_effects(config: Path, effects: dict[str, bool]) -> dict[str, Any]:
    data = yaml.safe_load(config.read_text())
    data["setup"]["backend"]["settings"]["effects"] = effects
    return data


def test_a_hostile_or_incomplete_pt_surrogate_path_is_a_config_error(
    tmp_path: Path, capsys
) -> None:
    sentinel = tmp_path / "sentinel"
    state, _, _ = random_network(22)
    obj = tensors(state)
    obj["raw_model.0.bias"] = _Touch(sentinel)
    hostile = write_zip(tmp_path / "hostile.pt", obj)
    assert main(["validate", str(surrogate_config(tmp_path, hostile, [[-1, 1]] * 7, "AND"))]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not sentinel.exists()
    incomplete = write_zip(tmp_path / "plain.pt", tensors(state))
    assert main(["validate", str(surrogate_config(tmp_path, incomplete, [[-1, 1]] * 7, "OR"))]) == 2
    err = capsys.readouterr().err
    assert "surrogate_path" in err and "labctl twin import" in err and "--amplification" in err


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        import os

        return (os.system, (f"touch {self.path}",))


# -- training on the twin with exact gradients -------------------------------------------------


def _small_twin(seed: int = 23) -> SurrogateModel:
    _, weights, biases = random_network(seed, sizes=(7, 30, 30, 1))
    return SurrogateModel(weights, biases, "relu", 20.0, [[-1.2, 0.6]] * 7)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "sigmoid"])
def test_surrogate_gradient_is_exact(activation: str) -> None:
    _, weights, biases = random_network(24, sizes=(7, 16, 16, 1))
    model = SurrogateModel(weights, biases, activation, 7.0, [[-1, 1]] * 7)
    points = np.random.default_rng(1).uniform(-1, 1, (5, 7))
    current, grads = surrogate_gradient(model, points)
    np.testing.assert_allclose(current, model.current_a(points), rtol=1e-12)
    for point, grad in zip(points, grads, strict=True):
        np.testing.assert_allclose(grad, gradient_fd(model, point, step_v=1e-6), rtol=1e-5)


def test_controls_trained_on_the_twin_solve_the_gate_on_the_device(tmp_path: Path) -> None:
    model = _small_twin()
    twin = tmp_path / "twin.npz"
    arrays = {f"W{k}": w.T for k, w in enumerate(model.layers[0])}
    arrays.update({f"b{k}": b for k, b in enumerate(model.layers[1])})
    np.savez(twin, **arrays, activation=np.array("relu"), amplification=np.array([20.0]),
             voltage_ranges=model.voltage_ranges_v)  # fmt: skip
    gate = boolean_gate("AND")
    result = train_on_twin(model, gate, [0, 6], [1, 2, 3, 4, 5], seed=0)
    assert result.solved and result.separation_a > 1e-9
    assert result.loss == pytest.approx(result.losses[np.argmin(result.losses)], rel=1e-9)
    # the same controls on the simulated device the twin describes (noise on)
    config = surrogate_config(tmp_path, twin, model.voltage_ranges_v, "AND")
    loaded = parse_config(config.read_text(), source=config)
    mapping = InputMapping.for_task(gate, [(-1.2, 0.6)] * 2)
    points = case_voltages(model, gate, [0, 6], [1, 2, 3, 4, 5], result.controls_v, mapping)
    with build_device(loaded) as device:
        drive = device_drive(device, points, None, 0.1, 0.015)
        record = device.apply(drive.waveform_v)
    outputs = np.array([drive.window_samples(record.current_a[0], c).mean() for c in range(4)])
    assert separation(outputs, gate.targets) > 0.5 * result.separation_a


def test_training_on_the_twin_starts_from_given_controls_and_restarts() -> None:
    model = _small_twin()
    gate = boolean_gate("XOR")
    first = train_on_twin(model, gate, [0, 6], [1, 2, 3, 4, 5], max_iterations=1, max_starts=1,
                          initial_controls_v=np.full(5, 0.3))  # fmt: skip
    assert first.iterations == 1 and first.starts == 1
    points = case_voltages(model, gate, [0, 6], [1, 2, 3, 4, 5], np.full(5, 0.3),
                           InputMapping.for_task(gate, [(-1.2, 0.6)] * 2))  # fmt: skip
    np.testing.assert_allclose(first.controls_v, np.full(5, 0.3))
    np.testing.assert_allclose(first.outputs_a, model.current_a(points))
    again = train_on_twin(model, gate, [0, 6], [1, 2, 3, 4, 5], seed=3)
    same = train_on_twin(model, gate, [0, 6], [1, 2, 3, 4, 5], seed=3)
    np.testing.assert_array_equal(again.controls_v, same.controls_v)  # seeded: reproducible
    assert np.all(again.controls_v >= -1.2) and np.all(again.controls_v <= 0.6)


def test_training_on_the_twin_uses_a_trainers_operating_points() -> None:
    model = _small_twin()
    gate = boolean_gate("OR")
    mapping = InputMapping.for_task(gate, [(-1.0, 0.5)] * 2)
    rest = np.full(7, 0.1)
    seen: list[np.ndarray] = []

    def points(controls_v: np.ndarray) -> np.ndarray:
        p = case_voltages(model, gate, [0, 6], [1, 2, 3, 4, 5], controls_v, mapping, rest)
        seen.append(p)
        return p

    result = train_on_twin(model, gate, [0, 6], [1, 2, 3, 4, 5], operating_points=points)
    assert result.solved
    assert np.all(seen[0][:, [0, 6]] >= -1.0) and np.all(seen[0][:, [0, 6]] <= 0.5)
    np.testing.assert_allclose(result.outputs_a, model.current_a(points(result.controls_v)))


def test_simulated_surrogate_reference_gradient_is_the_exact_back_propagated_one(
    tmp_path: Path,
) -> None:
    model = _small_twin(31)
    twin = tmp_path / "twin.npz"
    weights_t, biases = model.layers
    arrays = {f"W{k}": w.T for k, w in enumerate(weights_t)}
    arrays.update({f"b{k}": b for k, b in enumerate(biases)})
    np.savez(twin, **arrays, activation=np.array("relu"), amplification=np.array([20.0]),
             voltage_ranges=model.voltage_ranges_v)  # fmt: skip
    config = surrogate_config(tmp_path, twin, model.voltage_ranges_v, "AND")
    loaded = parse_config(config.read_text(), source=config)
    point = np.random.default_rng(2).uniform(-1.0, 0.5, 7)
    with build_device(loaded) as device:
        reference = device.reference_gradient(point)
    assert reference is not None
    np.testing.assert_allclose(reference, surrogate_gradient(model, point)[1][0], rtol=1e-12)
    np.testing.assert_allclose(reference, gradient_fd(model, point, step_v=1e-6), rtol=1e-5)
