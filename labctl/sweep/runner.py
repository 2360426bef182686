"""A sweep directory and the loop that fills it: submit points, collect results, stop cleanly.

Layout of a sweep directory::

    sweep.json           the expanded, validated points (id, grid labels, configuration)
    points/<id>/         one point: its run store (a normal run directory) and result.json
    STOP                 present while the sweep is being interrupted ("stop" or "abort")
    results.json         every point's result, in grid order
    summary.md           the summary tables (see labctl.sweep.summary)

Each run has its own store: a run store is one SQLite database written by one process under a
writer lock, so parallel runs never contend for a database, and every point stays a normal run
directory that ``labctl runs``, ``labctl export`` and the run browser read as they are.

Interrupting: :meth:`SweepRunner.request_stop` writes ``STOP`` ("stop"); every run in progress
stops after its current iteration and its device shuts down through the safety layer; no new
point starts. :meth:`SweepRunner.request_abort` ("abort") shuts the runs' devices down at once.
Finished points are never touched again; :func:`resume_sweep` runs the rest (an interrupted
run continues from its store).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labctl.run.store.files import fsync_dir, write_file_durably
from labctl.sweep.entry import ABORT, STOP, read_result, train_from_dict
from labctl.sweep.executors import ExecutorInfo
from labctl.sweep.placement import max_concurrent_runs
from labctl.sweep.spec import Sweep, SweepPoint, SweepSpecError

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
STOP_FILE = "STOP"
RESULTS_FILE = "results.json"
POINTS_DIR = "points"
FORMAT_VERSION = 1
WAIT_S = 0.2
"""How often the loop looks at interrupt requests while runs execute (s)."""

ResultCallback = Callable[[SweepPoint, dict[str, Any]], None]
ExecutorFactory = Callable[[int], AbstractContextManager[ExecutorInfo]]
"""``factory(slots_wanted)``: a context manager yielding the executor to run points on."""


def point_dir(directory: Path, point: SweepPoint) -> Path:
    """The point's run directory inside the sweep directory."""
    return directory / POINTS_DIR / point.id


def write_sweep(sweep: Sweep) -> None:
    """Create the sweep directory and its ``sweep.json`` (refuses an existing sweep).

    Raises:
        SweepSpecError: The directory already holds a sweep (resume it instead).
    """
    directory = sweep.directory
    if (directory / SWEEP_FILE).exists():
        raise SweepSpecError(
            f"{directory} already holds a sweep; continue it with "
            f"`labctl sweep --resume {directory}` or choose another sweep.directory"
        )
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "labctl_sweep": FORMAT_VERSION,
        "name": sweep.name,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": sweep.params,
        "workers": sweep.workers,
        "scheduler": sweep.scheduler,
        "points": [
            {"id": p.id, "labels": p.labels, "simulated": p.simulated, "config": p.config}
            for p in sweep.points
        ],
    }
    write_file_durably(directory / SWEEP_FILE, json.dumps(document, indent=1) + "\n")
    fsync_dir(directory)


def read_sweep(directory: str | Path) -> Sweep:
    """The sweep stored in ``directory`` (for ``--resume``).

    Raises:
        SweepSpecError: No readable ``sweep.json`` there.
    """
    directory = Path(directory).resolve()
    try:
        document = json.loads((directory / SWEEP_FILE).read_text(encoding="utf-8"))
        points = [
            SweepPoint(
                id=str(p["id"]),
                labels=dict(p["labels"]),
                config=dict(p["config"]),
                simulated=bool(p["simulated"]),
            )
            for p in document["points"]
        ]
    except FileNotFoundError:
        raise SweepSpecError(
            f"--resume: {directory} holds no sweep ({SWEEP_FILE} missing)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SweepSpecError(f"--resume: {directory / SWEEP_FILE} is unreadable: {exc}") from None
    return Sweep(
        name=str(document.get("name", directory.name)),
        directory=directory,
        points=points,
        workers=document.get("workers"),
        scheduler=document.get("scheduler"),
        params=list(document.get("params", [])),
    )


@dataclass
class SweepOutcome:
    """How a sweep ended.

    Attributes:
        results: Per point id (grid order), its result (points that never started are absent).
        interrupted: Whether a stop or abort was requested.
        skipped: Points already complete before this session (resume).
        slots: Runs that were allowed at once.
    """

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupted: bool = False
    skipped: int = 0
    slots: int = 0

    @property
    def failed(self) -> list[str]:
        """Points whose run failed."""
        return [k for k, r in self.results.items() if r.get("status") == "failed"]

    @property
    def shutdown_failed(self) -> list[str]:
        """Points whose electrodes were not verified at 0 V."""
        return [k for k, r in self.results.items() if r.get("shutdown_ok") is False]


class SweepRunner:
    """Runs a sweep's unfinished points on an executor; interruptible from another thread or a
    signal handler (:meth:`request_stop`, :meth:`request_abort`)."""

    def __init__(self, sweep: Sweep, workers: int) -> None:
        self.sweep = sweep
        self.workers = workers
        self._request: str | None = None
        self._written: str | None = None

    @property
    def stop_file(self) -> Path:
        """The sweep's stop file."""
        return self.sweep.directory / STOP_FILE

    @property
    def slots(self) -> int:
        """Runs at once: the workers, or 1 when any point names real hardware."""
        return max_concurrent_runs((p.simulated for p in self.sweep.points), self.workers)

    def request_stop(self) -> None:
        """Stop every run after its current iteration; start no new point (signal-safe)."""
        if self._request is None:
            self._request = STOP

    def request_abort(self) -> None:
        """Shut every run's device down now; start no new point (signal-safe)."""
        self._request = ABORT

    @property
    def interrupted(self) -> bool:
        """Whether a stop or abort was requested."""
        return self._request is not None

    def _publish_request(self) -> None:
        if self._request is not None and self._request != self._written:
            write_file_durably(self.stop_file, self._request + "\n")
            self._written = self._request

    def pending(self) -> tuple[list[SweepPoint], dict[str, dict[str, Any]]]:
        """The points still to run, and the stored results of the complete ones."""
        todo, done = [], {}
        for point in self.sweep.points:
            result = read_result(point_dir(self.sweep.directory, point))
            if result is not None and result.get("complete"):
                done[point.id] = result
            else:
                todo.append(point)
        return todo, done

    def run(
        self, executor_factory: ExecutorFactory, on_result: ResultCallback | None = None
    ) -> SweepOutcome:
        """Run every point that is not complete; results are stored as they arrive."""
        if self.stop_file.exists():
            self.stop_file.unlink()  # a resumed sweep: the old interruption is over
        todo, done = self.pending()
        outcome = SweepOutcome(skipped=len(done), slots=self.slots)
        results: dict[str, dict[str, Any]] = dict(done)
        try:
            if todo:
                with executor_factory(min(self.slots, len(todo))) as info:
                    slots = min(self.slots, info.slots)
                    outcome.slots = slots
                    log.info("sweep %s: %d point(s) on %s", self.sweep.name, len(todo), info.where)
                    for point, result in self._loop(info, todo, slots):
                        results[point.id] = result
                        if on_result is not None:
                            on_result(point, result)
        finally:
            outcome.interrupted = self.interrupted
            outcome.results = {p.id: results[p.id] for p in self.sweep.points if p.id in results}
            write_file_durably(
                self.sweep.directory / RESULTS_FILE,
                json.dumps(
                    [{"id": k, "labels": self._labels(k), **v} for k, v in outcome.results.items()],
                    indent=1,
                )
                + "\n",
            )
        return outcome

    def _labels(self, point_id: str) -> dict[str, Any]:
        return next(p.labels for p in self.sweep.points if p.id == point_id)

    def _loop(
        self, info: ExecutorInfo, todo: list[SweepPoint], slots: int
    ) -> Iterator[tuple[SweepPoint, dict[str, Any]]]:
        queue = list(reversed(todo))
        in_flight: dict[Future[dict[str, Any]], SweepPoint] = {}
        while queue or in_flight:
            self._publish_request()
            while queue and len(in_flight) < slots and not self.interrupted:
                point = queue.pop()
                try:
                    future = info.executor.submit(
                        train_from_dict,
                        point.config,
                        str(point_dir(self.sweep.directory, point)),
                        str(self.stop_file),
                    )
                except Exception as exc:  # e.g. a broken pool: this and later points fail
                    log.error("point %s could not be submitted: %r", point.id, exc)
                    yield point, {"status": "failed", "complete": False, "error": repr(exc)}
                    continue
                in_flight[future] = point
            if self.interrupted:
                queue.clear()
            if not in_flight:
                break
            finished, _ = wait(list(in_flight), timeout=WAIT_S, return_when=FIRST_COMPLETED)
            for future in finished:
                point = in_flight.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # a worker died, or the run could not be set up
                    log.error("point %s failed: %r", point.id, exc)
                    result = {"status": "failed", "complete": False, "error": repr(exc)}
                if result.get("status") == "not started":
                    continue
                yield point, result
        self._publish_request()
