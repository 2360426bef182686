"""The record of one training iteration: validated, immutable, exactly comparable."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labctl.run.store.codec import dumps

_ARRAY_KINDS = "biufc"  # bool, signed/unsigned int, float, complex: what np.save stores exactly


def _frozen_array(value: Any, name: str) -> NDArray[Any]:
    array = np.array(value, copy=True)
    if array.dtype.kind not in _ARRAY_KINDS:
        raise TypeError(
            f"{name} must be a numeric array (bool/int/float/complex), got dtype {array.dtype}"
        )
    array.flags.writeable = False
    return array


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _same_array(a: NDArray[Any], b: NDArray[Any]) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    )


@dataclass(frozen=True, eq=False)
class IterationRecord:
    """Everything measured and decided in one training iteration.

    Arrays are copied and made read-only on construction, so a record can be shared between
    threads (worker, store, views) safely. Equality is exact: same dtypes, shapes and values
    (NaN equals NaN).

    Attributes:
        run_iteration: Iteration number within the run, ≥ 0, strictly increasing across appends.
        restart_index: Which restart (random initialisation) this iteration belongs to, ≥ 0.
        controls_v: Control voltages applied during this iteration, shape (n_controls,), V.
        outputs_a: Output current per input case, shape (n_cases,), A.
        gradients_a_per_v: ∂I/∂V per case and control, shape (n_cases, n_controls), A/V.
        gradient_stderr_a_per_v: Standard error of each gradient entry, same shape, A/V.
        loss: Loss value (dimensionless, task-defined).
        accuracy: Task accuracy in [0, 1] (NaN when undefined).
        separation_a: Separation between class outputs, A.
        device_seconds: Cumulative time the device spent driven and recorded in this run, s.
        wall_time_s: UTC time the iteration completed, seconds since the Unix epoch.
        extra: Further JSON-compatible values (e.g. learning rate, optimiser state summary).
        raw: Optional named raw arrays (e.g. recorded output currents), stored losslessly.
    """

    run_iteration: int
    restart_index: int
    controls_v: NDArray[Any]
    outputs_a: NDArray[Any]
    gradients_a_per_v: NDArray[Any]
    gradient_stderr_a_per_v: NDArray[Any]
    loss: float
    accuracy: float
    separation_a: float
    device_seconds: float
    wall_time_s: float
    extra: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, NDArray[Any]] | None = None

    def __post_init__(self) -> None:
        for name in ("run_iteration", "restart_index"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("controls_v", "outputs_a", "gradients_a_per_v", "gradient_stderr_a_per_v"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), name))
        if self.controls_v.ndim != 1 or self.outputs_a.ndim != 1:
            raise ValueError(
                "controls_v and outputs_a must be 1-D (n_controls,) and (n_cases,); got shapes "
                f"{self.controls_v.shape} and {self.outputs_a.shape}"
            )
        expected = (self.outputs_a.shape[0], self.controls_v.shape[0])
        for name in ("gradients_a_per_v", "gradient_stderr_a_per_v"):
            shape = getattr(self, name).shape
            if shape != expected:
                raise ValueError(
                    f"{name} must have shape (n_cases, n_controls) = {expected}, got {shape}"
                )
        for name in ("loss", "accuracy", "separation_a", "device_seconds", "wall_time_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise TypeError(f"{name} must be a real number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.extra, Mapping):
            raise TypeError(f"extra must be a mapping, got {type(self.extra).__name__}")
        object.__setattr__(self, "extra", dict(self.extra))
        if self.raw is not None:
            if not isinstance(self.raw, Mapping):
                raise TypeError(f"raw must be a mapping of name -> array, got {type(self.raw)}")
            raw = {}
            for key, value in self.raw.items():
                if not isinstance(key, str) or not key.isidentifier():
                    raise ValueError(f"raw array names must be identifiers, got {key!r}")
                raw[key] = _frozen_array(value, f"raw[{key!r}]")
            object.__setattr__(self, "raw", raw)

    @property
    def n_controls(self) -> int:
        """Number of control electrodes."""
        return int(self.controls_v.shape[0])

    @property
    def n_cases(self) -> int:
        """Number of input cases."""
        return int(self.outputs_a.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IterationRecord):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if not _same_array(a, b):
                    return False
            elif isinstance(a, float):
                if not _same_float(a, b):
                    return False
            elif f.name == "raw":
                if (a is None) != (b is None):
                    return False
                if a is not None and (
                    a.keys() != b.keys() or not all(_same_array(a[k], b[k]) for k in a)
                ):
                    return False
            elif f.name == "extra":
                if dumps(a) != dumps(b):
                    return False
            elif a != b:
                return False
        return True

    # Unhashable (equality compares arrays). The Python idiom for that is rejected by mypy,
    # since typeshed declares object.__hash__ as a method (python/mypy#4266).
    __hash__ = None  # type: ignore[assignment]
