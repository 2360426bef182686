"""``labctl sim-daq``: serve the simulated NI gRPC Device Server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from labctl.config import ConfigError
from simulated_hw.nidaq_server.server import serve


def run_sim_daq(args: argparse.Namespace) -> int:
    """Serve on 127.0.0.1 (``args.port``, 0: any free port) with ``args.config`` (None: cDAQ).

    Prints ``NI gRPC Device Server (simulated) listening on 127.0.0.1:PORT`` and serves until
    SIGINT or SIGTERM. Returns 0, or 2 when the configuration or the port is unusable.
    """
    config = getattr(args, "config", None)
    port = int(getattr(args, "port", 0) or 0)
    try:
        server = serve(config, port=port)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sim-daq: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"NI gRPC Device Server (simulated) listening on {server.address}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        server.stop()
    return 0
