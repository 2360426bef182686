"""Read PyTorch files without PyTorch, and without running anything the file asks for.

A ``.pt``/``.pth``/``.pickle`` file written by ``torch.save`` is a pickle, and a pickle may name
any importable callable to be called while it loads (``os.system``, ``eval``, ...). This module
loads one with :class:`RestrictedUnpickler`, which resolves only an allow-list of names, each
to a local, side-effect-free stand-in:

- tensors (``torch._utils._rebuild_tensor_v2``, ``_rebuild_tensor``, ``_rebuild_parameter``,
  ``_rebuild_parameter_with_state``) become NumPy arrays;
- storages (``torch.FloatStorage`` ... ``torch.UntypedStorage``) become typed byte buffers;
- ``collections.OrderedDict``, ``builtins.set``/``frozenset``/``complex``;
- NumPy arrays and scalars (``numpy.core.multiarray._reconstruct``/``scalar``,
  ``numpy.ndarray``, ``numpy.dtype``; object dtypes are refused) and ``_codecs.encode`` with
  ``latin1`` (how protocol-2 pickles store bytes);
- plain containers, numbers and strings need no name at all.

Any other name is refused with :class:`UnsafePickleError` naming it, before it is called: the
file's code never runs.

Two containers are read:

- **zip** (torch >= 1.6): a zip archive ``<name>/data.pkl`` (the object; each storage is a
  persistent id ``('storage', storage_type, key, location, numel)``) and ``<name>/data/<key>``
  (the raw little-endian bytes of each storage; ``<name>/byteorder`` may say ``big``);
- a plain pickle of such objects (no torch magic number, nothing after it);
- **legacy** (torch < 1.6): a stream of pickles: a magic number, the protocol version (1001),
  a system-info dict (byte order, type sizes), the object (persistent ids
  ``('storage', storage_type, key, location, numel, view)``), the list of storage keys, then each
  storage in that order as an 8-byte element count followed by its raw bytes.
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
"""First pickle of a legacy torch file."""
LEGACY_PROTOCOL_VERSION = 1001
"""Second pickle of a legacy torch file."""
MAX_STORAGE_BYTES = 1 << 31
"""Largest single storage accepted (bytes): a twin is a few MB; a huge count is a broken file."""


class TorchFileError(ValueError):
    """The file is not a readable PyTorch file (wrong container, truncated, inconsistent)."""


class UnsafePickleError(TorchFileError):
    """The pickle names something outside the allow-list; nothing of it was called.

    Attributes:
        global_name: The refused ``module.name``.
    """

    def __init__(self, global_name: str, source: str) -> None:
        hint = ""
        if global_name.startswith(("torch.nn.", "brainspy.", "bspysmg.", "SkyNEt.")):
            hint = (
                " The file holds a whole pickled model object, not only its tensors: load it "
                "in PyTorch where you trust it and save model.state_dict() instead."
            )
        super().__init__(
            f"{source}: refused to load {global_name!r}: a twin file may contain only tensors, "
            "storages, ordered dicts, NumPy arrays and scalars and plain containers, and this "
            f"pickle asks for something else (nothing from the file was executed).{hint}"
        )
        self.global_name = global_name


_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexDoubleStorage": "c16",
    "ComplexFloatStorage": "c8",
    "UntypedStorage": "u1",
}
"""torch storage class name -> NumPy type code (``bf16`` is converted to float32)."""

_TORCH_DTYPE_NAMES = frozenset(
    {
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
        "complex64",
        "complex128",
        "double",
        "float",
        "half",
        "long",
        "int",
    }
)


@dataclass(frozen=True)
class StorageType:
    """A torch storage class named in a pickle (a marker: it cannot be called)."""

    name: str

    @property
    def code(self) -> str:
        """NumPy type code of one element (``bf16`` for bfloat16)."""
        return _STORAGE_DTYPES[self.name]

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return 2 if self.code == "bf16" else np.dtype(self.code).itemsize


@dataclass(frozen=True)
class StorageRef:
    """A storage (or a view of one) named by a persistent id; its bytes are read afterwards.

    Attributes:
        key: Key of the root storage in the file.
        storage_type: Element type.
        offset: First element of this view in the root storage.
        numel: Number of elements in this view.
    """

    key: str
    storage_type: StorageType
    offset: int
    numel: int


@dataclass(frozen=True)
class LazyTensor:
    """A tensor whose storage bytes come after the pickle (resolved by :func:`_resolve`)."""

    storage: StorageRef
    storage_offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise TorchFileError(f"tensor {what} must be a tuple of integers, got {value!r}")
    return tuple(int(v) for v in value)


def _rebuild_tensor(storage: object, storage_offset: object, size: object, stride: object) -> Any:
    if not isinstance(storage, StorageRef):
        raise TorchFileError(f"a tensor's storage must be a torch storage, got {type(storage)}")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise TorchFileError(f"tensor storage offset must be an integer >= 0: {storage_offset!r}")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if len(shape) != len(strides) or any(s < 0 for s in shape) or any(s < 0 for s in strides):
        raise TorchFileError(f"tensor size {shape} and stride {strides} do not match")
    return LazyTensor(storage, int(storage_offset), shape, strides)


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> Any:
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: object, requires_grad: object = False, hooks: object = None) -> Any:
    return data


def _rebuild_parameter_with_state(
    data: object, requires_grad: object = False, hooks: object = None, state: object = None
) -> Any:
    return data


def _safe_dtype(spec: object, align: object = False, copy: object = False) -> np.dtype[Any]:
    if not isinstance(spec, str):
        raise TorchFileError(f"numpy dtype spec must be a string, got {type(spec).__name__}")
    dtype = np.dtype(spec)
    if dtype.hasobject:
        raise UnsafePickleError(f"numpy.dtype({spec!r}) (object arrays)", "pickle")
    return dtype


@dataclass(frozen=True)
class _NdarrayClass:
    """``numpy.ndarray`` as named in a pickle: only an argument of ``_reconstruct``."""


def _np_reconstruct(cls: object, shape: object, dtype_code: object) -> NDArray[Any]:
    if not isinstance(cls, _NdarrayClass):
        raise TorchFileError(f"numpy _reconstruct of {cls!r} (only numpy.ndarray is allowed)")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _np_scalar(dtype: object, data: object = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise TorchFileError(f"numpy scalar of dtype {dtype!r} is not allowed")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise TorchFileError("numpy scalar data must be the bytes of one element")
    return np.frombuffer(data, dtype=dtype)[0]


def _codecs_encode(text: object, encoding: object = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise TorchFileError("_codecs.encode is allowed only as str.encode('latin1')")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _codecs_encode,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("numpy", "ndarray"): _NdarrayClass(),
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed names (see the module docstring).

    Args:
        file: The pickle stream.
        source: How to name the file in errors.
        persistent_load: Turns a storage's persistent id into a :class:`StorageRef`.
    """

    def __init__(
        self,
        file: IO[bytes],
        source: str,
        persistent_load: Callable[[tuple[Any, ...]], StorageRef] | None = None,
    ) -> None:
        super().__init__(file)
        self._source = source
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names, as protocol-2 pickles (torch's) write them
        allowed = _ALLOWED.get(("builtins" if module == "__builtin__" else module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and name in _STORAGE_DTYPES:
            return StorageType(name)
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return f"torch.{name}"
        raise UnsafePickleError(f"{module}.{name}", self._source)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise TorchFileError(f"{self._source}: unexpected persistent id {pid!r} in a pickle")
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else pid
            raise TorchFileError(
                f"{self._source}: persistent id of kind {kind!r}; only tensor storages are "
                "allowed (a 'module' id means a whole model object was saved)"
            )
        return self._persistent(pid)


_PICKLE_FAILURES = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    struct.error,
    MemoryError,
    RecursionError,
)


def _load_pickle(
    stream: IO[bytes],
    source: str,
    persistent_load: Callable[[tuple[Any, ...]], StorageRef] | None = None,
) -> Any:
    try:
        return RestrictedUnpickler(stream, source, persistent_load).load()
    except TorchFileError:
        raise
    except _PICKLE_FAILURES as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise TorchFileError(f"{source}: not a readable pickle ({problem})") from exc


def _storage_type(value: object, source: str) -> StorageType:
    if not isinstance(value, StorageType):
        raise TorchFileError(f"{source}: a storage's type must be a torch storage class")
    return value


def _array_from_bytes(
    data: bytes, storage_type: StorageType, numel: int, big_endian: bool
) -> NDArray[Any]:
    code = storage_type.code
    need = numel * storage_type.itemsize
    if len(data) < need:
        raise TorchFileError(f"storage holds {len(data)} bytes, {need} are needed")
    order = ">" if big_endian else "<"
    if code == "bf16":
        raw = np.frombuffer(data[:need], dtype=f"{order}u2").astype(np.uint32) << 16
        return raw.view(np.float32)
    stored = np.dtype(order + code) if np.dtype(code).itemsize > 1 else np.dtype(code)
    return np.frombuffer(data[:need], dtype=stored).astype(np.dtype(code))


def _tensor_array(tensor: LazyTensor, storages: Mapping[str, NDArray[Any]], source: str) -> Any:
    root = storages.get(tensor.storage.key)
    if root is None:
        raise TorchFileError(f"{source}: tensor refers to missing storage {tensor.storage.key!r}")
    flat = root[tensor.storage.offset : tensor.storage.offset + tensor.storage.numel]
    if flat.size != tensor.storage.numel:
        raise TorchFileError(f"{source}: storage {tensor.storage.key!r} is shorter than its view")
    if any(s == 0 for s in tensor.size):
        return np.zeros(tensor.size, dtype=flat.dtype)
    last = tensor.storage_offset + sum(
        (n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True)
    )
    if last >= flat.size:
        raise TorchFileError(
            f"{source}: a tensor of size {tensor.size} and stride {tensor.stride} reaches past "
            f"its storage ({flat.size} elements)"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.storage_offset :],
        shape=tensor.size,
        strides=tuple(s * flat.itemsize for s in tensor.stride),
        writeable=False,
    )
    return np.array(view)


def _resolve(obj: Any, storages: Mapping[str, NDArray[Any]], source: str, depth: int = 0) -> Any:
    """``obj`` with every :class:`LazyTensor` replaced by its array (containers rebuilt)."""
    if depth > 200:
        raise TorchFileError(f"{source}: nested deeper than 200 levels")
    if isinstance(obj, LazyTensor):
        return _tensor_array(obj, storages, source)
    if isinstance(obj, StorageRef):
        return storages[obj.key][obj.offset : obj.offset + obj.numel].copy()
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise UnsafePickleError("numpy object array", source)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict(
            (k, _resolve(v, storages, source, depth + 1)) for k, v in obj.items()
        )
    if isinstance(obj, dict):
        return {k: _resolve(v, storages, source, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, storages, source, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, storages, source, depth + 1) for v in obj)
    return obj


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def load_torch_file(path: str | Path) -> Any:
    """The object a ``torch.save`` file holds, tensors as NumPy arrays; no code runs.

    Args:
        path: A zip-format (torch >= 1.6) or legacy-format torch file.

    Raises:
        UnsafePickleError: The pickle names a class or function outside the allow-list.
        TorchFileError: The file is missing, of another format, truncated or inconsistent.
    """
    p = Path(path)
    source = str(p)
    if not p.is_file():
        raise TorchFileError(f"{source} does not exist (or is not a file)")
    if _is_zip(p):
        return _load_zip(p, source)
    with p.open("rb") as handle:
        head = handle.read(2)
        handle.seek(0)
        if head[:1] != b"\x80":
            raise TorchFileError(
                f"{source} is neither a zip-format nor a legacy torch file (no pickle header); "
                "the old tar-based format of torch < 0.4 is not supported either"
            )
        return _load_legacy(handle, source)


def _load_zip(path: Path, source: str) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise TorchFileError(f"{source}: unreadable zip archive ({exc})") from exc
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFileError(
                f"{source} is a zip archive but not a torch file: it needs exactly one "
                f"'<name>/data.pkl' entry, found {pickles or 'none'}"
            )
        root = pickles[0].split("/")[0]
        big_endian = False
        if f"{root}/byteorder" in names:
            order = archive.read(f"{root}/byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise TorchFileError(f"{source}: unknown byteorder {order!r}")
            big_endian = order == "big"
        refs: dict[str, StorageRef] = {}

        def persistent(pid: tuple[Any, ...]) -> StorageRef:
            if len(pid) != 5:
                raise TorchFileError(f"{source}: storage id {pid!r} should have 5 fields")
            _, storage_type, key, _location, numel = pid
            stype = _storage_type(storage_type, source)
            if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
                raise TorchFileError(f"{source}: malformed storage id {pid!r}")
            ref = refs.get(key)
            if ref is None:
                ref = StorageRef(key, stype, 0, int(numel))
                refs[key] = ref
            return ref

        with archive.open(pickles[0]) as handle:
            obj = _load_pickle(io.BytesIO(handle.read()), source, persistent)
        storages: dict[str, NDArray[Any]] = {}
        for key, ref in refs.items():
            entry = f"{root}/data/{key}"
            if entry not in names:
                raise TorchFileError(f"{source}: storage {entry!r} is missing from the archive")
            if archive.getinfo(entry).file_size > MAX_STORAGE_BYTES:
                raise TorchFileError(f"{source}: storage {entry!r} is implausibly large")
            data = archive.read(entry)
            storages[key] = _array_from_bytes(data, ref.storage_type, ref.numel, big_endian)
    return _resolve(obj, storages, source)


def _load_legacy(handle: IO[bytes], source: str) -> Any:
    magic = _load_pickle(handle, source)
    if magic != LEGACY_MAGIC_NUMBER:
        # not torch's magic number: a plain pickle (e.g. a dict of NumPy arrays), if that is all
        if handle.read(1):
            raise TorchFileError(f"{source}: a pickle followed by data, but not a torch file")
        return _resolve(magic, {}, source)
    protocol = _load_pickle(handle, source)
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise TorchFileError(f"{source}: unsupported legacy torch protocol {protocol!r}")
    sys_info = _load_pickle(handle, source)
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    roots: dict[str, tuple[StorageType, int]] = {}

    def persistent(pid: tuple[Any, ...]) -> StorageRef:
        if len(pid) != 6:
            raise TorchFileError(f"{source}: legacy storage id {pid!r} should have 6 fields")
        _, storage_type, key, _location, numel, view = pid
        stype = _storage_type(storage_type, source)
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise TorchFileError(f"{source}: malformed storage id {pid!r}")
        roots.setdefault(key, (stype, int(numel)))
        if view is None:
            return StorageRef(key, stype, 0, int(numel))
        if not (isinstance(view, tuple) and len(view) == 3):
            raise TorchFileError(f"{source}: malformed storage view {view!r}")
        _view_key, offset, view_numel = view
        if not isinstance(offset, int) or not isinstance(view_numel, int):
            raise TorchFileError(f"{source}: malformed storage view {view!r}")
        return StorageRef(key, stype, int(offset), int(view_numel))

    obj = _load_pickle(handle, source, persistent)
    keys = _load_pickle(handle, source)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TorchFileError(f"{source}: the storage key list is malformed")
    storages: dict[str, NDArray[Any]] = {}
    order = ">" if big_endian else "<"
    for key in keys:
        if key not in roots:
            raise TorchFileError(f"{source}: storage {key!r} is listed but never used")
        stype, numel = roots[key]
        header = handle.read(8)
        if len(header) != 8:
            raise TorchFileError(f"{source}: truncated before storage {key!r}")
        (count,) = struct.unpack(f"{order}q", header)
        if count < numel or count * stype.itemsize > MAX_STORAGE_BYTES:
            raise TorchFileError(
                f"{source}: storage {key!r} has {count} elements, {numel} are needed"
            )
        data = handle.read(count * stype.itemsize)
        if len(data) != count * stype.itemsize:
            raise TorchFileError(f"{source}: truncated inside storage {key!r}")
        storages[key] = _array_from_bytes(data, stype, count, big_endian)
    missing = sorted(set(roots) - set(storages))
    if missing:
        raise TorchFileError(f"{source}: storages {missing} are used but not stored")
    return _resolve(obj, storages, source)
