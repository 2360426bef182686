"""Importing PyTorch twins without PyTorch: the lab fixtures, files written here, hostile pickles.

Files "written here" emulate ``torch.save`` with the standard library: a pickler that writes the
same globals (``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``) and persistent ids as
torch, in the zip container (``archive/data.pkl`` + ``archive/data/<key>``) and in the legacy
one (magic number, protocol, system info, object, storage keys, raw storages).
"""

from __future__ import annotations

import builtins
import collections
import io
import itertools
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labctl.cli import main
from labctl.twin.convert import import_twin, load_surrogate, to_surrogate
from labctl.twin.layouts import MissingTwinInfo, TwinLayoutError, TwinOptions
from labctl.twin.unpickle import TorchFileError, UnsafePickleError, load_torch_file
from simulated_hw.surrogate import SurrogateModel
from tests.conftest import SHARED_DEVICES

BRAINSPY = SHARED_DEVICES / "brainspy"
ROWS_V = np.array(
    [
        [0.10, -0.20, 0.30, -0.40, 0.50, -0.10, 0.20],
        [-0.90, 0.40, -0.60, 0.20, -0.30, 0.25, -0.50],
        [0.0] * 7,
    ]
)
# file, options it needs, reference output per row (README of ../shared/devices/brainspy)
FIXTURES = {
    "random_state_dict.pt": (
        TwinOptions(activation="relu", amplification=1.0, voltage_ranges_v=[-1.2, 0.6]),
        [0.038265, 0.031587, 0.029234],
    ),
    "training_data.pickle": (TwinOptions(activation="relu"), [13.2645, 12.2626, 11.2069]),
    "TEST_NN.pt": (
        TwinOptions(amplification=1.0, voltage_ranges_v=[-1.2, 0.6]),
        [-0.011528, -4.346597, -2.862642],
    ),
}


def fixture_path(name: str) -> Path:
    path = BRAINSPY / name
    if not path.is_file():
        pytest.skip(f"../shared/devices/brainspy/{name} is not available")
    return path


# -- a torch.save emulation (standard library only) --------------------------------------------


class Global:
    """A name as a pickle GLOBAL opcode writes it (``module name``), without importing it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle insists a reduce function be callable
        raise AssertionError("only written into pickles")


class Storage:
    """A storage: raw array written outside the pickle, referred to by a persistent id."""

    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key, self.array = key, array

    @property
    def type_name(self) -> str:
        return {"float32": "FloatStorage", "float64": "DoubleStorage", "int64": "LongStorage"}[
            str(self.array.dtype)
        ]


class Tensor:
    def __init__(self, storage: Storage, shape: tuple[int, ...], parameter: bool = False) -> None:
        self.storage, self.shape, self.parameter = storage, shape, parameter

    def __reduce__(self) -> Any:
        strides = tuple(int(np.prod(self.shape[k + 1 :])) for k in range(len(self.shape)))
        rebuilt = (
            Global("torch._utils", "_rebuild_tensor_v2"),
            (self.storage, 0, self.shape, strides, False, collections.OrderedDict()),
        )
        if self.parameter:
            return (Global("torch._utils", "_rebuild_parameter"), (_Reduced(rebuilt), True, {}))
        return rebuilt


class _Reduced:
    def __init__(self, reduced: Any) -> None:
        self.reduced = reduced

    def __reduce__(self) -> Any:
        return self.reduced


class TorchPickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Writes ``Global`` as a GLOBAL opcode and storages as torch's persistent ids."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def __init__(self, file: io.BytesIO, legacy: bool) -> None:
        super().__init__(file, protocol=2)
        self.legacy = legacy
        self.storages: dict[str, Storage] = {}

    def save_marker(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = save_marker

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, Storage):
            return None
        self.storages[obj.key] = obj
        kind = Global("torch", obj.type_name)
        if self.legacy:
            return ("storage", kind, obj.key, "cpu", obj.array.size, None)
        return ("storage", kind, obj.key, "cpu", obj.array.size)


_STORAGE_KEYS = itertools.count()


def tensors(state: dict[str, Any]) -> dict[str, Any]:
    """Arrays of ``state`` as emulated tensors (each with its own storage), others unchanged."""
    out: dict[str, Any] = collections.OrderedDict()
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            out[key] = Tensor(Storage(str(next(_STORAGE_KEYS)), value.ravel().copy()), value.shape)
        elif isinstance(value, dict):
            out[key] = tensors(value)
        else:
            out[key] = value
    return out


def write_zip(path: Path, obj: Any) -> Path:
    buffer = io.BytesIO()
    pickler = TorchPickler(buffer, legacy=False)
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, storage in pickler.storages.items():
            archive.writestr(
                f"archive/data/{key}",
                storage.array.astype("<" + storage.array.dtype.str[1:]).tobytes(),
            )
        archive.writestr("archive/version", "3\n")
    return path


def write_legacy(path: Path, obj: Any, sys_info: Any = None) -> Path:
    buffer = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, buffer, protocol=2)
    pickle.dump(1001, buffer, protocol=2)
    info = (
        sys_info
        if sys_info is not None
        else {
            "protocol_version": 1001,
            "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4},
        }
    )
    pickle.dump(info, buffer, protocol=2)
    pickler = TorchPickler(buffer, legacy=True)
    pickler.dump(obj)
    keys = list(pickler.storages)
    pickle.dump(keys, buffer, protocol=2)
    for key in keys:
        array = pickler.storages[key].array
        buffer.write(struct.pack("<q", array.size))
        buffer.write(array.astype("<" + array.dtype.str[1:]).tobytes())
    path.write_bytes(buffer.getvalue())
    return path


def random_network(
    seed: int, sizes: tuple[int, ...] = (7, 20, 20, 1), prefix: str = "raw_model.", step: int = 2
) -> tuple[dict[str, np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """A float32 state dict of linear layers at indices 0, step, 2·step, ... (Sequential)."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = collections.OrderedDict()
    weights, biases = [], []
    for k in range(len(sizes) - 1):
        w = rng.normal(0, 0.5, (sizes[k + 1], sizes[k])).astype(np.float32)
        b = rng.normal(0, 0.1, sizes[k + 1]).astype(np.float32)
        state[f"{prefix}{k * step}.weight"] = w
        state[f"{prefix}{k * step}.bias"] = b
        weights.append(w.astype(np.float64))
        biases.append(b.astype(np.float64))
    return state, weights, biases


def forward(weights: list[np.ndarray], biases: list[np.ndarray], v: np.ndarray) -> np.ndarray:
    h = v
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w.T + b
        if k < len(weights) - 1:
            h = np.maximum(h, 0)
    return h[:, 0]


# -- the lab fixtures -------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("name", list(FIXTURES))
def test_fixture_reproduces_its_reference_outputs(name: str) -> None:
    options, expected = FIXTURES[name]
    model = to_surrogate(import_twin(fixture_path(name), options))
    np.testing.assert_allclose(model.current_na(ROWS_V), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.shared
def test_fixture_layouts_and_what_the_file_says() -> None:
    td = import_twin(fixture_path("training_data.pickle"), TwinOptions(activation="relu"))
    assert td.prefix == "dnpu.processor.processor.model.raw_model."
    assert td.layer_keys == (0, 2, 4, 6) and td.architecture() == "7 → 90 → 90 → 90 → 1"
    assert td.amplification == 100.0 and "file" in td.sources["amplification"]
    np.testing.assert_array_equal(td.voltage_ranges_v, [[-1.2, 0.6]] * 5 + [[-0.7, 0.3]] * 2)
    nn = import_twin(fixture_path("TEST_NN.pt"), FIXTURES["TEST_NN.pt"][0])
    assert nn.activation == "relu" and nn.sources["activation"] == "file: 'activation'"
    assert nn.layer_keys == (0, 2, 4, 6, 8, 10, 12)
    with pytest.raises(MissingTwinInfo) as missing:
        import_twin(fixture_path("random_state_dict.pt"))
    assert set(missing.value.options) == {"--activation", "--amplification", "--voltage-ranges"}


@pytest.mark.shared
def test_cli_import_writes_an_npz_that_loads_as_a_surrogate(tmp_path: Path, capsys) -> None:
    out = tmp_path / "td.npz"
    rc = main(["twin", "import", str(fixture_path("training_data.pickle")), "-o", str(out),
               "--activation", "relu"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "amplification: 100 nA (file:" in text and "activation: relu (option" in text
    model = SurrogateModel.from_npz(out)
    np.testing.assert_allclose(
        model.current_na(ROWS_V), FIXTURES["training_data.pickle"][1], rtol=1e-5
    )

    assert main(["twin", "import", str(fixture_path("random_state_dict.pt")), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--activation" in err and "--amplification" in err and "--voltage-ranges" in err


# -- files written here -----------------------------------------------------------------------


@pytest.mark.parametrize("writer", [write_zip, write_legacy])
def test_plain_state_dict_in_both_containers(tmp_path: Path, writer) -> None:
    state, weights, biases = random_network(1)
    path = writer(tmp_path / "net.pt", tensors(state))
    loaded = load_torch_file(path)
    assert isinstance(loaded, collections.OrderedDict)
    np.testing.assert_array_equal(loaded["raw_model.2.weight"], state["raw_model.2.weight"])
    assert loaded["raw_model.2.weight"].dtype == np.float32
    twin = import_twin(path, TwinOptions("relu", 2.5, [-1, 1]))
    v = np.random.default_rng(2).uniform(-1, 1, (50, 7))
    np.testing.assert_allclose(to_surrogate(twin).current_na(v), 2.5 * forward(weights, biases, v))


def test_layer_order_comes_from_the_module_indices(tmp_path: Path) -> None:
    state, weights, biases = random_network(3, sizes=(7, 12, 9, 5, 1), step=3)
    shuffled = collections.OrderedDict(reversed(list(state.items())))
    shuffled["raw_model.10.weight"] = None  # not a tensor: ignored
    twin = import_twin(
        write_zip(tmp_path / "n.pt", tensors(shuffled)), TwinOptions("relu", 1, [-1, 1])
    )
    assert twin.layer_keys == (0, 3, 6, 9)
    v = np.random.default_rng(4).uniform(-1, 1, (20, 7))
    np.testing.assert_allclose(to_surrogate(twin).current_na(v), forward(weights, biases, v))


def test_brainspy_smg_training_file_with_info(tmp_path: Path) -> None:
    state, weights, biases = random_network(5)
    ranges = np.array([[-1.2, 0.6]] * 5 + [[-0.7, 0.3]] * 2)
    info = {
        "model_structure": {"hidden_sizes": [20, 20], "D_in": 7, "D_out": 1, "activation": "relu"},
        "electrode_info": {
            "electrode_no": 8,
            "activation_electrodes": {"electrode_no": 7, "voltage_ranges": ranges},
            "output_electrodes": {"electrode_no": 1, "amplification": [28.5]},
        },
    }
    obj = {"epoch": 10, "model_state_dict": tensors(state), "info": info, "train_losses": [1.0]}
    path = write_zip(tmp_path / "smg.pt", obj)
    twin = import_twin(path)
    assert twin.amplification == 28.5 and twin.activation == "relu"
    np.testing.assert_array_equal(twin.voltage_ranges_v, ranges)
    v = np.random.default_rng(6).uniform(-0.7, 0.3, (10, 7))
    np.testing.assert_allclose(
        load_surrogate(path).current_na(v), 28.5 * forward(weights, biases, v)
    )


def test_skynet_legacy_checkpoint_with_offset_and_amplitude(tmp_path: Path) -> None:
    state, weights, biases = random_network(7, step=1, prefix="")
    info = {
        "activation": "ReLU",
        "amplification": 10.0,
        "offset": [-0.3] * 7,
        "amplitude": [0.9] * 7,
    }
    path = write_legacy(tmp_path / "sky.pt", {"state_dict": tensors(state), "info": info})
    twin = import_twin(path)
    assert twin.amplification == 10.0 and twin.layer_keys == (0, 1, 2)
    np.testing.assert_allclose(twin.voltage_ranges_v, [[-1.2, 0.6]] * 7)
    v = np.zeros((1, 7))
    np.testing.assert_allclose(to_surrogate(twin).current_na(v), 10 * forward(weights, biases, v))


def test_parameters_numpy_values_and_two_networks(tmp_path: Path) -> None:
    state, weights, biases = random_network(8)
    obj = tensors(state)
    key = "raw_model.0.weight"
    obj[key] = Tensor(obj[key].storage, obj[key].shape, parameter=True)
    other, _, _ = random_network(9, prefix="critic.")
    obj.update(tensors({f"x{k}": v for k, v in other.items()}))
    obj["amplification"] = np.array([3.0])  # a real numpy array inside the pickle
    obj["activation"] = "relu"
    obj["voltage_ranges"] = np.tile([-1.0, 1.0], (7, 1))
    path = write_zip(tmp_path / "two.pt", obj)
    with pytest.raises(TwinLayoutError, match="--prefix"):
        import_twin(path)
    twin = import_twin(path, TwinOptions(prefix="raw_model."))
    assert twin.amplification == 3.0
    v = np.random.default_rng(10).uniform(-1, 1, (5, 7))
    np.testing.assert_allclose(to_surrogate(twin).current_na(v), 3 * forward(weights, biases, v))


def test_broken_files_are_clear_errors(tmp_path: Path) -> None:
    state, _, _ = random_network(11)
    good = write_zip(tmp_path / "good.pt", tensors(state))
    truncated = tmp_path / "truncated.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(truncated, "w") as dst:
        storages = [n for n in src.namelist() if n.startswith("archive/data/")]
        for name in src.namelist():
            if name != storages[0]:
                dst.writestr(name, src.read(name))
    with pytest.raises(TorchFileError, match="missing"):
        load_torch_file(truncated)
    legacy = write_legacy(tmp_path / "legacy.pt", tensors(state))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(legacy.read_bytes()[:-100])
    with pytest.raises(TorchFileError, match="truncated"):
        load_torch_file(cut)
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(TorchFileError, match="neither"):
        load_torch_file(text)
    with pytest.raises(TorchFileError, match="does not exist"):
        load_torch_file(tmp_path / "absent.pt")


# -- hostile pickles --------------------------------------------------------------------------


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> Any:
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> Any:
        return (builtins.eval, (self.code,))


def _hostile_objects(sentinel: Path) -> dict[str, Any]:
    return {
        "os.system": _System(f"touch {sentinel}"),
        "eval": _Eval(f"open({str(sentinel)!r}, 'w').close()"),
    }


def test_the_hostile_pickles_do_run_code_with_plain_pickle(tmp_path: Path) -> None:
    """Control: the payloads used below really execute when loaded the ordinary way."""
    for name, payload in _hostile_objects(tmp_path / "sentinel").items():
        pickle.loads(pickle.dumps(payload, protocol=2))
        assert (tmp_path / "sentinel").exists(), name
        (tmp_path / "sentinel").unlink()


@pytest.mark.parametrize("payload", ["os.system", "eval"])
@pytest.mark.parametrize("container", ["zip", "legacy", "legacy-sysinfo", "bare"])
def test_hostile_pickle_is_refused_and_nothing_runs(
    tmp_path: Path, capsys, payload: str, container: str
) -> None:
    sentinel = tmp_path / "sentinel"
    hostile = _hostile_objects(sentinel)[payload]
    state, _, _ = random_network(12)
    obj = tensors(state)
    obj["raw_model.0.bias"] = hostile  # hidden inside an ordinary-looking state dict
    path = tmp_path / "twin.pt"
    if container == "zip":
        write_zip(path, obj)
    elif container == "legacy":
        write_legacy(path, obj)
    elif container == "legacy-sysinfo":
        write_legacy(path, tensors(state), sys_info={"little_endian": hostile})
    else:
        path.write_bytes(pickle.dumps(hostile, protocol=2))
    with pytest.raises(UnsafePickleError) as refused:
        load_torch_file(path)
    expected = {
        "os.system": ("posix.system", "os.system", "nt.system"),
        "eval": ("builtins.eval", "__builtin__.eval"),
    }
    assert refused.value.global_name in expected[payload]
    assert not sentinel.exists()
    assert main(["twin", "import", str(path), "--activation", "relu"]) == 2
    err = capsys.readouterr().err
    assert refused.value.global_name in err and "nothing from the file was executed" in err
    assert not sentinel.exists()
    assert not path.with_suffix(".npz").exists()


def test_whole_model_objects_and_other_globals_are_refused(tmp_path: Path) -> None:
    for module, name in [
        ("torch.nn.modules.container", "Sequential"),
        ("builtins", "getattr"),
        ("copyreg", "_reconstructor"),
        ("subprocess", "Popen"),
    ]:
        data = pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.STOP
        path = tmp_path / f"{name}.pt"
        path.write_bytes(b"\x80\x02" + data)
        with pytest.raises(UnsafePickleError, match=name) as refused:
            load_torch_file(path)
        if module.startswith("torch.nn"):
            assert "state_dict" in str(refused.value)


def test_numpy_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    path.write_bytes(pickle.dumps({"x": np.array([1, "a"], dtype=object)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="object"):
        load_torch_file(path)
    path.write_bytes(pickle.dumps({"x": np.arange(3.0), "y": np.float64(2.5)}, protocol=2))
    loaded = load_torch_file(path)
    np.testing.assert_array_equal(loaded["x"], np.arange(3.0))
    assert loaded["y"] == 2.5


def test_torch_is_not_needed() -> None:
    assert "torch" not in sys.modules
