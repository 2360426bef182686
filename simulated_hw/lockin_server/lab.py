"""``labctl sim-lab``: the simulated NI gRPC server and lock-ins on one shared bench.

A lab file (``configs/sim_lab/*.yaml``) has three sections::

    bench:                       # the one SimBench everything shares (as in configs/sim_daq)
      config: ../sim_dnpu.yaml   # labctl YAML with backend: simulated (relative to this file)
      realtime: null             # null: as that config says; true: pace to the wall clock
      settings: {}               # overrides of its backend settings, e.g. {effects: {noise: false}}
    daq:                         # optional: the simulated NI gRPC Device Server
      config: ../sim_daq/cdaq9178.yaml
      port: 31763
    lockins:                     # any number of simulated lock-ins
      - {model: sr830, port: 31764, sine_electrode: e3}
      - {model: sr860, port: 31765, input: tia, external_reference_hz: null}
      - {model: sr830, port: 31766, reference_in: cDAQ1/ctr0}   # CO pulse train on REF IN

Without a ``bench`` section the DAQ file's ``bench`` section is used (or ``configs/sim_dnpu.yaml``).
``sine_electrode`` is an electrode name of the bench's labctl config or an index. Every
server binds to 127.0.0.1; port 0 picks a free one.

``reference_in`` wires a DAQ counter output to the lock-in's REF IN: whenever that counter
generates a pulse train (a CO task, e.g. armed on the AI start trigger), the lock-in sees a
reference at its frequency whose rising edges are the train's (phase 0 at the first rising
edge); when the task stops, REF IN is left unconnected (the lock-in unlocks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from labctl.config import ConfigError, ConfigIssue, load_config, load_model_file
from simulated_hw.bench import SimBench
from simulated_hw.lockin_server.server import LockinServer, serve_lockin
from simulated_hw.nidaq_server.config import (
    DEFAULT_SERVER_CONFIG,
    BenchSection,
    SimDaqConfig,
    load_sim_daq_config,
)
from simulated_hw.nidaq_server.counters import counter_key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _relative(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        return (Path(base) / value).resolve()
    return value


class DaqSection(_Strict):
    """The simulated NI gRPC Device Server."""

    config: Path = Field(
        DEFAULT_SERVER_CONFIG, description="Server YAML (configs/sim_daq/...), relative to here."
    )
    port: int = Field(0, ge=0, le=65535, description="TCP port on 127.0.0.1 (0: any free).")

    @field_validator("config")
    @classmethod
    def _config_path(cls, value: Path, info: ValidationInfo) -> Path:
        return _relative(value, info)


class LockinSection(_Strict):
    """One simulated lock-in amplifier."""

    model: Literal["sr830", "sr860"] = Field(description="Which instrument.")
    port: int = Field(0, ge=0, le=65535, description="TCP port on 127.0.0.1 (0: any free).")
    sine_electrode: str | int | None = Field(
        None, description="Electrode (name or index) the sine output is wired to; null: none."
    )
    input: str = Field(
        "tia", description="Voltage input: 'tia' (amplifier output), 'adc' or 'electrode:N'."
    )
    external_reference_hz: float | None = Field(
        None, gt=0, description="Frequency (Hz) of a sine on REF IN; null: nothing connected."
    )
    trigger_on_record: bool = Field(
        True, description="Each bench record start pulses TRIG IN (DAQ start trigger wired)."
    )
    reference_in: str | None = Field(
        None,
        description="DAQ counter output wired to REF IN, e.g. 'cDAQ1/ctr0' (null: none); its "
        "pulse train is the lock-in's external reference.",
    )

    @field_validator("reference_in")
    @classmethod
    def _counter(cls, value: str | None) -> str | None:
        if value is not None and not counter_key(value):
            raise ValueError(f"{value!r} is not a counter: write '<device>/ctrN' (or '_ctrN')")
        return value


class LabConfig(_Strict):
    """A simulated lab: one bench, an optional DAQ server, lock-ins."""

    bench: BenchSection | None = None
    daq: DaqSection | None = None
    lockins: list[LockinSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> LabConfig:
        for i, entry in enumerate(self.lockins):
            if entry.reference_in is None:
                continue
            if self.daq is None:
                raise ValueError(
                    f"lockins[{i}].reference_in: {entry.reference_in!r} needs a daq section "
                    "(the counter belongs to the simulated DAQ)"
                )
            if entry.external_reference_hz is not None:
                raise ValueError(
                    f"lockins[{i}]: REF IN takes either reference_in or external_reference_hz"
                )
        return self


def on_free_ports(config: LabConfig) -> LabConfig:
    """``config`` with every server on a free port (port 0), e.g. for tests and benchmarks."""
    update: dict[str, Any] = {
        "lockins": [entry.model_copy(update={"port": 0}) for entry in config.lockins]
    }
    if config.daq is not None:
        update["daq"] = config.daq.model_copy(update={"port": 0})
    return config.model_copy(update=update)


def load_lab_config(path: str | Path) -> LabConfig:
    """Read and validate a lab YAML; relative paths inside are relative to the file.

    Raises:
        ConfigError: The file is missing, not YAML, or does not validate.
    """
    return load_model_file(Path(path), LabConfig)


def _electrode_index(value: str | int, bench_config: Path, where: str, n: int) -> int:
    if isinstance(value, int):
        index = value
    else:
        names = [e.name for e in load_config(bench_config).setup.electrodes]
        if value not in names:
            raise ConfigError(
                where, [ConfigIssue("sine_electrode", f"no electrode {value!r} in {names}")]
            )
        index = names.index(value)
    if not 0 <= index < n:
        raise ConfigError(
            where, [ConfigIssue("sine_electrode", f"index {index} outside 0..{n - 1}")]
        )
    return index


@dataclass
class SimLab:
    """Running servers of a lab (stop with :meth:`stop` or as a context manager).

    Attributes:
        bench: The shared bench.
        daq: The NI gRPC server (None when the lab has none).
        lockins: The lock-in servers, in file order.
        sine_electrodes: Electrode name (or index) each lock-in's sine drives, None if none.
        references_in: DAQ counter wired to each lock-in's REF IN, None if none.
    """

    bench: SimBench
    daq: Any = None
    lockins: list[LockinServer] = field(default_factory=list)
    sine_electrodes: list[str | int | None] = field(default_factory=list)
    references_in: list[str | None] = field(default_factory=list)

    def addresses(self) -> list[str]:
        """One line per server: what it is and where it listens."""
        lines = []
        if self.daq is not None:
            lines.append(f"NI gRPC Device Server (simulated) listening on {self.daq.address}")
        references = self.references_in or [None] * len(self.lockins)
        for server, wired, reference in zip(
            self.lockins, self.sine_electrodes, references, strict=True
        ):
            line = f"{server.instrument.model} (simulated) listening on {server.resource}"
            if wired is not None:
                line += f" (sine output -> electrode {wired})"
            if reference is not None:
                line += f" (REF IN <- DAQ counter {reference})"
            lines.append(line)
        return lines

    def stop(self) -> None:
        """Stop every server (lock-ins first, their sines go off; then the DAQ server)."""
        for server in self.lockins:
            server.stop()
        if self.daq is not None:
            self.daq.stop()

    def __enter__(self) -> SimLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_lab(config: LabConfig | str | Path, *, label: str = "lab") -> SimLab:
    """Build the shared bench and start every server of ``config``.

    Raises:
        ConfigError: A configuration does not load.
        OSError: A port cannot be bound (servers already started are stopped again).
    """
    if not isinstance(config, LabConfig):
        label = str(config)
        config = load_lab_config(config)
    from simulated_hw.nidaq_server import build_bench, serve

    daq_config: SimDaqConfig | None = None
    if config.daq is not None:
        daq_config = load_sim_daq_config(config.daq.config)
    bench_section = config.bench
    if bench_section is None:
        bench_section = daq_config.bench if daq_config is not None else BenchSection()
    base = daq_config if daq_config is not None else load_sim_daq_config(None)
    bench = build_bench(base.model_copy(update={"bench": bench_section}))
    lab = SimLab(bench)
    try:
        if config.daq is not None and daq_config is not None:
            lab.daq = serve(daq_config, port=config.daq.port, bench=bench)
        for i, entry in enumerate(config.lockins):
            index = None
            if entry.sine_electrode is not None:
                where = f"{label}: lockins[{i}]"
                index = _electrode_index(
                    entry.sine_electrode, bench_section.config, where, bench.n_electrodes
                )
            server = serve_lockin(
                entry.model,
                bench=bench,
                port=entry.port,
                sine_electrode=index,
                input_signal=entry.input,
            )
            lab.lockins.append(server)
            lab.sine_electrodes.append(entry.sine_electrode)
            lab.references_in.append(entry.reference_in)
            server.instrument.trigger_on_record = entry.trigger_on_record
            if entry.external_reference_hz is not None:
                server.external_reference_hz = entry.external_reference_hz
            if entry.reference_in is not None and lab.daq is not None:
                lab.daq.daq.counter_listeners.append(
                    _ref_in_listener(counter_key(entry.reference_in), server)
                )
    except BaseException:
        lab.stop()
        raise
    return lab


def _ref_in_listener(
    wired: str, server: LockinServer
) -> Callable[[str, float | None, float], None]:
    """A DAQ counter listener that feeds counter ``wired``'s pulse train to REF IN."""

    def listener(counter: str, frequency_hz: float | None, first_edge_s: float) -> None:
        if counter != wired:
            return
        if frequency_hz is None:
            server.set_external_reference(None)
            return
        # rising edges at first_edge_s + k/f: the reference sin(2πf t + φ) crosses zero upwards
        server.set_external_reference(
            frequency_hz, math.remainder(-2.0 * math.pi * frequency_hz * first_edge_s, 2 * math.pi)
        )

    return listener
