"""What a run stores to continue exactly, and whether a stored run can be continued.

With every iteration the trainer stores a checkpoint (see
:meth:`labctl.run.store.RunStore.append`): the method's state (controls, optimiser moments,
restart and estimator generators, stall detector, restart count, best so far, GA population),
the batch generator, and, on a simulated backend, the simulator's noise and filter state. A
resumed run loads it and carries on as if never interrupted; on simulated hardware the stored
iterations then equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from labctl.config import LoadedConfig
from labctl.device.safety import SafeDevice
from labctl.run.store import IterationRecord
from labctl.training.optimisers import StopCriteria, StopReason

SEPARATION_NOISE_KEY = "separation_noise_a"
"""Key of an iteration record's ``extra`` with the noise of its separation (A), for the
separation-margin stop rule (methods that measure it store it there)."""

log = logging.getLogger(__name__)


class RunNotResumable(ValueError):
    """A stored run cannot be resumed (e.g. it already reached its budget); exit code 2."""


@runtime_checkable
class SimulationState(Protocol):
    """An instrument whose random and filter state can be saved and restored (simulators)."""

    def simulation_state(self) -> dict[str, Any]:
        """The state, JSON-ready."""
        ...

    def restore_simulation_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`simulation_state`'s value."""
        ...


def capture_simulation_state(device: SafeDevice) -> dict[str, Any] | None:
    """Per simulated instrument, its state (None when no instrument is a simulator)."""
    states = {
        name: instrument.simulation_state()
        for name, instrument in device.instruments.items()
        if isinstance(instrument, SimulationState)
    }
    return states or None


def restore_simulation_state(device: SafeDevice, state: Mapping[str, Any] | None) -> None:
    """Give each simulated instrument the state :func:`capture_simulation_state` saved."""
    if not state:
        return
    instruments = device.instruments
    for name, saved in state.items():
        instrument = instruments.get(name)
        if isinstance(instrument, SimulationState):
            instrument.restore_simulation_state(saved)
        else:
            log.warning("no simulated instrument %r to restore its state to", name)


def stop_criteria(loaded: LoadedConfig) -> StopCriteria:
    """The run's stop criteria (``run`` section, and the method's own iteration limit)."""
    from labctl.training.methods import get_method

    run = loaded.config.run
    limit = get_method(loaded.config.method.name).iteration_limit
    # the margin rule refines "stop once solved": off with the accuracy hold (endless runs)
    multiple = getattr(loaded.config.method.parsed_params(), "margin_noise_multiple", None)
    if run.accuracy_hold_iterations is None:
        multiple = None
    return StopCriteria(
        max_iterations=run.max_iterations if limit is None else min(limit, run.max_iterations),
        loss_threshold=run.loss_threshold,
        accuracy_hold_iterations=run.accuracy_hold_iterations,
        max_device_seconds=run.max_device_seconds,
        separation_noise_multiple=multiple,
    )


def replay_stop_criteria(
    criteria: StopCriteria, records: Sequence[IterationRecord]
) -> StopReason | None:
    """Feed the stored iterations to ``criteria``; the reason the last one stopped the run."""
    reason = None
    for record in records:
        noise = record.extra.get(SEPARATION_NOISE_KEY)
        reason = criteria.check(
            record.run_iteration + 1,
            record.loss,
            record.accuracy,
            record.device_seconds,
            record.separation_a,
            None if noise is None else float(noise),
        )
    return reason


def check_resumable(
    loaded: LoadedConfig, records: Sequence[IterationRecord], status: str, where: str
) -> None:
    """Refuse a run that already finished: its stored iterations end it under its
    configuration and it recorded its end (status ``finished``).

    A run whose iterations are complete but which was killed before it recorded its end (during
    the final evaluation or the shutdown) stays resumable: resuming it only evaluates.

    Raises:
        RunNotResumable: With the reason and what to do instead.
    """
    reason = replay_stop_criteria(stop_criteria(loaded), records)
    if reason is not None and status == "finished":
        raise RunNotResumable(
            f"{where}: the run already finished ({reason} after {len(records)} iterations); "
            "there is nothing to resume. Start a new run (labctl train CONFIG) with a larger "
            "run.max_iterations or max_device_seconds to train longer."
        )
