"""What every part of the benchmark suite shares: sizes, the section record, figures, tables.

A part is a function ``run(size, out_dir, log) -> Section``: it measures, writes its PNG figures
into ``out_dir`` and returns its Markdown (tables and notes) plus the headline rows the README
figures table is generated from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never a window, works without a display

from matplotlib.figure import Figure

Log = Callable[[str], None]
"""Where a part reports progress (one line per call)."""

NA = 1e9
"""A → nA (and A/V → nA/V)."""


@dataclass(frozen=True)
class SuiteSize:
    """How much each part measures (``smoke`` for tests, ``quick`` for CI, ``full`` for the
    committed results).

    ``quick`` runs in about 3 minutes on 2 busy cores (CI's limit is 5); ``full`` in about 20
    (the training part dominates both: every method on every device and gate, in processes).

    Attributes:
        name: ``smoke``, ``quick`` or ``full``.
        crb_windows: Monte-Carlo windows of the bare demodulator check.
        crb_repeats: Repeated gradients at one operating point per noise condition.
        pvs_points: Operating points of the parallel-vs-sequential comparison.
        cost_sizes: Parameter counts of the gradient-cost scaling study.
        cost_points: Operating points per parameter count (halved above 20 parameters).
        cost_repeats: Measurements per point and setting.
        training_gates: Gates of the training table.
        training_runs: Runs per device, gate and method.
        training_device_s: Device-time budget of one training run (s), equal for every method.
        speed_seconds: Simulated seconds per simulator-speed measurement.
    """

    name: str
    crb_windows: int
    crb_repeats: int
    pvs_points: int
    cost_sizes: tuple[int, ...]
    cost_points: int
    cost_repeats: int
    training_gates: tuple[str, ...]
    training_runs: int
    training_device_s: float
    speed_seconds: float

    def describe(self) -> str:
        """The sizes on one line, for the report."""
        return (
            f"`{self.name}`: CRB {self.crb_windows} Monte-Carlo windows and {self.crb_repeats} "
            f"repeated gradients per condition; parallel vs sequential {self.pvs_points} "
            f"points; gradient cost N = {', '.join(map(str, self.cost_sizes))} with "
            f"{self.cost_points} points (half above N = 20) x {self.cost_repeats} repeats; "
            f"training {len(self.training_gates)} gate(s) x {self.training_runs} run(s) per "
            f"device and method, {self.training_device_s:g} device-s budget per run; "
            f"simulator speed {self.speed_seconds:g} simulated s"
        )


ALL_GATES = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")

SIZES: dict[str, SuiteSize] = {
    "smoke": SuiteSize(
        name="smoke",
        crb_windows=200,
        crb_repeats=12,
        pvs_points=6,
        cost_sizes=(5,),
        cost_points=2,
        cost_repeats=1,
        training_gates=("AND",),
        training_runs=1,
        training_device_s=10.0,
        speed_seconds=0.5,
    ),
    "quick": SuiteSize(
        name="quick",
        crb_windows=4000,
        crb_repeats=100,
        pvs_points=60,
        cost_sizes=(5, 10, 20),
        cost_points=2,
        cost_repeats=1,
        training_gates=("AND",),
        training_runs=1,
        training_device_s=100.0,
        speed_seconds=2.0,
    ),
    "full": SuiteSize(
        name="full",
        crb_windows=20000,
        crb_repeats=400,
        pvs_points=1000,
        cost_sizes=(5, 10, 20, 40),
        cost_points=8,
        cost_repeats=2,
        training_gates=ALL_GATES,
        training_runs=2,
        training_device_s=300.0,
        speed_seconds=5.0,
    ),
}


@dataclass(frozen=True)
class Headline:
    """One row of the headline table (and of the README figures table).

    Attributes:
        quantity: What was measured.
        measured: The measured value, formatted.
        goal: The goal or the published value it is set against.
        met: Whether the goal is met (None: no pass/fail goal, or not measured).
    """

    quantity: str
    measured: str
    goal: str
    met: bool | None = None


@dataclass
class Section:
    """The result of one part of the suite.

    Attributes:
        key: Short name (``crb``, ``parallel``, ``cost``, ``training``, ``speed``).
        title: Section title.
        lines: Markdown body (tables, notes).
        figures: PNG file names written into the output directory.
        headline: Rows for the headline table.
        wall_s: Wall time of the part (s).
    """

    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    headline: list[Headline] = field(default_factory=list)
    wall_s: float = 0.0


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (cells converted with ``str``)."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return out


def fmt(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, ``–`` for NaN, ``∞`` for infinity."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}g}"


def new_figure(n_cols: int = 1, n_rows: int = 1, width_in: float = 5.0, height_in: float = 3.8):
    """A figure (no pyplot state) and its axes, a flat list."""
    fig = Figure(figsize=(width_in * n_cols, height_in * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig: Figure, out_dir: Path, name: str) -> str:
    """Write ``fig`` as ``out_dir/name`` (PNG, 110 dpi) and return ``name``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / name, dpi=110)
    return name
