"""Backend registry: backends are chosen by name from the configuration.

Backends register through the ``labctl.backends`` entry-point group, so third-party driver
packages plug in without labctl importing them::

    [project.entry-points."labctl.backends"]
    mydaq = "my_package.backend:MY_BACKEND"   # a BackendSpec instance

Nothing in labctl imports a driver module directly; it asks this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from labctl.device import ElectrodeBackend

if TYPE_CHECKING:
    from labctl.config import SetupConfig

ENTRY_POINT_GROUP = "labctl.backends"


@dataclass(frozen=True)
class BackendSpec:
    """How to validate settings for, and build, one kind of backend.

    Attributes:
        name: Registry name used in ``setup.backend.name``.
        description: One line shown by ``labctl backends``.
        settings_model: Pydantic model (``extra="forbid"``) for ``setup.backend.settings``.
        factory: Builds the backend from the validated setup and settings. Must not touch any
            instrument: connecting happens in :meth:`ElectrodeBackend.open`.
        check_setup: Extra cross-checks of the setup against this backend (e.g. the number of
            electrodes a simulated model has); returns one message per problem.
    """

    name: str
    description: str
    settings_model: type[BaseModel]
    factory: Callable[[SetupConfig, Any], ElectrodeBackend]
    check_setup: Callable[[SetupConfig, Any], list[str]] | None = None


class UnknownBackendError(LookupError):
    """No backend of that name is installed."""


def available_backends() -> dict[str, str]:
    """Installed backend names mapped to the object path their entry point names."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_backend(name: str) -> BackendSpec:
    """Load the :class:`BackendSpec` registered under ``name``.

    Raises:
        UnknownBackendError: No such backend; the message lists the installed ones.
    """
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(available_backends())) or "none"
        raise UnknownBackendError(
            f"unknown backend {name!r}; installed backends: {known}. "
            "Check the spelling or install the package that provides it."
        )
    spec = matches[0].load()
    if not isinstance(spec, BackendSpec):
        raise UnknownBackendError(
            f"entry point {matches[0].value!r} for backend {name!r} is not a BackendSpec"
        )
    return spec


def validate_settings(name: str, settings: dict[str, Any], base_dir: Path | None) -> BaseModel:
    """Validate ``settings`` against the backend's model (relative paths from ``base_dir``)."""
    spec = get_backend(name)
    return spec.settings_model.model_validate(settings, context={"base_dir": base_dir})
