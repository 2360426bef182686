"""Neural-network surrogate device models (brains-py style MLPs stored as NumPy ``.npz``).

A surrogate is a fully connected network trained on I–V data measured on a real device. Layer
``k`` computes ``h @ Wk.T + bk``; the activation follows every layer except the last. The single
network output times ``amplification`` is the device current in nA; :class:`SurrogateModel`
reports it in amperes (×1e-9) so that it satisfies :class:`simulated_hw.models.DeviceModel`.

File format (one ``.npz`` archive, no pickled objects):

=================  ==========================  =================================================
key                shape                       meaning
=================  ==========================  =================================================
``W0`` … ``Wk``    ``(n_out_k, n_in_k)``       weights; ``n_in_0`` = number of electrodes,
                                               ``n_in_k`` = ``n_out_(k-1)``, ``n_out_k`` = 1
``b0`` … ``bk``    ``(n_out_k,)``              biases
``activation``     scalar string               relu, elu, tanh, sigmoid, hardtanh,
                                               identity or linear
``amplification``  ``(1,)`` or scalar          nA per unit of network output
``voltage_ranges`` ``(n_electrodes, 2)``       ``[min, max]`` volts per electrode
=================  ==========================  =================================================
"""

from __future__ import annotations

import re
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

FloatArray = NDArray[np.float64]

NA_TO_A = 1e-9
"""Amperes per nanoampere."""

DEFAULT_CHUNK_SAMPLES = 1024
"""Rows evaluated per batch: keeps the hidden-layer buffers small and cache friendly."""

FORMAT_HELP = (
    "A valid surrogate file is a NumPy .npz archive holding weight matrices W0..Wk (layer k "
    "computes h @ Wk.T + bk; W0 has one column per electrode, each Wk has as many columns as "
    "W(k-1) has rows, and the last layer has exactly one row), bias vectors b0..bk (bk has as "
    "many entries as Wk has rows), 'activation' (a scalar string: relu, elu, tanh, sigmoid, "
    "hardtanh, identity or linear), 'amplification' (one number: nA per unit of network output) "
    "and 'voltage_ranges' (shape (n_electrodes, 2): [min, max] volts per electrode)."
)

_ActivationFn = Callable[[FloatArray], None]


def _relu(h: FloatArray) -> None:
    np.maximum(h, 0.0, out=h)


def _elu(h: FloatArray) -> None:
    negative = h < 0.0
    h[negative] = np.expm1(h[negative])


def _tanh(h: FloatArray) -> None:
    np.tanh(h, out=h)


def _sigmoid(h: FloatArray) -> None:
    expit(h, out=h)


def _hardtanh(h: FloatArray) -> None:
    np.clip(h, -1.0, 1.0, out=h)


def _identity(h: FloatArray) -> None:
    return None


_ACTIVATIONS: dict[str, _ActivationFn] = {
    "relu": _relu,
    "elu": _elu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "hardtanh": _hardtanh,
    "identity": _identity,
    "linear": _identity,
}
"""In-place activation functions (ELU with alpha = 1, hardtanh clipping to [-1, 1])."""

SUPPORTED_ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATIONS)
"""Activation names a surrogate file may use (case-insensitive)."""


def activation_and_slope(name: str, z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Activation ``a(z)`` and its derivative ``a'(z)`` (same conventions as the forward pass).

    At a ReLU or hardtanh kink the derivative of the side the forward pass treats as active is
    used (``z > 0`` for ReLU).
    """
    if name == "relu":
        return np.maximum(z, 0.0), (z > 0.0).astype(np.float64)
    if name == "elu":
        negative = z < 0.0
        a = np.where(negative, np.expm1(np.minimum(z, 0.0)), z)
        return a, np.where(negative, a + 1.0, 1.0)
    if name == "tanh":
        a = np.tanh(z)
        return a, 1.0 - a * a
    if name == "sigmoid":
        a = expit(z)
        return a, a * (1.0 - a)
    if name == "hardtanh":
        return np.clip(z, -1.0, 1.0), ((z > -1.0) & (z < 1.0)).astype(np.float64)
    return z, np.ones_like(z)


class SurrogateFormatError(ValueError):
    """A surrogate file (or the arrays given to :class:`SurrogateModel`) is malformed."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem} {FORMAT_HELP}")
        self.problem = problem


def surrogate_electrode_count(path: str | Path) -> int:
    """Number of voltage electrodes of an NPZ surrogate, read from its header alone.

    Raises:
        SurrogateFormatError: The file is not an NPZ archive with a ``W0`` weight matrix.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            weights = archive["W0"] if "W0" in archive.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
        raise SurrogateFormatError(
            f"{path} could not be read as a NumPy .npz archive ({exc})."
        ) from exc
    if weights is None:
        raise SurrogateFormatError(f"{path} has no weight matrix 'W0'.")
    if weights.ndim != 2:
        raise SurrogateFormatError(f"{path}: 'W0' must be a matrix, got shape {weights.shape}.")
    return int(weights.shape[1])


def default_surrogate_path() -> Path:
    """Where the project's reference surrogate lives: ``<repo>/../shared/devices/…``.

    The repository root is the parent of the ``simulated_hw`` package directory. The path is
    returned whether or not the file exists (it is absent on most users' machines).
    """
    repo_root = Path(__file__).resolve().parent.parent
    return repo_root.parent / "shared" / "devices" / "dnpu_surrogate_a.npz"


class SurrogateModel:
    """A multilayer-perceptron surrogate of a device: electrode voltages (V) in, current (A) out.

    Args:
        weights: Weight matrices ``W0 … Wk``; ``Wk`` has shape ``(n_out_k, n_in_k)``.
        biases: Bias vectors ``b0 … bk``; ``bk`` has shape ``(n_out_k,)``.
        activation: Name of the hidden-layer activation (see :data:`SUPPORTED_ACTIVATIONS`).
        amplification: nA per unit of network output (a number or a one-element array).
        voltage_ranges_v: ``[min, max]`` volts per electrode, shape ``(n_electrodes, 2)``.
        chunk_samples: Rows evaluated per batch (memory stays ``O(chunk × width)``).

    Raises:
        SurrogateFormatError: If shapes do not chain, values are not finite, the activation is
            unknown or the voltage ranges are not ``min < max``.
    """

    def __init__(
        self,
        weights: Sequence[ArrayLike],
        biases: Sequence[ArrayLike],
        activation: str,
        amplification: ArrayLike,
        voltage_ranges_v: ArrayLike,
        *,
        chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    ) -> None:
        if len(weights) == 0:
            raise SurrogateFormatError("The surrogate has no layers (no W0).")
        if len(weights) != len(biases):
            raise SurrogateFormatError(
                f"Got {len(weights)} weight matrices but {len(biases)} bias vectors; "
                "every layer needs both."
            )
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be a positive integer, got {chunk_samples}.")
        name = str(activation).strip().lower()
        if name not in _ACTIVATIONS:
            raise SurrogateFormatError(
                f"Unknown activation {activation!r}; supported: {', '.join(SUPPORTED_ACTIVATIONS)}."
            )
        weights_t: list[FloatArray] = []
        bias_list: list[FloatArray] = []
        previous_out: int | None = None
        for k, (w_raw, b_raw) in enumerate(zip(weights, biases, strict=True)):
            w = _as_float_array(w_raw, f"W{k}")
            b = _as_float_array(b_raw, f"b{k}")
            if w.ndim != 2:
                raise SurrogateFormatError(f"W{k} must be 2-D (n_out, n_in), got shape {w.shape}.")
            if previous_out is not None and w.shape[1] != previous_out:
                raise SurrogateFormatError(
                    f"W{k} has shape {w.shape} but layer {k - 1} has {previous_out} outputs: "
                    f"W{k} needs {previous_out} columns."
                )
            if b.shape != (w.shape[0],):
                raise SurrogateFormatError(
                    f"b{k} has shape {b.shape} but W{k} has shape {w.shape}: "
                    f"b{k} must have shape ({w.shape[0]},)."
                )
            previous_out = w.shape[0]
            weights_t.append(np.ascontiguousarray(w.T))
            bias_list.append(b.copy())
        if previous_out != 1:
            raise SurrogateFormatError(
                f"The last layer W{len(weights) - 1} has {previous_out} outputs; a surrogate "
                "must have exactly one output (the device current)."
            )
        amp = _as_float_array(amplification, "amplification")
        if amp.size != 1:
            raise SurrogateFormatError(
                f"amplification must hold one number, got shape {amp.shape}."
            )
        amp_value = float(amp.reshape(()))
        if amp_value == 0.0:
            raise SurrogateFormatError("amplification is 0: the model would output no current.")
        ranges = _as_float_array(voltage_ranges_v, "voltage_ranges")
        n_in = weights_t[0].shape[0]
        if ranges.shape != (n_in, 2):
            raise SurrogateFormatError(
                f"voltage_ranges has shape {ranges.shape} but W0 has {n_in} columns "
                f"(electrodes): it must have shape ({n_in}, 2)."
            )
        if np.any(ranges[:, 0] >= ranges[:, 1]):
            bad = [int(i) for i in np.flatnonzero(ranges[:, 0] >= ranges[:, 1])]
            raise SurrogateFormatError(
                f"voltage_ranges rows {bad} do not satisfy min < max: {ranges[bad].tolist()}."
            )
        self._weights_t = tuple(weights_t)
        self._biases = tuple(bias_list)
        self._activation_name = name
        self._activation = _ACTIVATIONS[name]
        self._amplification = amp_value
        self._scale_a = amp_value * NA_TO_A
        self._ranges = ranges.copy()
        self._ranges.setflags(write=False)
        self._chunk = int(chunk_samples)
        self._scratch = threading.local()

    @classmethod
    def from_npz(
        cls, path: str | Path, *, chunk_samples: int = DEFAULT_CHUNK_SAMPLES
    ) -> SurrogateModel:
        """Load a surrogate from an ``.npz`` file (format in the module docstring).

        Raises:
            SurrogateFormatError: If the file is missing, is not an ``.npz`` archive, or its keys,
                shapes or values are invalid. The message names the problem.
        """
        p = Path(path)
        if not p.is_file():
            raise SurrogateFormatError(f"Surrogate file {p} does not exist (or is not a file).")
        try:
            archive = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise SurrogateFormatError(
                f"{p} could not be read as a NumPy .npz archive ({exc})."
            ) from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise SurrogateFormatError(
                f"{p} holds a single array (.npy), not an .npz archive of named arrays."
            )
        with archive:
            try:
                arrays = {key: archive[key] for key in archive.files}
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise SurrogateFormatError(
                    f"{p} contains an entry that is not a plain numeric/string array ({exc}); "
                    "save it without pickled objects."
                ) from exc
        return cls._from_arrays(arrays, str(p), chunk_samples)

    @classmethod
    def _from_arrays(
        cls, arrays: dict[str, np.ndarray], source: str, chunk_samples: int
    ) -> SurrogateModel:
        layer_ids: dict[str, set[int]] = {"W": set(), "b": set()}
        for key in arrays:
            match = re.fullmatch(r"([Wb])(\d+)", key)
            if match:
                layer_ids[match.group(1)].add(int(match.group(2)))
        if not layer_ids["W"]:
            raise SurrogateFormatError(f"{source} has no weight matrices (key 'W0' is missing).")
        n_layers = max(layer_ids["W"]) + 1
        for prefix in ("W", "b"):
            missing = [f"{prefix}{k}" for k in range(n_layers) if k not in layer_ids[prefix]]
            if missing:
                raise SurrogateFormatError(f"{source} is missing key(s) {', '.join(missing)}.")
        extra_b = sorted(k for k in layer_ids["b"] if k >= n_layers)
        if extra_b:
            raise SurrogateFormatError(
                f"{source} has bias b{extra_b[0]} without a matching weight matrix W{extra_b[0]}."
            )
        for key in ("activation", "amplification", "voltage_ranges"):
            if key not in arrays:
                raise SurrogateFormatError(f"{source} is missing key '{key}'.")
        act = arrays["activation"]
        if act.size != 1 or act.dtype.kind not in "US":
            raise SurrogateFormatError(
                f"'activation' must be a scalar string, got dtype {act.dtype} shape {act.shape}."
            )
        act_value = act.reshape(()).item()
        if isinstance(act_value, bytes):
            act_value = act_value.decode("ascii", errors="replace")
        return cls(
            [arrays[f"W{k}"] for k in range(n_layers)],
            [arrays[f"b{k}"] for k in range(n_layers)],
            str(act_value),
            arrays["amplification"],
            arrays["voltage_ranges"],
            chunk_samples=chunk_samples,
        )

    @property
    def n_electrodes(self) -> int:
        """Number of voltage electrodes (network inputs)."""
        return int(self._weights_t[0].shape[0])

    @property
    def voltage_ranges_v(self) -> FloatArray:
        """``[min, max]`` volts per electrode, shape ``(n_electrodes, 2)`` (read-only)."""
        return self._ranges

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + output layer)."""
        return len(self._weights_t)

    @property
    def activation(self) -> str:
        """Canonical (lower-case) activation name."""
        return self._activation_name

    @property
    def amplification(self) -> float:
        """nA per unit of network output."""
        return self._amplification

    def current_a(self, voltages_v: FloatArray) -> FloatArray:
        """Device current (A) for each row of ``voltages_v`` (V).

        Args:
            voltages_v: Shape ``(n_samples, n_electrodes)`` or ``(n_electrodes,)`` (V).

        Returns:
            Shape ``(n_samples,)`` (A); ``(1,)`` for a 1-D input.

        Raises:
            ValueError: If the last axis is not ``n_electrodes`` long or the array is not 1-/2-D.
        """
        return self._evaluate(voltages_v, self._scale_a)

    @property
    def layers(self) -> tuple[tuple[FloatArray, ...], tuple[FloatArray, ...]]:
        """Transposed weight matrices ``(n_in_k, n_out_k)`` and biases, layer by layer (read-only
        views: layer ``k`` computes ``h @ weights_t[k] + biases[k]``)."""
        return self._weights_t, self._biases

    def current_and_gradient_a(self, voltages_v: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Current (A) and exact dI/dV (A/V) at each row of ``voltages_v``, by back-propagation.

        Args:
            voltages_v: Shape ``(n_points, n_electrodes)`` or ``(n_electrodes,)`` (V).

        Returns:
            Currents shape ``(n_points,)`` (A) and gradients ``(n_points, n_electrodes)`` (A/V).

        Raises:
            ValueError: If the last axis is not ``n_electrodes`` long.
        """
        v = np.atleast_2d(np.asarray(voltages_v, dtype=np.float64))
        if v.ndim != 2 or v.shape[1] != self.n_electrodes:
            raise ValueError(
                f"voltages_v must have {self.n_electrodes} columns (electrodes), got {v.shape}"
            )
        h = v
        slopes: list[FloatArray] = []
        last = len(self._weights_t) - 1
        for k, (w_t, b) in enumerate(zip(self._weights_t, self._biases, strict=True)):
            z = h @ w_t + b
            if k == last:
                h = z
            else:
                h, slope = activation_and_slope(self._activation_name, z)
                slopes.append(slope)
        current = h[:, 0] * self._scale_a
        delta = np.full((v.shape[0], 1), self._scale_a)
        for k in range(last, -1, -1):
            delta = delta @ self._weights_t[k].T
            if k > 0:
                delta = delta * slopes[k - 1]
        return current, delta

    def current_na(self, voltages_v: FloatArray) -> FloatArray:
        """Device current in nA (network output × amplification); shapes as :meth:`current_a`."""
        return self._evaluate(voltages_v, self._amplification)

    def _buffers(self) -> list[FloatArray]:
        """Per-thread hidden-layer buffers, allocated once (fresh large arrays cost page faults)."""
        buffers: list[FloatArray] | None = getattr(self._scratch, "buffers", None)
        if buffers is None:
            buffers = [np.empty((self._chunk, w.shape[1])) for w in self._weights_t]
            self._scratch.buffers = buffers
        return buffers

    def _evaluate(self, voltages_v: FloatArray, scale: float) -> FloatArray:
        """Network output × ``scale`` for each row, evaluated in chunks."""
        v = np.asarray(voltages_v, dtype=np.float64)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.n_electrodes:
            raise ValueError(
                f"voltages_v must have shape (n_samples, {self.n_electrodes}) or "
                f"({self.n_electrodes},), got {np.shape(voltages_v)}."
            )
        n = v.shape[0]
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        chunk = min(self._chunk, n)
        buffers = self._buffers()
        last = len(self._weights_t) - 1
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            m = stop - start
            h: FloatArray = v[start:stop]
            for k, (w_t, b) in enumerate(zip(self._weights_t, self._biases, strict=True)):
                buf = buffers[k][:m]
                np.matmul(h, w_t, out=buf)
                buf += b
                if k != last:
                    self._activation(buf)
                h = buf
            np.multiply(h[:, 0], scale, out=out[start:stop])
        return out


def _as_float_array(value: ArrayLike, key: str) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SurrogateFormatError(f"'{key}' is not numeric ({exc}).") from exc
    if not np.all(np.isfinite(arr)):
        raise SurrogateFormatError(f"'{key}' contains NaN or infinite values.")
    return arr
