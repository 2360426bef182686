"""Random generators' states as JSON-ready values, for checkpoints that resume bit for bit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """The state of ``rng``'s bit generator as JSON-ready values (arrays become lists)."""
    return _plain(rng.bit_generator.state)


def set_generator_state(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Restore a state :func:`generator_state` returned (same bit generator type)."""
    bit_generator = rng.bit_generator
    current = bit_generator.state
    bit_generator.state = _like(current, state)


def _plain(value: Any) -> Any:
    """A bit generator's state with arrays as lists of ints (JSON-ready)."""
    if isinstance(value, np.ndarray):
        return [int(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _like(template: Any, value: Any) -> Any:
    """``value`` with the array types of ``template`` (the bit generator's own state)."""
    if isinstance(template, np.ndarray):
        return np.array(value, dtype=template.dtype)
    if isinstance(template, Mapping):
        return {k: _like(template[k], value[k]) for k in template}
    return value
