"""Success rate and cost of in-materia gate training, per gate, on two simulated devices.

Devices:

* ``dnpu``: the default simulated DNPU (hopping-network model, device seed 0, every measurement
  chain effect on at the paper's noise level, 1e-5 nA²/Hz at 1 kHz), trained with the shipped
  ``configs/<gate>_sim.yaml``.
* ``surrogate``: the digital twin of a measured chip, ``../shared/devices/dnpu_surrogate_a.npz``
  (data inputs on e0 and e6, controls e1–e5), trained with ``configs/<gate>_surrogate.yaml`` when
  that file exists and otherwise with ``configs/xnor_surrogate.yaml`` with the gate name replaced.
  Skipped with a message when ``../shared/devices`` is absent.

Per device and gate, two samples of ``--runs`` runs each:

* single start: ``run.max_restarts = 0`` and a 200-iteration budget: the fraction of random
  starts that solve the gate on their own;
* with restarts: a 2000-iteration budget in which the trainer restarts from fresh random controls
  when the loss stalls or the output saturates (the best controls are kept): the success rate,
  and over the solved runs the median iterations, device-seconds and restarts the run used up to
  its stop (the accuracy hold of ``run.accuracy_hold_iterations`` included).

A run succeeds when the trainer's ``TrainingOutcome.solved`` holds: 100 % threshold accuracy and
a positive separation in the final measurement of the best controls without tones. Run ``i``
uses ``run.seed = i`` (initial and restart controls) and ``noise_seed = i`` (the simulated
noise); the device itself is the same for every run (hopping model seed 0).

Runs go to a temporary directory that is deleted at the end. Work is spread over ``--jobs``
processes (default 2), each with one BLAS thread.

Run: ``.venv/bin/python bench/bench_training.py [--runs 20] [--device dnpu|surrogate|both]
[--gates XOR,XNOR] [--set [dnpu:|surrogate:]section.key=value ...]`` (``--set`` overrides a
configuration value for the benchmark only, e.g. ``--set optimiser.learning_rate=0.03``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import copy
import logging
import multiprocessing
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.config import parse_config  # noqa: E402
from labctl.run.control import RunController  # noqa: E402
from labctl.training.session import execute, new_run  # noqa: E402

CONFIGS = REPO / "configs"
SURROGATE = REPO.parent / "shared" / "devices" / "dnpu_surrogate_a.npz"
GATES = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")
DEVICES = ("dnpu", "surrogate")
SINGLE_BUDGET = 200
RESTART_BUDGET = 2000


@dataclass(frozen=True)
class Job:
    """One training run of the benchmark."""

    device: str
    gate: str
    mode: str  # "single" or "restarts"
    index: int
    config: dict[str, Any]


@dataclass(frozen=True)
class Result:
    """What one run reports back."""

    device: str
    gate: str
    mode: str
    index: int
    solved: bool
    iterations: int
    device_seconds: float
    restarts: int
    separation_na: float
    wall_s: float
    error: str = ""


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted = "a.b.c"``, creating sections as needed."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: {key!r} is not a section")
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """``[device:]path=value`` strings → overrides per device (values parsed as YAML)."""
    out: dict[str, list[tuple[str, Any]]] = {d: [] for d in DEVICES}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected [device:]section.key=value")
        key, raw = item.split("=", 1)
        devices: tuple[str, ...] = DEVICES
        if ":" in key:
            prefix, key = key.split(":", 1)
            if prefix not in DEVICES:
                raise ValueError(f"--set {item!r}: device prefix must be one of {DEVICES}")
            devices = (prefix,)
        for device in devices:
            out[device].append((key, yaml.safe_load(raw)))
    return out


def base_config(device: str, gate: str) -> tuple[dict[str, Any], str]:
    """The configuration a device/gate pair is trained with, and the file it came from."""
    if device == "dnpu":
        path = CONFIGS / f"{gate.lower()}_sim.yaml"
        return yaml.safe_load(path.read_text()), path.name
    path = CONFIGS / f"{gate.lower()}_surrogate.yaml"
    source = path.name
    if not path.is_file():
        path = CONFIGS / "xnor_surrogate.yaml"
        source = f"{path.name} (task.name: {gate})"
    data = yaml.safe_load(path.read_text())
    data["task"]["name"] = gate
    data["setup"]["backend"]["settings"]["surrogate_path"] = str(SURROGATE)
    return data, source


def job_config(
    base: dict[str, Any], device: str, mode: str, index: int, root: Path
) -> dict[str, Any]:
    """The run's configuration: seeds, budget and restart policy of its sample."""
    data = copy.deepcopy(base)
    run = data.setdefault("run", {})
    run.update(directory=str(root / "runs"), seed=index, report=False)
    if mode == "single":
        run.update(max_iterations=SINGLE_BUDGET, max_restarts=0)
    else:
        run.update(max_iterations=RESTART_BUDGET, max_restarts=None)
    # a new noise realisation per run; on the hopping model the device itself stays seed 0
    data["setup"]["backend"]["settings"]["noise_seed"] = index
    return data


def run_job(job: Job, root: str) -> Result:
    """Train one run (in a worker process) and summarise its outcome.

    Any exception is returned as text in :attr:`Result.error` (some exceptions, e.g. pydantic's
    validation errors, do not survive the trip back to the parent process).
    """
    logging.getLogger("labctl").setLevel(logging.WARNING)
    start = time.perf_counter()
    try:
        return _train(job, root, start)
    except Exception as exc:
        nan = float("nan")
        return Result(
            job.device,
            job.gate,
            job.mode,
            job.index,
            False,
            0,
            nan,
            0,
            nan,
            0.0,
            error=f"{type(exc).__name__}: {exc}",
        )


def _train(job: Job, root: str, start: float) -> Result:
    folder = Path(root) / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    # one file per run: the chain calibration is stored next to it, so runs never share one
    path = folder / f"{job.device}-{job.gate}-{job.mode}-{job.index}.yaml"
    path.write_text(yaml.safe_dump(job.config))
    loaded = parse_config(path.read_text(), source=path)
    run = new_run(loaded)
    controller = RunController()
    controller.start()
    execute(run, controller)
    outcome = run.outcome
    if outcome is None:
        raise RuntimeError(f"{path.name}: the run ended without an outcome ({run.state})")
    return Result(
        device=job.device,
        gate=job.gate,
        mode=job.mode,
        index=job.index,
        solved=outcome.solved,
        iterations=outcome.iterations,
        device_seconds=outcome.device_seconds,
        restarts=len(outcome.restarts),
        separation_na=outcome.final_separation_a * 1e9,
        wall_s=time.perf_counter() - start,
    )


def settings_line(data: dict[str, Any]) -> str:
    """The tunable settings of a configuration, on one line."""
    hom, loss, opt, run = data["homodyne"], data["loss"], data["optimiser"], data["run"]
    params = ", ".join(f"{k}={v}" for k, v in (loss.get("params") or {}).items())
    ranges = " ".join(
        f"{e['name']}[{e['min_v']:+.2f},{e['max_v']:+.2f}]"
        for e in data["setup"]["electrodes"]
        if e["role"] == "control"
    )
    return (
        f"loss {loss['name']}({params}), {opt['name']} lr {opt['learning_rate']}, "
        f"tones {hom.get('amplitude_v')} V, window {hom.get('window_s')} s, "
        f"stall {run.get('stall_patience', 40)} it / {run.get('stall_min_improvement', 0.01)} "
        f"rel, hold {run.get('accuracy_hold_iterations', 5)} it; controls {ranges}"
    )


def median(values: list[float]) -> float:
    """Median, NaN for an empty list."""
    return statistics.median(values) if values else float("nan")


def table(device: str, gates: list[str], results: list[Result], runs: int) -> list[str]:
    """Rows of the per-gate table of one device."""
    header = (
        f"{'gate':<5} {'single start':>12} {'with restarts':>13} {'med. iter':>9} "
        f"{'med. dev-s':>10} {'med. restarts':>13} {'max iter':>8} {'min sep nA':>10}"
    )
    lines = [header, "-" * len(header)]
    for gate in gates:
        mine = [r for r in results if r.device == device and r.gate == gate]
        single = [r for r in mine if r.mode == "single"]
        multi = [r for r in mine if r.mode == "restarts"]
        solved = [r for r in multi if r.solved]
        one = f"{sum(r.solved for r in single)}/{runs}" if single else "-"
        many = f"{len(solved)}/{runs}" if multi else "-"
        lines.append(
            f"{gate:<5} {one:>12} {many:>13} "
            f"{median([r.iterations for r in solved]):>9.0f} "
            f"{median([r.device_seconds for r in solved]):>10.1f} "
            f"{median([r.restarts for r in solved]):>13.0f} "
            f"{max((r.iterations for r in solved), default=0):>8d} "
            f"{min((r.separation_na for r in solved), default=float('nan')):>10.2f}"
        )
        failed = [r for r in multi if not r.solved]
        if failed:
            lines.append(
                "      failed runs (seed: separation nA): "
                + ", ".join(f"{r.index}: {r.separation_na:+.2f}" for r in failed)
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per sample (default 20)")
    parser.add_argument("--device", choices=[*DEVICES, "both"], default="both")
    parser.add_argument("--gates", default=",".join(GATES), help="comma-separated gate names")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--mode",
        choices=["single", "restarts", "both"],
        default="both",
        help="which sample to run (default both)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[DEVICE:]KEY=VALUE",
        help="override a configuration value for the benchmark (repeatable)",
    )
    args = parser.parse_args(argv)
    gates = [g.strip().upper() for g in args.gates.split(",") if g.strip()]
    unknown = sorted(set(gates) - set(GATES))
    if unknown or args.runs < 1:
        parser.error(f"unknown gate(s) {unknown}; choose from {', '.join(GATES)}")
    overrides = parse_overrides(args.set)
    devices = list(DEVICES) if args.device == "both" else [args.device]
    modes = ["single", "restarts"] if args.mode == "both" else [args.mode]

    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print(
        f"runs per sample {args.runs}; single start: max_restarts 0, {SINGLE_BUDGET} iterations; "
        f"with restarts: {RESTART_BUDGET} iterations; success = TrainingOutcome.solved; "
        f"{args.jobs} worker processes"
    )
    if "surrogate" in devices and not SURROGATE.is_file():
        print(f"surrogate: skipped, {SURROGATE} not found (needs ../shared/devices)")
        devices.remove("surrogate")
    if not devices:
        return 0

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="labctl-bench-training-") as root:
        jobs: list[Job] = []
        sources: dict[str, list[str]] = {}
        for device in devices:
            for gate in gates:
                base, source = base_config(device, gate)
                for key, value in overrides[device]:
                    set_path(base, key, value)
                sources.setdefault(device, []).append(
                    f"  {gate:<5} {source}: {settings_line(base)}"
                )
                for mode in modes:
                    jobs.extend(
                        Job(device, gate, mode, i, job_config(base, device, mode, i, Path(root)))
                        for i in range(args.runs)
                    )
        # long jobs first so the workers finish together
        jobs.sort(key=lambda j: (j.mode != "restarts", j.device != "surrogate"))
        for device in devices:
            print(f"{device} settings:")
            print("\n".join(sources[device]))
        if args.set:
            print("overrides: " + " ".join(args.set))
        sys.stdout.flush()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            results = list(pool.map(run_job, jobs, [root] * len(jobs)))
    wall = time.perf_counter() - start
    errors = [r for r in results if r.error]
    for r in errors[:5]:
        print(f"error in {r.device} {r.gate} {r.mode} run {r.index}: {r.error}")
    if errors:
        print(f"{len(errors)} run(s) failed with an error")
        return 1

    for device in devices:
        print()
        print(f"{device}: {args.runs} runs per gate")
        print("\n".join(table(device, gates, results, args.runs)))
        cpu = sum(r.wall_s for r in results if r.device == device)
        print(f"worker time on {device}: {cpu:.0f} s")
    print(f"\ntotal wall time: {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
