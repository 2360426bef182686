"""The benchmark suite: run the parts, write one Markdown report and the PNG figures.

``labctl bench [--smoke|--quick|--full] [--out DIR]`` writes ``DIR/RESULTS.md`` and
``DIR/figures/*.png``. The report opens with the command, the commit (``git rev-parse HEAD``,
``+dirty`` when the working tree has changes), the machine (``nproc``, CPU model, Python and
numpy versions) and the sizes, then the headline table between ``<!-- headline:start -->`` and
``<!-- headline:end -->`` (the README's figures table is generated from it, see
:mod:`labctl.benchsuite.readme`), then one section per part.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from labctl.benchsuite import cost, crb, parallel, speed, training
from labctl.benchsuite.common import SIZES, Headline, Log, Section, SuiteSize, md_table
from labctl.benchsuite.devices import REPO
from labctl.homodyne.plan import PlanWarning

PARTS: dict[str, Callable[[SuiteSize, Path, Log], Section]] = {
    "crb": crb.run,
    "parallel": parallel.run,
    "cost": cost.run,
    "training": training.run,
    "speed": speed.run,
}
"""The parts, in report order."""

HEADLINE_START = "<!-- headline:start -->"
HEADLINE_END = "<!-- headline:end -->"
RESULTS_NAME = "RESULTS.md"
FIGURES_DIR = "figures"


def git_commit(repo: Path = REPO) -> str:
    """``git rev-parse HEAD`` of the repository (``+dirty`` with local changes), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if status else "")


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or what :mod:`platform` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """``nproc``, CPU model, Python and numpy versions, on one line."""
    n_cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{n_cpu} CPUs (nproc), {cpu_model()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {platform.system()} {platform.release()}"
    )


def headline_table(rows: Sequence[Headline]) -> list[str]:
    """The headline rows as a Markdown table."""
    marks = {True: "yes", False: "**no**", None: "–"}
    return md_table(
        ["figure", "measured", "goal / published", "met"],
        [[r.quantity, r.measured, r.goal, marks[r.met]] for r in rows],
    )


def render(
    sections: Sequence[Section], size: SuiteSize, command: str, commit: str, wall_s: float
) -> str:
    """The whole report (Markdown)."""
    lines = [
        "# labctl benchmark results",
        "",
        f"- command: `{command}`",
        f"- commit: `{commit}`",
        f"- machine: {machine_line()}",
        f"- sizes: {size.describe()}",
        f"- wall time: {wall_s:.0f} s ("
        + ", ".join(f"{s.key} {s.wall_s:.0f} s" for s in sections)
        + ")",
        "",
        "## Headline figures",
        "",
        HEADLINE_START,
        *headline_table([h for s in sections for h in s.headline]),
        HEADLINE_END,
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", *section.lines]
        lines += [f"![{name}]({FIGURES_DIR}/{name})" for name in section.figures]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def run_suite(
    size: SuiteSize,
    out_dir: Path,
    log: Log,
    parts: Sequence[str] | None = None,
    command: str | None = None,
) -> Path:
    """Run the parts (default all), write ``out_dir/RESULTS.md`` and the figures; its path.

    Each part's Markdown (its tables) goes to ``log`` as soon as the part ends, and the headline
    table at the end, so a console or CI log shows every table even if a later part fails.
    """
    chosen = list(parts) if parts else list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    figures = out_dir / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    command = command or shlex.join(["labctl", "bench", *sys.argv[2:]])
    start = time.perf_counter()
    commit = git_commit()  # before the parts write their figures into a tracked bench/
    sections = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlanWarning)  # explicit plans are accepted on purpose
        for key in chosen:
            log(f"== {key}")
            section = PARTS[key](size, figures, log)
            log(f"== {key}: {section.wall_s:.0f} s")
            log("\n".join([f"## {section.title}", "", *section.lines]))
            sections.append(section)
    text = render(sections, size, command, commit, time.perf_counter() - start)
    path = out_dir / RESULTS_NAME
    path.write_text(text, encoding="utf-8")
    log(
        "\n".join(
            ["## Headline figures", "", *headline_table([h for s in sections for h in s.headline])]
        )
    )
    return path


__all__ = ["PARTS", "SIZES", "render", "run_suite"]
