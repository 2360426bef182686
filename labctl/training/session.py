"""One training run end to end: store, device, calibration, engine, trainer, report.

Used by the CLI (and any other view): the caller owns the :class:`RunController` and may run
:func:`run_training` in a worker thread while it handles signals, progress and pause/stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.config import LoadedConfig, parse_config
from labctl.connect import build_device
from labctl.homodyne.calibrate import (
    calibration_frequencies,
    default_calibration_path,
    measure_chain_response,
    save_calibration,
)
from labctl.homodyne.engine import PROJECTION, GradientEngine
from labctl.homodyne.session import open_engine
from labctl.run.control import RunController, RunState
from labctl.run.events import RunMessage
from labctl.run.store import RunStore, writer_lock
from labctl.device.safety import DeviceShutDown, SafeDevice
from labctl.training.trainer import Trainer, TrainingOutcome, run_directory_name

log = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """A prepared run: its store and configuration (the device is opened by :meth:`execute`)."""

    loaded: LoadedConfig
    store: RunStore
    outcome: TrainingOutcome | None = None
    state: RunState | None = None

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.store.path


def new_run(loaded: LoadedConfig) -> TrainingRun:
    """Create the run directory (resolved config and provenance) for a fresh run."""
    if loaded.config.task is None:
        raise ValueError("the configuration has no 'task' section: nothing to train")
    store = RunStore.create(
        loaded.config.run.directory,
        run_directory_name(loaded),
        loaded.resolved_dict(),
        provenance_extra={"config_source": str(loaded.source) if loaded.source else None},
    )
    return TrainingRun(loaded=loaded, store=store)


def resume_run(run_dir: Path) -> TrainingRun:
    """Reopen a run directory (its stored, resolved configuration is used)."""
    store = RunStore.open(run_dir)
    loaded = parse_config(store.config_text(), source=run_dir / "config.yaml")
    return TrainingRun(loaded=loaded, store=store)


def ensure_calibration(device: SafeDevice, loaded: LoadedConfig, engine: GradientEngine) -> str:
    """Calibrate now if no valid calibration exists and the backend can switch a resistor in.

    Returns a note saying which calibration is used.
    """
    if loaded.config.homodyne.phase != "projection":
        return "sign-by-phase rule (configured)"
    if engine.phase_method == PROJECTION:
        return "stored calibration"
    cal = loaded.config.homodyne.calibration
    electrode = cal.electrode or loaded.config.perturbed_electrodes()[0]
    try:
        with device.reference_resistor(loaded.setup.electrode_index(electrode), cal.resistance_ohm):
            response = measure_chain_response(
                device,
                loaded,
                calibration_frequencies(engine.plan),
                loaded.config.homodyne.window_s,
            )
    except NotImplementedError:
        return "uncalibrated: sign-by-phase fallback (run `labctl calibrate`)"
    path = default_calibration_path(loaded)
    try:
        save_calibration(path, response, loaded)
    except OSError as exc:
        log.warning("could not save the calibration to %s: %s", path, exc)
    engine.set_calibration(response)
    return f"calibrated at start ({path.name})"


def execute(run: TrainingRun, controller: RunController) -> RunState:
    """Open the device, train, evaluate, and record the outcome; returns the final state.

    ``controller`` must be started. Aborting calls the device's safe shutdown at once.
    """
    loaded = run.loaded
    store = run.store
    summary: dict[str, Any] = {}
    with writer_lock(store.path), build_device(loaded) as device:
        controller.set_abort_hook(device.safe_shutdown)
        engine, _ = open_engine(device, loaded)
        note = ensure_calibration(device, loaded, engine)
        controller.publish(RunMessage(logging.INFO, f"phase: {engine.phase_method} ({note})"))
        calibration = engine.calibration
        store.set_status(
            "running",
            {
                "instrument": device.identity(),
                "sample_rate_hz": device.sample_rate_hz,
                "frequencies_hz": list(engine.plan.frequencies_hz),
                "amplitudes_v": [float(a) for a in engine.amplitudes_v],
                "phase_method": engine.phase_method,
                "calibration_note": note,
                "calibration": calibration.to_dict() if calibration is not None else None,
            },
        )
        trainer = Trainer(device, loaded, engine, store, controller)

        def body(ctl: RunController) -> dict[str, Any]:
            try:
                run.outcome = trainer.run()
            except DeviceShutDown:
                if ctl.state is RunState.ABORTING:
                    return {"aborted": True}
                raise
            summary.update(run.outcome.as_dict())
            return summary

        run.state = controller.execute(body)
    error = controller.error
    if error is not None:
        summary["error"] = repr(error)
    store.set_status(str(run.state), summary)
    return run.state
