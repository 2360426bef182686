"""A shortened long run (bench/bench_long_run.py runs 50 000 iterations): memory stays flat and
the store stays queryable beside the live writer.

Memory is measured with tracemalloc, started after a warm-up from the run's own iteration
events: what it reports as currently traced is what was allocated since then and is still
alive. Between a baseline a little after the start and the end, that may grow only by a
generous per-iteration bound far below one record's size, so a leaked record, gradient batch
or event per iteration fails the test, while the few floats of loss history do not.
"""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from labctl.benchsuite.devices import fast_endless_xor_config
from labctl.cli import main
from labctl.config import parse_config
from labctl.run.control import RunController
from labctl.run.events import Event, IterationCompleted
from labctl.run.store import RunStore
from labctl.training.session import execute, new_run

REPO = Path(__file__).resolve().parents[1]
ITERATIONS = 900
START_TRACING = 150
BASELINE = 300
BOUND_BYTES_PER_ITERATION = 2048
"""Generous: the readout of one iteration alone is ~8 kB (1000 samples), its drive 7 times that."""


def _config(directory: Path) -> str:
    return fast_endless_xor_config(directory, ITERATIONS)


@pytest.mark.slow
def test_memory_stays_flat_and_the_store_stays_queryable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "runs"
    loaded = parse_config(_config(directory), source=REPO / "configs" / "x.yaml")
    controller = RunController()
    traced: dict[int, int] = {}
    queries: list[int] = []
    run_dir: list[Path] = []
    was_tracing = tracemalloc.is_tracing()

    def on_event(event: Event) -> None:
        if not isinstance(event, IterationCompleted):
            return
        n = event.record.run_iteration + 1
        if n == START_TRACING and not was_tracing:
            tracemalloc.start()
        if n in (BASELINE, ITERATIONS):
            traced[n] = tracemalloc.get_traced_memory()[0]
        if n % 200 == 0 and run_dir:  # a second reader beside the live writer
            reader = RunStore.open(run_dir[0], read_only=True)
            try:
                queries.append(reader.iteration_count())
            finally:
                reader.close()

    controller.bus.subscribe(on_event)
    controller.start("test_long_run")
    try:
        run = new_run(loaded)
        run_dir.append(run.store.path)
        outcome: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: outcome.update(state=execute(run, controller)))
        thread.start()
        thread.join()
    finally:
        if not was_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()
    assert str(outcome["state"]) == "finished"
    assert run.store.iteration_count() == ITERATIONS
    growth = traced[ITERATIONS] - traced[BASELINE]
    per_iteration = growth / (ITERATIONS - BASELINE)
    assert per_iteration < BOUND_BYTES_PER_ITERATION, (
        f"traced memory grew {growth} B over {ITERATIONS - BASELINE} iterations"
    )
    assert queries == sorted(queries) and queries[-1] >= ITERATIONS - 200
    assert main(["runs", str(directory)]) == 0
    assert f"{ITERATIONS}" in capsys.readouterr().out
