"""Where DAQmx calls go: the local NI-DAQmx driver, or an NI gRPC Device Server.

With ``grpc`` settings, one ``grpc.Channel`` (plaintext, TLS from PEM files, or TLS from the
machine's NI TLS configuration through ``nitlsconfig``) is opened per instrument and wrapped in
:class:`nidaqmx.GrpcSessionOptions` for each task. :func:`diagnose` says exactly why a server
cannot be used: nothing listens at the address (TCP connect fails), the TLS handshake was
refused, or the server is not an NI-DAQmx gRPC server.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from drivers.nidaq.errors import NidaqConnectionError, NidaqDriverMissing, translate
from drivers.nidaq.settings import GrpcSettings

SYSTEM_INFO_MAJOR_VERSION = 0x1272
"""DAQmx attribute id of the driver's major version (a harmless first RPC)."""


def import_nidaqmx() -> Any:
    """The ``nidaqmx`` module, or :class:`NidaqDriverMissing` saying how to install it."""
    try:
        import nidaqmx  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise NidaqDriverMissing(
            f"the nidaqmx Python package is not installed ({exc}); install labctl's hardware "
            "extra: pip install 'labctl[hardware]'"
        ) from exc
    return nidaqmx


def describe(grpc_settings: GrpcSettings | None) -> str:
    """Where DAQmx calls go, in words (for messages and identities)."""
    if grpc_settings is None:
        return "local NI-DAQmx"
    tls = "" if grpc_settings.tls is None else f", TLS ({grpc_settings.tls.source})"
    return f"NI gRPC Device Server at {grpc_settings.target}{tls}"


def open_channel(grpc_settings: GrpcSettings) -> Any:
    """A new ``grpc.Channel`` to the server (owned by the caller: close it).

    Raises:
        NidaqConnectionError: The TLS material could not be read or the NI TLS configuration
            is unusable.
        NidaqDriverMissing: grpcio is not installed.
    """
    try:
        import grpc  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise NidaqDriverMissing(
            f"grpcio is not installed ({exc}); install nidaqmx with its gRPC extra: "
            "pip install 'nidaqmx[grpc]'"
        ) from exc
    tls = grpc_settings.tls
    options: list[tuple[str, Any]] = []
    if tls is not None and tls.target_name_override:
        options.append(("grpc.ssl_target_name_override", tls.target_name_override))
    if tls is None:
        return grpc.insecure_channel(grpc_settings.target, options=options)
    if tls.source == "ni_tls":
        try:
            import nitlsconfig

            return nitlsconfig.create_grpc_device_channel(
                grpc_settings.address.strip("[]"), grpc_settings.port, options=options
            )
        except Exception as exc:
            raise NidaqConnectionError(
                f"TLS for {grpc_settings.target}: the NI TLS configuration of this computer "
                f"cannot be used ({exc}); configure certificates in NI Hardware Manager or use "
                "grpc.tls.source: files"
            ) from exc
    try:
        root = tls.root_certificates.read_bytes() if tls.root_certificates else None
        chain = tls.certificate_chain.read_bytes() if tls.certificate_chain else None
        key = tls.private_key.read_bytes() if tls.private_key else None
    except OSError as exc:
        raise NidaqConnectionError(
            f"TLS for {grpc_settings.target}: cannot read a certificate file ({exc})"
        ) from exc
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )
    return grpc.secure_channel(grpc_settings.target, credentials, options=options)


def session_options(grpc_settings: GrpcSettings, channel: Any, task_name: str) -> Any:
    """``nidaqmx.GrpcSessionOptions`` for one task on ``channel`` (session named as the task)."""
    nidaqmx = import_nidaqmx()
    behaviour = {
        "auto": nidaqmx.SessionInitializationBehavior.AUTO,
        "initialize": nidaqmx.SessionInitializationBehavior.INITIALIZE_SERVER_SESSION,
        "attach": nidaqmx.SessionInitializationBehavior.ATTACH_TO_SERVER_SESSION,
    }[grpc_settings.initialization]
    kwargs: dict[str, Any] = {"initialization_behavior": behaviour}
    try:
        api_key = grpc_settings.resolved_api_key()
    except ValueError as exc:
        raise NidaqConnectionError(str(exc)) from None
    if api_key is not None:
        kwargs["api_key"] = api_key
    return nidaqmx.GrpcSessionOptions(channel, task_name, **kwargs)


@dataclass(frozen=True)
class Diagnosis:
    """Whether a server can be used, and if not why.

    Attributes:
        ok: The server answered an NI-DAQmx RPC.
        reason: Why not (empty when ``ok``), worded for the user.
    """

    ok: bool
    reason: str = ""


def tcp_reachable(host: str, port: int, timeout_s: float) -> str:
    """ "" if something accepts TCP connections at ``host:port``, else why not."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout_s):
            return ""
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except ConnectionRefusedError:
        return "connection refused (nothing listens on that port)"
    except socket.gaierror as exc:
        return f"host name not found ({exc.strerror or exc})"
    except OSError as exc:
        return exc.strerror or str(exc)


def diagnose(grpc_settings: GrpcSettings, channel: Any | None = None) -> Diagnosis:
    """Try the server: TCP, then the gRPC channel (with its TLS), then one DAQmx RPC.

    Args:
        grpc_settings: Where the server is.
        channel: A channel to test (default: a new one, closed afterwards).
    """
    target = grpc_settings.target
    timeout = grpc_settings.connect_timeout_s
    why = tcp_reachable(grpc_settings.address, grpc_settings.port, timeout)
    if why:
        return Diagnosis(
            False,
            f"NI gRPC Device Server unreachable at {target}: {why}. Start the server "
            f"(`labctl sim-daq --port {grpc_settings.port}` for the simulated one), or check "
            "grpc.address, grpc.port and the firewall",
        )
    import grpc

    own = channel is None
    try:
        if channel is None:
            channel = open_channel(grpc_settings)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            if grpc_settings.tls is not None:
                return Diagnosis(
                    False,
                    f"TLS refused at {target}: the port accepts TCP connections but the TLS "
                    "handshake failed (the server may not use TLS, or does not trust this "
                    "client's certificate, or its certificate does not match root_certificates "
                    "/ target_name_override)",
                )
            return Diagnosis(
                False,
                f"the server at {target} accepts TCP connections but not a plaintext gRPC "
                "session: it probably requires TLS (set grpc.tls), or it is not a gRPC server",
            )
        return _probe_rpc(grpc_settings, channel)
    except NidaqConnectionError as exc:
        return Diagnosis(False, str(exc))
    finally:
        if own and channel is not None:
            channel.close()


def _probe_rpc(grpc_settings: GrpcSettings, channel: Any) -> Diagnosis:
    """One DAQmx RPC through the public API: a Task created and cleared at once."""
    nidaqmx = import_nidaqmx()
    target = grpc_settings.target
    try:
        options = session_options(grpc_settings, channel, "")
        system = nidaqmx.system.System.remote(options)
        system.devices.device_names  # noqa: B018 - the RPC is the point
    except Exception as exc:
        code = getattr(getattr(exc, "rpc_code", None), "name", "")
        if code == "UNIMPLEMENTED":
            return Diagnosis(
                False,
                f"the gRPC server at {target} answers but does not serve NI-DAQmx (no "
                "NiDAQmx service): point grpc.port at an NI gRPC Device Server",
            )
        return Diagnosis(
            False, str(translate(exc, "listing devices", where=describe(grpc_settings)))
        )
    return Diagnosis(True)
