"""Command syntax of the SRS lock-ins (SR830 and SR86x remote programming chapters).

A *line* (one program message, ended by ``\\n``, ``\\r\\n`` or ``\\r``) holds one or more commands
separated by ``;``. A command is a mnemonic (letters, optionally a leading ``*``), an optional
``?`` that makes it a query, and comma-separated parameters::

    FREQ 1000        freq1e3        OUTP?1       SNAP ? 1,2      DDEF?1;       SLVL0.004;SLVL?

Mnemonics and named parameters are case-insensitive, spaces between mnemonic, ``?`` and the
parameters are optional, empty commands (``;;`` or a trailing ``;``) are ignored.

Errors follow the manuals' status model: an unknown mnemonic, a malformed or missing parameter
or a query form that does not exist is a *command error* (standard event status bit 5, CME);
a well-formed parameter that is out of range or not allowed in the present state is an
*execution error* (bit 4, EXE). Either way the command does nothing and a query produces no
reply at all (the instrument never answers with an error string), so the next query on the
connection gets its own answer: a client that asked a bad query sees a timeout, never an
off-by-one reply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Command",
    "CommandError",
    "ExecutionError",
    "expect_args",
    "format_float",
    "match_token",
    "parse_choice",
    "parse_command",
    "parse_float",
    "parse_int",
    "parse_int_in",
    "split_commands",
    "split_lines",
]


class CommandError(Exception):
    """Unknown command, bad syntax or missing parameter (standard event status bit CME)."""


class ExecutionError(Exception):
    """Parameter out of range or command not allowed now (standard event status bit EXE)."""


@dataclass(frozen=True)
class Command:
    """One parsed command.

    Attributes:
        mnemonic: Upper-case mnemonic, including a leading ``*`` for common commands.
        query: Whether the command ended its mnemonic with ``?``.
        args: Parameters, stripped, in order (may be empty).
        text: The command as received.
    """

    mnemonic: str
    query: bool
    args: tuple[str, ...]
    text: str


_COMMAND = re.compile(r"^\s*(\*?[A-Za-z]+)\s*(\?)?\s*(.*?)\s*$", re.DOTALL)
_LINE_END = re.compile(rb"\r\n|\n|\r")


def split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Split received bytes into complete lines (``\\n``, ``\\r\\n`` or ``\\r``) and a remainder.

    Empty lines (as between a ``\\r`` and a ``\\n`` that arrive in two packets) are dropped.
    """
    parts = _LINE_END.split(buffer)
    rest = parts.pop()
    return [p for p in parts if p.strip()], rest


def split_commands(line: str) -> list[str]:
    """The non-empty ``;``-separated commands of one line."""
    return [part.strip() for part in line.split(";") if part.strip()]


def parse_command(text: str) -> Command:
    """Parse one command (no ``;``).

    Raises:
        CommandError: If it does not start with a mnemonic.
    """
    match = _COMMAND.match(text)
    if match is None:
        raise CommandError(f"not a command: {text!r}")
    mnemonic, question, rest = match.group(1), match.group(2), match.group(3)
    args: tuple[str, ...] = ()
    if rest:
        args = tuple(part.strip() for part in rest.split(","))
        if any(not part for part in args):
            raise CommandError(f"empty parameter in {text!r}")
    return Command(mnemonic.upper(), question is not None, args, text)


def expect_args(command: Command, minimum: int, maximum: int | None = None) -> tuple[str, ...]:
    """The parameters of ``command``, checked to number ``minimum``…``maximum``.

    Raises:
        CommandError: If there are too few or too many.
    """
    top = minimum if maximum is None else maximum
    if not minimum <= len(command.args) <= top:
        want = f"{minimum}" if top == minimum else f"{minimum}..{top}"
        raise CommandError(f"{command.mnemonic}: {want} parameter(s) expected")
    return command.args


def parse_float(text: str) -> float:
    """A finite real number (``1000``, ``1e3``, ``+1.0E+03``).

    Raises:
        CommandError: If ``text`` is not a finite number.
    """
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise CommandError(f"not a finite number: {text!r}")
    return value


def parse_int(text: str) -> int:
    """An integer parameter; an integral real (``4.000000``, as some drivers send) is accepted.

    Raises:
        CommandError: If ``text`` is not a number.
        ExecutionError: If it is a number but not an integer.
    """
    value = parse_float(text)
    if value != math.floor(value):
        raise ExecutionError(f"not an integer: {text!r}")
    return int(value)


def parse_int_in(text: str, low: int, high: int) -> int:
    """An integer in ``low..high``.

    Raises:
        CommandError: If ``text`` is not a number.
        ExecutionError: If it is not an integer in the range.
    """
    value = parse_int(text)
    if not low <= value <= high:
        raise ExecutionError(f"{value} outside {low}..{high}")
    return value


def match_token(text: str, spec: str) -> bool:
    """Whether ``text`` names the token ``spec`` (SR86x style, case-insensitive).

    ``spec`` is written as in the manual, short form in capitals (``THeta``, ``CONTinuous``):
    the short form, the full word or anything in between matches.
    """
    short_len = 0
    while short_len < len(spec) and not spec[short_len].islower():
        short_len += 1
    word = text.strip().upper()
    full = spec.upper()
    return len(word) >= max(short_len, 1) and full.startswith(word)


def parse_choice(text: str, names: Sequence[str | None]) -> int:
    """An enumerated parameter given by index (``1``) or by name (``EXT``).

    Args:
        text: The parameter.
        names: Token per index (manual spelling, see :func:`match_token`); None for an index
            without a name.

    Raises:
        CommandError: If it is neither a number nor a known name.
        ExecutionError: If it is a number outside ``0..len(names)-1``.
    """
    stripped = text.strip()
    if re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", stripped):
        return parse_int_in(stripped, 0, len(names) - 1)
    for index, name in enumerate(names):
        if name is not None and match_token(stripped, name):
            return index
    raise CommandError(f"unknown name {text!r}")


def format_float(value: float, digits: int | None = None) -> str:
    """A reply number: shortest exact form (``1000``, ``19.073486328125``, ``1e-09``), or
    ``digits`` significant digits."""
    if value == 0.0:
        return "0"
    if digits is not None:
        return f"{value:.{digits}g}"
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text
