"""Per-gate training success rate and time to solution for each training method, on two
simulated devices.

Devices:

* ``dnpu``: the default simulated DNPU (hopping-network model, device seed 0, every chain effect
  on), trained with the shipped ``configs/<gate>_sim.yaml``;
* ``surrogate``: the digital twin of a measured chip, ``../shared/devices/dnpu_surrogate_a.npz``,
  trained with ``configs/<gate>_surrogate.yaml`` when it exists and otherwise with
  ``configs/xnor_surrogate.yaml`` with the gate name replaced; skipped when the file is absent.

Methods: ``screened_hge`` (the shipped default: the configuration's own ``method`` section),
``hge`` (plain HGE from random starts, the method before it), and the baselines
``finite_difference``, ``spsa`` and ``genetic``, each selected with ``method: {name, params:
{}}``. A method the installed labctl does not accept is reported as not available and skipped.

Every run goes through :func:`labctl.training.session.execute`, exactly as ``labctl train``
runs a configuration, with the same device-time budget (``run.max_device_seconds``) for every
method, ``run.seed = i`` and ``noise_seed = i`` for run ``i``. A run succeeds when its final
measurement of the best controls (no tones, the homodyne window) has 100 % threshold accuracy and
a separation of at least :data:`MARGIN_NOISE_MULTIPLE` times its noise (the standard error of the
difference of the two case means that set it, from the block spread of their windows; see
:attr:`labctl.training.trainer.TrainingOutcome.separation_in_noise`). Runs go to a temporary
directory; work is spread over a pool of ``jobs`` processes with one BLAS thread each.
"""

from __future__ import annotations

import copy
import logging
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.benchsuite.common import (
    Headline,
    Log,
    Section,
    SuiteSize,
    fmt,
    md_table,
    new_figure,
    save_figure,
)
from labctl.benchsuite.devices import CONFIGS, REPO

SURROGATE = REPO.parent / "shared" / "devices" / "dnpu_surrogate_a.npz"
DEVICES = ("dnpu", "surrogate")
DEFAULT_METHOD = "screened_hge"
"""The method the shipped gate configurations select."""
METHODS = (DEFAULT_METHOD, "hge", "finite_difference", "spsa", "genetic")
MARGIN_NOISE_MULTIPLE = 5.0
"""A run counts as solved with a final separation of at least this many times its noise."""
MAX_ITERATIONS = 100_000
"""Iteration cap (the device-time budget ends the runs first)."""


@dataclass(frozen=True)
class Job:
    """One training run."""

    device: str
    gate: str
    method: str
    index: int
    config: dict[str, Any]


@dataclass(frozen=True)
class Result:
    """What one run reports back (plain data, so it crosses process boundaries)."""

    device: str
    gate: str
    method: str
    index: int
    solved: bool
    iterations: int
    device_seconds: float
    restarts: int
    wall_s: float
    error: str = ""
    separation_a: float = math.nan
    separation_in_noise: float = math.nan
    solved_any_margin: bool = False


def base_config(device: str, gate: str) -> dict[str, Any]:
    """The configuration a device/gate pair is trained with."""
    if device == "dnpu":
        return yaml.safe_load((CONFIGS / f"{gate.lower()}_sim.yaml").read_text())
    path = CONFIGS / f"{gate.lower()}_surrogate.yaml"
    if not path.is_file():
        path = CONFIGS / "xnor_surrogate.yaml"
    data = yaml.safe_load(path.read_text())
    data["task"]["name"] = gate
    data["setup"]["backend"]["settings"]["surrogate_path"] = str(SURROGATE)
    return data


def with_method(data: dict[str, Any], method: str) -> dict[str, Any]:
    """``data`` with ``method`` selected: the configuration's own ``method`` section when it
    names that method (with its parameters), else ``{name: method, params: {}}`` (no section
    means ``hge``)."""
    out = copy.deepcopy(data)
    own = (out.get("method") or {}).get("name", "hge")
    if own != method:
        out["method"] = {"name": method, "params": {}}
    return out


def method_available(method: str) -> tuple[bool, str]:
    """Whether the installed configuration schema accepts ``method``, and why not."""
    from labctl.config import ConfigError, parse_config

    data = with_method(base_config("dnpu", "AND"), method)
    data["run"]["directory"] = tempfile.gettempdir()
    try:
        parse_config(yaml.safe_dump(data), source=CONFIGS / "and_sim.yaml")
    except ConfigError as exc:
        first = str(exc).strip().splitlines()
        reason = first[-1].strip().lstrip("- ").strip() if first else ""
        return False, reason or "rejected by the configuration schema"
    return True, ""


def job_config(
    base: dict[str, Any], method: str, index: int, root: Path, budget_s: float
) -> dict[str, Any]:
    """The run's configuration: method, seeds, equal device-time budget."""
    data = with_method(base, method)
    run = data.setdefault("run", {})
    run.update(
        directory=str(root / "runs"),
        seed=index,
        report=False,
        max_iterations=MAX_ITERATIONS,
        max_device_seconds=budget_s,
    )
    data["setup"]["backend"]["settings"]["noise_seed"] = index
    return data


def run_job(job: Job, root: str) -> Result:
    """Train one run (in a worker process); any exception comes back as text."""
    logging.getLogger("labctl").setLevel(logging.WARNING)
    start = time.perf_counter()
    try:
        return _train(job, root, start)
    except Exception as exc:
        nan = math.nan
        return Result(
            job.device, job.gate, job.method, job.index, False, 0, nan, 0, 0.0,
            error=f"{type(exc).__name__}: {exc}",
        )  # fmt: skip


def _train(job: Job, root: str, start: float) -> Result:
    from labctl.config import parse_config
    from labctl.training.session import train_to_end

    folder = Path(root) / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    # one file per run: the chain calibration is stored next to it, so runs never share one
    path = folder / f"{job.device}-{job.gate}-{job.method}-{job.index}.yaml"
    path.write_text(yaml.safe_dump(job.config))
    loaded = parse_config(path.read_text(), source=path)
    run = train_to_end(loaded)
    outcome = run.outcome
    if outcome is None:
        raise RuntimeError(f"{path.name}: the run ended without an outcome ({run.state})")
    return Result(
        device=job.device,
        gate=job.gate,
        method=job.method,
        index=job.index,
        solved=outcome.solved_with_margin(MARGIN_NOISE_MULTIPLE),
        iterations=outcome.iterations,
        device_seconds=outcome.device_seconds,
        restarts=len(outcome.restarts),
        wall_s=time.perf_counter() - start,
        separation_a=outcome.final_separation_a,
        separation_in_noise=outcome.separation_in_noise,
        solved_any_margin=outcome.solved,
    )


def _init_worker() -> None:
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def train_all(jobs: list[Job], root: Path, n_jobs: int) -> list[Result]:
    """Run the jobs on a process pool (``spawn``: no state inherited from the caller)."""
    if not jobs:
        return []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_jobs, mp_context=context, initializer=_init_worker) as pool:
        return list(pool.map(run_job, jobs, [str(root)] * len(jobs)))


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile_to_solved(results: list[Result], fraction: float) -> float:
    """Nearest-rank ``fraction`` percentile of the device-seconds to solved over *all* runs,
    a failed run counting as infinitely long (so it is inf when more than ``1 - fraction`` of
    the runs failed)."""
    if not results:
        return math.nan
    times = sorted(r.device_seconds if r.solved else math.inf for r in results)
    return times[max(math.ceil(fraction * len(times)) - 1, 0)]


@dataclass(frozen=True)
class Row:
    """One device/gate/method line of the table."""

    device: str
    gate: str
    method: str
    runs: int
    solved: int
    solved_any_margin: int
    median_iterations: float
    median_device_s: float
    p90_device_s: float
    min_separation_in_noise: float
    device_s_per_solved: float

    @property
    def meets_goal(self) -> bool:
        """At least 95 % solved and a median below 10 device-seconds."""
        return self.solved >= 0.95 * self.runs and self.median_device_s < 10.0


def summarise(results: list[Result]) -> list[Row]:
    """Per device, gate and method: successes, medians over solved runs, the 90th percentile
    over all runs, the smallest separation in noise units among solved runs, and the cost per
    solved gate."""
    keys = sorted({(r.device, r.gate, r.method) for r in results}, key=str)
    rows = []
    for device, gate, method in keys:
        mine = [r for r in results if (r.device, r.gate, r.method) == (device, gate, method)]
        solved = [r for r in mine if r.solved]
        total = sum(r.device_seconds for r in mine if math.isfinite(r.device_seconds))
        ratios = [r.separation_in_noise for r in mine if r.solved_any_margin]
        rows.append(
            Row(
                device,
                gate,
                method,
                len(mine),
                len(solved),
                sum(r.solved_any_margin for r in mine),
                _median([r.iterations for r in solved]),
                _median([r.device_seconds for r in solved]),
                percentile_to_solved(mine, 0.9),
                min(ratios) if ratios else math.nan,
                total / len(solved) if solved else math.inf,
            )
        )
    return rows


def run(
    size: SuiteSize,
    out_dir: Path,
    log: Log,
    n_jobs: int = 2,
    methods: Sequence[str] | None = None,
) -> Section:
    """The training part of the suite (``methods``: a subset of :data:`METHODS`, default all)."""
    start = time.perf_counter()
    section = Section("training", "Per-gate training: success rate and time to solution")
    devices = list(DEVICES)
    notes = []
    if not SURROGATE.is_file():
        notes.append(f"surrogate: skipped, {SURROGATE} not found (needs ../shared/devices)")
        devices.remove("surrogate")
    chosen = []
    for method in METHODS if methods is None else methods:
        ok, why = method_available(method)
        if ok:
            chosen.append(method)
        else:
            notes.append(f"method not available: {method} ({why})")
    for note in notes:
        log(f"training: {note}")
    with tempfile.TemporaryDirectory(prefix="labctl-bench-training-") as tmp:
        root = Path(tmp)
        jobs = [
            Job(d, g, m, i, job_config(base_config(d, g), m, i, root, size.training_device_s))
            for d in devices
            for g in size.training_gates
            for m in chosen
            for i in range(size.training_runs)
        ]
        log(f"training: {len(jobs)} runs on {n_jobs} worker processes")
        results = train_all(jobs, root, n_jobs)
    errors = [r for r in results if r.error]
    for r in errors[:5]:
        notes.append(f"error in {r.device} {r.gate} {r.method} run {r.index}: {r.error}")
    rows = summarise([r for r in results if not r.error])
    k = MARGIN_NOISE_MULTIPLE
    section.lines += [
        f"Runs through `labctl.training.session.execute` (as `labctl train`), "
        f"{size.training_runs} run(s) per device, gate and method, seeds 0..."
        f"{size.training_runs - 1}, budget of {size.training_device_s:g} device-seconds per "
        "run (screening, ramps and settling included). `screened_hge` is the shipped default, "
        "`hge` plain HGE from random starts (stall patience 25). Solved: the final "
        f"measurement of the best controls has 100 % accuracy and a separation of at least "
        f"{k:g} times its noise (standard error of the difference of the two case means that "
        "set it); in brackets, solved with any positive separation. Median device-s over "
        "solved runs; p90 over all runs (a failed run counts as infinite); smallest "
        "separation / noise among the runs with 100 % accuracy; device-s per solved gate = "
        "all device-seconds spent / gates solved. Goal: >= 95 % solved and median < 10 s.",
        "",
        *md_table(
            [
                "device",
                "gate",
                "method",
                "solved",
                "median iterations",
                "median device-s",
                "p90 device-s",
                "min separation / noise",
                "device-s per solved gate",
                "goal",
            ],
            [
                [
                    r.device,
                    r.gate,
                    r.method,
                    f"{r.solved}/{r.runs} ({r.solved_any_margin})",
                    fmt(r.median_iterations),
                    fmt(r.median_device_s),
                    fmt(r.p90_device_s),
                    fmt(r.min_separation_in_noise),
                    fmt(r.device_s_per_solved),
                    "yes" if r.meets_goal else "no",
                ]
                for r in rows
            ],
        ),
        "",
    ]
    section.lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    for device in devices:
        _headlines(section, [r for r in results if r.device == device and not r.error], device)
    section.figures.append(_figure(rows, devices, list(size.training_gates), chosen, out_dir))
    section.wall_s = time.perf_counter() - start
    return section


def _headlines(section: Section, results: list[Result], device: str) -> None:
    """Gates solved and cost per solved gate of the default; GA / default cost ratio."""
    by_method = {}
    for m in {r.method for r in results}:
        runs = [r for r in results if r.method == m]
        solved = sum(r.solved for r in runs)
        spent = sum(r.device_seconds for r in runs)
        by_method[m] = (solved, len(runs), spent / solved if solved else math.inf)
    default = DEFAULT_METHOD
    if default not in by_method:
        return
    solved, n, cost = by_method[default]
    section.headline.append(
        Headline(
            f"Default training ({default}) on the {device}: gates solved, device-s per solved gate",
            f"{solved}/{n}, {fmt(cost)} s",
            "–",
            None,
        )
    )
    if "genetic" in by_method:
        ga, new = by_method["genetic"], by_method[default]
        ratio = ga[2] / new[2] if math.isfinite(new[2]) else math.nan
        rate_ok = new[0] / max(new[1], 1) >= ga[0] / max(ga[1], 1)
        section.headline.append(
            Headline(
                f"GA / {default} device-seconds per solved gate on the {device}",
                f"{fmt(ratio)}× (success {new[0]}/{new[1]} vs {ga[0]}/{ga[1]})",
                "≥ 10× at equal or better success",
                bool(ratio >= 10 and rate_ok),
            )
        )
    else:
        section.headline.append(
            Headline(
                f"GA / {default} device-seconds per solved gate on the {device}",
                "not measured (method not run or not available)",
                "≥ 10× at equal or better success",
                None,
            )
        )


def _figure(
    rows: list[Row], devices: list[str], gates: list[str], methods: list[str], out_dir: Path
) -> str:
    """Bar chart of device-s per solved gate, per device, gate and method."""
    fig, axes = new_figure(max(len(devices), 1), 1)
    for ax, device in zip(axes, devices, strict=False):
        width = 0.8 / max(len(methods), 1)
        for j, m in enumerate(methods):
            values = []
            for g in gates:
                match = [r for r in rows if (r.device, r.gate, r.method) == (device, g, m)]
                values.append(match[0].device_s_per_solved if match else math.nan)
            xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(gates))]
            finite = [v if math.isfinite(v) else math.nan for v in values]
            ax.bar(xs, finite, width, label=m)
        ax.set_xticks(range(len(gates)), gates)
        if any(r.device == device and math.isfinite(r.device_s_per_solved) for r in rows):
            ax.set_yscale("log")
        ax.set_ylabel("device-s per solved gate")
        ax.set_title(device)
        ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "training.png")
