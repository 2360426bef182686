"""Start and stop the simulated NI gRPC Device Server (grpcio, localhost only)."""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path
from types import TracebackType

import grpc  # type: ignore[import-untyped, unused-ignore]
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc  # type: ignore[import-untyped, unused-ignore]

from simulated_hw.backend import bench_from_config
from simulated_hw.bench import SimBench
from simulated_hw.nidaq_server.config import SimDaqConfig, load_sim_daq_config
from simulated_hw.nidaq_server.daq import SimDaq
from simulated_hw.nidaq_server.servicer import SimDaqServicer

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_WORKERS = 32
"""gRPC worker threads: blocking reads and waits each hold one."""
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""Largest request accepted (B): big AO writes exceed gRPC's 4 MB default. Clients reading
more than 4 MB at once must raise their own limit (``grpc.max_receive_message_length``)."""


def build_bench(config: SimDaqConfig) -> SimBench:
    """The bench described by ``config.bench``: ``make_bench`` on the labctl config it names.

    Raises:
        ConfigError: If the labctl configuration does not load or is not ``backend: simulated``.
    """
    section = config.bench
    overrides = dict(section.settings)
    if section.realtime is not None:
        overrides["realtime"] = section.realtime
    return bench_from_config(Path(section.config), overrides)


class SimDaqServer:
    """A running simulated NI gRPC Device Server on ``127.0.0.1``.

    Attributes:
        address: ``"127.0.0.1:PORT"`` (give it to ``grpc.insecure_channel``).
        port: The TCP port.
        bench: The shared bench the wired channels drive and read.
        config: The server configuration.
        daq: The simulated driver behind the servicer.
        calls: Name of every RPC received, in order (the command log).

    Args:
        config: Validated configuration.
        port: TCP port (0: any free port).
        bench: A bench to share (built from ``config.bench`` when None).
        tls: ``(private_key_pem, certificate_chain_pem)`` to serve over TLS (None: plaintext).
    """

    def __init__(
        self,
        config: SimDaqConfig,
        *,
        port: int = 0,
        bench: SimBench | None = None,
        tls: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.config = config
        self.bench = bench if bench is not None else build_bench(config)
        self.daq = SimDaq(config, self.bench)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="sim-daq"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        )
        servicer = SimDaqServicer(self.daq)
        self.calls = servicer.calls
        pb_grpc.add_NiDAQmxServicer_to_server(servicer, self._server)
        if tls is None:
            bound = self._server.add_insecure_port(f"{HOST}:{int(port)}")
        else:
            credentials = grpc.ssl_server_credentials([tls])
            bound = self._server.add_secure_port(f"{HOST}:{int(port)}", credentials)
        if not bound:
            raise OSError(f"cannot bind the simulated NI gRPC Device Server to {HOST}:{port}")
        self.port = int(bound)
        self.address = f"{HOST}:{self.port}"
        self._server.start()
        self._stopped = False
        logger.info("simulated NI gRPC Device Server listening on %s", self.address)

    def stop(self, grace_s: float = 0.0) -> None:
        """Stop serving: runs stop at a chunk boundary, tasks are cleared, electrodes hold."""
        if self._stopped:
            return
        self._stopped = True
        self.daq.shutdown()
        self._server.stop(grace_s).wait()
        logger.info("simulated NI gRPC Device Server on %s stopped", self.address)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the server terminates (True) or ``timeout_s`` passes (False)."""
        return bool(self._server.wait_for_termination(timeout_s))

    def __enter__(self) -> SimDaqServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    config: SimDaqConfig | str | Path | None = None,
    *,
    port: int = 0,
    bench: SimBench | None = None,
    tls: tuple[bytes, bytes] | None = None,
) -> SimDaqServer:
    """Start a simulated NI gRPC Device Server in background threads and return at once.

    Args:
        config: A configuration, the path of a server YAML, or None for the shipped
            cDAQ-9178 (``configs/sim_daq/cdaq9178.yaml``).
        port: TCP port on 127.0.0.1 (0: any free port).
        bench: A bench to share with other simulated instruments (default: built from the
            configuration's ``bench`` section).
        tls: ``(private_key_pem, certificate_chain_pem)`` to serve over TLS (None: plaintext).

    Raises:
        ConfigError: The configuration does not load.
        OSError: The port cannot be bound.
    """
    if not isinstance(config, SimDaqConfig):
        config = load_sim_daq_config(config)
    return SimDaqServer(config, port=port, bench=bench, tls=tls)
