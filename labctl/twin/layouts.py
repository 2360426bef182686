"""Find the surrogate network (and its electrode info) inside a loaded twin file.

Layouts recognised (the object :func:`labctl.twin.unpickle.load_torch_file` returns):

- a plain ``state_dict``: ``<prefix><k>.weight`` / ``<prefix><k>.bias`` for linear layers ``k``
  (e.g. ``raw_model.0.weight`` from ``nn.Sequential``: activations take the odd indices);
- a brains-py DNPU or processor ``state_dict``: the same under a longer prefix (e.g.
  ``dnpu.processor.processor.model.raw_model.``) next to ``…amplification`` and
  ``…voltage_ranges`` of that processor;
- a brains-py / brainspy-smg training file: a dict with ``model_state_dict`` (one of the above)
  and perhaps ``info`` (model structure, electrode info: activation, amplification, voltage
  ranges);
- a SkyNEt checkpoint: the state dict with extra entries (``activation``, ``loss``) or a dict with
  ``state_dict``/``model_state_dict`` and an ``info`` dict (activation, amplification, and the
  input ``offset`` and ``amplitude``: ranges = offset ± amplitude).

Layer order comes from the module indices (numeric order, not the order in the file). Values the
file does not hold must be given as options; :class:`MissingTwinInfo` names the options needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from labctl.twin.unpickle import TorchFileError
from simulated_hw.surrogate import SUPPORTED_ACTIVATIONS, FloatArray

log = logging.getLogger(__name__)

_LAYER_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<index>\d+)\.(?P<kind>weight|bias)$")
_INFO_SEARCH_DEPTH = 6
_ACTIVATION_ALIASES = {
    "relu": "relu",
    "elu": "elu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "hardtanh": "hardtanh",
    "identity": "identity",
    "linear": "linear",
}


class TwinLayoutError(TorchFileError):
    """The file loaded, but no usable surrogate network was found in it."""


class MissingTwinInfo(TwinLayoutError):
    """The file lacks values that must then come from options.

    Attributes:
        options: The command-line options that would supply them (e.g. ``--amplification``).
    """

    def __init__(self, source: str, missing: dict[str, str]) -> None:
        needed = "; ".join(f"{option} ({why})" for option, why in missing.items())
        super().__init__(f"{source} does not say everything a surrogate needs; give {needed}")
        self.options = tuple(missing)


@dataclass(frozen=True)
class TwinOptions:
    """Values to use where the file has none (or to override it, with a warning).

    Attributes:
        activation: Hidden-layer activation name.
        amplification: nA per unit of network output.
        voltage_ranges_v: ``[min, max]`` V per electrode, shape ``(n, 2)``, or one pair for all.
        prefix: Key prefix of the network's layers, when the file holds more than one network.
    """

    activation: str | None = None
    amplification: float | None = None
    voltage_ranges_v: ArrayLike | None = None
    prefix: str | None = None


@dataclass(frozen=True, eq=False)
class ImportedTwin:
    """A surrogate network found in a twin file, ready for :class:`SurrogateModel`.

    Attributes:
        weights: ``W0 … Wk`` as float64, ``Wk`` of shape ``(n_out, n_in)``.
        biases: ``b0 … bk``.
        activation: Canonical activation name.
        amplification: nA per unit of network output.
        voltage_ranges_v: ``[min, max]`` V per electrode, shape ``(n_electrodes, 2)``.
        layout: Which layout was recognised (in words).
        prefix: Key prefix of the layers in the file.
        layer_keys: Module index of each layer, in order.
        sources: Where each of activation, amplification and voltage ranges came from.
    """

    weights: tuple[FloatArray, ...]
    biases: tuple[FloatArray, ...]
    activation: str
    amplification: float
    voltage_ranges_v: FloatArray
    layout: str
    prefix: str
    layer_keys: tuple[int, ...]
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def n_electrodes(self) -> int:
        """Number of network inputs (voltage electrodes)."""
        return int(self.weights[0].shape[1])

    def architecture(self) -> str:
        """``7 → 90 → 90 → 1`` style summary."""
        sizes = [self.n_electrodes] + [int(w.shape[0]) for w in self.weights]
        return " → ".join(str(s) for s in sizes)


def _is_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "fiub"


def _state_dict_and_info(obj: object, source: str) -> tuple[Mapping[str, Any], Any, str]:
    if not isinstance(obj, Mapping):
        raise TwinLayoutError(
            f"{source} holds a {type(obj).__name__}, not a dict: expected a state_dict or a "
            "training/checkpoint dict with 'model_state_dict' or 'state_dict'"
        )
    for key, layout in (
        ("model_state_dict", "training file (brains-py / brainspy-smg)"),
        ("state_dict", "checkpoint with a state_dict (SkyNEt)"),
    ):
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return inner, obj, layout
    return obj, obj, "state_dict"


def _layer_groups(state: Mapping[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    groups: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not _is_array(value):
            continue
        match = _LAYER_KEY.match(key)
        if match is None:
            continue
        layers = groups.setdefault(match["prefix"], {})
        layers.setdefault(int(match["index"]), {})[match["kind"]] = value
    return groups


def _chain(
    prefix: str, layers: dict[int, dict[str, Any]], source: str
) -> tuple[list[FloatArray], list[FloatArray], list[int]]:
    weights: list[FloatArray] = []
    biases: list[FloatArray] = []
    order = sorted(layers)
    for index in order:
        parts = layers[index]
        if "weight" not in parts or "bias" not in parts:
            missing = "bias" if "weight" in parts else "weight"
            raise TwinLayoutError(f"{source}: layer {prefix}{index} has no {missing}")
        w = np.asarray(parts["weight"], dtype=np.float64)
        b = np.asarray(parts["bias"], dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise TwinLayoutError(
                f"{source}: layer {prefix}{index} has weight {w.shape} and bias {b.shape}; "
                "a linear layer needs (n_out, n_in) and (n_out,)"
            )
        if weights and w.shape[1] != weights[-1].shape[0]:
            raise TwinLayoutError(
                f"{source}: layer {prefix}{index} takes {w.shape[1]} inputs but the layer "
                f"before it has {weights[-1].shape[0]} outputs"
            )
        weights.append(w)
        biases.append(b)
    if weights[-1].shape[0] != 1:
        raise TwinLayoutError(
            f"{source}: the last layer {prefix}{order[-1]} has {weights[-1].shape[0]} outputs; "
            "a device surrogate has one (the output current)"
        )
    return weights, biases, order


def _walk(obj: object, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of nested dicts, breadth first."""
    if depth > _INFO_SEARCH_DEPTH or not isinstance(obj, Mapping):
        return
    nested = []
    for key, value in obj.items():
        yield str(key), value
        if isinstance(value, Mapping):
            nested.append(value)
    for value in nested:
        yield from _walk(value, depth + 1)


def _common_prefix_length(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _near_key(state: Mapping[str, Any], suffix: str, prefix: str) -> tuple[str, Any] | None:
    """The state entry ``…<suffix>`` sharing the longest prefix with the network's layers."""
    found = [
        (key, value)
        for key, value in state.items()
        if isinstance(key, str) and (key == suffix or key.endswith("." + suffix))
    ]
    if not found:
        return None
    return max(found, key=lambda item: _common_prefix_length(item[0], prefix))


def _in_info(info: object, names: tuple[str, ...], skip: Mapping[str, Any]) -> tuple[str, Any]:
    for key, value in _walk(info):
        if key in names and value is not skip:
            return key, value
    return "", None


def _activation_name(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    text = value.strip().split(".")[-1].rstrip("()").lower()
    return _ACTIVATION_ALIASES.get(text)


def _ranges(value: object, n: int, what: str) -> FloatArray:
    try:
        ranges = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TwinLayoutError(f"{what}: voltage ranges are not numeric ({exc})") from exc
    if ranges.shape == (2,):
        ranges = np.tile(ranges, (n, 1))
    if ranges.ndim == 3 and ranges.shape[0] == 1:
        ranges = ranges[0]
    if np.asarray(value).dtype == np.float32:
        # stored as float32: the decimal volts the lab wrote, not their float32 neighbours
        ranges = np.array([float(f"{v:.7g}") for v in ranges.ravel()]).reshape(ranges.shape)
    if ranges.shape != (n, 2):
        raise TwinLayoutError(
            f"{what}: voltage ranges have shape {ranges.shape}; the network has {n} electrodes, "
            f"so give ({n}, 2) [min, max] pairs (or one pair for all)"
        )
    if not np.all(np.isfinite(ranges)) or np.any(ranges[:, 0] >= ranges[:, 1]):
        raise TwinLayoutError(f"{what}: every voltage range must be finite with min < max")
    return ranges


def _amplification(value: object, what: str) -> float:
    try:
        amp = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TwinLayoutError(f"{what}: amplification is not numeric ({exc})") from exc
    if amp.size != 1 or not np.isfinite(amp[0]) or amp[0] == 0:
        raise TwinLayoutError(f"{what}: amplification must be one finite non-zero number")
    return float(amp[0])


def extract_twin(obj: object, source: str, options: TwinOptions | None = None) -> ImportedTwin:
    """The surrogate network in a loaded twin file, with its activation, amplification, ranges.

    Args:
        obj: What :func:`labctl.twin.unpickle.load_torch_file` returned.
        source: How to name the file in messages.
        options: Values for what the file does not say (they override the file, with a warning).

    Raises:
        TwinLayoutError: No (or more than one, without ``options.prefix``) network found, or the
            layers do not chain into one output.
        MissingTwinInfo: Activation, amplification or voltage ranges are neither in the file nor
            given; the message names the options.
    """
    opts = options or TwinOptions()
    state, outer, layout = _state_dict_and_info(obj, source)
    groups = _layer_groups(state)
    if not groups:
        raise TwinLayoutError(
            f"{source}: no linear layers found (keys '<prefix><index>.weight' and '.bias')"
        )
    if opts.prefix is not None:
        if opts.prefix not in groups:
            known = ", ".join(repr(p) for p in sorted(groups))
            raise TwinLayoutError(
                f"{source}: no layers under prefix {opts.prefix!r}; found {known}"
            )
        prefix = opts.prefix
    elif len(groups) == 1:
        prefix = next(iter(groups))
    else:
        known = ", ".join(repr(p) for p in sorted(groups))
        raise TwinLayoutError(
            f"{source} holds layers under several prefixes ({known}); choose one with --prefix"
        )
    if prefix.endswith("raw_model.") and prefix != "raw_model." and "processor" in prefix:
        layout = f"{layout}, brains-py DNPU surrogate under {prefix!r}"
    if layout == "state_dict" and isinstance(state.get("activation"), str):
        layout = "SkyNEt state_dict with its activation"
    weights, biases, order = _chain(prefix, groups[prefix], source)
    n = int(weights[0].shape[1])
    info = outer.get("info") if isinstance(outer.get("info"), Mapping) else None
    sources: dict[str, str] = {}
    missing: dict[str, str] = {}

    # activation: a state entry (SkyNEt), the info dict, else the option
    activation: str | None = None
    raw_act: object = outer.get("activation", state.get("activation"))
    where = "file: 'activation'"
    if raw_act is None and info is not None:
        key, raw_act = _in_info(info, ("activation", "activation_function", "activ"), state)
        where = f"file: info {key!r}"
    if raw_act is not None:
        activation = _activation_name(raw_act)
        if activation is None:
            raise TwinLayoutError(
                f"{source}: activation {raw_act!r} is not supported; supported: "
                f"{', '.join(SUPPORTED_ACTIVATIONS)}"
            )
        sources["activation"] = where
    activation = _override(activation, opts.activation, "activation", sources, source)
    if opts.activation is not None:
        activation = _activation_name(opts.activation)
        if activation is None:
            raise TwinLayoutError(
                f"--activation {opts.activation!r} is not supported; supported: "
                f"{', '.join(SUPPORTED_ACTIVATIONS)}"
            )
    if activation is None:
        missing["--activation"] = "the hidden-layer activation, e.g. relu for brains-py"

    # amplification: next to the network, in info, else the option
    amplification: float | None = None
    near = _near_key(state, "amplification", prefix)
    if near is not None:
        amplification = _amplification(near[1], f"{source} {near[0]!r}")
        sources["amplification"] = f"file: {near[0]!r}"
    elif info is not None:
        key, value = _in_info(info, ("amplification", "amplifier_gain"), state)
        if value is not None:
            amplification = _amplification(value, f"{source} info {key!r}")
            sources["amplification"] = f"file: info {key!r}"
    amplification = _override(amplification, opts.amplification, "amplification", sources, source)
    if opts.amplification is not None:
        amplification = _amplification(opts.amplification, "--amplification")
    if amplification is None:
        missing["--amplification"] = "nA per unit of network output (1 for raw network output)"

    # voltage ranges: next to the network, in info (ranges, or offset ± amplitude), else option
    ranges: FloatArray | None = None
    near = _near_key(state, "voltage_ranges", prefix)
    if near is not None:
        ranges = _ranges(near[1], n, f"{source} {near[0]!r}")
        sources["voltage_ranges"] = f"file: {near[0]!r}"
    elif info is not None:
        key, value = _in_info(info, ("voltage_ranges", "input_ranges"), state)
        if value is not None:
            ranges = _ranges(value, n, f"{source} info {key!r}")
            sources["voltage_ranges"] = f"file: info {key!r}"
        else:
            _, offset = _in_info(info, ("offset",), state)
            _, amplitude = _in_info(info, ("amplitude",), state)
            if offset is not None and amplitude is not None:
                try:
                    off = np.broadcast_to(np.asarray(offset, dtype=np.float64).reshape(-1), (n,))
                    amp = np.broadcast_to(
                        np.abs(np.asarray(amplitude, dtype=np.float64).reshape(-1)), (n,)
                    )
                except (TypeError, ValueError) as exc:
                    raise TwinLayoutError(
                        f"{source}: info 'offset'/'amplitude' do not give {n} ranges ({exc})"
                    ) from exc
                ranges = _ranges(np.stack([off - amp, off + amp], axis=1), n, source)
                sources["voltage_ranges"] = "file: info 'offset' ± 'amplitude'"
    if opts.voltage_ranges_v is not None:
        given = _ranges(opts.voltage_ranges_v, n, "--voltage-ranges")
        if ranges is not None and not np.allclose(given, ranges):
            log.warning("%s: --voltage-ranges overrides the ranges the file states", source)
        ranges = given
        sources["voltage_ranges"] = "option --voltage-ranges"
    if ranges is None:
        missing["--voltage-ranges"] = f"[min, max] volts for each of the {n} electrodes"

    if missing:
        raise MissingTwinInfo(source, missing)
    assert activation is not None and amplification is not None and ranges is not None
    return ImportedTwin(
        weights=tuple(weights),
        biases=tuple(biases),
        activation=activation,
        amplification=amplification,
        voltage_ranges_v=ranges,
        layout=layout,
        prefix=prefix,
        layer_keys=tuple(order),
        sources=sources,
    )


def _override(from_file: Any, option: Any, name: str, sources: dict[str, str], source: str) -> Any:
    """Record that an option replaces the file's value (and warn when they differ)."""
    if option is None:
        return from_file
    if from_file is not None and str(from_file) != str(option):
        log.warning("%s: --%s %s overrides the file's %s", source, name, option, from_file)
    sources[name] = f"option --{name}"
    return from_file
