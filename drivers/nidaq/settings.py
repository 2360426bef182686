"""Settings of the ``nidaq`` backend (``setup.backend.settings``), validated at config load.

Everything here is plain data: validating it imports no ``nidaqmx`` and contacts no hardware.
Units: volts, seconds. Channel names are NI-DAQmx physical channels as NI MAX shows them
(``cDAQ1Mod1/ao0``, ``Dev1/ai3``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

DEFAULT_GRPC_PORT = 31763
"""Port of the NI gRPC Device Server by default (and of ``labctl sim-daq --port 31763``)."""

DEFAULT_MAX_SAMPLE_RATE_HZ = 1e6
"""Fastest AO/AI rate (S/s per channel) validation accepts when ``max_sample_rate_hz`` is not
given: a deliberately generous ceiling that refuses absurd rates (a typo of 1e12) at validation.
It is above what C Series modules do (NI 9263: 100 kS/s/ch, NI 9264: 25 kS/s/ch, NI 9202:
10 kS/s/ch) and about what multi-channel AO on X Series cards does (PCIe-6363: 1 MS/s on several
channels); DAQmx still refuses, when the tasks open, a rate the actual module cannot run.
Set ``max_sample_rate_hz`` to your device's figure (``labctl devices CONFIG`` lists it)."""
ABSOLUTE_MAX_SAMPLE_RATE_HZ = 10e6
"""No NI-DAQmx voltage output runs faster than this (S/s)."""

TerminalConfig = Literal["DEFAULT", "RSE", "NRSE", "DIFF", "PSEUDO_DIFF"]
SyncMode = Literal["start_trigger", "ai_sample_clock"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GrpcTlsSettings(_Strict):
    """How the gRPC channel to the server is secured (absent: a plaintext channel).

    ``source: files`` builds the channel credentials from PEM files, as
    ``grpc.ssl_channel_credentials`` takes them (what ``nidaqmx.GrpcSessionOptions`` accepts is
    a ``grpc.Channel``; TLS lives in that channel). ``source: ni_tls`` uses the machine's NI TLS
    configuration (NI Hardware Manager, read by the ``nitlsconfig`` package that ships with
    ``nidaqmx[grpc]``); the file fields must then be absent.
    """

    source: Literal["files", "ni_tls"] = Field(
        "files", description="'files': PEM files below; 'ni_tls': NI Hardware Manager's settings."
    )
    root_certificates: Path | None = Field(
        None,
        description="PEM bundle of the CA (or the server's self-signed certificate) that "
        "verifies the server; relative to the config file; default: the system trust store.",
    )
    certificate_chain: Path | None = Field(
        None, description="Client certificate chain (PEM) for mutual TLS; needs private_key."
    )
    private_key: Path | None = Field(
        None, description="Client private key (PEM) for mutual TLS; needs certificate_chain."
    )
    target_name_override: str | None = Field(
        None,
        description="Host name the server certificate carries when it differs from "
        "grpc.address (grpc.ssl_target_name_override; verification stays on).",
    )

    @field_validator("root_certificates", "certificate_chain", "private_key")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is not None and not value.is_absolute() and base is not None:
            value = (Path(base) / value).resolve()
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} not found; give a PEM file (relative to the config)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GrpcTlsSettings:
        files = (self.root_certificates, self.certificate_chain, self.private_key)
        if self.source == "ni_tls" and any(f is not None for f in files):
            raise ValueError(
                "source 'ni_tls' takes the certificates from NI Hardware Manager: leave out "
                "root_certificates, certificate_chain and private_key (or use source 'files')"
            )
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError(
                "mutual TLS needs both certificate_chain and private_key (or neither, for "
                "server-authenticated TLS)"
            )
        return self


class GrpcSettings(_Strict):
    """Where the NI gRPC Device Server runs (instead of a local NI-DAQmx installation)."""

    address: str = Field(
        min_length=1,
        description="Host name or IP address of the server (no port: give it in 'port').",
    )
    port: int = Field(
        DEFAULT_GRPC_PORT,
        ge=1,
        le=65535,
        description="TCP port of the server (NI default 31763; `labctl sim-daq --port N`).",
    )
    session_name: str = Field(
        "",
        description="Prefix of the server sessions: the AO and AI tasks (and sessions) are "
        "named '<session_name>_ao' and '<session_name>_ai'; '' = unnamed new sessions.",
    )
    initialization: Literal["auto", "initialize", "attach"] = Field(
        "auto",
        description="Session initialisation behaviour (nidaqmx SessionInitializationBehavior): "
        "'auto', 'initialize' (new session only) or 'attach' (existing named session only).",
    )
    api_key: SecretStr | None = Field(
        None,
        description="API key the server requires (default: the one nidaqmx sends). A secret: "
        "never logged, and left out of run stores (a resumed run then sends nidaqmx's "
        "default); prefer api_key_env.",
    )
    api_key_env: str | None = Field(
        None,
        min_length=1,
        description="Name of an environment variable holding the API key (instead of "
        "api_key): the key stays out of the file, the logs and the run stores.",
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, le=120, description="How long (s) to wait for the server to answer at open."
    )
    tls: GrpcTlsSettings | None = Field(
        None, description="TLS settings; absent: plaintext (a trusted local network only)."
    )

    @field_validator("address")
    @classmethod
    def _host_only(cls, value: str) -> str:
        value = value.strip()
        host = value.strip("[]")
        if value.count(":") == 1 and not value.startswith("["):
            raise ValueError(
                f"{value!r} looks like host:port; give the host in 'address' and the port in 'port'"
            )
        if not host:
            raise ValueError("address is empty; give the server's host name or IP address")
        return value

    @field_serializer("api_key")
    def _hide_api_key(self, value: SecretStr | None) -> None:
        return None  # secrets are not written anywhere (run stores, resolved configurations)

    def resolved_api_key(self) -> str | None:
        """The API key to send (from ``api_key`` or ``$api_key_env``); None: nidaqmx's default.

        Raises:
            ValueError: ``api_key_env`` names a variable that is not set.
        """
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if value is None:
            raise ValueError(
                f"grpc.api_key_env: the environment variable {self.api_key_env} is not set; "
                "export it with the server's API key"
            )
        return value

    @model_validator(mode="after")
    def _named_sessions(self) -> GrpcSettings:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        if self.initialization == "attach" and not self.session_name:
            raise ValueError("initialization 'attach' needs a session_name to attach to")
        return self

    @property
    def target(self) -> str:
        """The gRPC target ``host:port`` (IPv6 literals bracketed)."""
        host = self.address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"


class NidaqSettings(_Strict):
    """Settings of the NI-DAQmx backend: one hardware-timed AO task carrying every electrode and
    one AI task reading the transimpedance amplifier output(s), on one clock."""

    ao_channels: list[str] = Field(
        min_length=1,
        description="AO physical channel of each electrode, in the order of setup.electrodes "
        "(e.g. cDAQ1Mod1/ao0).",
    )
    ai_channel: str | None = Field(
        None, description="AI physical channel of the amplifier output (one current output)."
    )
    ai_channels: list[str] | None = Field(
        None,
        description="AI physical channels, one per entry of setup.outputs, in order (instead "
        "of ai_channel).",
    )
    ai_range_v: float = Field(
        10.0,
        gt=0,
        le=10.0,
        description="AI input range +/- (V); at least the amplifier's output swing.",
    )
    terminal_config: TerminalConfig = Field(
        "DEFAULT", description="AI terminal configuration: DEFAULT, RSE, NRSE, DIFF, PSEUDO_DIFF."
    )
    sync: SyncMode = Field(
        "start_trigger",
        description="'start_trigger': AO armed on the AI start trigger, both at the same rate; "
        "'ai_sample_clock': AO clocked from the AI sample clock (delta-sigma AI modules).",
    )
    trigger_device: str | None = Field(
        None,
        description="Device (cDAQ chassis, e.g. cDAQ1) whose /<device>/ai/StartTrigger or "
        "/<device>/ai/SampleClock terminal the AO uses; default: the terminal DAQmx reports "
        "for the reserved AI task, else the AI task's device (a C Series module's chassis).",
    )
    ao_margin_v: float = Field(
        0.01,
        ge=0,
        le=1.0,
        description="DAQmx AO channel limits are each electrode's [min_v, max_v] widened by "
        "this (V): a hardware layer under the safety layer's exact check.",
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Slack (s) on top of a record's duration before a read or wait times out.",
    )
    discard_first_samples: int = Field(
        0,
        ge=0,
        le=100_000,
        description="AI samples dropped at the start of each record (the ADC's group delay, "
        "in samples); the AO holds its last sample that much longer so records keep length.",
    )
    grpc: GrpcSettings | None = Field(
        None, description="NI gRPC Device Server to use instead of a local NI-DAQmx driver."
    )
    max_sample_rate_hz: float | None = Field(
        None,
        gt=0,
        le=ABSOLUTE_MAX_SAMPLE_RATE_HZ,
        allow_inf_nan=False,
        description="Fastest AO/AI rate (S/s per channel) the devices run both tasks at, from "
        "their data sheets or `labctl devices CONFIG`; setup.sample_rate_hz above it is refused "
        "at validation. Default: 1 MS/s (a generous ceiling; DAQmx refuses what the module "
        "cannot do when the tasks open).",
    )

    @model_validator(mode="after")
    def _one_ai_field(self) -> NidaqSettings:
        if (self.ai_channel is None) == (self.ai_channels is None):
            raise ValueError(
                "give either ai_channel (one output) or ai_channels (a list, one per output)"
            )
        if self.ai_channels is not None and not self.ai_channels:
            raise ValueError("ai_channels is empty; give one AI channel per current output")
        for channel in [*self.ao_channels, *self.ai_channel_list]:
            if not channel.strip() or "," in channel or ":" in channel.split("/")[-1]:
                raise ValueError(
                    f"channel {channel!r}: give one physical channel per entry (no lists or "
                    "ranges such as ao0:3)"
                )
        return self

    @property
    def rate_ceiling_hz(self) -> float:
        """The fastest ``setup.sample_rate_hz`` (Hz) validation accepts for these devices."""
        if self.max_sample_rate_hz is not None:
            return self.max_sample_rate_hz
        return DEFAULT_MAX_SAMPLE_RATE_HZ

    @property
    def ai_channel_list(self) -> list[str]:
        """The AI physical channels, one per current output."""
        if self.ai_channels is not None:
            return list(self.ai_channels)
        return [self.ai_channel] if self.ai_channel is not None else []
