"""Twin files to labctl's NPZ surrogate format, and straight to a :class:`SurrogateModel`.

``surrogate_path`` of the simulated backend may name a ``.pt``/``.pth``/``.pickle``/``.pkl``
file: :func:`load_surrogate` reads it through the restricted unpickler. Such a file must then
state its activation, amplification and voltage ranges; otherwise convert it once with
``labctl twin import FILE --activation … --amplification … --voltage-ranges … -o twin.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.twin.layouts import ImportedTwin, MissingTwinInfo, TwinOptions, extract_twin
from labctl.twin.unpickle import TorchFileError, load_torch_file
from simulated_hw.surrogate import SurrogateModel

TORCH_SUFFIXES = (".pt", ".pth", ".pickle", ".pkl")
"""File name endings read as PyTorch files (anything else is read as NPZ)."""


def is_torch_file(path: str | Path) -> bool:
    """Whether ``path`` is named like a PyTorch file (by its suffix)."""
    return Path(path).suffix.lower() in TORCH_SUFFIXES


def import_twin(path: str | Path, options: TwinOptions | None = None) -> ImportedTwin:
    """Read a twin from a PyTorch file (zip or legacy), without PyTorch and without running it.

    Raises:
        UnsafePickleError: The file asks for a class outside the allow-list (nothing ran).
        TorchFileError: Not a readable torch file, or no usable surrogate in it
            (:class:`MissingTwinInfo` when options are needed).
    """
    obj = load_torch_file(path)
    return extract_twin(obj, str(path), options)


def to_surrogate(twin: ImportedTwin) -> SurrogateModel:
    """The :class:`SurrogateModel` of an imported twin (float64 evaluation)."""
    return SurrogateModel(
        list(twin.weights),
        list(twin.biases),
        twin.activation,
        twin.amplification,
        twin.voltage_ranges_v,
    )


def twin_arrays(twin: ImportedTwin) -> dict[str, np.ndarray]:
    """The arrays of the NPZ surrogate format (see :mod:`simulated_hw.surrogate`)."""
    arrays: dict[str, np.ndarray] = {}
    for k, (w, b) in enumerate(zip(twin.weights, twin.biases, strict=True)):
        arrays[f"W{k}"] = np.asarray(w, dtype=np.float64)
        arrays[f"b{k}"] = np.asarray(b, dtype=np.float64)
    arrays["activation"] = np.array(twin.activation)
    arrays["amplification"] = np.array([twin.amplification], dtype=np.float64)
    arrays["voltage_ranges"] = np.asarray(twin.voltage_ranges_v, dtype=np.float64)
    return arrays


def save_npz(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write NPZ surrogate arrays (no pickled objects); returns the path written.

    The file is written next to its destination and renamed into place, so a crash never leaves
    half a surrogate under the final name.
    """
    out = Path(path)
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    tmp = out.with_name(out.name + ".partial.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(out)
    SurrogateModel.from_npz(out)  # what was written loads back
    return out


def load_surrogate(path: str | Path) -> SurrogateModel:
    """A surrogate from an NPZ file or, by its suffix, a PyTorch twin file.

    Raises:
        SurrogateFormatError: A malformed NPZ surrogate.
        TorchFileError: A torch file that is unsafe, unreadable or incomplete (the message says
            to convert it with ``labctl twin import`` and which options it needs).
    """
    if not is_torch_file(path):
        return SurrogateModel.from_npz(path)
    try:
        return to_surrogate(import_twin(path))
    except MissingTwinInfo as exc:
        raise TorchFileError(
            f"{exc}: convert it once with `labctl twin import {path} "
            f"{' '.join(f'{o} …' for o in exc.options)} -o twin.npz` and point "
            "surrogate_path at twin.npz"
        ) from exc


def surrogate_electrodes(path: str | Path) -> int:
    """Number of voltage electrodes of an NPZ or PyTorch surrogate file."""
    return load_surrogate(path).n_electrodes
