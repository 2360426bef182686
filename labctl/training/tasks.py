"""Classification tasks and the mapping of task inputs onto input-electrode voltages.

A :class:`Task` is a set of input cases in *normalised task units* (for example 0/1 for Boolean
gates) with a binary target per case. :class:`InputMapping` turns task units into volts on the
input electrodes by a linear map per electrode.

Tasks provided (method reference §8):

* Boolean gates AND, OR, NAND, NOR, XOR, XNOR on the cases (A, B) = 00, 01, 10, 11, inputs 0/1.
* VC-dimension 4: the 14 non-trivial labelings of the points (−0.5, −0.5), (−0.5, 1), (1, −0.5),
  (1, 1).
* The 3-D sphere task: points uniform in the cube [−1, 1]³, label 1 inside a sphere of radius
  (3/π)^(1/3) ≈ 0.985, which makes both classes equally likely.
* Any binary task read from a CSV file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

SPLIT_LABELS: tuple[str, ...] = ("train", "validation", "test")
"""Allowed values of :attr:`Task.split`."""

BOOLEAN_CASES: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
"""Input cases (A, B) of a two-input Boolean gate, in case order 00, 01, 10, 11."""

_BOOLEAN_TARGETS: Mapping[str, str] = MappingProxyType(
    {"AND": "0001", "OR": "0111", "NAND": "1110", "NOR": "1000", "XOR": "0110", "XNOR": "1001"}
)

BOOLEAN_GATES: tuple[str, ...] = tuple(_BOOLEAN_TARGETS)
"""Names of the supported Boolean gates."""

VC4_POINTS: tuple[tuple[float, float], ...] = ((-0.5, -0.5), (-0.5, 1.0), (1.0, -0.5), (1.0, 1.0))
"""The four VC-dimension-4 points (A, B) in normalised units, in case order."""

VC4_LABELING_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "0001": "AND",
        "0010": "A ∧ ¬B",
        "0011": "A",
        "0100": "¬A ∧ B",
        "0101": "B",
        "0110": "XOR",
        "0111": "OR",
        "1000": "NOR",
        "1001": "XNOR",
        "1010": "¬B",
        "1011": "A ∨ ¬B",
        "1100": "¬A",
        "1101": "¬A ∨ B",
        "1110": "NAND",
    }
)
"""The 14 non-trivial labelings of :data:`VC4_POINTS` (targets in case order) and their names."""

SPHERE_BALANCED_RADIUS: float = (3.0 / math.pi) ** (1.0 / 3.0)
"""Radius (normalised units) of the sphere holding half the volume of the cube [−1, 1]³."""


@dataclass(frozen=True, eq=False)
class Task:
    """A binary classification task in normalised task units.

    Attributes:
        name: Short name (e.g. ``"XOR"``).
        inputs: Input cases, shape ``(n_cases, n_inputs)``, normalised task units.
        targets: Target class per case, shape ``(n_cases,)``, values 0.0 or 1.0; both classes
            must occur.
        split: Optional per-case split label, one of :data:`SPLIT_LABELS`, for held-out
            evaluation. ``None`` means every case is used for training and evaluation.
        input_range: Nominal ``(low, high)`` of the inputs in task units, used to map them onto
            electrode ranges. ``None`` (the default) takes the minimum and maximum of ``inputs``.
        description: Free text stored with results.

    The arrays are copied and made read-only on construction.
    """

    name: str
    inputs: FloatArray
    targets: FloatArray
    split: tuple[str, ...] | None = None
    input_range: tuple[float, float] | None = None
    description: str = field(default="")

    def __post_init__(self) -> None:
        inputs = np.array(self.inputs, dtype=np.float64)
        targets = np.array(self.targets, dtype=np.float64)
        if inputs.ndim == 1:
            inputs = inputs[:, None]
        if inputs.ndim != 2:
            raise ValueError(
                f"task {self.name!r}: inputs must have shape (n_cases, n_inputs), "
                f"got shape {inputs.shape}"
            )
        if targets.ndim != 1 or targets.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"task {self.name!r}: targets must have shape ({inputs.shape[0]},) to match the "
                f"inputs, got shape {targets.shape}"
            )
        if inputs.shape[0] < 2:
            raise ValueError(f"task {self.name!r}: needs at least 2 cases, got {inputs.shape[0]}")
        if not np.all(np.isfinite(inputs)):
            raise ValueError(f"task {self.name!r}: inputs contain NaN or infinite values")
        if not np.all((targets == 0.0) | (targets == 1.0)):
            bad = np.flatnonzero((targets != 0.0) & (targets != 1.0))[0]
            raise ValueError(
                f"task {self.name!r}: targets must be 0 or 1, case {bad} has {targets[bad]!r}"
            )
        if np.all(targets == targets[0]):
            raise ValueError(
                f"task {self.name!r}: all targets are {int(targets[0])}; a task needs both classes"
            )
        split = self.split
        if split is not None:
            split = tuple(str(s) for s in split)
            if len(split) != inputs.shape[0]:
                raise ValueError(
                    f"task {self.name!r}: split has {len(split)} labels for {inputs.shape[0]} cases"
                )
            unknown = sorted(set(split) - set(SPLIT_LABELS))
            if unknown:
                raise ValueError(
                    f"task {self.name!r}: unknown split labels {unknown}; use {list(SPLIT_LABELS)}"
                )
        if self.input_range is None:
            input_range = (float(inputs.min()), float(inputs.max()))
        else:
            input_range = (float(self.input_range[0]), float(self.input_range[1]))
            if not input_range[0] < input_range[1]:
                raise ValueError(
                    f"task {self.name!r}: input_range low must be below high, got {input_range}"
                )
            if inputs.min() < input_range[0] or inputs.max() > input_range[1]:
                raise ValueError(
                    f"task {self.name!r}: inputs span [{inputs.min()}, {inputs.max()}], outside "
                    f"input_range {input_range}"
                )
        if input_range[0] == input_range[1]:
            raise ValueError(
                f"task {self.name!r}: all inputs equal {input_range[0]}; nothing to map"
            )
        inputs.setflags(write=False)
        targets.setflags(write=False)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "split", split)
        object.__setattr__(self, "input_range", input_range)

    @property
    def n_cases(self) -> int:
        """Number of input cases."""
        return int(self.inputs.shape[0])

    @property
    def n_inputs(self) -> int:
        """Number of inputs per case (input electrodes needed)."""
        return int(self.inputs.shape[1])

    @property
    def labels(self) -> str:
        """Targets as a string of ``0``/``1`` in case order (e.g. ``"0110"`` for XOR)."""
        return "".join("1" if v else "0" for v in self.targets)

    def subset(self, split: str) -> Task:
        """The cases labelled ``split`` (``"train"``, ``"validation"`` or ``"test"``) as a task.

        Raises:
            ValueError: If the task has no split labels, or the subset is empty or has one class.
        """
        if self.split is None:
            raise ValueError(f"task {self.name!r} has no split labels; use the whole task instead")
        if split not in SPLIT_LABELS:
            raise ValueError(f"unknown split {split!r}; use one of {list(SPLIT_LABELS)}")
        mask = np.array([s == split for s in self.split])
        if not mask.any():
            raise ValueError(f"task {self.name!r} has no {split!r} cases")
        return Task(
            name=f"{self.name} [{split}]",
            inputs=self.inputs[mask],
            targets=self.targets[mask],
            split=None,
            input_range=self.input_range,
            description=self.description,
        )


def boolean_gate(name: str) -> Task:
    """A two-input Boolean gate (case-insensitive name, one of :data:`BOOLEAN_GATES`).

    Cases (A, B) = 00, 01, 10, 11 with inputs 0/1 (``input_range`` (0, 1)); targets e.g. XOR =
    0, 1, 1, 0.

    Raises:
        ValueError: For an unknown gate name.
    """
    key = name.strip().upper()
    if key not in _BOOLEAN_TARGETS:
        raise ValueError(f"unknown Boolean gate {name!r}; choose one of {list(BOOLEAN_GATES)}")
    labels = _BOOLEAN_TARGETS[key]
    return Task(
        name=key,
        inputs=np.array(BOOLEAN_CASES),
        targets=np.array([float(c) for c in labels]),
        input_range=(0.0, 1.0),
        description=f"Boolean {key} gate, cases (A,B) = 00, 01, 10, 11, targets {labels}",
    )


def vc_labeling(labels: str) -> Task:
    """One VC-dimension-4 labeling, e.g. ``vc_labeling("0110")`` (XOR on :data:`VC4_POINTS`).

    ``labels`` gives the target of each of the four points in case order. The task's name is the
    function name of §8 (``"XOR"``, ``"A ∧ ¬B"``, …); ``input_range`` is (−0.5, 1).

    Raises:
        ValueError: If ``labels`` is not four characters 0/1, or is all-0 or all-1.
    """
    labels = labels.strip()
    if len(labels) != 4 or set(labels) - {"0", "1"}:
        raise ValueError(f"VC-4 labels must be four characters 0/1 (e.g. '0110'), got {labels!r}")
    if labels not in VC4_LABELING_NAMES:
        raise ValueError(f"labeling {labels!r} is trivial (one class); use one of the other 14")
    return Task(
        name=VC4_LABELING_NAMES[labels],
        inputs=np.array(VC4_POINTS),
        targets=np.array([float(c) for c in labels]),
        input_range=(-0.5, 1.0),
        description=f"VC-dimension 4 labeling {labels}",
    )


def vc_dimension_4() -> tuple[Task, ...]:
    """The 14 non-trivial labelings of :data:`VC4_POINTS`, ordered 0001 … 1110."""
    return tuple(vc_labeling(labels) for labels in sorted(VC4_LABELING_NAMES))


def sphere_task(
    n_points: int,
    radius: float = SPHERE_BALANCED_RADIUS,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> Task:
    """The 3-D sphere classification task.

    ``n_points`` points are drawn uniformly in the normalised cube [−1, 1]³ (``input_range``
    (−1, 1)); target 1 if the point lies strictly inside the sphere of ``radius`` about the origin.
    A random ``test_fraction`` of the points (rounded to the nearest count) is labelled ``"test"``,
    the rest ``"train"``. Bit-for-bit reproducible for a given ``seed``.

    Raises:
        ValueError: For bad arguments, or if the training part (or the test part, when present)
            lacks one class — use more points or another seed.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}")
    if not radius > 0.0:
        raise ValueError(f"radius must be positive, got {radius}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(-1.0, 1.0, size=(n_points, 3))
    targets = (np.linalg.norm(inputs, axis=1) < radius).astype(np.float64)
    n_test = round(test_fraction * n_points)
    split_arr = np.full(n_points, "train", dtype=object)
    split_arr[rng.permutation(n_points)[:n_test]] = "test"
    for part in ("train", "test"):
        part_targets = targets[split_arr == part]
        if part_targets.size and np.all(part_targets == part_targets[0]):
            raise ValueError(
                f"sphere task with {n_points} points (seed {seed}): the {part} part has only "
                f"class {int(part_targets[0])}; use more points or another seed"
            )
    return Task(
        name="sphere",
        inputs=inputs,
        targets=targets,
        split=tuple(str(s) for s in split_arr) if n_test > 0 else None,
        input_range=(-1.0, 1.0),
        description=(
            f"3-D sphere, {n_points} points uniform in [-1,1]^3, radius {radius:.6g}, "
            f"seed {seed}, test fraction {test_fraction}"
        ),
    )


def task_from_csv(
    path: str | Path,
    input_columns: Sequence[str] | None = None,
    target_column: str = "target",
    split_column: str | None = "split",
    name: str | None = None,
) -> Task:
    """Read a binary task from a CSV file with a header row.

    Args:
        path: The CSV file.
        input_columns: Columns holding the inputs (task units), in electrode order. ``None``
            takes every column except ``target_column`` and ``split_column``, in file order.
        target_column: Column with the class, 0 or 1 (``0.0``/``1.0`` accepted).
        split_column: Optional column with ``train``/``validation``/``test``; used only if the
            file has it. ``None`` ignores it.
        name: Task name; defaults to the file stem.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: For an empty file, a missing column, a row with the wrong number of fields,
            a non-numeric input, a target other than 0/1, an unknown split label, fewer than two
            cases, or a single class. Messages give the file line number and column.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        raw_rows = list(csv.reader(handle))
    rows = [
        (line, row) for line, row in enumerate(raw_rows, start=1) if any(c.strip() for c in row)
    ]
    if not rows:
        raise ValueError(f"{path}: the file is empty; expected a header row and data rows")
    header = [c.strip() for c in rows[0][1]]
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: duplicate column names in header {header}")
    if target_column not in header:
        raise ValueError(
            f"{path}: target column {target_column!r} not found; the header has {header}"
        )
    use_split = split_column is not None and split_column in header
    if input_columns is None:
        input_columns = [c for c in header if c not in (target_column, split_column)]
        if not input_columns:
            raise ValueError(f"{path}: no input columns besides {target_column!r}")
    else:
        input_columns = list(input_columns)
        missing = [c for c in input_columns if c not in header]
        if missing:
            raise ValueError(
                f"{path}: input column(s) {missing} not found; the header has {header}"
            )
    in_idx = [header.index(c) for c in input_columns]
    t_idx = header.index(target_column)
    s_idx = header.index(split_column) if use_split and split_column is not None else -1
    data = rows[1:]
    if len(data) < 2:
        raise ValueError(f"{path}: needs at least 2 data rows (cases), found {len(data)}")
    inputs = np.empty((len(data), len(in_idx)))
    targets = np.empty(len(data))
    split: list[str] = []
    for r, (line, row) in enumerate(data):
        if len(row) != len(header):
            raise ValueError(
                f"{path}, line {line}: has {len(row)} fields, the header has {len(header)}"
            )
        for j, (col, ci) in enumerate(zip(input_columns, in_idx, strict=True)):
            inputs[r, j] = _parse_number(row[ci], path, line, col)
        target = _parse_number(row[t_idx], path, line, target_column)
        if target not in (0.0, 1.0):
            raise ValueError(
                f"{path}, line {line}, column {target_column!r}: target must be 0 or 1, "
                f"got {row[t_idx].strip()!r}"
            )
        targets[r] = target
        if s_idx >= 0:
            label = row[s_idx].strip().lower()
            if label not in SPLIT_LABELS:
                raise ValueError(
                    f"{path}, line {line}, column {split_column!r}: split must be one of "
                    f"{list(SPLIT_LABELS)}, got {row[s_idx].strip()!r}"
                )
            split.append(label)
    if np.all(targets == targets[0]):
        raise ValueError(
            f"{path}: every target is {int(targets[0])}; a task needs cases of both classes"
        )
    return Task(
        name=name if name is not None else path.stem,
        inputs=inputs,
        targets=targets,
        split=tuple(split) if s_idx >= 0 else None,
        description=f"read from {path.name}",
    )


def _parse_number(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(
            f"{path}, line {line}, column {column!r}: {text.strip()!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise ValueError(
            f"{path}, line {line}, column {column!r}: value {text.strip()!r} is not finite"
        )
    return value


@dataclass(frozen=True, eq=False)
class InputMapping:
    """Linear map from task units to input-electrode voltages: ``volts = offset_v + scale_v·x``.

    Attributes:
        offset_v: Per input electrode offset (V), shape ``(n_inputs,)``.
        scale_v: Per input electrode scale (V per task unit), shape ``(n_inputs,)``.
        min_v: Per input electrode lowest allowed voltage (V), shape ``(n_inputs,)``.
        max_v: Per input electrode highest allowed voltage (V), shape ``(n_inputs,)``.
    """

    offset_v: FloatArray
    scale_v: FloatArray
    min_v: FloatArray
    max_v: FloatArray

    def __post_init__(self) -> None:
        arrays = [np.array(a, dtype=np.float64).reshape(-1) for a in self._fields()]
        n = arrays[0].shape[0]
        if n == 0 or any(a.shape[0] != n for a in arrays):
            raise ValueError(
                "InputMapping: offset_v, scale_v, min_v and max_v must be non-empty and of equal "
                f"length, got lengths {[a.shape[0] for a in arrays]}"
            )
        if not np.all(arrays[2] < arrays[3]):
            raise ValueError(
                f"InputMapping: every min_v must be below max_v ({arrays[2]}, {arrays[3]})"
            )
        for name, arr in zip(("offset_v", "scale_v", "min_v", "max_v"), arrays, strict=True):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def _fields(self) -> tuple[ArrayLike, ...]:
        return (self.offset_v, self.scale_v, self.min_v, self.max_v)

    @property
    def n_inputs(self) -> int:
        """Number of input electrodes."""
        return int(self.offset_v.shape[0])

    @classmethod
    def from_ranges(
        cls,
        task_low: float | Sequence[float],
        task_high: float | Sequence[float],
        electrode_ranges_v: Sequence[tuple[float, float]],
        margin_v: float = 0.0,
    ) -> InputMapping:
        """Map the task interval [task_low, task_high] onto each electrode's range.

        ``task_low`` goes to ``min + margin_v`` and ``task_high`` to ``max − margin_v`` of each
        input electrode.

        Args:
            task_low: Low end of the task input range (task units), scalar or per input.
            task_high: High end of the task input range (task units), scalar or per input.
            electrode_ranges_v: ``(min_v, max_v)`` per input electrode (V), in input order.
            margin_v: Distance (V) kept from both ends of every electrode range (≥ 0).

        Raises:
            ValueError: For an empty list of ranges, inverted ranges, ``task_low >= task_high``,
                or a margin that leaves no room.
        """
        ranges = np.array(electrode_ranges_v, dtype=np.float64)
        if ranges.ndim != 2 or ranges.shape[1] != 2 or ranges.shape[0] == 0:
            raise ValueError(
                "electrode_ranges_v must be a non-empty list of (min_v, max_v) pairs, got shape "
                f"{ranges.shape}"
            )
        n = ranges.shape[0]
        low = np.broadcast_to(np.asarray(task_low, dtype=np.float64), (n,))
        high = np.broadcast_to(np.asarray(task_high, dtype=np.float64), (n,))
        if not np.all(low < high):
            raise ValueError(f"task_low must be below task_high, got {task_low} and {task_high}")
        if margin_v < 0.0:
            raise ValueError(f"margin_v must be ≥ 0 V, got {margin_v}")
        lo_v = ranges[:, 0] + margin_v
        hi_v = ranges[:, 1] - margin_v
        if not np.all(lo_v < hi_v):
            raise ValueError(
                f"margin {margin_v} V leaves no room in electrode ranges {ranges.tolist()} "
                "(or a range has min ≥ max)"
            )
        scale = (hi_v - lo_v) / (high - low)
        offset = lo_v - scale * low
        return cls(offset_v=offset, scale_v=scale, min_v=ranges[:, 0], max_v=ranges[:, 1])

    @classmethod
    def for_task(
        cls, task: Task, electrode_ranges_v: Sequence[tuple[float, float]], margin_v: float = 0.0
    ) -> InputMapping:
        """:meth:`from_ranges` with the task's own ``input_range``.

        Raises:
            ValueError: If the number of ranges differs from the task's number of inputs.
        """
        if len(electrode_ranges_v) != task.n_inputs:
            raise ValueError(
                f"task {task.name!r} has {task.n_inputs} inputs but {len(electrode_ranges_v)} "
                "electrode ranges were given"
            )
        low, high = task.input_range or (float(task.inputs.min()), float(task.inputs.max()))
        return cls.from_ranges(low, high, electrode_ranges_v, margin_v)

    def to_volts(self, inputs: ArrayLike) -> FloatArray:
        """Input cases (task units, shape ``(n_cases, n_inputs)``) to voltages (V), same shape.

        Raises:
            ValueError: For a wrong shape, or if any voltage falls outside its electrode range
                (beyond a 1 nV rounding tolerance); the message names the case and input.
        """
        x = np.asarray(inputs, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(
                f"inputs must have shape (n_cases, {self.n_inputs}), got shape {x.shape}"
            )
        volts = self.offset_v + self.scale_v * x
        tol = 1e-9
        bad = (volts < self.min_v - tol) | (volts > self.max_v + tol) | ~np.isfinite(volts)
        if bad.any():
            case, inp = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"case {case}, input {inp}: task value {x[case, inp]} maps to "
                f"{volts[case, inp]:.6g} V, outside the electrode range "
                f"[{self.min_v[inp]}, {self.max_v[inp]}] V; check the task range of the mapping"
            )
        return np.clip(volts, self.min_v, self.max_v)
