"""Serve a simulated lock-in on a local TCP port, as a raw-socket VISA resource.

pyvisa with the pyvisa-py backend reaches it as ``TCPIP::127.0.0.1::PORT::SOCKET``; open it with
``read_termination="\\n"`` (raw sockets have no END indicator: without a read termination every
read times out). Lines may end in ``\\n``, ``\\r\\n`` or ``\\r``; every reply is one line ending in
``\\n`` (binary blocks are followed by ``\\n`` too). One client is served at a time; the next one
is accepted as soon as it disconnects.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from pathlib import Path
from types import TracebackType

from simulated_hw.backend import bench_from_config
from simulated_hw.bench import SimBench
from simulated_hw.lockin_server.instrument import SimLockin
from simulated_hw.lockin_server.protocol import split_lines
from simulated_hw.lockin_server.sr830 import SR830
from simulated_hw.lockin_server.sr860 import SR860

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
"""The servers bind to the loopback interface only."""
MODELS: dict[str, type[SimLockin]] = {"sr830": SR830, "sr860": SR860}
"""Simulated models by name."""
DEFAULT_BENCH_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim_dnpu.yaml"
"""labctl configuration whose simulated bench a lock-in reads when none is given."""
_POLL_S = 0.05
_MAX_LINE_BYTES = 1 << 20


class LockinServer:
    """A simulated SR830 or SR860 listening on ``127.0.0.1`` (start it with :func:`serve_lockin`).

    Attributes:
        host: ``"127.0.0.1"``.
        port: The TCP port.
        resource: The VISA resource name, ``"TCPIP::127.0.0.1::PORT::SOCKET"``.
        model: ``"sr830"`` or ``"sr860"``.
        bench: The bench it reads (and drives, with its sine output).
        instrument: The simulated instrument behind the socket.
        commands: Every command line received, in order (terminators stripped).
        unresponsive: Fault injection: while set, commands are received (and logged) but
            neither executed nor answered, as by a hung instrument; a client's reads time out.
    """

    def __init__(self, model: str, instrument: SimLockin, listener: socket.socket) -> None:
        self.model = model
        self.instrument = instrument
        self.bench = instrument.bench
        self.host, self.port = listener.getsockname()[:2]
        self.resource = f"TCPIP::{self.host}::{self.port}::SOCKET"
        self.commands: list[str] = []
        self.unresponsive = threading.Event()
        self._listener = listener
        self._stop = threading.Event()
        self._client: socket.socket | None = None
        self._client_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._serve, name=f"sim-{model}-{self.port}", daemon=True
        )
        self._thread.start()
        logger.info("simulated %s listening on %s", instrument.model, self.resource)

    @property
    def external_reference_hz(self) -> float | None:
        """Frequency (Hz) of ``sin(2π f t + φ)`` on REF IN (None: nothing connected)."""
        return self.instrument.external_reference_hz

    @external_reference_hz.setter
    def external_reference_hz(self, frequency_hz: float | None) -> None:
        self.instrument.external_reference_hz = frequency_hz

    def set_external_reference(self, frequency_hz: float | None, phase_rad: float = 0.0) -> None:
        """Connect ``sin(2π f t + phase_rad)`` (t: the bench's simulated time, s) to REF IN."""
        self.instrument.set_external_reference(frequency_hz, phase_rad)

    def trigger(self) -> None:
        """A pulse on the rear-panel TRIG IN now (starts an armed buffer/capture, or one point).

        With ``instrument.trigger_on_record`` (default True) every bench record start is also
        a pulse, as when the DAQ's start trigger is wired to TRIG IN.
        """
        self.instrument.trigger()

    def stop(self) -> None:
        """Close the connection and the port, and power the unit down (its sine goes off)."""
        if self._stop.is_set():
            return
        self._stop.set()
        with self._client_lock:
            if self._client is not None:
                with contextlib.suppress(OSError):
                    self._client.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5.0)
        self._listener.close()
        self.instrument.close()
        logger.info("simulated %s on %s stopped", self.instrument.model, self.resource)

    def __enter__(self) -> LockinServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(timeout=_POLL_S):
                    continue
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                with self._client_lock:
                    self._client = conn
                try:
                    self._handle(conn)
                except OSError as exc:
                    logger.info("%s: connection ended: %s", self.resource, exc)
                except Exception:
                    logger.exception("%s: the simulated instrument failed", self.resource)
                finally:
                    with self._client_lock:
                        self._client = None
                    conn.close()

    def _handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(conn, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(timeout=_POLL_S):
                    continue
                data = conn.recv(65536)
                if not data:
                    return
                lines, pending = split_lines(pending + data)
                if len(pending) > _MAX_LINE_BYTES:
                    logger.warning("%s: dropping an over-long line", self.resource)
                    pending = b""
                for raw in lines:
                    line = raw.decode("ascii", errors="replace").strip()
                    self.commands.append(line)
                    if self.unresponsive.is_set():  # fault injection: a hung instrument
                        continue
                    for reply in self.instrument.handle_line(line):
                        conn.sendall(reply)


def serve_lockin(
    model: str,
    *,
    bench: SimBench | None = None,
    port: int = 0,
    sine_electrode: int | None = None,
    input_signal: str = "tia",
) -> LockinServer:
    """Start a simulated lock-in on ``127.0.0.1:port`` in a background thread and return at once.

    Args:
        model: ``"sr830"`` or ``"sr860"`` (case-insensitive).
        bench: The bench to read (shared with the DAQ that drives it); None: a fresh bench
            from ``configs/sim_dnpu.yaml``.
        port: TCP port (0: any free port).
        sine_electrode: Electrode index the sine output is wired to (None: not wired).
        input_signal: What the voltage input reads: ``"tia"`` (amplifier output),
            ``"adc"`` or ``"electrode:N"``; current mode reads the measured current.

    Raises:
        ValueError: Unknown model, electrode or input signal.
        OSError: The port cannot be bound.
    """
    key = model.lower()
    if key not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    if bench is None:
        bench = bench_from_config(DEFAULT_BENCH_CONFIG)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, int(port)))
        listener.listen(4)
        bound_port = listener.getsockname()[1]
        instrument = MODELS[key](
            bench,
            sine_electrode=sine_electrode,
            input_signal=input_signal,
            sine_key=f"{key}@{HOST}:{bound_port}",
        )
    except BaseException:
        listener.close()
        raise
    return LockinServer(key, instrument, listener)
