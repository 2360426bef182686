"""One training run end to end: store, device, calibration, engine, trainer, report.

Used by the CLI (and any other view): the caller owns the :class:`RunController` and may run
:func:`execute` in a worker thread while it handles signals, progress and pause/stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.config import LoadedConfig, parse_config
from labctl.connect import build_device
from labctl.device.safety import DeviceShutDown, SafeDevice, ShutdownFailed, ShutdownReport
from labctl.homodyne.calibrate import (
    CalibrationInterrupted,
    calibration_frequencies,
    measure_chain_response,
)
from labctl.homodyne.calibration import ChainResponse
from labctl.homodyne.engine import PROJECTION, GradientEngine
from labctl.homodyne.session import open_engine
from labctl.run.control import RunController
from labctl.run.events import RunMessage
from labctl.run.state import RunState
from labctl.run.store import RunStore, writer_lock
from labctl.training.methods import get_method
from labctl.training.resume import check_resumable
from labctl.training.trainer import Trainer, TrainingOutcome, run_directory_name

log = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """A prepared run: its store and configuration (the device is opened by :meth:`execute`)."""

    loaded: LoadedConfig
    store: RunStore
    outcome: TrainingOutcome | None = None
    state: RunState | None = None
    shutdown_report: ShutdownReport | None = None
    """How the device ended up (None when it was never opened)."""

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.store.path


def new_run(loaded: LoadedConfig) -> TrainingRun:
    """Create the run directory (resolved config and provenance) for a fresh run.

    Relative paths in the configuration (a CSV task's file, the calibration and state files)
    are stored as absolute paths, so the stored configuration means the same from the run
    directory when the run is resumed.
    """
    if loaded.config.task is None:
        raise ValueError("the configuration has no 'task' section: nothing to train")
    store = RunStore.create(
        loaded.config.run.directory,
        run_directory_name(loaded),
        absolute_paths(loaded),
        provenance_extra={"config_source": str(loaded.source) if loaded.source else None},
    )
    return TrainingRun(loaded=loaded, store=store)


def absolute_paths(loaded: LoadedConfig) -> dict[str, Any]:
    """The resolved configuration with its file paths made absolute (from the config's folder)."""
    data = loaded.resolved_dict()
    base = (loaded.source.parent if loaded.source is not None else Path.cwd()).resolve()

    def fix(section: dict[str, Any] | None, key: str) -> None:
        if section is not None and section.get(key) is not None:
            path = Path(section[key])
            section[key] = str(path if path.is_absolute() else (base / path).resolve())

    fix(data.get("task"), "csv_path")
    fix((data.get("homodyne") or {}).get("calibration"), "file")
    fix((data.get("setup") or {}).get("safety"), "state_file")
    params = (data.get("method") or {}).get("params")
    fix(params, "twin")
    fix(params, "samples")
    return data


def resume_run(run_dir: Path) -> TrainingRun:
    """Reopen a run directory (its stored, resolved configuration is used).

    Raises:
        RunNotResumable: The run finished: its stored iterations reached its budget or another
            stop criterion, and it recorded its end. Nothing is opened for writing then.
    """
    run_dir = Path(run_dir)
    with RunStore.open(run_dir, read_only=True) as reader:
        loaded = parse_config(reader.config_text(), source=run_dir / "config.yaml")
        check_resumable(loaded, reader.iterations(include_raw=False), reader.status(), str(run_dir))
    store = RunStore.open(run_dir)
    return TrainingRun(loaded=loaded, store=store)


def ensure_calibration(
    device: SafeDevice,
    loaded: LoadedConfig,
    engine: GradientEngine,
    checkpoint: Callable[[], bool] | None = None,
) -> str:
    """Calibrate now if no valid calibration exists and the backend can switch a resistor in.

    ``checkpoint`` is called before every calibration record (see
    :func:`~labctl.homodyne.calibrate.measure_chain_response`). Returns a note saying which
    calibration is used.
    """
    if loaded.config.homodyne.phase != "projection":
        return "sign-by-phase rule (configured)"
    if engine.phase_method == PROJECTION:
        return "stored calibration"
    if not device.can_switch_reference:
        return "uncalibrated: sign-by-phase fallback (run `labctl calibrate`)"
    cal = loaded.config.homodyne.calibration
    electrode = cal.electrode or loaded.config.perturbed_electrodes()[0]
    with device.reference_resistor(loaded.setup.electrode_index(electrode), cal.resistance_ohm):
        response = measure_chain_response(
            device,
            loaded,
            calibration_frequencies(engine.plan),
            loaded.config.homodyne.window_s,
            checkpoint,
        )
    # Kept with the run only (the caller writes it into the run directory): a start-up
    # calibration never writes next to the configuration, which parallel runs of one config
    # would race for. `labctl calibrate` makes a calibration that later runs reuse.
    engine.set_calibration(response)
    return "calibrated at start, kept with the run"


def train_to_end(loaded: LoadedConfig) -> TrainingRun:
    """A fresh run of ``loaded``, started and executed to its end in this thread (no signal
    handling, no progress bar: for scripts, benchmarks and sweeps). The store stays open."""
    run = new_run(loaded)
    controller = RunController()
    controller.start()
    execute(run, controller)
    return run


def execute(
    run: TrainingRun,
    controller: RunController,
    on_device: Callable[[SafeDevice], None] | None = None,
) -> RunState:
    """Open the device, calibrate, train, evaluate, and record the outcome; the final state.

    ``controller`` must be started. Everything after the start, device open and start-up
    calibration included, runs under run control: a stop or abort during them ends the run
    as it would during training. The abort hook (the device's safe shutdown) is registered
    the moment the device is open; an abort that arrived during open runs it then.
    ``on_device`` is called with the opened device right after that, in the worker thread (a
    view keeps it to park the electrodes mid-run; park and unpark are safe from any thread).
    """
    loaded = run.loaded
    store = run.store
    summary: dict[str, Any] = {}

    def body(ctl: RunController) -> dict[str, Any]:
        if not ctl.checkpoint():
            return summary  # stopped or aborted before the device was opened
        device = build_device(loaded)
        try:
            with writer_lock(store.path), device:
                ctl.set_abort_hook(lambda: _shutdown_or_raise(device))
                if on_device is not None:
                    on_device(device)
                _train(run, device, ctl, summary)
        except ShutdownFailed as exc:
            summary["shutdown"] = exc.report.summary()
            raise
        except CalibrationInterrupted:
            pass  # stop or abort between calibration records: the run ends before training
        except DeviceShutDown:
            if ctl.state is not RunState.ABORTING:
                raise
        finally:
            run.shutdown_report = device.last_shutdown_report
        return summary

    try:
        run.state = controller.execute(body)
    finally:
        error = controller.error
        if error is not None:
            summary["error"] = repr(error)
        state = run.state if run.state is not None else controller.state
        store.set_status(str(state), summary)
    return run.state


def _shutdown_or_raise(device: SafeDevice) -> None:
    """The abort hook: shut down now; a shutdown that fails is raised, so views hear of it."""
    report = device.safe_shutdown()
    if not report.ok:
        raise ShutdownFailed(report)


def _stored_calibration(store: RunStore) -> dict[str, Any] | None:
    """The calibration a run started with: its ``calibration.json``, else (older runs) the one
    recorded in its first "running" status event; None when neither exists."""
    document = store.calibration()
    if document is not None:
        return document
    for _time, status, summary in store.status_history():
        if status == "running" and "calibration" in summary:
            return {"note": summary.get("calibration_note", ""), "response": summary["calibration"]}
    return None


def _train(
    run: TrainingRun, device: SafeDevice, ctl: RunController, summary: dict[str, Any]
) -> None:
    """Calibrate if needed, then train; the device is open.

    The calibration is kept with the run (``calibration.json``): a resumed run uses the one the
    run started with rather than looking next to the stored configuration.
    """
    loaded = run.loaded
    store = run.store
    engine, _ = open_engine(device, loaded)
    stored = _stored_calibration(store) if store.iteration_count() else None
    if stored is not None:
        response = stored.get("response")
        engine.set_calibration(ChainResponse.from_dict(response) if response else None)
        note = f"the run's own calibration ({stored.get('note', 'stored with the run')})"
    elif not get_method(loaded.config.method.name).uses_homodyne:
        note = f"not needed by method {loaded.config.method.name!r} (DC plateaus only)"
    else:
        note = ensure_calibration(device, loaded, engine, ctl.checkpoint)
    ctl.publish(RunMessage(logging.INFO, f"phase: {engine.phase_method} ({note})"))
    calibration = engine.calibration
    if stored is None:
        store.write_calibration(
            {
                "note": note,
                "response": calibration.to_dict() if calibration is not None else None,
            }
        )
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
            "method": loaded.config.method.name,
        },
    )
    run.outcome = Trainer(device, loaded, engine, store, ctl).run()
    summary.update(run.outcome.as_dict())
