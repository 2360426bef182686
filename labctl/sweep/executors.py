"""Where a sweep's runs execute: a local process pool (default) or a Dask cluster.

Both give a :class:`concurrent.futures.Executor`; the runner only submits
:func:`~labctl.sweep.entry.train_from_dict` calls and waits on the futures.

- Local: :class:`~concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start method (no
  forked copies of threads, locks or open devices), workers that ignore SIGINT (the parent
  handles Ctrl-C and tells the runs through the stop file).
- Dask: ``distributed.Client(address).get_executor()``; needs the ``cluster`` extra here and
  labctl installed on the workers, and the sweep directory on a file system the workers share.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

CLUSTER_EXTRA_HINT = (
    "running a sweep on a Dask cluster needs the 'cluster' extra: "
    "pip install 'labctl[cluster]' (dask[distributed])"
)


class ClusterUnavailable(RuntimeError):
    """The Dask client cannot be made (extra missing, scheduler unreachable); exit code 2."""


def _ignore_sigint() -> None:
    """Pool-worker initializer: Ctrl-C in the terminal reaches the whole process group; the
    parent alone acts on it (the runs stop through the stop file, never mid-record)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers() -> int:
    """Local workers by default: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class ExecutorInfo:
    """An executor and how many runs to keep in flight on it."""

    executor: Executor
    slots: int
    where: str


@contextlib.contextmanager
def local_pool(workers: int) -> Iterator[ExecutorInfo]:
    """A spawn-safe process pool of ``workers`` processes."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_ignore_sigint,
    )
    try:
        yield ExecutorInfo(pool, workers, f"{workers} local process(es)")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def require_distributed() -> Any:
    """The ``distributed`` module.

    Raises:
        ClusterUnavailable: It is not installed; the message names the extra to install.
    """
    try:
        import distributed
    except ImportError as exc:
        raise ClusterUnavailable(f"{CLUSTER_EXTRA_HINT} ({exc})") from None
    return distributed


@contextlib.contextmanager
def dask_cluster(
    scheduler: str | Any, workers: int | None = None, timeout_s: float = 10.0
) -> Iterator[ExecutorInfo]:
    """An executor on the Dask cluster at ``scheduler`` (an address such as
    ``tcp://host:8786``, or a ``distributed`` cluster object).

    Runs in flight: ``workers`` when given, else the cluster's worker threads (at least 1).

    Raises:
        ClusterUnavailable: ``distributed`` is not installed, or the scheduler is unreachable.
    """
    distributed = require_distributed()
    try:
        client = distributed.Client(scheduler, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailable(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        threads = sum(client.nthreads().values())
        slots = workers if workers is not None else max(1, threads)
        yield ExecutorInfo(
            client.get_executor(pure=False), slots, f"Dask cluster {client.scheduler.address}"
        )
    finally:
        client.close()
