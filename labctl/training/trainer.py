"""The in-materia training loop (Qt-free), shared by every training method.

The method (``method.name``: HGE by default, or a baseline, see :mod:`labctl.training.methods`)
measures each iteration and decides the next state; this loop adds run control, the stop
criteria, the run store (one record and one resume checkpoint per iteration, in one transaction)
and the final unperturbed evaluation. With HGE, per iteration: build one operating point per
input case (inputs at the case voltages, controls at their present values), measure every
case's output current and gradient with the homodyne engine in one record, chain-rule
dL/dV = Σ_c dL/dI_c · ∂I_c/∂V through the loss, take an optimiser step, project the controls
into their ranges (shrunk by the tone amplitudes), append the iteration to the run store and
publish it to every subscriber. Restarts from fresh random
controls follow stalls and output saturation; the best controls are kept across restarts. At
the end the best controls are measured again without tones, and the final accuracy and
separation come from that unperturbed record.

Device time is the safe device's own count: ramps, settling and tones included.
"""

from __future__ import annotations

import logging
import math
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
from labctl.training.baselines import measure_plateaus
from labctl.training.losses import LossFunction, get_loss
from labctl.training.methods import get_method
from labctl.training.methods.base import MethodContext, TrainingMethod
from labctl.training.metrics import separation, separation_noise, threshold_accuracy
from labctl.training.optimisers import BestTracker, generator_state, set_generator_state
from labctl.training.resume import (
    SEPARATION_NOISE_KEY,
    capture_simulation_state,
    replay_stop_criteria,
    restore_simulation_state,
    stop_criteria,
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
    """Linear map from task units onto the input electrodes' ranges or ``task.input_windows_v``."""
    setup = loaded.setup
    names = loaded.config.task_inputs()
    windows = (loaded.config.task.input_windows_v if loaded.config.task else None) or {}
    electrodes = [setup.electrodes[setup.electrode_index(n)] for n in names]
    ranges = [windows.get(e.name, (e.min_v, e.max_v)) for e in electrodes]
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
    final_separation_noise_a: float = float("nan")

    @property
    def separation_in_noise(self) -> float:
        """Final separation over its noise (the standard error of the difference of the two
        case means that set it, from the block spread of their windows); NaN when unknown."""
        noise = self.final_separation_noise_a
        if not (math.isfinite(noise) and noise > 0):
            return math.nan
        return self.final_separation_a / noise

    def solved_with_margin(self, multiple: float) -> bool:
        """Solved, with a final separation of at least ``multiple`` times its noise."""
        return self.solved and self.separation_in_noise >= multiple

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
            "final_separation_noise_a": (
                None if math.isnan(self.final_separation_noise_a) else self.final_separation_noise_a
            ),
        }


class Trainer:
    """Trains the controls of one device on one task with the configured method.

    The loop is the same for every method (see :mod:`labctl.training.methods`): a run-control
    checkpoint before each iteration, the method's measurement, the stop criteria, the method's
    decision, one record and one checkpoint appended to the run store in one transaction, one
    event to every subscriber. See the module docstring for the HGE iteration.

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
        run = config.run
        self._stop = stop_criteria(loaded)
        self._batch_rng = np.random.default_rng(run.seed + 7919 * store.next_iteration())
        context = MethodContext(
            device=device,
            loaded=loaded,
            engine=engine,
            loss=self._loss,
            operating_points=self.operating_points,
            first_iteration=store.next_iteration(),
            message=self._message,
            task=self._train,
            input_volts=self._train_volts,
        )
        spec = get_method(config.method.name)
        self._method: TrainingMethod = spec.build(context, config.method.parsed_params())

    @property
    def task(self) -> Task:
        """The task being trained."""
        return self._task

    @property
    def method(self) -> TrainingMethod:
        """The training method (strategy) in use."""
        return self._method

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
        method = self._method
        previous = store.iterations(include_raw=False)
        device_offset = 0.0
        iteration = store.next_iteration()
        if previous:
            last = previous[-1]
            checkpoint = store.checkpoint()
            if checkpoint is not None and checkpoint[0] == last.run_iteration:
                state = checkpoint[1]
                method.load_state_dict(state["method"])
                set_generator_state(self._batch_rng, state["batch_rng"])
                restore_simulation_state(self._device, state.get("simulation"))
            else:  # stored before checkpoints: continue from the last record
                method.resume_from_record(last)
                for record in previous:
                    method.best.update(record.loss, record.controls_v, record.run_iteration)
            device_offset = last.device_seconds
            done = replay_stop_criteria(self._stop, previous)
            if done is not None:  # killed during the final evaluation: only evaluate
                self._message(f"{store.path}: every iteration is stored ({done}); evaluating")
                return self._evaluate(str(done), device_offset, self._device.device_seconds)
            self._message(f"resuming at iteration {iteration} from {store.path}")
            start_device = self._device.device_seconds
        else:
            start_device = self._device.device_seconds  # what the start measures counts too
            method.start()
            # device time spent before the run (e.g. sampling a twin's data) counts too
            device_offset = float(getattr(method, "offline_device_seconds", 0.0))
        stop_reason = ""
        while True:
            if not self._controller.checkpoint():
                stop_reason = "stop requested"
                break
            cases = self._pick_batch()
            observation = method.observe(
                self._train_volts[cases], self._train.targets[cases], cases
            )
            device_seconds = device_offset + self._device.device_seconds - start_device
            # decide what comes next before storing, so a resumed run continues exactly here
            noise = observation.extra.get(SEPARATION_NOISE_KEY)
            reason = self._stop.check(
                iteration + 1,
                observation.loss,
                observation.accuracy,
                device_seconds,
                observation.separation_a,
                None if noise is None else float(noise),
            )
            decided = method.advance(observation, iteration, stopping=reason is not None)
            record = IterationRecord(
                run_iteration=iteration,
                restart_index=observation.restart_index,
                controls_v=observation.controls_v,
                outputs_a=observation.outputs_a,
                gradients_a_per_v=observation.gradients_a_per_v,
                gradient_stderr_a_per_v=observation.stderr_a_per_v,
                loss=observation.loss,
                accuracy=observation.accuracy,
                separation_a=observation.separation_a,
                device_seconds=device_seconds,
                wall_time_s=time.time(),
                extra={**observation.extra, **decided},
                raw=observation.raw,
            )
            checkpoint_state = {
                "method": method.state_dict(),
                "batch_rng": generator_state(self._batch_rng),
                "simulation": capture_simulation_state(self._device),
                "stop_reason": None if reason is None else str(reason),
            }
            store.append(record, checkpoint=checkpoint_state)
            self._controller.publish(IterationCompleted(record))
            if reason is not None:
                stop_reason = str(reason)
                break
            iteration += 1
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
        best: BestTracker = self._method.best
        controls = (
            best.best_controls
            if best.best_controls is not None
            else self._method.fallback_controls()
        )
        sep_noise = float("nan")
        if self._device.is_shut_down:
            outputs = np.full(self._train.n_cases, np.nan)
            accuracy, sep, test_accuracy = float("nan"), float("nan"), None
        else:
            homodyne = self._loaded.config.homodyne
            final = measure_plateaus(
                self._device,
                self.operating_points(controls, self._train_volts),
                window_s=homodyne.window_s,
                settle_s=homodyne.settle_s,
            )
            outputs = final.means_a
            accuracy = threshold_accuracy(outputs, self._train.targets, direction=1).accuracy
            sep = separation(outputs, self._train.targets)
            sep_noise = separation_noise(outputs, self._train.targets, final.block_sems_a)
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
            restarts=list(self._method.restarts),
            stop_reason=stop_reason,
            device_seconds=device_offset + self._device.device_seconds - start_device,
            final_separation_noise_a=sep_noise,
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
