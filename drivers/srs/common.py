"""What the SRS lock-in drivers share: errors, validated index tables, identity, the transport.

Nothing here imports ``pyvisa`` at module level: a configuration naming an SRS backend
validates on a computer without it, and the transport works with any object that has
pyvisa's ``write``/``read``/``close`` (the tests hand it a scripted fake).

Units: volts, amperes, seconds, hertz, degrees (phase).
"""

from __future__ import annotations

import logging
import math
import re
import select
import socket
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from labctl.device.types import BackendError

log = logging.getLogger(__name__)

FORBIDDEN_COMMANDS = frozenset({"*RST"})
"""Commands the transport refuses to send. ``*RST`` restores the factory defaults, among them a
non-zero sine output (about 1 V rms on an SR830) onto whatever is connected: never a safe
action with a sample attached."""


# -- errors ------------------------------------------------------------------------------------
class LockinError(BackendError):
    """A lock-in operation failed; the message says what happened and what to do.

    Attributes:
        resource: The VISA resource string of the instrument ("" when not known).
    """

    def __init__(self, message: str, resource: str = "") -> None:
        super().__init__(message)
        self.resource = resource


class LockinConnectionError(LockinError):
    """No connection: nothing listens, the connection was closed or lost, no VISA library."""


class LockinTimeout(LockinError):
    """The instrument did not answer a query within the timeout."""


class LockinIdentityError(LockinError):
    """The instrument at the resource is not the model the driver (or ``expect_model``) needs."""


class LockinProtocolError(LockinError):
    """A reply that makes no sense for its query (wrong format, out of step after a timeout)."""


class LockinCommandError(LockinError):
    """The instrument flagged an error in its status registers after a command.

    Attributes:
        bits: Names of the error bits that were set (e.g. ``("EXE",)``).
        commands: The commands sent since the previous check.
    """

    def __init__(
        self,
        message: str,
        resource: str = "",
        bits: tuple[str, ...] = (),
        commands: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, resource)
        self.bits = bits
        self.commands = commands


class LockinValueError(LockinError, ValueError):
    """A value the instrument cannot take; it was refused before any command was sent."""


class LockinAutoRangeError(LockinError):
    """An auto-range helper found no setting that fits the signal."""


# -- values ------------------------------------------------------------------------------------
_PREFIXES = ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""))


def format_si(value: float, unit: str) -> str:
    """``value`` with an SI prefix, e.g. ``format_si(2e-9, "V") == "2 nV"``; ks for seconds."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    magnitude = abs(value)
    if magnitude >= 1e3 and unit in ("s", "Hz"):
        scale, prefix = (1e6, "M") if magnitude >= 1e6 else (1e3, "k")
        return f"{value / scale:.4g} {prefix}{unit}"
    scale, prefix = _PREFIXES[0]
    for candidate_scale, candidate_prefix in _PREFIXES:
        if magnitude >= candidate_scale * (1 - 1e-9):
            scale, prefix = candidate_scale, candidate_prefix
    return f"{value / scale:.4g} {prefix}{unit}"


def format_number(value: float) -> str:
    """A float as the instruments read it: up to 10 significant digits, no trailing zeros."""
    text = f"{value:.10g}"
    return "0" if text in ("-0", "0") else text


def decade_table(
    mantissas: Sequence[str], count: int, exponent_of: int, step: int = 1
) -> tuple[float, ...]:
    """Values ``mantissa[i % n] × 10^(sign·(i // n) + exponent_of)`` for ``i`` in ``range(count)``.

    ``step`` is +1 for tables that grow with the index and -1 for tables that shrink. Computed
    in decimal so that every entry is the float nearest its printed value (2e-9, not
    2.0000000000000004e-09).
    """
    n = len(mantissas)
    return tuple(
        float(Decimal(mantissas[i % n]).scaleb(step * (i // n) + exponent_of)) for i in range(count)
    )


@dataclass(frozen=True)
class IndexTable:
    """A setting the instrument takes as an index into a table of values.

    Attributes:
        name: What the setting is, for messages ("sensitivity").
        unit: Unit of the values ("V", "A", "s").
        values: The value of every index, in index order.
        rel_tol: Relative tolerance within which a value matches an entry.
    """

    name: str
    unit: str
    values: tuple[float, ...]
    rel_tol: float = 1e-6

    @property
    def smallest(self) -> float:
        """The smallest entry."""
        return min(self.values)

    @property
    def largest(self) -> float:
        """The largest entry."""
        return max(self.values)

    def scaled(self, factor: float, unit: str) -> IndexTable:
        """The same table with every value multiplied by ``factor`` (in ``unit``)."""
        values = tuple(float(Decimal(repr(v)) * Decimal(repr(factor))) for v in self.values)
        return IndexTable(self.name, unit, values, self.rel_tol)

    def describe(self, value: float) -> str:
        """``value`` in this table's unit, for messages."""
        return format_si(value, self.unit)

    def _range_text(self) -> str:
        return f"{self.describe(self.smallest)} … {self.describe(self.largest)}"

    def _check_number(self, value: float) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise LockinValueError(
                f"{self.name} {value!r}: give a positive number of {self.unit} "
                f"({self._range_text()})"
            )

    def index_of(self, value: float) -> int:
        """The index whose entry equals ``value`` within ``rel_tol``.

        Raises:
            LockinValueError: ``value`` is not in the table (the message names its neighbours
                and the ``*_at_least`` helper).
        """
        self._check_number(value)
        for index, entry in enumerate(self.values):
            if abs(value - entry) <= self.rel_tol * entry:
                return index
        if value > self.largest * (1 + self.rel_tol) or value < self.smallest * (1 - self.rel_tol):
            raise LockinValueError(
                f"{self.name} {self.describe(value)} is out of range: the instrument offers "
                f"{self._range_text()}"
            )
        below = max(v for v in self.values if v < value)
        above = min(v for v in self.values if v > value)
        raise LockinValueError(
            f"{self.name} {self.describe(value)} is not one of the instrument's settings; the "
            f"nearest are {self.describe(below)} and {self.describe(above)}. Give one of those, "
            f"or use {self.name.replace(' ', '_')}_at_least() to take the smallest setting at "
            "or above a value"
        )

    def index_at_least(self, value: float) -> int:
        """The index of the smallest entry ≥ ``value`` (within ``rel_tol``).

        Raises:
            LockinValueError: ``value`` is above the largest entry.
        """
        self._check_number(value)
        fitting = [
            (entry, index)
            for index, entry in enumerate(self.values)
            if entry >= value * (1 - self.rel_tol)
        ]
        if not fitting:
            raise LockinValueError(
                f"{self.name} {self.describe(value)} is above the largest setting, "
                f"{self.describe(self.largest)}"
            )
        return min(fitting)[1]

    def value(self, index: int) -> float:
        """The entry of ``index``.

        Raises:
            LockinProtocolError: No such index (a reply the instrument should not give).
        """
        if not 0 <= index < len(self.values):
            raise LockinProtocolError(
                f"{self.name} index {index} is outside 0…{len(self.values) - 1}: the reply "
                "does not fit this model (wrong driver, or the connection is out of step)"
            )
        return self.values[index]

    def sorted_indices(self) -> list[int]:
        """Indices in order of increasing value."""
        return sorted(range(len(self.values)), key=lambda i: self.values[i])


def check_range(name: str, value: float, low: float, high: float, unit: str, why: str = "") -> None:
    """Raise :class:`LockinValueError` unless ``low <= value <= high``."""
    if not (isinstance(value, int | float) and math.isfinite(value)):
        raise LockinValueError(f"{name} {value!r}: give a finite number of {unit}")
    if not low <= value <= high:
        detail = f" ({why})" if why else ""
        raise LockinValueError(
            f"{name} {format_si(value, unit)} is outside "
            f"{format_si(low, unit)} … {format_si(high, unit)}{detail}"
        )


def choose(name: str, value: object, allowed: Sequence[object]) -> int:
    """The position of ``value`` in ``allowed``, or a :class:`LockinValueError` listing them."""
    for position, candidate in enumerate(allowed):
        if value == candidate and type(value) is not bool:
            return position
    listed = ", ".join(repr(a) for a in allowed)
    raise LockinValueError(f"{name} {value!r} is not one of {listed}")


# -- identity ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """What ``*IDN?`` says.

    Attributes:
        manufacturer: e.g. ``Stanford_Research_Systems``.
        model: e.g. ``SR830``, ``SR865A``.
        serial: Serial number (without an ``s/n`` prefix).
        firmware: Firmware version as given (``ver1.07``, ``v1.47``).
        raw: The whole reply.
    """

    manufacturer: str
    model: str
    serial: str
    firmware: str
    raw: str

    @classmethod
    def parse(cls, reply: str) -> Identity | None:
        """The identity in an ``*IDN?`` reply, or None when it has not four fields."""
        parts = [p.strip() for p in reply.strip().split(",")]
        if len(parts) != 4 or not parts[1]:
            return None
        serial = re.sub(r"^s/n", "", parts[2], flags=re.IGNORECASE)
        return cls(parts[0], parts[1].upper(), serial, parts[3], reply.strip())

    def as_dict(self) -> dict[str, str]:
        """JSON-compatible form."""
        return {
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "firmware": self.firmware,
        }


# -- transport ---------------------------------------------------------------------------------
class ResourceLike(Protocol):
    """What the transport needs of a pyvisa message-based resource."""

    def write(self, message: str) -> int:
        """Send one command (the resource adds the write termination)."""
        ...

    def read(self) -> str:
        """One reply, without its termination."""
        ...

    def close(self) -> None:
        """Release the session."""
        ...


_MNEMONIC = re.compile(r"(?:^|;)\s*(\*?[A-Za-z]+)")
"""The mnemonic of every ``;``-separated command of a program message."""

_SOCKET = re.compile(r"^TCPIP\d*::(?P<host>[^:]+)::(?P<port>\d+)::SOCKET$", re.IGNORECASE)


def socket_address(resource: str) -> str | None:
    """``host:port`` of a ``TCPIP::host::port::SOCKET`` resource string, else None."""
    match = _SOCKET.match(resource.strip())
    return f"{match['host']}:{match['port']}" if match else None


def _timeout_code() -> int | None:
    try:
        from pyvisa import constants
    except ImportError:  # pragma: no cover - pyvisa comes with every caller that opens
        return None
    return int(constants.StatusCode.error_timeout)


def _socket_closed_by_peer(resource: object) -> bool:
    """Whether the socket behind a pyvisa-py TCPIP SOCKET session was closed by the other end.

    pyvisa-py reports a closed peer as a timeout (its read loop sees no data until the
    deadline); this tells the two apart. False whenever the resource is anything else.
    """
    try:
        sessions = getattr(getattr(resource, "visalib", None), "sessions", None)
        if not isinstance(sessions, dict):
            return False
        sock = getattr(sessions.get(getattr(resource, "session", None)), "interface", None)
        if not isinstance(sock, socket.socket):
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
    except Exception:
        return False


class Transport:
    """One instrument connection: commands out, replies in, failures as :class:`LockinError`.

    Thread-safe: a query's write and read happen under one lock; callers that need several
    commands in a row without interleaving hold :attr:`lock`.

    After a timeout the late reply would answer the next query (pyvisa-py keeps it in its
    buffer), so the transport refuses further queries until reopened; writes are still
    allowed, so that the instrument can be put in its safe state before closing.
    """

    def __init__(self, resource: ResourceLike, name: str, timeout_s: float) -> None:
        """Wrap an open ``resource``; ``name`` is its resource string, ``timeout_s`` (s) its
        read timeout (for messages)."""
        self._resource = resource
        self.name = name
        self.timeout_s = timeout_s
        self.lock = threading.RLock()
        self._closed = False
        self._broken: str | None = None
        self._out_of_step: str | None = None
        self._since_check: deque[str] = deque(maxlen=64)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def in_step(self) -> bool:
        """False after a timeout: a late reply may be waiting to answer the next query."""
        return self._out_of_step is None

    @property
    def resource(self) -> ResourceLike:
        """The wrapped resource."""
        return self._resource

    def take_commands(self) -> tuple[str, ...]:
        """The commands written since the previous call (the last 64; for error reports)."""
        with self.lock:
            taken = tuple(self._since_check)
            self._since_check.clear()
            return taken

    def _where(self) -> str:
        address = socket_address(self.name)
        return f"{self.name} ({address})" if address else self.name

    def _usable(self, command: str) -> None:
        if self._closed:
            raise LockinConnectionError(
                f"the connection to {self.name} is closed; open the instrument again "
                f"(cannot send {command!r})",
                self.name,
            )
        if self._broken is not None:
            raise LockinConnectionError(
                f"the connection to {self.name} failed earlier ({self._broken}); close and "
                f"reopen it (cannot send {command!r})",
                self.name,
            )

    def write(self, command: str) -> None:
        """Send ``command``.

        Raises:
            LockinError: Refused (``*RST``), closed, or the connection failed.
        """
        mnemonics = {m.group(1).upper() for m in _MNEMONIC.finditer(command)}
        if mnemonics & FORBIDDEN_COMMANDS:
            raise LockinError(
                f"refusing to send {command!r} to {self.name}: it restores a non-zero sine "
                "output; put the instrument in its safe state with safe_state() instead",
                self.name,
            )
        with self.lock:
            self._usable(command)
            log.debug("%s <- %s", self.name, command)
            try:
                self._resource.write(command)
            except Exception as exc:
                raise self._translate(exc, command) from exc
            self._since_check.append(command)

    def query(self, command: str) -> str:
        """Send ``command`` and return the reply (stripped).

        Raises:
            LockinTimeout: No reply within the timeout (or an earlier one timed out).
            LockinConnectionError: Closed, refused or lost connection.
        """
        with self.lock:
            if self._out_of_step is not None and not self._closed:
                raise LockinTimeout(
                    f"an earlier query to {self.name} ({self._out_of_step}) timed out; its late "
                    "reply would answer the next one, so close and reopen the connection "
                    f"before sending {command!r}",
                    self.name,
                )
            self.write(command)
            try:
                reply = self._resource.read()
            except Exception as exc:
                raise self._translate(exc, command) from exc
            log.debug("%s -> %s", self.name, reply.strip())
            return reply.strip()

    def query_float(self, command: str) -> float:
        """The reply to ``command`` as one float."""
        return self.query_floats(command, 1)[0]

    def query_int(self, command: str) -> int:
        """The reply to ``command`` as one integer."""
        reply = self.query(command)
        try:
            return int(reply)
        except ValueError:
            pass
        try:
            number = float(reply)
        except ValueError:
            raise self.bad_reply(command, reply, "an integer") from None
        if not number.is_integer():
            raise self.bad_reply(command, reply, "an integer")
        return int(number)

    def query_floats(self, command: str, count: int) -> tuple[float, ...]:
        """The reply to ``command`` as ``count`` comma-separated floats."""
        reply = self.query(command)
        parts = reply.split(",")
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise self.bad_reply(command, reply, f"{count} number(s)") from None
        if len(values) != count or not all(math.isfinite(v) for v in values):
            raise self.bad_reply(command, reply, f"{count} number(s)")
        return values

    def query_binary_floats(self, command: str) -> list[float]:
        """The IEEE 488.2 definite-length block of little-endian float32 that ``command``
        returns, read with pyvisa's ``query_binary_values(command, datatype="f",
        is_big_endian=False)``.

        Raises:
            LockinError: The resource cannot read binary blocks (not a pyvisa resource).
            LockinTimeout: No reply within the timeout (or an earlier one timed out).
            LockinProtocolError: The reply is not such a block; the connection is then out of
                step (the rest of the block may still be waiting).
            LockinConnectionError: Closed, refused or lost connection.
        """
        with self.lock:
            if self._out_of_step is not None and not self._closed:
                raise LockinTimeout(
                    f"an earlier query to {self.name} ({self._out_of_step}) timed out; its late "
                    "reply would answer the next one, so close and reopen the connection "
                    f"before sending {command!r}",
                    self.name,
                )
            self._usable(command)
            reader = getattr(self._resource, "query_binary_values", None)
            if reader is None:
                raise LockinError(
                    f"{self.name}: the resource ({type(self._resource).__name__}) cannot read "
                    f"binary blocks, which {command!r} returns; open the instrument by its VISA "
                    "resource string",
                    self.name,
                )
            log.debug("%s <- %s (binary block)", self.name, command)
            try:
                values = reader(command, datatype="f", is_big_endian=False)
            except ValueError as exc:
                self._out_of_step = repr(command)
                raise LockinProtocolError(
                    f"{self.name} answered {command!r} with something that is not an IEEE "
                    f"488.2 block of float32 ({exc}); the connection is out of step: close "
                    "and reopen it",
                    self.name,
                ) from exc
            except Exception as exc:
                raise self._translate(exc, command) from exc
            finally:
                self._since_check.append(command)
            return [float(v) for v in values]

    def bad_reply(self, command: str, reply: str, wanted: str) -> LockinProtocolError:
        """The error for a reply to ``command`` that is not ``wanted`` (e.g. "0 or 1")."""
        return LockinProtocolError(
            f"{self.name} answered {command!r} with {reply!r}, not {wanted}: the connection may "
            "be out of step (a late reply to an earlier query) or the instrument is another "
            "model; close and reopen it",
            self.name,
        )

    def close(self) -> None:
        """Close the resource (idempotent; errors are logged, not raised)."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._resource.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", self.name, exc)

    def _translate(self, exc: BaseException, command: str) -> LockinError:
        if isinstance(exc, LockinError):
            return exc
        where = self._where()
        address = socket_address(self.name)
        if isinstance(exc, ConnectionRefusedError):
            self._broken = "connection refused"
            target = f"nothing listens at {address}" if address else f"{self.name} refused"
            return LockinConnectionError(
                f"{target} ({self.name}): start the instrument (or the simulated one) and check "
                f"the host and port; sending {command!r} failed",
                self.name,
            )
        if isinstance(exc, BrokenPipeError | ConnectionResetError | ConnectionAbortedError):
            self._broken = "connection closed by the instrument"
            return LockinConnectionError(
                f"the connection to {where} was closed by the instrument while sending "
                f"{command!r} ({type(exc).__name__}); check that it is on, then reopen",
                self.name,
            )
        code = getattr(exc, "error_code", None)
        if code is not None and code == _timeout_code():
            if _socket_closed_by_peer(self._resource):
                self._broken = "connection closed by the instrument"
                return LockinConnectionError(
                    f"the connection to {where} was closed by the instrument (no reply to "
                    f"{command!r}); check that it (or the simulated instrument) still runs, "
                    "then reopen",
                    self.name,
                )
            self._out_of_step = repr(command)
            return LockinTimeout(
                f"no answer within {self.timeout_s:g} s from {where} to {command!r}: check the "
                "cable/address, or raise timeout_s",
                self.name,
            )
        if type(exc).__name__ == "InvalidSession":
            self._broken = "the VISA session is closed"
            return LockinConnectionError(
                f"the VISA session of {self.name} is closed; reopen the instrument", self.name
            )
        if isinstance(exc, OSError):
            self._broken = f"{type(exc).__name__}: {exc}"
            return LockinConnectionError(
                f"the connection to {where} failed while sending {command!r} "
                f"({type(exc).__name__}: {exc}); check the cable and the address, then reopen",
                self.name,
            )
        if code is not None:
            self._broken = f"VISA error {code}"
            return LockinConnectionError(
                f"VISA error on {where} while sending {command!r}: {exc}; check the resource "
                "string and that the instrument is on",
                self.name,
            )
        return LockinError(f"{where}: {command!r} failed ({type(exc).__name__}: {exc})", self.name)


def open_visa_resource(
    resource: str,
    *,
    visa_library: str,
    timeout_s: float,
    read_termination: str,
    write_termination: str = "\n",
) -> ResourceLike:
    """Open ``resource`` through ``pyvisa.ResourceManager(visa_library)``.

    Sets the read timeout (``timeout_s``, s) and both terminations (a raw TCPIP SOCKET has
    no END indicator: without a read termination every read would time out). Opening a
    SOCKET resource with nothing listening "succeeds": the caller must probe it.

    Raises:
        LockinConnectionError: No pyvisa, no such VISA library, no such resource.
    """
    try:
        import pyvisa
        from pyvisa.resources import MessageBasedResource
    except ImportError as exc:
        raise LockinConnectionError(
            f"pyvisa is not installed ({exc}): install it with `pip install pyvisa pyvisa-py` "
            "(or the 'hardware' extra of labctl)",
            resource,
        ) from exc
    try:
        manager = pyvisa.ResourceManager(visa_library)
    except Exception as exc:
        raise LockinConnectionError(
            f"cannot load the VISA library {visa_library!r} ({type(exc).__name__}: {exc}): "
            "use '@py' (pyvisa-py, installed with `pip install pyvisa-py`) or the path of an "
            "installed VISA (NI-VISA, Keysight IO Libraries)",
            resource,
        ) from exc
    try:
        opened = manager.open_resource(resource, open_timeout=max(1, round(timeout_s * 1000)))
    except Exception as exc:
        raise LockinConnectionError(
            f"cannot open {resource!r} with VISA library {visa_library!r} "
            f"({type(exc).__name__}: {exc}); check the resource string (e.g. GPIB0::8::INSTR, "
            "ASRL/dev/ttyUSB0::INSTR, TCPIP::192.168.1.5::1865::SOCKET) and that the "
            "instrument is connected",
            resource,
        ) from exc
    if not isinstance(opened, MessageBasedResource):
        opened.close()
        raise LockinConnectionError(
            f"{resource!r} is not a message-based VISA resource ({type(opened).__name__}); a "
            "lock-in is addressed as ...::INSTR or TCPIP::host::port::SOCKET",
            resource,
        )
    opened.timeout = timeout_s * 1000.0
    opened.read_termination = read_termination
    opened.write_termination = write_termination
    return opened


def check_trace_request(duration_s: float, max_rate_hz: float) -> None:
    """Refuse a trace length (s) or rate limit (Hz) that is not a positive finite number."""
    for name, value, unit in (("trace duration", duration_s, "s"), ("rate", max_rate_hz, "Hz")):
        if isinstance(value, bool) or not (
            isinstance(value, int | float) and math.isfinite(value) and value > 0
        ):
            raise LockinValueError(f"{name} {value!r}: give a positive number of {unit}")
