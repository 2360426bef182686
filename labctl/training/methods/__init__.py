"""Training methods: a registry from the YAML's ``method.name`` to a trainer strategy.

A configuration selects the method with::

    method:
      name: hge            # hge (default) | screened_hge | finite_difference | spsa | genetic
      params: {}           # validated by the method's own model (see params.py)

Every method runs inside the same loop (:class:`labctl.training.trainer.Trainer`): the same
safe device, run control (pause/stop/abort at every iteration boundary), run store, stop
criteria, device-time count (the safe device's own, ramps and settling included) and exact
resume. A method measures one iteration and decides the next state; see
:class:`~labctl.training.methods.base.TrainingMethod`. A new method is one more
:func:`register_method` call with its parameter model and a builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from labctl.training.methods.params import (
    FiniteDifferenceParams,
    GeneticParams,
    HgeParams,
    ScreenedHgeParams,
    SpsaParams,
    TwinHgeParams,
    TwinTransferParams,
)

if TYPE_CHECKING:
    from labctl.training.methods.base import MethodContext, TrainingMethod

__all__ = [
    "MethodSpec",
    "UnknownMethodError",
    "get_method",
    "method_names",
    "register_method",
]


class UnknownMethodError(ValueError):
    """No method is registered under the name asked for."""


@dataclass(frozen=True)
class MethodSpec:
    """A registered training method.

    Attributes:
        name: The ``method.name`` that selects it.
        description: One line for listings.
        params_model: Pydantic model of ``method.params`` (unknown keys forbidden).
        build: Makes the strategy for one run from the run's context and the validated params.
        uses_homodyne: Whether it measures with tones (and so needs the chain calibration);
            the others skip the start-up calibration.
        iteration_limit: Most iterations a run of it can have (e.g. 1 for controls trained
            elsewhere and applied once), below ``run.max_iterations``; None: no limit of its own.
    """

    name: str
    description: str
    params_model: type[BaseModel]
    build: Callable[[MethodContext, BaseModel], TrainingMethod]
    uses_homodyne: bool = False
    iteration_limit: int | None = None


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> None:
    """Register ``spec`` under ``spec.name``.

    Raises:
        ValueError: The name is taken.
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"a training method named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def get_method(name: str) -> MethodSpec:
    """The method registered as ``name``.

    Raises:
        UnknownMethodError: None is (the message lists the registered ones).
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UnknownMethodError(
            f"unknown training method {name!r}; choose one of {', '.join(method_names())}"
        )
    return spec


def method_names() -> tuple[str, ...]:
    """Registered method names, in registration order."""
    return tuple(_REGISTRY)


def _build_hge(context: MethodContext, params: BaseModel) -> TrainingMethod:
    from labctl.training.methods.gradient import GradientDescentMethod, HgeEstimator

    return GradientDescentMethod(context, HgeEstimator(context))


def _build_fd(context: MethodContext, params: BaseModel) -> TrainingMethod:
    from labctl.training.methods.gradient import FiniteDifferenceEstimator, GradientDescentMethod

    assert isinstance(params, FiniteDifferenceParams)
    return GradientDescentMethod(context, FiniteDifferenceEstimator(context, params))


def _build_spsa(context: MethodContext, params: BaseModel) -> TrainingMethod:
    from labctl.training.methods.gradient import GradientDescentMethod, SpsaEstimator

    assert isinstance(params, SpsaParams)
    return GradientDescentMethod(context, SpsaEstimator(context, params))


def _build_genetic(context: MethodContext, params: BaseModel) -> TrainingMethod:
    from labctl.training.methods.genetic import GeneticMethod

    assert isinstance(params, GeneticParams)
    return GeneticMethod(context, params)


register_method(
    MethodSpec(
        "hge",
        "homodyne gradient extraction: all partials from one record per iteration",
        HgeParams,
        _build_hge,
        uses_homodyne=True,
    )
)
register_method(
    MethodSpec(
        "finite_difference",
        "central finite-difference gradient descent (2N + 1 DC plateaus per case)",
        FiniteDifferenceParams,
        _build_fd,
    )
)
register_method(
    MethodSpec(
        "spsa",
        "simultaneous-perturbation gradient descent (2 DC plateaus per pair and case)",
        SpsaParams,
        _build_spsa,
    )
)
register_method(
    MethodSpec(
        "genetic",
        "DNPU genetic algorithm: elites, rank selection, BLX-alpha-beta, decaying mutation",
        GeneticParams,
        _build_genetic,
    )
)


def _build_screened_hge(context: MethodContext, params: BaseModel) -> TrainingMethod:
    from labctl.training.methods.screened import ScreenedHgeMethod

    assert isinstance(params, ScreenedHgeParams)
    return ScreenedHgeMethod(context, params)


register_method(
    MethodSpec(
        "screened_hge",
        "HGE descent from the best of many short DC-screened random control sets; next-best "
        "set on a stall; stops at a separation of k times its noise",
        ScreenedHgeParams,
        _build_screened_hge,
        uses_homodyne=True,
    )
)


def _build_twin_transfer(context: MethodContext, params: BaseModel) -> TrainingMethod:
    from labctl.training.methods.twin import TwinTransferMethod

    assert isinstance(params, TwinTransferParams)
    return TwinTransferMethod(context, params)


def _build_twin_hge(context: MethodContext, params: BaseModel) -> TrainingMethod:
    from labctl.training.methods.twin import TwinStartedHgeMethod

    assert isinstance(params, TwinHgeParams)
    return TwinStartedHgeMethod(context, params)


register_method(
    MethodSpec(
        "twin_transfer",
        "train on a digital twin with its exact gradients, then apply the controls once",
        TwinTransferParams,
        _build_twin_transfer,
        iteration_limit=1,
    )
)
register_method(
    MethodSpec(
        "twin_hge",
        "train on a digital twin, then in-materia HGE from the twin's solution",
        TwinHgeParams,
        _build_twin_hge,
        uses_homodyne=True,
    )
)
