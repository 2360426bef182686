"""The README's figures table, generated from the committed ``bench/RESULTS.md``.

:func:`readme_block` takes the headline table of a results file (between
``<!-- headline:start -->`` and ``<!-- headline:end -->``) and its command/commit/machine lines
and returns the block the README carries between ``<!-- bench-table:start -->`` and
``<!-- bench-table:end -->`` (markers included), so the two cannot disagree:
``labctl bench --readme-table`` prints it, and a test compares it with the README.
"""

from __future__ import annotations

from pathlib import Path

from labctl.benchsuite.suite import HEADLINE_END, HEADLINE_START

README_START = "<!-- bench-table:start -->"
README_END = "<!-- bench-table:end -->"


class ResultsFormatError(ValueError):
    """The results file lacks the headline markers or the command/commit lines."""


def between(text: str, start: str, end: str) -> str | None:
    """The text strictly between the first ``start`` and the next ``end`` marker (stripped)."""
    i = text.find(start)
    if i < 0:
        return None
    j = text.find(end, i + len(start))
    if j < 0:
        return None
    return text[i + len(start) : j].strip()


def _field(text: str, name: str) -> str:
    prefix = f"- {name}: "
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise ResultsFormatError(f"the results file has no '{prefix.strip()}' line")


def readme_block(results_text: str, results_path: str = "bench/RESULTS.md") -> str:
    """The README block (markers included) for the results file's text."""
    table = between(results_text, HEADLINE_START, HEADLINE_END)
    if table is None:
        raise ResultsFormatError(
            f"the results file has no headline table between {HEADLINE_START} and {HEADLINE_END}"
        )
    lines = [
        README_START,
        table,
        "",
        f"Generated from [{results_path}]({results_path}) by `labctl bench --readme-table`; "
        f"measured with {_field(results_text, 'command')} at commit "
        f"{_field(results_text, 'commit')} on {_field(results_text, 'machine')}.",
        README_END,
    ]
    return "\n".join(lines)


def readme_block_from(path: Path) -> str:
    """:func:`readme_block` of a results file on disk."""
    return readme_block(path.read_text(encoding="utf-8"))
