"""Tasks (Boolean gates, VC-4, sphere, CSV) and the input mapping onto electrode voltages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.training.tasks import (
    BOOLEAN_GATES,
    SPHERE_BALANCED_RADIUS,
    VC4_POINTS,
    InputMapping,
    Task,
    boolean_gate,
    sphere_task,
    task_from_csv,
    vc_dimension_4,
    vc_labeling,
)

GATE_TRUTH = {
    "AND": "0001",
    "OR": "0111",
    "NAND": "1110",
    "NOR": "1000",
    "XOR": "0110",
    "XNOR": "1001",
}


@pytest.mark.parametrize("name", sorted(GATE_TRUTH))
def test_boolean_gates_truth_tables(name: str) -> None:
    task = boolean_gate(name.lower())
    assert task.name == name
    assert task.labels == GATE_TRUTH[name]
    a, b = task.inputs[:, 0], task.inputs[:, 1]
    expected = {
        "AND": a * b,
        "OR": np.maximum(a, b),
        "NAND": 1 - a * b,
        "NOR": 1 - np.maximum(a, b),
        "XOR": np.abs(a - b),
        "XNOR": 1 - np.abs(a - b),
    }[name]
    assert np.array_equal(task.targets, expected)
    assert np.array_equal(task.inputs, [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert task.input_range == (0.0, 1.0)


def test_boolean_gate_names_and_unknown() -> None:
    assert set(BOOLEAN_GATES) == set(GATE_TRUTH)
    with pytest.raises(ValueError, match=r"unknown Boolean gate 'IMPLY'.*XNOR"):
        boolean_gate("IMPLY")


def test_vc_dimension_4_has_14_nontrivial_labelings() -> None:
    tasks = vc_dimension_4()
    assert len(tasks) == 14
    labels = [t.labels for t in tasks]
    assert len(set(labels)) == 14 and "0000" not in labels and "1111" not in labels
    names = {t.labels: t.name for t in tasks}
    assert names["0110"] == "XOR" and names["0010"] == "A ∧ ¬B" and names["1101"] == "¬A ∨ B"
    for t in tasks:
        assert np.array_equal(t.inputs, VC4_POINTS)
        assert t.input_range == (-0.5, 1.0)
    # "A" means target = 1 exactly where input A is high (1), i.e. cases 10 and 11.
    assert np.array_equal(vc_labeling("0011").targets, vc_labeling("0011").inputs[:, 0] == 1.0)


@pytest.mark.parametrize("bad", ["0000", "1111", "011", "01a0", "01101"])
def test_vc_labeling_rejects_bad_labels(bad: str) -> None:
    with pytest.raises(ValueError):
        vc_labeling(bad)


def test_sphere_task_labels_split_and_reproducibility() -> None:
    task = sphere_task(4000, seed=3, test_fraction=0.25)
    assert task.inputs.shape == (4000, 3)
    assert np.all(np.abs(task.inputs) <= 1.0)
    radius = np.linalg.norm(task.inputs, axis=1)
    assert np.array_equal(task.targets == 1.0, radius < SPHERE_BALANCED_RADIUS)
    assert 0.47 < task.targets.mean() < 0.53  # balanced by construction (half the cube volume)
    assert task.split is not None and task.split.count("test") == 1000
    test = task.subset("test")
    train = task.subset("train")
    assert test.n_cases == 1000 and train.n_cases == 3000
    again = sphere_task(4000, seed=3, test_fraction=0.25)
    assert np.array_equal(again.inputs, task.inputs) and again.split == task.split
    assert not np.array_equal(sphere_task(4000, seed=4).inputs, task.inputs)
    assert sphere_task(50, seed=1, test_fraction=0.0).split is None


def test_sphere_task_errors() -> None:
    with pytest.raises(ValueError, match="n_points"):
        sphere_task(1)
    with pytest.raises(ValueError, match="test_fraction"):
        sphere_task(100, test_fraction=1.0)
    with pytest.raises(ValueError, match="only class"):
        sphere_task(20, radius=0.01, test_fraction=0.0)


def test_task_validation_and_immutability() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        Task("t", np.zeros((3, 2)), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="both classes"):
        Task("t", np.arange(6.0).reshape(3, 2), np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        Task("t", np.zeros((3, 2)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="split labels"):
        Task("t", np.arange(4.0).reshape(2, 2), np.array([0.0, 1.0]), split=("train", "dev"))
    with pytest.raises(ValueError, match="outside input_range"):
        Task("t", np.array([[0.0], [2.0]]), np.array([0.0, 1.0]), input_range=(0.0, 1.0))
    task = boolean_gate("AND")
    with pytest.raises(ValueError, match="read-only"):
        task.inputs[0, 0] = 5.0
    with pytest.raises(ValueError, match="no split labels"):
        task.subset("test")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_task_from_csv_reads_columns_and_split(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x1,x2,target,split\n0.0,0.5,0,train\n1.0,-0.5,1.0,test\n0.5,0.25,1,train\n\n",
    )
    task = task_from_csv(path)
    assert task.name == "task"
    assert np.array_equal(task.inputs, [[0.0, 0.5], [1.0, -0.5], [0.5, 0.25]])
    assert task.labels == "011"
    assert task.split == ("train", "test", "train")
    only_x2 = task_from_csv(path, input_columns=["x2"], split_column=None, name="t2")
    assert only_x2.inputs.shape == (3, 1) and only_x2.split is None and only_x2.name == "t2"


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("", {}, "empty"),
        ("x,y\n1,0\n2,1\n", {}, "target column 'target' not found.*'x', 'y'"),
        ("x,target\n1,0\n2,1\n", {"input_columns": ["z"]}, r"input column\(s\) \['z'\]"),
        ("x,target\n1,0\nabc,1\n", {}, "line 3, column 'x': 'abc' is not a number"),
        ("x,target\n1,0\n2,2\n", {}, "line 3, column 'target': target must be 0 or 1"),
        ("x,target\n1,0\n2,yes\n", {}, "line 3, column 'target': 'yes' is not a number"),
        ("x,target\n1,0\n", {}, "at least 2 data rows"),
        ("x,target\n1,1\n2,1\n", {}, "every target is 1"),
        ("x,target\n1,0\n2\n", {}, "line 3: has 1 fields"),
        ("x,target,split\n1,0,train\n2,1,holdout\n", {}, "line 3, column 'split'"),
        ("x,target\n1,0\ninf,1\n", {}, "line 3, column 'x'.*not finite"),
    ],
)
def test_task_from_csv_errors(tmp_path: Path, text: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        task_from_csv(write(tmp_path, text), **kwargs)


def test_input_mapping_maps_task_range_onto_electrode_ranges() -> None:
    mapping = InputMapping.from_ranges(-0.5, 1.0, [(-1.2, 0.6), (-0.7, 0.3)])
    volts = mapping.to_volts(np.array(VC4_POINTS))
    np.testing.assert_allclose(volts[:, 0], [-1.2, -1.2, 0.6, 0.6])
    np.testing.assert_allclose(volts[:, 1], [-0.7, 0.3, -0.7, 0.3])
    np.testing.assert_allclose(mapping.to_volts(np.array([[0.25, 0.25]])), [[-0.3, -0.2]])


def test_input_mapping_margin_and_per_input_ranges() -> None:
    mapping = InputMapping.from_ranges([0.0, -1.0], [1.0, 1.0], [(-1.0, 1.0), (0.0, 1.0)], 0.1)
    volts = mapping.to_volts(np.array([[0.0, -1.0], [1.0, 1.0]]))
    np.testing.assert_allclose(volts, [[-0.9, 0.1], [0.9, 0.9]])
    with pytest.raises(ValueError, match="leaves no room"):
        InputMapping.from_ranges(0.0, 1.0, [(0.0, 0.1)], margin_v=0.05)


def test_input_mapping_rejects_out_of_range_and_bad_shape() -> None:
    mapping = InputMapping.for_task(boolean_gate("XOR"), [(-1.2, 0.6), (-1.2, 0.6)])
    with pytest.raises(ValueError, match=r"case 1, input 1.*outside the electrode range"):
        mapping.to_volts(np.array([[0.0, 0.0], [0.5, 1.5]]))
    with pytest.raises(ValueError, match="shape"):
        mapping.to_volts(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="2 inputs but 1 electrode"):
        InputMapping.for_task(boolean_gate("XOR"), [(-1.2, 0.6)])
    with pytest.raises(ValueError, match="task_low must be below"):
        InputMapping.from_ranges(1.0, 0.0, [(-1.0, 1.0)])


def test_input_mapping_for_sphere_task_stays_inside_ranges() -> None:
    task = sphere_task(500, seed=0)
    ranges = [(-1.2, 0.6), (-0.7, 0.3), (-0.35, 0.2)]
    volts = InputMapping.for_task(task, ranges, margin_v=0.02).to_volts(task.inputs)
    for k, (lo, hi) in enumerate(ranges):
        assert volts[:, k].min() >= lo + 0.02 - 1e-12 and volts[:, k].max() <= hi - 0.02 + 1e-12
