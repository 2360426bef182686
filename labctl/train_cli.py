"""``labctl train``: a training run with a progress bar, clean Ctrl-C and a summary.

The run executes in a worker thread; the main thread shows progress and handles signals:
the first Ctrl-C stops after the current iteration (everything saved), a second Ctrl-C or
SIGTERM aborts with an immediate safe shutdown.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from tqdm import tqdm

from labctl.config import load_config
from labctl.device.safety import ShutdownFailed
from labctl.exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SHUTDOWN_FAILED,
    EXIT_TERMINATED,
)
from labctl.run.control import RunController
from labctl.run.events import Event, IterationCompleted, RunMessage
from labctl.run.state import RunState
from labctl.training.report import write_report
from labctl.training.resume import RunNotResumable, stop_criteria
from labctl.training.session import TrainingRun, execute, new_run, resume_run
from labctl.training.trainer import build_task

EXIT_CODES = {
    RunState.FINISHED: EXIT_OK,
    RunState.FAILED: EXIT_FAILED,
    RunState.ABORTED: EXIT_INTERRUPTED,
}


class _Progress:
    """Progress bar fed by run events (from the worker thread)."""

    def __init__(self, total: int, initial: int) -> None:
        self._bar = tqdm(
            total=total, initial=initial, unit="it", dynamic_ncols=True, file=sys.stderr
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, IterationCompleted):
            r = event.record
            self._bar.set_postfix_str(
                f"loss {r.loss:.4g} acc {r.accuracy:.0%} sep {r.separation_a * 1e9:+.2f} nA "
                f"device {r.device_seconds:.1f} s restart {r.restart_index}",
                refresh=False,
            )
            self._bar.update(1)
        elif isinstance(event, RunMessage):
            self._bar.write(event.text)

    def close(self) -> None:
        self._bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    """Train the configured task (or resume a run) and print a summary.

    The signal handlers are in place and the run controller is started before the run
    directory exists, so a Ctrl-C or SIGTERM at any moment after that is a stop or an abort of
    this run (recorded in its store), never a lost signal.
    """
    controller = RunController()
    interrupts = 0
    terminated = False

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and controller.state in (RunState.RUNNING, RunState.PAUSED):
            tqdm.write("stopping after this iteration (Ctrl-C again to abort now)", sys.stderr)
            controller.request_stop("Ctrl-C")
        elif not controller.is_terminal() and controller.state is not RunState.ABORTING:
            tqdm.write("aborting: ramping electrodes to 0 V", sys.stderr)
            with contextlib.suppress(ShutdownFailed):  # reported from the run's device below
                controller.abort("Ctrl-C twice")

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        nonlocal terminated
        terminated = True
        if not controller.is_terminal() and controller.state is not RunState.ABORTING:
            with contextlib.suppress(ShutdownFailed):  # reported from the run's device below
                controller.abort("SIGTERM")

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
    }
    outcome_box: dict[str, Any] = {}
    progress: _Progress | None = None
    try:
        controller.start("labctl train")
        try:
            run = (
                resume_run(Path(args.resume)) if args.resume else new_run(load_config(args.config))
            )
        except RunNotResumable as exc:
            print(f"labctl train: {exc}", file=sys.stderr)
            with contextlib.suppress(Exception):
                controller.abort("nothing to resume")
            return EXIT_BAD_INPUT
        loaded = run.loaded
        budget = stop_criteria(loaded).max_iterations  # the method may allow fewer
        progress = _Progress(budget, run.store.iteration_count())
        controller.bus.subscribe(progress)

        def worker() -> None:
            try:
                outcome_box["state"] = execute(run, controller)
            except BaseException as exc:  # reported by the main thread
                outcome_box["error"] = exc

        thread = threading.Thread(target=worker, name="labctl-train")
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
    except BaseException:
        if not controller.is_terminal():
            with contextlib.suppress(Exception):
                controller.abort("labctl train could not start the run")
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if progress is not None:
            progress.close()
    if "error" in outcome_box:
        error = outcome_box["error"]
        if isinstance(error, ShutdownFailed):
            run.store.close()
        raise error
    state = outcome_box.get("state", controller.state)
    _finish(run, state, args, controller.error)
    report = run.shutdown_report
    if report is not None and not report.ok:
        print(
            f"labctl train: the electrodes were not verified at 0 V: {report.summary()}",
            file=sys.stderr,
        )
        return EXIT_SHUTDOWN_FAILED
    if terminated and state is RunState.ABORTED:
        return EXIT_TERMINATED
    return EXIT_CODES.get(state, EXIT_FAILED)


def _finish(
    run: TrainingRun, state: RunState, args: argparse.Namespace, error: BaseException | None
) -> None:
    store = run.store
    summary = store.summary()
    if run.outcome is not None and run.loaded.config.run.report:
        path = write_report(store, build_task(run.loaded), summary)
        summary["report"] = str(path)
    print(f"run {store.path} ended: {state}")
    if state is RunState.FAILED and error is not None:
        print(
            f"labctl train: the run failed: {error}\n"
            f"every completed iteration is kept in {store.path}; once the cause is fixed, "
            f"continue with `labctl train --resume {store.path}`",
            file=sys.stderr,
        )
    if run.shutdown_report is not None:
        print(f"electrodes: {run.shutdown_report.summary()}")
    if run.outcome is not None:
        o = run.outcome
        rows = [
            ("iterations", f"{o.iterations}"),
            ("restarts", f"{len(o.restarts)}"),
            ("stop reason", o.stop_reason),
            ("best loss", f"{o.best_loss:.5g}"),
            ("final accuracy (no tones)", f"{o.final_accuracy:.0%}"),
            ("final separation", f"{o.final_separation_a * 1e9:+.3f} nA"),
            ("device time", f"{o.device_seconds:.2f} s"),
            ("best controls (V)", " ".join(f"{v:+.4f}" for v in o.best_controls_v)),
            ("solved", "yes" if o.solved else "no"),
        ]
        if o.test_accuracy is not None:
            rows.insert(5, ("held-out accuracy", f"{o.test_accuracy:.0%}"))
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"  {key:<{width}}  {value}")
    if "report" in summary:
        print(f"report: {summary['report']}")
    store.close()
