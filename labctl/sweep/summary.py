"""The sweep's summary: one row per grid point, then means and medians per grid value.

Per point: solved, iterations, device-seconds (to the last iteration, ramps and settling
included), final loss (last iteration), final accuracy (the unperturbed final measurement) and
held-out accuracy when the task has held-out cases. Grouped: for the task, the method and every
swept parameter, per value, over the points that ran to their end: solved count, mean and
median iterations, device-seconds, final loss and final accuracy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from labctl.sweep.spec import SweepPoint


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _fmt(value: Any, spec: str = ".4g") -> str:
    number = _number(value)
    return "–" if number is None else format(number, spec)


def _pct(value: Any) -> str:
    number = _number(value)
    return "–" if number is None else f"{number:.0%}"


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _stats(values: Sequence[float | None]) -> tuple[str, str]:
    xs = [v for v in values if v is not None]
    if not xs:
        return "–", "–"
    return f"{statistics.fmean(xs):.4g}", f"{statistics.median(xs):.4g}"


def point_table(points: Sequence[SweepPoint], results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table: one row per grid point (points without a result say so)."""
    params = [
        k for k in (points[0].labels if points else {}) if k not in ("task", "method", "seed")
    ]
    head = ["point", "task", "method", "seed", *params]
    head += ["status", "solved", "iterations", "device-s", "final loss", "final acc", "held-out"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for point in points:
        r = results.get(point.id, {})
        status = str(r.get("status", "not run"))
        if r and not r.get("complete"):
            status += " (unfinished)"
        cells = [
            point.id,
            str(point.labels.get("task", "")),
            str(point.labels.get("method", "")),
            str(point.labels.get("seed", "")),
            *(_value_text(point.labels[k]) for k in params),
            status,
            ("yes" if r.get("solved") else "no") if r else "–",
            str(r.get("iterations", "–")),
            _fmt(r.get("device_seconds"), ".1f"),
            _fmt(r.get("final_loss")),
            _pct(r.get("final_accuracy")),
            _pct(r.get("test_accuracy")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def group_table(
    points: Sequence[SweepPoint], results: Mapping[str, Mapping[str, Any]], key: str
) -> str:
    """Markdown table: per value of grid coordinate ``key``, over the complete points."""
    head = [
        key,
        "runs",
        "solved",
        "iterations mean",
        "iterations median",
        "device-s mean",
        "device-s median",
        "final loss mean",
        "final loss median",
        "final acc mean",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    values: list[Any] = []
    for point in points:
        if point.labels.get(key) not in values:
            values.append(point.labels.get(key))
    for value in values:
        rows = [
            results[p.id]
            for p in points
            if p.labels.get(key) == value and results.get(p.id, {}).get("complete")
        ]
        solved = sum(1 for r in rows if r.get("solved"))
        iters = _stats([_number(r.get("iterations")) for r in rows])
        secs = _stats([_number(r.get("device_seconds")) for r in rows])
        loss = _stats([_number(r.get("final_loss")) for r in rows])
        acc = [a for a in (_number(r.get("final_accuracy")) for r in rows) if a is not None]
        cells = [
            _value_text(value),
            str(len(rows)),
            f"{solved}/{len(rows)}",
            *iters,
            *secs,
            *loss,
            f"{statistics.fmean(acc):.0%}" if acc else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(
    name: str, points: Sequence[SweepPoint], results: Mapping[str, Mapping[str, Any]]
) -> str:
    """The whole summary: totals, the per-point table, and one grouped table per grid
    coordinate that takes more than one value (task, method, each parameter, seed last)."""
    complete = [r for r in results.values() if r.get("complete")]
    solved = sum(1 for r in complete if r.get("solved"))
    text = [
        f"# Sweep {name}\n",
        f"{len(points)} point(s): {len(complete)} ran to their end, {solved} solved; "
        f"{len(points) - len(complete)} unfinished or not run.\n",
        "device-s: device time to the last iteration (ramps and settling included, the final "
        "evaluation not); final acc: the unperturbed final measurement.\n",
        "## Points\n",
        point_table(points, results),
    ]
    keys = list(points[0].labels) if points else []
    keys = [k for k in keys if k != "seed"] + (["seed"] if "seed" in keys else [])
    for key in keys:
        if len({repr(p.labels.get(key)) for p in points}) > 1:
            text += [f"## By {key}\n", group_table(points, results, key)]
    return "\n".join(text)
