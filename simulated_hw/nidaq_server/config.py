"""Schema of the simulated NI gRPC Device Server's YAML (``configs/sim_daq/*.yaml``).

A server file has three sections:

- ``devices``: the simulated NI hardware: chassis with C Series modules (cDAQ) or stand-alone
  multifunction devices (X Series), with channel counts, ranges (V), rate limits (S/s) and the
  sample-clock timebase (Hz) that rates are coerced to;
- ``bench``: the labctl configuration (``backend: simulated``) whose setup and settings build
  the one :class:`simulated_hw.bench.SimBench` the server drives, so that the same seed gives
  the same device as the in-process simulated backend;
- ``wiring``: which AO physical channel drives each bench electrode and which AI physical
  channel reads the amplifier output.

Validated once, here; every problem is reported with its field path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from labctl.config import load_model_file

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
"""The repository's ``configs`` directory (the package is installed editable)."""
DEFAULT_BENCH_CONFIG = REPO_CONFIGS / "sim_dnpu.yaml"
"""labctl configuration that builds the bench when a server file does not name one."""
DEFAULT_SERVER_CONFIG = REPO_CONFIGS / "sim_daq" / "cdaq9178.yaml"
"""Server configuration used when none is given: a cDAQ-9178 with NI 9264 + NI 9202."""

TerminalConfigName = Literal["RSE", "NRSE", "DIFF", "PSEUDO_DIFF"]
CategoryName = Literal["COMPACT_DAQ_CHASSIS", "X_SERIES_DAQ", "M_SERIES_DAQ"]
BusName = Literal["USB", "PCIE", "PCI", "PXIE", "PXI", "TCPIP"]
TransferName = Literal["DMA", "USB_BULK", "INTERRUPT"]

_PHYSICAL = re.compile(r"^(?P<device>[^/\s]+)/(?P<kind>ao|ai)(?P<index>\d+)$", re.IGNORECASE)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_terminal_configs() -> list[TerminalConfigName]:
    return ["RSE", "NRSE", "DIFF"]


def _check_ranges(ranges: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if not ranges:
        raise ValueError("give at least one [low, high] range (V)")
    for low, high in ranges:
        if not low < high:
            raise ValueError(f"range [{low}, {high}] V: low must be below high")
    return sorted(ranges, key=lambda r: r[1] - r[0])


class AOSpec(_Strict):
    """Analog outputs of a device or module."""

    channels: int = Field(ge=1, le=64, description="Number of AO channels (ao0..aoN-1).")
    ranges_v: list[tuple[float, float]] = Field(
        default_factory=lambda: [(-10.0, 10.0)],
        description="Output ranges [low, high] (V); DAQmx picks the smallest holding min/max.",
    )
    max_rate_hz: float = Field(gt=0, description="Maximum update rate per channel (S/s).")
    max_rate_by_channels_hz: list[float] | None = Field(
        None,
        description="Maximum rate (S/s) with 1, 2, ... channels in the task (multiplexed DACs); "
        "the last entry holds for more channels.",
    )
    min_rate_hz: float | None = Field(
        None, gt=0, description="Minimum update rate (S/s); default: timebase / 2**32."
    )
    resolution_bits: int = Field(16, ge=8, le=32, description="DAC resolution (bits).")
    onboard_buffer_samples: int = Field(8191, ge=2, description="AO FIFO size (samples).")
    data_transfer: TransferName = Field("DMA", description="Data transfer mechanism.")

    @field_validator("ranges_v")
    @classmethod
    def _ranges(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return _check_ranges(value)

    def max_rate_for(self, n_channels: int) -> float:
        """Maximum rate (S/s) of a task with ``n_channels`` channels of this device."""
        table = self.max_rate_by_channels_hz
        if not table:
            return self.max_rate_hz
        return table[min(max(n_channels, 1), len(table)) - 1]


class AISpec(_Strict):
    """Analog inputs of a device or module."""

    channels: int = Field(ge=1, le=256, description="Number of AI channels (ai0..aiN-1).")
    ranges_v: list[tuple[float, float]] = Field(
        default_factory=lambda: [(-10.0, 10.0)],
        description="Input ranges [low, high] (V); DAQmx picks the smallest holding min/max.",
    )
    max_single_chan_rate_hz: float = Field(gt=0, description="Maximum rate, one channel (S/s).")
    max_multi_chan_rate_hz: float = Field(
        gt=0,
        description="Maximum rate with several channels (S/s): aggregate for multiplexed "
        "devices (divided by the channel count), per channel for simultaneous ones.",
    )
    min_rate_hz: float | None = Field(
        None, gt=0, description="Minimum sample rate (S/s); default: timebase / 2**32."
    )
    simultaneous: bool = Field(False, description="Simultaneous sampling (no multiplexer).")
    resolution_bits: int = Field(16, ge=8, le=32, description="ADC resolution (bits).")
    filtered: bool = Field(
        False,
        description="Filtered (delta-sigma-like) ADC: the channel reports ai_filter_delay, "
        "which is the bench's ADC delay (adc_delay_samples of the labctl config).",
    )
    terminal_configs: list[TerminalConfigName] = Field(
        default_factory=_default_terminal_configs,
        description="Supported terminal configurations.",
    )
    default_terminal_config: TerminalConfigName = Field(
        "RSE", description="What TerminalConfiguration.DEFAULT means on this device."
    )
    onboard_buffer_samples: int = Field(4095, ge=2, description="AI FIFO size (samples).")
    data_transfer: TransferName = Field("DMA", description="Data transfer mechanism.")

    @field_validator("ranges_v")
    @classmethod
    def _ranges(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return _check_ranges(value)

    @model_validator(mode="after")
    def _default_supported(self) -> AISpec:
        if self.default_terminal_config not in self.terminal_configs:
            raise ValueError(
                f"default_terminal_config {self.default_terminal_config} is not one of "
                f"terminal_configs {self.terminal_configs}"
            )
        return self


class ModuleConfig(_Strict):
    """A C Series module in a chassis slot."""

    name: str = Field(min_length=1, description="Device name, e.g. 'cDAQ1Mod1'.")
    product_type: str = Field(description="Product, e.g. 'NI 9264'.")
    slot: int = Field(ge=1, le=14, description="Chassis slot (1-based).")
    product_num: int = Field(0, ge=0, description="Product number (DAQmx Dev.ProductNum).")
    serial_num: int = Field(0, ge=0, description="Serial number.")
    timebase_hz: float | None = Field(
        None, gt=0, description="Sample-clock timebase (Hz); default: the chassis timebase."
    )
    ao: AOSpec | None = None
    ai: AISpec | None = None

    @model_validator(mode="after")
    def _has_io(self) -> ModuleConfig:
        if self.ao is None and self.ai is None:
            raise ValueError(f"module {self.name} needs an 'ao' or an 'ai' section")
        return self


class DeviceConfig(_Strict):
    """A device: a cDAQ chassis (with ``modules``) or a stand-alone DAQ (with ``ao``/``ai``)."""

    name: str = Field(min_length=1, description="Device name, e.g. 'cDAQ1' or 'Dev1'.")
    product_type: str = Field(description="Product, e.g. 'cDAQ-9178' or 'PCIe-6363'.")
    category: CategoryName = Field(description="DAQmx product category.")
    bus: BusName = Field("USB", description="Bus type.")
    product_num: int = Field(0, ge=0, description="Product number (DAQmx Dev.ProductNum).")
    serial_num: int = Field(0, ge=0, description="Serial number.")
    timebase_hz: float = Field(gt=0, description="Sample-clock timebase (Hz), e.g. 100e6.")
    ai_timing_engines: list[str] = Field(
        default_factory=lambda: ["ai"],
        description="AI timing engines, in the order tasks get them at reserve time "
        "(cDAQ Gen-II: ai, te0, te1); their terminals are /<dev>/<engine>/StartTrigger etc.",
    )
    pfi_lines: int = Field(16, ge=0, le=64, description="Number of PFI terminals.")
    ao: AOSpec | None = None
    ai: AISpec | None = None
    modules: list[ModuleConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> DeviceConfig:
        if self.category == "COMPACT_DAQ_CHASSIS":
            if not self.modules:
                raise ValueError(f"chassis {self.name} needs 'modules'")
            if self.ao is not None or self.ai is not None:
                raise ValueError(
                    f"chassis {self.name}: put 'ao'/'ai' in its modules, not on the chassis"
                )
            slots = [m.slot for m in self.modules]
            if len(set(slots)) != len(slots):
                raise ValueError(f"chassis {self.name}: two modules in one slot")
        else:
            if self.modules:
                raise ValueError(f"{self.name}: only a COMPACT_DAQ_CHASSIS has modules")
            if self.ao is None and self.ai is None:
                raise ValueError(f"{self.name} needs an 'ao' or an 'ai' section")
        if not self.ai_timing_engines or len(set(self.ai_timing_engines)) != len(
            self.ai_timing_engines
        ):
            raise ValueError("ai_timing_engines must be a non-empty list of distinct names")
        return self


class BenchSection(_Strict):
    """Which labctl configuration builds the bench, and overrides of its simulated settings."""

    config: Path = Field(
        DEFAULT_BENCH_CONFIG,
        description="labctl YAML with 'backend: simulated' (relative to the server file).",
    )
    realtime: bool | None = Field(
        None, description="Override the bench's time base: true paces runs to the wall clock."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides merged into setup.backend.settings, e.g. {effects: {noise: false}}.",
    )

    @field_validator("config")
    @classmethod
    def _relative(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        if not value.is_absolute() and base is not None:
            return (Path(base) / value).resolve()
        return value


class WiringConfig(_Strict):
    """How the simulated DAQ is cabled to the bench."""

    electrodes: list[str | None] | None = Field(
        None,
        description="AO physical channel per bench electrode, in electrode order (null: not "
        "wired; the electrode holds its voltage). Default: ao0, ao1, ... of the first AO "
        "device, as far as it has channels.",
    )
    output: str | None = Field(
        None,
        description="AI physical channel that reads the amplifier output. Default: ai0 of "
        "the first AI device.",
    )


class SimDaqConfig(_Strict):
    """The simulated NI gRPC Device Server: devices, bench and wiring."""

    devices: list[DeviceConfig] = Field(min_length=1)
    bench: BenchSection = Field(default_factory=BenchSection)
    wiring: WiringConfig = Field(default_factory=WiringConfig)
    chunk_s: float = Field(
        0.05,
        gt=0,
        le=0.05,
        description="Longest piece of a run simulated at once (s): the stop latency.",
    )
    unwired_ai_noise_v: float = Field(
        1e-4, ge=0, description="RMS noise (V) on AI channels not wired to the amplifier."
    )
    noise_seed: int = Field(0, ge=0, description="Seed of the unwired-channel noise.")
    driver_version: tuple[int, int, int] = Field(
        (25, 5, 0), description="NI-DAQmx version the server reports (major, minor, update)."
    )

    @model_validator(mode="after")
    def _names_and_wiring(self) -> SimDaqConfig:
        names: dict[str, tuple[AOSpec | None, AISpec | None]] = {}
        for device in self.devices:
            entries = [(device.name, device.ao, device.ai)]
            entries += [(m.name, m.ao, m.ai) for m in device.modules]
            for name, ao, ai in entries:
                if name.lower() in names:
                    raise ValueError(f"device name {name} is used twice")
                names[name.lower()] = (ao, ai)
        wiring = self.wiring
        for where, channel, kind in [
            *((f"wiring.electrodes[{i}]", c, "ao") for i, c in enumerate(wiring.electrodes or [])),
            ("wiring.output", wiring.output, "ai"),
        ]:
            if channel is None:
                continue
            match = _PHYSICAL.match(channel.strip())
            if match is None or match["kind"].lower() != kind:
                raise ValueError(f"{where}: {channel!r} is not an {kind.upper()} channel name")
            specs = names.get(match["device"].lower())
            if specs is None:
                raise ValueError(f"{where}: no device named {match['device']}")
            spec = specs[0] if kind == "ao" else specs[1]
            if spec is None or int(match["index"]) >= spec.channels:
                raise ValueError(f"{where}: {channel} does not exist on {match['device']}")
        wired = [c.lower() for c in wiring.electrodes or [] if c is not None]
        if len(set(wired)) != len(wired):
            raise ValueError("wiring.electrodes: one AO channel is wired to two electrodes")
        return self


def load_sim_daq_config(path: str | Path | None = None) -> SimDaqConfig:
    """Read and validate a server YAML (the shipped cDAQ-9178 file when ``path`` is None).

    Relative paths inside (``bench.config``) are relative to the file.

    Raises:
        ConfigError: The file is missing, not YAML, or does not validate.
    """
    path = Path(path) if path is not None else DEFAULT_SERVER_CONFIG
    return load_model_file(path, SimDaqConfig)
