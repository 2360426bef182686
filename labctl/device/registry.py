"""Backend registry: instruments are chosen by name from the configuration.

Backends register through the ``labctl.backends`` entry-point group, so third-party driver
packages plug in without labctl importing them::

    [project.entry-points."labctl.backends"]
    mydaq = "my_package.backend:MY_BACKEND"   # a BackendSpec instance

Scripts and tests may also add a spec for the running process with :func:`register_backend`.
Nothing in labctl imports a driver module directly; it asks this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from labctl.config import SetupConfig

ENTRY_POINT_GROUP = "labctl.backends"

Factory = Callable[["SetupConfig", Any, Mapping[str, object]], object]
"""``factory(setup, settings, built)``: an instrument object; ``built`` holds the instruments
of the same setup built before it, by name (so a simulated lock-in can share a simulated
DAQ's bench). It must not touch any instrument: connecting happens in ``open()``."""


@dataclass(frozen=True)
class BackendSpec:
    """How to validate settings for, and build, one kind of instrument.

    Attributes:
        name: Registry name used in ``setup.backend.name`` or ``setup.instruments.*.backend``.
        description: One line shown by ``labctl backends``.
        settings_model: Pydantic model (``extra="forbid"``) for the instrument's settings.
        factory: Builds the instrument (see :data:`Factory`); it touches no hardware.
        check_setup: Extra cross-checks of the setup against this backend (e.g. the number of
            electrodes a simulated model has); one message per problem. Must be free of side
            effects: it builds no device model and opens nothing.
        list_devices: For ``labctl devices``: given the instrument's validated settings (or
            None without a configuration), a human-readable listing of the hardware it can
            reach (devices, channels, ranges, maximum rates). Raises
            :class:`DeviceDiscoveryError` saying exactly why when nothing can be reached.
        max_sample_rate_hz: Given the instrument's validated settings, the fastest rate (Hz)
            at which it takes or emits samples. Validation refuses a ``setup.sample_rate_hz``
            above it for every instrument that runs on the setup's sample clock (the one
            ``backend``, or ``roles.source`` and ``roles.sampled_readout``), before anything
            is built. None: no declared limit (only the memory budget bounds the rate).
    """

    name: str
    description: str
    settings_model: type[BaseModel]
    factory: Factory
    check_setup: Callable[[SetupConfig, Any], list[str]] | None = None
    list_devices: Callable[[Any], str] | None = None
    max_sample_rate_hz: Callable[[Any], float] | None = None


class UnknownBackendError(LookupError):
    """No backend of that name is installed."""


class DeviceDiscoveryError(RuntimeError):
    """A backend could not reach any hardware; the message says why and what to do."""


_REGISTERED: dict[str, BackendSpec] = {}
"""Specs added with :func:`register_backend` for this process (they shadow entry points)."""


def register_backend(spec: BackendSpec) -> None:
    """Make ``spec`` available by name in this process (scripts, notebooks, tests)."""
    _REGISTERED[spec.name] = spec


def unregister_backend(name: str) -> None:
    """Forget a spec added with :func:`register_backend` (no error if absent)."""
    _REGISTERED.pop(name, None)


def available_backends() -> dict[str, str]:
    """Installed backend names mapped to where they come from (entry point or process)."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found.update({name: "registered in this process" for name in _REGISTERED})
    return found


def get_backend(name: str) -> BackendSpec:
    """Load the :class:`BackendSpec` registered under ``name``.

    Raises:
        UnknownBackendError: No such backend; the message lists the installed ones.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
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
