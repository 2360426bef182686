"""``labctl sim-lockin`` and ``labctl sim-lab``: serve simulated instruments until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from labctl.config import ConfigError
from simulated_hw.lockin_server.lab import start_lab
from simulated_hw.lockin_server.server import DEFAULT_BENCH_CONFIG, bench_from_config, serve_lockin


def _serve_until_signal(lines: list[str]) -> None:
    """Print ``lines`` and block until SIGINT or SIGTERM.

    The handlers are installed before anything is printed, so a client that reacts to the
    printed addresses with an immediate interrupt still gets a clean shutdown.
    """
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for line in lines:
            print(line, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_sim_lockin(args: argparse.Namespace) -> int:
    """Serve one simulated lock-in (``args.model``: sr830|sr860) on its own bench.

    ``args.port`` (0: any free port) on 127.0.0.1; ``args.bench_config``: labctl YAML whose
    simulated bench it reads (None: ``configs/sim_dnpu.yaml``). Prints
    ``SR830 (simulated) listening on TCPIP::127.0.0.1::PORT::SOCKET`` and serves until SIGINT or
    SIGTERM. Returns 0, or 2 when the configuration or the port is unusable.
    """
    model = str(getattr(args, "model", "sr830") or "sr830")
    port = int(getattr(args, "port", 0) or 0)
    config = getattr(args, "bench_config", None) or DEFAULT_BENCH_CONFIG
    try:
        bench = bench_from_config(config)
        server = serve_lockin(model, bench=bench, port=port)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"sim-lockin: {exc}", file=sys.stderr)
        return 2
    try:
        _serve_until_signal(
            [f"{server.instrument.model} (simulated) listening on {server.resource}"]
        )
    finally:
        server.stop()
    return 0


def run_sim_lab(args: argparse.Namespace) -> int:
    """Serve the simulated NI gRPC server and lock-ins of ``args.config`` on one shared bench.

    Prints one address line per server and serves until SIGINT or SIGTERM. Returns 0, or 2
    when the configuration or a port is unusable.
    """
    try:
        lab = start_lab(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"sim-lab: {exc}", file=sys.stderr)
        return 2
    try:
        _serve_until_signal(lab.addresses())
    finally:
        lab.stop()
    return 0
