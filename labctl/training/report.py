"""The PNG report of a training run (matplotlib, no display needed).

Three panels: loss and accuracy per iteration (restarts marked); every control voltage per
iteration inside its range; and the final output per input case, measured without tones at
the best controls, with the decision threshold.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import yaml

from labctl.run.store import RunStore
from labctl.training.metrics import threshold_accuracy
from labctl.training.tasks import Task

REPORT_FILE = "report.png"


def write_report(store: RunStore, task: Task, summary: dict[str, Any]) -> Path:
    """Draw the report of ``store`` into ``report.png`` inside the run directory."""
    records = store.iterations(include_raw=False)
    config = yaml.safe_load(store.config_text())
    controls = [e for e in config["setup"]["electrodes"] if e["name"] in _perturbed(config)]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    _loss_panel(axes[0], records)
    _controls_panel(axes[1], records, controls)
    _outputs_panel(axes[2], task, summary)
    title = f"{store.name}: {task.name}"
    if summary.get("solved") is not None:
        title += "  solved" if summary["solved"] else "  not solved"
    fig.suptitle(title)
    path = store.path / REPORT_FILE
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _perturbed(config: dict[str, Any]) -> list[str]:
    names = (config.get("homodyne") or {}).get("electrodes")
    if names:
        return list(names)
    return [e["name"] for e in config["setup"]["electrodes"] if e["role"] == "control"]


def _loss_panel(ax: plt.Axes, records: list) -> None:
    if not records:
        ax.text(0.5, 0.5, "no iterations", ha="center", transform=ax.transAxes)
        return
    iterations = [r.run_iteration for r in records]
    ax.plot(iterations, [r.loss for r in records], color="tab:blue", label="loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss", color="tab:blue")
    ax.set_yscale("log" if min(r.loss for r in records) > 0 else "linear")
    restarts = [
        b.run_iteration
        for a, b in itertools.pairwise(records)
        if b.restart_index != a.restart_index
    ]
    for index, it in enumerate(restarts):
        ax.axvline(it, color="grey", ls=":", label="restart" if index == 0 else None)
    twin = ax.twinx()
    twin.plot(iterations, [r.accuracy for r in records], color="tab:orange", label="accuracy")
    twin.set_ylim(-0.05, 1.05)
    twin.set_ylabel("threshold accuracy", color="tab:orange")
    ax.set_title("loss and accuracy")
    ax.legend(loc="upper right", fontsize=8)


def _controls_panel(ax: plt.Axes, records: list, electrodes: list[dict[str, Any]]) -> None:
    if not records:
        return
    iterations = [r.run_iteration for r in records]
    controls = np.array([r.controls_v for r in records])
    for k, electrode in enumerate(electrodes):
        line = ax.plot(iterations, controls[:, k], label=electrode["name"])[0]
        for bound in (electrode["min_v"], electrode["max_v"]):
            ax.axhline(bound, color=line.get_color(), ls="--", lw=0.6, alpha=0.5)
    ax.set_xlabel("iteration")
    ax.set_ylabel("control voltage (V)")
    ax.set_title("controls (dashed: electrode ranges)")
    ax.legend(fontsize=8, ncol=2)


def _outputs_panel(ax: plt.Axes, task: Task, summary: dict[str, Any]) -> None:
    outputs = np.asarray(summary.get("final_outputs_a") or [], dtype=np.float64) * 1e9
    if outputs.size == 0 or not np.all(np.isfinite(outputs)):
        ax.text(0.5, 0.5, "no final measurement", ha="center", transform=ax.transAxes)
        return
    targets = task.subset("train").targets if task.split is not None else task.targets
    colours = np.where(targets > 0.5, "tab:green", "tab:red")
    cases = np.arange(outputs.size)
    ax.bar(cases, outputs, color=colours)
    result = threshold_accuracy(outputs, targets, direction=1)
    if np.isfinite(result.threshold):
        ax.axhline(result.threshold, color="black", ls="--", label="threshold")
        ax.legend(fontsize=8)
    if outputs.size <= 16:
        labels = ["".join(f"{v:g}" for v in row) for row in task.inputs[: outputs.size]]
        ax.set_xticks(cases, labels, rotation=0 if outputs.size <= 8 else 90)
    ax.set_xlabel("input case (green: target 1, red: target 0)")
    ax.set_ylabel("output current, no tones (nA)")
    sep = summary.get("final_separation_a")
    sep_text = f", separation {sep * 1e9:.2f} nA" if sep is not None else ""
    ax.set_title(f"final outputs: accuracy {result.accuracy:.0%}{sep_text}")
