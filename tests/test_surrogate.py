"""Tests for the NPZ surrogate loader and evaluator."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from simulated_hw.models import DeviceModel
from simulated_hw.surrogate import (
    SUPPORTED_ACTIVATIONS,
    SurrogateFormatError,
    SurrogateModel,
    default_surrogate_path,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DEVICES = REPO_ROOT.parent / "shared" / "devices"
REFERENCE_NPZ = SHARED_DEVICES / "dnpu_surrogate_a.npz"

REFERENCE_POINTS = [
    ([-0.0216, -0.4167, -1.1099, -0.7703, 0.3386, 0.1846, 0.3756], 7.3852),
    ([0.1496, -0.1292, 0.8572, 0.6685, -0.7962, 0.1431, -0.9711], 5.2587),
    ([0.1499, -0.5156, 0.6990, 0.1746, -0.3804, -0.1830, -0.9834], 0.0580),
    ([-0.9701, 0.0042, 0.2238, 0.3077, -0.2629, 0.2479, 1.2550], 31.1570),
    ([0.0683, -0.0170, 0.3146, -0.0999, -0.6109, 0.0411, 0.1846], -0.3228),
]
REFERENCE_RANGES = [
    [-1.2, 0.65],
    [-0.7, 0.35],
    [-1.2, 1.0],
    [-0.8, 1.0],
    [-0.8, 0.6],
    [-0.5, 0.25],
    [-1.05, 1.3],
]


@pytest.fixture
def reference_model() -> SurrogateModel:
    if not REFERENCE_NPZ.is_file():
        pytest.skip(f"reference surrogate not available at {REFERENCE_NPZ}")
    return SurrogateModel.from_npz(REFERENCE_NPZ)


# --- reference surrogate -------------------------------------------------------------------


@pytest.mark.shared
def test_reference_values_reproduced(reference_model: SurrogateModel) -> None:
    voltages = np.array([p[0] for p in REFERENCE_POINTS])
    expected_na = np.array([p[1] for p in REFERENCE_POINTS])
    np.testing.assert_allclose(reference_model.current_na(voltages), expected_na, atol=1e-3, rtol=0)
    np.testing.assert_allclose(
        reference_model.current_a(voltages), expected_na * 1e-9, atol=1e-12, rtol=0
    )


@pytest.mark.shared
def test_reference_metadata(reference_model: SurrogateModel) -> None:
    assert isinstance(reference_model, DeviceModel)
    assert reference_model.n_electrodes == 7
    assert reference_model.n_layers == 6
    assert reference_model.activation == "relu"
    assert reference_model.amplification == pytest.approx(39.5)
    np.testing.assert_array_equal(reference_model.voltage_ranges_v, REFERENCE_RANGES)


@pytest.mark.shared
def test_reference_single_sample_and_chunking(reference_model: SurrogateModel) -> None:
    v0 = np.array(REFERENCE_POINTS[3][0])
    single = reference_model.current_a(v0)
    assert single.shape == (1,)
    assert single[0] * 1e9 == pytest.approx(REFERENCE_POINTS[3][1], abs=1e-3)
    rng = np.random.default_rng(3)
    lo, hi = np.array(REFERENCE_RANGES).T
    v = rng.uniform(lo, hi, size=(2500, 7))
    small_chunks = SurrogateModel.from_npz(REFERENCE_NPZ, chunk_samples=37)
    np.testing.assert_allclose(
        small_chunks.current_a(v), reference_model.current_a(v), rtol=1e-12, atol=1e-22
    )
    # Column-major (transposed) input, as a waveform (n_electrodes, n_samples).T is.
    np.testing.assert_allclose(
        reference_model.current_a(np.ascontiguousarray(v.T).T),
        reference_model.current_a(v),
        rtol=1e-12,
        atol=1e-22,
    )


def test_default_path_points_next_to_repo() -> None:
    expected = REPO_ROOT.parent / "shared" / "devices" / "dnpu_surrogate_a.npz"
    assert default_surrogate_path() == expected
    assert default_surrogate_path().name == "dnpu_surrogate_a.npz"


# --- arbitrary networks versus a direct NumPy reference ------------------------------------

_REFERENCE_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda h: np.where(h > 0, h, 0.0),
    "elu": lambda h: np.where(h > 0, h, np.exp(h) - 1.0),
    "tanh": np.tanh,
    "sigmoid": lambda h: 1.0 / (1.0 + np.exp(-h)),
    "hardtanh": lambda h: np.minimum(np.maximum(h, -1.0), 1.0),
    "identity": lambda h: h,
    "linear": lambda h: h,
}


def _random_network(
    rng: np.random.Generator, n_in: int, widths: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    sizes = [n_in, *widths, 1]
    weights = [rng.normal(0, 1.5 / np.sqrt(a), size=(b, a)) for a, b in itertools.pairwise(sizes)]
    biases = [rng.normal(0, 0.3, size=b) for b in sizes[1:]]
    return weights, biases


def _reference_forward(
    v: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray], act: str, amp: float
) -> np.ndarray:
    h = v
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w.T + b
        if k < len(weights) - 1:
            h = _REFERENCE_ACTIVATIONS[act](h)
    return h[:, 0] * amp * 1e-9


def _save(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _valid_arrays(
    rng: np.random.Generator, n_in: int = 3, widths: tuple[int, ...] = (5, 4), act: str = "relu"
) -> dict[str, object]:
    weights, biases = _random_network(rng, n_in, list(widths))
    arrays: dict[str, object] = {f"W{k}": w for k, w in enumerate(weights)}
    arrays.update({f"b{k}": b for k, b in enumerate(biases)})
    arrays["activation"] = np.array(act)
    arrays["amplification"] = np.array([12.5])
    arrays["voltage_ranges"] = np.tile([-1.0, 1.0], (n_in, 1))
    return arrays


@pytest.mark.parametrize("activation", SUPPORTED_ACTIVATIONS)
@pytest.mark.parametrize("n_hidden", [0, 1, 2, 4])
def test_arbitrary_networks_match_reference(tmp_path: Path, activation: str, n_hidden: int) -> None:
    rng = np.random.default_rng(100 + n_hidden)
    n_in = int(rng.integers(1, 9))
    widths = [int(w) for w in rng.integers(2, 40, size=n_hidden)]
    weights, biases = _random_network(rng, n_in, widths)
    arrays: dict[str, object] = {f"W{k}": w for k, w in enumerate(weights)}
    arrays.update({f"b{k}": b for k, b in enumerate(biases)})
    path = _save(
        tmp_path / "net.npz",
        **arrays,
        activation=np.array(activation.upper()),
        amplification=np.array([7.25]),
        voltage_ranges=np.tile([-2.0, 2.0], (n_in, 1)),
    )
    model = SurrogateModel.from_npz(path, chunk_samples=64)
    assert model.n_electrodes == n_in
    assert model.n_layers == n_hidden + 1
    assert model.activation == activation
    v = rng.uniform(-2, 2, size=(301, n_in))
    expected = _reference_forward(v, weights, biases, activation, 7.25)
    np.testing.assert_allclose(model.current_a(v), expected, rtol=1e-12, atol=1e-24)
    np.testing.assert_allclose(model.current_na(v), expected * 1e9, rtol=1e-12, atol=1e-15)


def test_scalar_amplification_and_bytes_activation(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    arrays = _valid_arrays(rng, act="tanh")
    arrays["amplification"] = np.array(3.0)
    arrays["activation"] = np.array(b"tanh")
    model = SurrogateModel.from_npz(_save(tmp_path / "s.npz", **arrays))
    assert model.amplification == 3.0
    assert model.activation == "tanh"


def test_voltage_ranges_are_read_only(tmp_path: Path) -> None:
    model = SurrogateModel.from_npz(
        _save(tmp_path / "s.npz", **_valid_arrays(np.random.default_rng(0)))
    )
    with pytest.raises(ValueError):
        model.voltage_ranges_v[0, 0] = 5.0


def test_wrong_input_width_is_rejected(tmp_path: Path) -> None:
    model = SurrogateModel.from_npz(
        _save(tmp_path / "s.npz", **_valid_arrays(np.random.default_rng(0)))
    )
    with pytest.raises(ValueError, match=r"\(n_samples, 3\)"):
        model.current_a(np.zeros((4, 5)))
    assert model.current_a(np.zeros((0, 3))).shape == (0,)


# --- format errors ---------------------------------------------------------------------------


def _drop(key: str) -> Callable[[dict[str, object]], None]:
    def edit(arrays: dict[str, object]) -> None:
        del arrays[key]

    return edit


def _set(key: str, value: object) -> Callable[[dict[str, object]], None]:
    def edit(arrays: dict[str, object]) -> None:
        arrays[key] = value

    return edit


def _gap(arrays: dict[str, object]) -> None:
    arrays["W4"] = np.zeros((1, 1))
    arrays["b4"] = np.zeros(1)


def _two_outputs(arrays: dict[str, object]) -> None:
    arrays["W2"] = np.zeros((2, 4))
    arrays["b2"] = np.zeros(2)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_drop("W0"), "W0"),
        (_drop("b1"), "b1"),
        (_gap, "W3"),
        (_set("b7", np.zeros(1)), "b7"),
        (_drop("activation"), "activation"),
        (_drop("amplification"), "amplification"),
        (_drop("voltage_ranges"), "voltage_ranges"),
        (_set("W1", np.zeros((4, 6))), "W1"),
        (_set("b0", np.zeros(4)), "b0"),
        (_set("W0", np.zeros(5)), "W0"),
        (_two_outputs, "exactly one output"),
        (_set("activation", np.array("swish")), "swish"),
        (_set("activation", np.array([1.0])), "activation"),
        (_set("amplification", np.array([1.0, 2.0])), "amplification"),
        (_set("amplification", np.array([0.0])), "amplification"),
        (_set("voltage_ranges", np.zeros((2, 2))), "voltage_ranges"),
        (_set("voltage_ranges", np.array([[-1.0, 1.0], [1.0, -1.0], [0.0, 1.0]])), "min < max"),
        (_set("W1", np.full((4, 5), np.nan)), "W1"),
    ],
)
def test_format_errors_name_the_problem(
    tmp_path: Path, edit: Callable[[dict[str, object]], None], expected: str
) -> None:
    arrays = _valid_arrays(np.random.default_rng(1))
    SurrogateModel.from_npz(_save(tmp_path / "ok.npz", **arrays))  # the baseline is valid
    edit(arrays)
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SurrogateFormatError, match="A valid surrogate file") as info:
        SurrogateModel.from_npz(path)
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SurrogateFormatError, match="does not exist"):
        SurrogateModel.from_npz(tmp_path / "absent.npz")


def test_not_an_npz(tmp_path: Path) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("this is not a NumPy archive\n")
    with pytest.raises(SurrogateFormatError, match="could not be read"):
        SurrogateModel.from_npz(text)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(SurrogateFormatError, match="single array"):
        SurrogateModel.from_npz(npy)


def test_pickled_entries_are_rejected(tmp_path: Path) -> None:
    arrays = _valid_arrays(np.random.default_rng(2))
    arrays["activation"] = np.array(["relu", None], dtype=object)
    path = _save(tmp_path / "pickled.npz", **arrays)
    with pytest.raises(SurrogateFormatError, match="pickled"):
        SurrogateModel.from_npz(path)


def test_constructor_validates_directly() -> None:
    with pytest.raises(SurrogateFormatError, match="no layers"):
        SurrogateModel([], [], "relu", 1.0, np.zeros((0, 2)))
    with pytest.raises(SurrogateFormatError, match="bias"):
        SurrogateModel([np.ones((1, 2))], [], "relu", 1.0, [[0, 1], [0, 1]])
    with pytest.raises(ValueError, match="chunk_samples"):
        SurrogateModel(
            [np.ones((1, 2))], [np.ones(1)], "relu", 1.0, [[0, 1], [0, 1]], chunk_samples=0
        )


def test_concurrent_evaluation_is_consistent(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    arrays = _valid_arrays(rng, n_in=4, widths=(30, 30), act="elu")
    model = SurrogateModel.from_npz(_save(tmp_path / "s.npz", **arrays), chunk_samples=50)
    inputs = [rng.uniform(-1, 1, size=(int(n), 4)) for n in rng.integers(1, 400, size=16)]
    expected = [model.current_a(v) for v in inputs]
    results: dict[int, np.ndarray] = {}

    def worker(i: int) -> None:
        for _ in range(20):
            results[i] = model.current_a(inputs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, exp in enumerate(expected):
        np.testing.assert_array_equal(results[i], exp)
