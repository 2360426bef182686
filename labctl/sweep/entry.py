"""One training run from plain data: a configuration dict in, a result dict out.

:func:`train_from_dict` is what a sweep sends to a worker process or a Dask worker: it and its
arguments pickle, and its result is JSON-ready. It runs the run to its end in the calling
thread (no signal handling; the worker ignores Ctrl-C) and watches a *stop file*: when the
file appears the run stops after its current iteration (``stop``) or shuts down at once
(``abort``); either way the device is shut down by the safety layer, electrodes at 0 V.

It is idempotent on its ``run_dir``: a point whose result says it is complete is not run again;
a run store left there by an interrupted or killed run is resumed (bit-for-bit on simulated
devices); a store that cannot be opened is set aside and the point starts afresh.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from labctl.config import parse_config
from labctl.device.safety import ShutdownFailed
from labctl.run.control import RunController
from labctl.run.state import RunState
from labctl.run.store import DATABASE_FILE, RunStore
from labctl.run.store.files import fsync_dir, write_file_durably
from labctl.sweep.placement import place_run_files
from labctl.training.resume import RunNotResumable
from labctl.training.session import TrainingRun, execute, new_run, resume_run

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
"""The point's result (written atomically when the run ends, complete or not)."""
STOP = "stop"
ABORT = "abort"
STOP_POLL_S = 0.1
"""How often the stop file is looked for (s)."""
INTERRUPTED = "stop requested"
"""The stop reason of a run that was stopped from outside (see the trainer)."""


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    """The stored result of a point directory, or None (missing or unreadable)."""
    try:
        data = json.loads((Path(run_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_stop_request(stop_file: str | Path | None) -> str | None:
    """``"stop"`` or ``"abort"`` when the stop file exists (anything else in it means stop)."""
    if stop_file is None:
        return None
    try:
        text = Path(stop_file).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError:
        return STOP
    return ABORT if text == ABORT else STOP


def run_stores(run_dir: Path) -> list[Path]:
    """Run-store directories inside a point directory, oldest first."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if (p / DATABASE_FILE).is_file())


def train_from_dict(
    config: Mapping[str, Any], run_dir: str, stop_file: str | None = None
) -> dict[str, Any]:
    """Train the configuration in ``run_dir`` (created if missing); the JSON-ready result.

    Args:
        config: Configuration data (as a YAML file would hold it), with absolute file paths.
            ``run.directory`` is replaced by ``run_dir``, and the run's calibration (and, on a
            simulated setup, its persisted voltages) are placed in ``run_dir`` (see
            :func:`~labctl.sweep.placement.place_run_files`).
        run_dir: The point's directory: it receives the run store and ``result.json``.
        stop_file: Watched while the run executes (see the module docstring).

    Returns:
        ``status`` (the run's final state, or ``not started`` when the stop file was there
        first, or ``failed``), ``complete`` (ended by its own stop criteria: a resumed sweep
        skips it), ``solved``, ``iterations``, ``device_seconds`` (to the last iteration: ramps
        and settling included, the final evaluation not), ``final_loss`` (last iteration),
        ``best_loss``, ``final_accuracy`` and ``test_accuracy`` (final unperturbed measurement),
        ``stop_reason``, ``restarts``, ``shutdown_ok``, ``shutdown``, ``run`` (the store's
        folder name), ``resumed``, ``wall_s`` and ``error``. Errors of the run are reported in
        the result, not raised; an invalid configuration raises
        :class:`~labctl.config.ConfigError`.
    """
    directory = Path(run_dir)
    previous = read_result(directory)
    if previous is not None and previous.get("complete"):
        return previous
    if read_stop_request(stop_file) is not None:
        return {"status": "not started", "complete": False}
    directory.mkdir(parents=True, exist_ok=True)
    data = place_run_files(config, directory)
    started = time.monotonic()
    run, resumed, finished = _open_run(data, directory)
    try:
        if finished:
            result = _result(run, None, resumed=True)
        else:
            result = _execute(run, stop_file)
            result["resumed"] = resumed
    finally:
        run.store.close()
    result["wall_s"] = time.monotonic() - started
    write_file_durably(directory / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    fsync_dir(directory)
    return result


def _open_run(data: Mapping[str, Any], directory: Path) -> tuple[TrainingRun, bool, bool]:
    """The point's run (resumed when a store exists), whether it was resumed, and whether
    its store says it already finished."""
    for store_dir in reversed(run_stores(directory)):
        try:
            return resume_run(store_dir), True, False
        except RunNotResumable:
            loaded = parse_config(
                (store_dir / "config.yaml").read_text(), source=store_dir / "config.yaml"
            )
            store = RunStore.open(store_dir, read_only=True)
            return TrainingRun(loaded=loaded, store=store), True, True
        except Exception as exc:  # an unreadable store (e.g. killed while being created)
            aside = store_dir.with_name(store_dir.name + ".abandoned")
            log.warning("set aside the unreadable run store %s (%s)", store_dir, exc)
            store_dir.rename(aside)
    loaded = parse_config(yaml.safe_dump(dict(data), sort_keys=False))
    return new_run(loaded), False, False


def _execute(run: TrainingRun, stop_file: str | None) -> dict[str, Any]:
    controller = RunController()
    controller.start("labctl sweep")
    done = threading.Event()

    def watch() -> None:
        requested: str | None = None
        while not done.wait(STOP_POLL_S):
            request = read_stop_request(stop_file)
            if request is None or request == requested:
                continue
            requested = request
            state = controller.state
            try:
                if request == STOP and state in (RunState.RUNNING, RunState.PAUSED):
                    controller.request_stop("sweep interrupted")
                elif (
                    request == ABORT
                    and not controller.is_terminal()
                    and (state is not RunState.ABORTING)
                ):
                    controller.abort("sweep aborted")
            except Exception as exc:  # reported by the run's own shutdown report
                log.warning("could not %s the run: %s", request, exc)

    watcher = threading.Thread(target=watch, name="labctl-sweep-stop", daemon=True)
    if stop_file is not None:
        watcher.start()
    error: BaseException | None = None
    try:
        execute(run, controller)
    except ShutdownFailed as exc:
        error = exc
    except Exception as exc:  # the run failed before run control could record it
        log.exception("the run in %s failed", run.path)
        error = exc
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join()
    return _result(run, error or controller.error)


def _result(run: TrainingRun, error: BaseException | None, resumed: bool = False) -> dict[str, Any]:
    store = run.store
    status = store.status()
    summary = store.summary()
    records = store.iterations(include_raw=False)
    last = records[-1] if records else None
    outcome = run.outcome
    stop_reason = outcome.stop_reason if outcome is not None else summary.get("stop_reason")
    report = run.shutdown_report
    shutdown_ok = report.ok if report is not None else "shutdown" not in summary
    return {
        "status": status,
        "complete": status == str(RunState.FINISHED) and stop_reason not in (None, "", INTERRUPTED),
        "solved": bool(summary.get("solved", False)),
        "iterations": len(records),
        "device_seconds": last.device_seconds if last is not None else 0.0,
        "final_loss": last.loss if last is not None else None,
        "best_loss": summary.get("best_loss"),
        "final_accuracy": summary.get("final_accuracy"),
        "test_accuracy": summary.get("test_accuracy"),
        "stop_reason": stop_reason,
        "restarts": len(summary.get("restarts", [])),
        "shutdown_ok": bool(shutdown_ok),
        "shutdown": report.summary() if report is not None else summary.get("shutdown"),
        "run": store.path.name,
        "resumed": resumed,
        "error": repr(error) if error is not None else summary.get("error"),
    }
