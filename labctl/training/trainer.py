"""The in-materia training loop (Qt-free).

Per iteration: build one operating point per input case (inputs at the case voltages, controls
at their present values), measure every case's output current and gradient with the homodyne
engine in one record, chain-rule dL/dV = Σ_c dL/dI_c · ∂I_c/∂V through the loss, take an
optimiser step, project the controls into their ranges (shrunk by the tone amplitudes), append
the iteration to the run store and publish it to every subscriber. Restarts from fresh random
controls follow stalls and output saturation; the best controls are kept across restarts. At
the end the best controls are measured again without tones, and the final accuracy and
separation come from that unperturbed record.

Device time is the safe device's own count: ramps, settling and tones included.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.config import LoadedConfig
from labctl.device import FloatArray
from labctl.device.safety import SafeDevice
from labctl.homodyne.engine import GradientEngine
from labctl.run.control import RunController
from labctl.run.events import IterationCompleted, RunMessage
from labctl.run.store import IterationRecord, RunStore
from labctl.training.losses import LossFunction, get_loss
from labctl.training.metrics import separation, threshold_accuracy
from labctl.training.optimisers import (
    BestTracker,
    Optimiser,
    RestartPolicy,
    StallDetector,
    StopCriteria,
    make_optimiser,
    project_to_box,
)
from labctl.training.tasks import (
    InputMapping,
    Task,
    boolean_gate,
    sphere_task,
    task_from_csv,
    vc_labeling,
)

log = logging.getLogger(__name__)


def build_task(loaded: LoadedConfig) -> Task:
    """The task the configuration describes."""
    task = loaded.config.task
    if task is None:
        raise ValueError("the configuration has no 'task' section: nothing to train")
    if task.kind == "gate":
        return boolean_gate((task.name or "").upper())
    if task.kind == "vc4":
        return vc_labeling(task.name or "")
    if task.kind == "sphere":
        return sphere_task(task.n_points, seed=task.seed, test_fraction=task.test_fraction)
    assert task.csv_path is not None
    path = task.csv_path
    if not path.is_absolute() and loaded.source is not None:
        path = loaded.source.parent / path
    return task_from_csv(path, input_columns=task.input_columns, target_column=task.target_column)


def input_mapping(loaded: LoadedConfig, task: Task) -> InputMapping:
    """Linear map from task units onto the input electrodes' ranges."""
    setup = loaded.setup
    names = loaded.config.task_inputs()
    ranges = [
        (electrode.min_v, electrode.max_v)
        for electrode in (setup.electrodes[setup.electrode_index(n)] for n in names)
    ]
    configured = loaded.config.task.input_range if loaded.config.task else None
    margin = loaded.config.task.margin_v if loaded.config.task else 0.0
    if configured is not None:
        return InputMapping.from_ranges(configured[0], configured[1], ranges, margin)
    return InputMapping.for_task(task, ranges, margin)


@dataclass
class TrainingOutcome:
    """How a run ended.

    Attributes:
        iterations: Iterations completed in this run (all sessions).
        best_loss: Lowest loss seen.
        best_controls_v: Controls (V) of the best iteration, perturbed electrodes' order.
        final_outputs_a: Outputs per case measured without tones at the best controls (A).
        final_accuracy: Threshold accuracy of those outputs (class 1 above the threshold).
        final_separation_a: Lowest "high" minus highest "low" output (A).
        test_accuracy: Accuracy on held-out cases, when the task has them.
        restarts: (iteration, reason) per restart.
        stop_reason: Why the loop ended.
        device_seconds: Total device time (s).
    """

    iterations: int
    best_loss: float
    best_controls_v: FloatArray
    final_outputs_a: FloatArray
    final_accuracy: float
    final_separation_a: float
    test_accuracy: float | None
    restarts: list[tuple[int, str]] = field(default_factory=list)
    stop_reason: str = ""
    device_seconds: float = 0.0

    @property
    def solved(self) -> bool:
        """100 % accuracy with a positive separation in the final, unperturbed measurement."""
        return self.final_accuracy == 1.0 and self.final_separation_a > 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the run store."""
        return {
            "iterations": self.iterations,
            "best_loss": self.best_loss,
            "best_controls_v": [float(v) for v in self.best_controls_v],
            "final_outputs_a": [float(v) for v in self.final_outputs_a],
            "final_accuracy": self.final_accuracy,
            "final_separation_a": self.final_separation_a,
            "test_accuracy": self.test_accuracy,
            "restarts": [[i, r] for i, r in self.restarts],
            "stop_reason": self.stop_reason,
            "device_seconds": self.device_seconds,
            "solved": self.solved,
        }


class Trainer:
    """Trains the controls of one device on one task; see the module docstring.

    Args:
        device: The opened safe device.
        loaded: The validated configuration (with a ``task`` section).
        engine: The gradient engine (its perturbed electrodes are the trained controls).
        store: The run store to append to (new or resumed).
        controller: Run control (pause/stop/abort); its events go to every subscriber.
    """

    def __init__(
        self,
        device: SafeDevice,
        loaded: LoadedConfig,
        engine: GradientEngine,
        store: RunStore,
        controller: RunController,
    ) -> None:
        self._device = device
        self._loaded = loaded
        self._engine = engine
        self._store = store
        self._controller = controller
        config = loaded.config
        self._task = build_task(loaded)
        self._train = self._task.subset("train") if self._task.split is not None else self._task
        mapping = input_mapping(loaded, self._task)
        self._train_volts = mapping.to_volts(self._train.inputs)
        self._all_volts = mapping.to_volts(self._task.inputs)
        setup = loaded.setup
        self._input_rows = [setup.electrode_index(n) for n in config.task_inputs()]
        self._loss: LossFunction = get_loss(config.loss.name, **config.loss.params)
        self._optimiser: Optimiser = make_optimiser(
            config.optimiser.name,
            learning_rate=config.optimiser.learning_rate,
            **config.optimiser.params,
        )
        run = config.run
        lower, upper = engine.control_bounds()
        self._lower, self._upper = lower, upper
        self._policy = RestartPolicy(
            lower,
            upper,
            StallDetector(run.stall_patience, run.stall_min_improvement, mode="relative"),
            seed=run.seed + store.next_iteration(),
            max_restarts=run.max_restarts,
        )
        self._stop = StopCriteria(
            max_iterations=run.max_iterations,
            loss_threshold=run.loss_threshold,
            accuracy_hold_iterations=run.accuracy_hold_iterations,
            max_device_seconds=run.max_device_seconds,
        )
        self._batch_rng = np.random.default_rng(run.seed + 7919 * store.next_iteration())

    @property
    def task(self) -> Task:
        """The task being trained."""
        return self._task

    def operating_points(self, controls_v: FloatArray, input_volts: FloatArray) -> FloatArray:
        """One operating point per case, shape ``(n_cases, n_electrodes)`` (V)."""
        rest = self._device.rest_voltages()
        points = np.repeat(rest[None, :], len(input_volts), axis=0)
        points[:, self._input_rows] = input_volts
        points[:, list(self._engine.electrode_indices)] = controls_v
        return points

    def run(self) -> TrainingOutcome:
        """Train until a stop criterion, a stop request or an abort; then evaluate the best."""
        store = self._store
        previous = store.iterations(include_raw=False)
        restart_index = 0
        device_offset = 0.0
        iteration = store.next_iteration()
        if previous:
            last = previous[-1]
            extra = dict(last.extra)
            if "next_controls_v" in extra:  # continue exactly where the last iteration led
                controls = np.asarray(extra["next_controls_v"], dtype=np.float64)
                restart_index = int(extra["next_restart_index"])
                self._optimiser.load_state_dict(extra["optimiser_state"])
            else:
                controls = np.asarray(last.controls_v, dtype=np.float64)
                restart_index = last.restart_index
            controls = project_to_box(controls, self._lower, self._upper)
            device_offset = last.device_seconds
            for record in previous:
                self._policy.best.update(record.loss, record.controls_v, record.run_iteration)
                self._stop.check(
                    record.run_iteration + 1, record.loss, record.accuracy, record.device_seconds
                )
            self._message(f"resuming at iteration {iteration} from {store.path}")
        else:
            controls = self._policy.initial_controls()
        start_device = self._device.device_seconds
        stop_reason = ""
        while True:
            if not self._controller.checkpoint():
                stop_reason = "stop requested"
                break
            device_seconds = device_offset + self._device.device_seconds - start_device
            cases = self._pick_batch()
            points = self.operating_points(controls, self._train_volts[cases])
            targets = self._train.targets[cases]
            batch = self._engine.measure(points)
            outputs = batch.dc_currents_a
            gradients = batch.gradients_a_per_v
            loss, dloss_dx = self._loss(outputs, targets)
            accuracy = threshold_accuracy(outputs, targets, direction=1).accuracy
            sep = separation(outputs, targets)
            device_seconds = device_offset + self._device.device_seconds - start_device
            # decide what comes next before storing, so a resumed run continues exactly here
            reason = self._stop.check(iteration + 1, loss, accuracy, device_seconds)
            next_controls, next_restart = controls, restart_index
            if reason is not None:
                self._policy.best.update(loss, controls, iteration)
            elif batch.saturated and self._policy.restarts_left:
                self._message(f"output saturated at iteration {iteration}: restarting")
                next_controls = self._policy.restart(iteration + 1, "saturation")
                self._optimiser.reset()
                next_restart += 1
            else:
                fresh = self._policy.observe(iteration, loss, controls)
                if fresh is not None:
                    self._message(f"stalled at iteration {iteration}: restarting")
                    next_controls = fresh
                    self._optimiser.reset()
                    next_restart += 1
                else:
                    next_controls = project_to_box(
                        self._optimiser.step(controls, dloss_dx @ gradients),
                        self._lower,
                        self._upper,
                    )
            record = IterationRecord(
                run_iteration=iteration,
                restart_index=restart_index,
                controls_v=controls.copy(),
                outputs_a=outputs,
                gradients_a_per_v=gradients,
                gradient_stderr_a_per_v=batch.stderr_a_per_v,
                loss=float(loss),
                accuracy=float(accuracy),
                separation_a=float(sep),
                device_seconds=device_seconds,
                wall_time_s=time.time(),
                extra={
                    "saturated": batch.saturated,
                    "cases": [int(c) for c in cases],
                    "phase_method": batch.results[0].phase_method,
                    "next_controls_v": [float(v) for v in next_controls],
                    "next_restart_index": next_restart,
                    "optimiser_state": self._optimiser.state_dict(),
                },
                raw={"record_a": batch.records[0]} if self._loaded.config.run.store_raw else None,
            )
            store.append(record)
            self._controller.publish(IterationCompleted(record))
            if reason is not None:
                stop_reason = str(reason)
                break
            iteration += 1
            controls, restart_index = next_controls, next_restart
        return self._evaluate(stop_reason, device_offset, start_device)

    def _pick_batch(self) -> np.ndarray:
        n = self._train.n_cases
        size = self._loaded.config.task.batch_size if self._loaded.config.task else None
        if size is None or size >= n:
            return np.arange(n)
        targets = self._train.targets
        # keep both classes in every batch so correlation and separation are defined
        while True:
            cases = np.sort(self._batch_rng.choice(n, size=size, replace=False))
            if 0 < targets[cases].sum() < size:
                return cases

    def _evaluate(
        self, stop_reason: str, device_offset: float, start_device: float
    ) -> TrainingOutcome:
        best: BestTracker = self._policy.best
        controls = (
            best.best_controls
            if best.best_controls is not None
            else self._policy.initial_controls()
        )
        if self._device.is_shut_down:
            outputs = np.full(self._train.n_cases, np.nan)
            accuracy, sep, test_accuracy = float("nan"), float("nan"), None
        else:
            outputs, _ = self._engine.measure_dc(self.operating_points(controls, self._train_volts))
            accuracy = threshold_accuracy(outputs, self._train.targets, direction=1).accuracy
            sep = separation(outputs, self._train.targets)
            test_accuracy = None
            if self._task.split is not None and "test" in set(self._task.split):
                test = self._task.subset("test")
                test_volts = self._all_volts[np.asarray(self._task.split) == "test"]
                test_out, _ = self._engine.measure_dc(self.operating_points(controls, test_volts))
                threshold = threshold_accuracy(outputs, self._train.targets, direction=1)
                predicted = test_out > threshold.threshold
                test_accuracy = float(np.mean(predicted == (test.targets > 0.5)))
        return TrainingOutcome(
            iterations=self._store.iteration_count(),
            best_loss=float(best.best_loss),
            best_controls_v=np.asarray(controls, dtype=np.float64),
            final_outputs_a=np.asarray(outputs),
            final_accuracy=float(accuracy),
            final_separation_a=float(sep),
            test_accuracy=test_accuracy,
            restarts=list(self._policy.restarts),
            stop_reason=stop_reason,
            device_seconds=device_offset + self._device.device_seconds - start_device,
        )

    def _message(self, text: str) -> None:
        log.info(text)
        self._controller.publish(RunMessage(logging.INFO, text))


def run_directory_name(loaded: LoadedConfig) -> str:
    """Human-readable part of the run directory's name."""
    config = loaded.config
    if config.run.name:
        return config.run.name
    task = config.task
    if task is None:
        return "run"
    if task.name:
        return f"{task.kind}-{task.name}"
    if task.csv_path is not None:
        return f"{task.kind}-{task.csv_path.stem}"
    return task.kind
