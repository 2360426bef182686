"""Fig. 4a (all six Boolean gates) and Fig. 4b,c (the sphere task) on the simulated DNPU.

Each task is trained in materia with its shipped configuration (``configs/<gate>_sim.yaml``,
``configs/sphere_sim.yaml``) through :func:`labctl.training.session.execute`, exactly as
``labctl train`` does, with run seeds ``0, 1, ...`` until one solves the gate (at most
``attempts``). Gates: the final outputs at the best controls, measured without tones, per input
case, and the threshold halfway between the lowest "high" and the highest "low" output. Sphere:
the output at the best controls for every point of the task (training and held-out), measured
again without tones; the threshold is the one that classifies the training points best, and the
held-out accuracy is that threshold's accuracy on the test points.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labctl.benchsuite.devices import CONFIGS

GATES = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")


@dataclass
class TaskResult:
    """One trained task (plain data; crosses process boundaries).

    Attributes:
        name: Gate name or ``SPHERE``.
        seed: Run seed of the reported run.
        solved: ``TrainingOutcome.solved`` of that run.
        iterations: Iterations of that run.
        device_seconds: Device time of that run (s).
        outputs_a: Gates: final output per case (A). Sphere: output per task point (A).
        targets: Target class per case / point.
        radii: Sphere: normalised radius per point (empty for gates).
        test: Sphere: whether each point is held out (empty for gates).
        attempts: Runs tried.
        error: Exception text when every attempt failed with one.
    """

    name: str
    seed: int = -1
    solved: bool = False
    iterations: int = 0
    device_seconds: float = float("nan")
    outputs_a: list[float] = field(default_factory=list)
    targets: list[float] = field(default_factory=list)
    radii: list[float] = field(default_factory=list)
    test: list[bool] = field(default_factory=list)
    attempts: int = 0
    error: str = ""

    def threshold_a(self) -> float:
        """Gates: midway between the classes' facing extremes. Sphere: best on training."""
        out = np.array(self.outputs_a)
        tgt = np.array(self.targets) > 0.5
        if self.radii:
            train = ~np.array(self.test, dtype=bool)
            return best_threshold(out[train], tgt[train])[0]
        if out.size == 0:
            return float("nan")
        return 0.5 * (float(out[tgt].min()) + float(out[~tgt].max()))

    def accuracy(self, split: str = "all") -> float:
        """Threshold accuracy (class 1 above; for the sphere, whichever side fits training)."""
        out = np.array(self.outputs_a)
        tgt = np.array(self.targets) > 0.5
        if out.size == 0:
            return float("nan")
        if self.radii:
            train = ~np.array(self.test, dtype=bool)
            threshold, above = best_threshold(out[train], tgt[train])
            mask = {"all": np.ones_like(train), "train": train, "test": ~train}[split]
            predicted = (out > threshold) == above
            return float(np.mean(predicted[mask] == tgt[mask]))
        return float(np.mean((out > self.threshold_a()) == tgt))


def best_threshold(outputs: np.ndarray, targets: np.ndarray) -> tuple[float, bool]:
    """The threshold (and whether class 1 lies above it) that classifies most points right."""
    order = np.sort(outputs)
    candidates = np.concatenate([[order[0] - 1e-12], 0.5 * (order[1:] + order[:-1])])
    best = (-1.0, float(candidates[0]), True)
    for c in candidates:
        for above in (True, False):
            acc = float(np.mean(((outputs > c) == above) == targets))
            if acc > best[0]:
                best = (acc, float(c), above)
    return best[1], best[2]


def task_config(name: str, seed: int, root: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The shipped configuration of a task with the run seed and the run directory set."""
    path = CONFIGS / ("sphere_sim.yaml" if name == "SPHERE" else f"{name.lower()}_sim.yaml")
    data = yaml.safe_load(path.read_text())
    data = copy.deepcopy(data)
    run = data.setdefault("run", {})
    run.update(directory=str(root / "runs"), seed=seed, report=False)
    run.update(overrides)
    return data


def train_task(name: str, root: str, attempts: int, overrides: dict[str, Any]) -> TaskResult:
    """Train ``name`` with seeds 0, 1, ... until solved (in a worker process)."""
    logging.getLogger("labctl").setLevel(logging.WARNING)
    result = TaskResult(name)
    for seed in range(attempts):
        try:
            found = _train_once(name, seed, Path(root), overrides)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            result.attempts = seed + 1
            continue
        found.attempts = seed + 1
        result = found
        if found.solved or name == "SPHERE":  # the sphere is reported as trained
            break
    return result


def _train_once(name: str, seed: int, root: Path, overrides: dict[str, Any]) -> TaskResult:
    from labctl.config import parse_config
    from labctl.connect import build_device
    from labctl.homodyne.session import open_engine
    from labctl.training.session import train_to_end
    from labctl.training.trainer import build_task, input_mapping

    folder = root / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.lower()}-{seed}.yaml"
    path.write_text(yaml.safe_dump(task_config(name, seed, root, overrides)))
    loaded = parse_config(path.read_text(), source=path)
    run = train_to_end(loaded)
    outcome = run.outcome
    if outcome is None:
        raise RuntimeError(f"{name} seed {seed}: the run ended without an outcome ({run.state})")
    task = build_task(loaded)
    result = TaskResult(
        name=name,
        seed=seed,
        solved=outcome.solved,
        iterations=outcome.iterations,
        device_seconds=outcome.device_seconds,
        outputs_a=[float(v) for v in outcome.final_outputs_a],
        targets=[float(v) for v in task.targets],
    )
    if name != "SPHERE":
        return result
    volts = input_mapping(loaded, task).to_volts(task.inputs)
    setup = loaded.setup
    rows = [setup.electrode_index(n) for n in loaded.config.task_inputs()]
    with build_device(loaded) as device:
        engine, _ = open_engine(device, loaded, use_calibration=False)
        points = np.repeat(device.rest_voltages()[None, :], len(volts), axis=0)
        points[:, rows] = volts
        points[:, list(engine.electrode_indices)] = outcome.best_controls_v
        currents, _ = engine.measure_dc(points)
    result.outputs_a = [float(v) for v in currents]
    result.radii = [float(r) for r in np.linalg.norm(task.inputs, axis=1)]
    split = task.split or tuple("train" for _ in range(task.n_cases))
    result.test = [s == "test" for s in split]
    return result


def _init_worker() -> None:
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def train_tasks(
    names: list[str],
    root: Path,
    attempts: int,
    overrides: dict[str, Any],
    n_jobs: int = 2,
) -> dict[str, TaskResult]:
    """Train the tasks on a process pool; results by name."""
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_jobs, mp_context=context, initializer=_init_worker) as pool:
        results = list(
            pool.map(
                train_task,
                names,
                [str(root)] * len(names),
                [attempts] * len(names),
                [overrides] * len(names),
            )
        )
    logging.getLogger(__name__).debug("trained %s in %.0f s", names, time.perf_counter() - start)
    return {r.name: r for r in results}
