"""A setup is a composite of named instruments, each assigned to the roles it can fill.

Today's usual case is one instrument in every role (a DAQ, or the simulated bench, as source
and sampled readout). A lab with lock-ins has a DAQ as the DC source and lock-ins as
demodulated readouts, perhaps with a lock-in's sine output adding a tone on one electrode.
:func:`build_composite` builds every instrument of a validated configuration through the
registry and checks each role against its capability protocol; nothing is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labctl.device.protocols import (
    DemodulatedReadout,
    Instrument,
    ReferenceSwitch,
    SampledReadout,
    SimulationOracle,
    SineSource,
    VoltageSource,
)
from labctl.device.registry import get_backend

if TYPE_CHECKING:
    from labctl.config import LoadedConfig


class SetupError(ValueError):
    """An instrument cannot fill the role the configuration gives it."""


@dataclass
class Composite:
    """The instruments of one setup, by role.

    Attributes:
        instruments: Every instrument by name, in the order they are opened.
        source: Drives the electrodes.
        readout: Samples the output current on the source's clock (None: lock-ins only).
        demodulators: Demodulated readouts by instrument name.
        sine_sources: Per electrode name, the instrument that adds its own sine there.
        switch: Puts a reference resistor in place of the device, if any instrument can.
        oracle: Knows the true gradient (simulated instruments only).
    """

    instruments: dict[str, Instrument]
    source: VoltageSource
    readout: SampledReadout | None = None
    demodulators: dict[str, DemodulatedReadout] = field(default_factory=dict)
    sine_sources: dict[str, SineSource] = field(default_factory=dict)
    switch: ReferenceSwitch | None = None
    oracle: SimulationOracle | None = None

    @classmethod
    def single(cls, name: str, instrument: object) -> Composite:
        """One instrument in every role it implements (it must at least be a voltage source)."""
        source = _as(instrument, VoltageSource, f"instrument {name!r} as the voltage source")
        return cls(
            instruments={name: source},
            source=source,
            readout=instrument if isinstance(instrument, SampledReadout) else None,
            demodulators=({name: instrument} if isinstance(instrument, DemodulatedReadout) else {}),
            switch=instrument if isinstance(instrument, ReferenceSwitch) else None,
            oracle=instrument if isinstance(instrument, SimulationOracle) else None,
        )

    def identity(self) -> dict[str, Any]:
        """Per instrument name, its identity (for run provenance)."""
        return {name: instrument.identity() for name, instrument in self.instruments.items()}


def build_composite(loaded: LoadedConfig) -> Composite:
    """Build (not open) every instrument of ``loaded`` and assign them to their roles.

    Raises:
        SetupError: An instrument lacks the capability its role needs.
    """
    setup = loaded.setup
    built: dict[str, object] = {}
    for name, config in setup.instrument_configs().items():
        spec = get_backend(config.backend)
        built[name] = spec.factory(setup, loaded.instrument_settings[name], dict(built))
    if setup.roles is None:
        ((name, instrument),) = built.items()
        return Composite.single(name, instrument)
    roles = setup.roles
    instruments = {
        name: _as(obj, Instrument, f"setup.instruments.{name}") for name, obj in built.items()
    }
    return Composite(
        instruments=instruments,
        source=_as(built[roles.source], VoltageSource, "roles.source"),
        readout=_role(built, roles.sampled_readout, SampledReadout, "roles.sampled_readout"),
        demodulators={
            name: _as(built[name], DemodulatedReadout, f"roles.demodulated_readouts: {name}")
            for name in roles.demodulated_readouts
        },
        sine_sources={
            electrode: _as(built[name], SineSource, f"roles.sine_sources.{electrode}")
            for electrode, name in roles.sine_sources.items()
        },
        switch=_role(built, roles.reference_switch, ReferenceSwitch, "roles.reference_switch"),
        oracle=_role(built, roles.oracle, SimulationOracle, "roles.oracle"),
    )


def _role(built: Mapping[str, object], name: str | None, protocol: type, where: str) -> Any:
    return None if name is None else _as(built[name], protocol, where)


def _as(obj: object, protocol: type, where: str) -> Any:
    """``obj`` itself, after checking at run time that it satisfies ``protocol``.

    (Typed ``Any``: mypy cannot take a protocol class as ``type[T]``; callers store the result
    in fields of the protocol's type.)
    """
    if not isinstance(obj, protocol):
        raise SetupError(
            f"{where}: {type(obj).__name__} is not a {protocol.__name__} "
            f"(it lacks {', '.join(_missing(obj, protocol))}); choose an instrument that is"
        )
    return obj


def _missing(obj: object, protocol: type) -> list[str]:
    members = [name for name in dir(protocol) if not name.startswith("_")]
    return [m for m in members if not hasattr(obj, m)] or ["members"]
