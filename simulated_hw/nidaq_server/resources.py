"""Hardware resources tasks reserve, and the -50103 "resource reserved" rule.

A task reserves, at reserve/commit/start time, a set of resources, each exclusively or shared:

- every physical channel it uses (exclusive);
- a hardware-timed AO task: the AO timing engine of its timing device (one hardware-timed AO
  task per chassis or device) and every module/device whose AO it uses (exclusive: such a
  module cannot also do software-timed writes from another task); an on-demand AO task holds
  those modules shared;
- an AI task on a chassis: each AI module it uses (exclusive: one module's channels cannot be
  split across tasks) and, if hardware-timed, one AI timing engine of the chassis;
- an AI task on a stand-alone device: that device's AI timing engine (exclusive).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulated_hw.nidaq_server.errors import Code, DaqmxError


@dataclass(frozen=True)
class Claim:
    """One resource a task wants: ``key`` names it, ``exclusive`` says how."""

    key: tuple[str, ...]
    exclusive: bool
    label: str


class ReservationTable:
    """Who holds which resource. Not thread-safe (the caller holds the server lock)."""

    def __init__(self) -> None:
        self._holders: dict[tuple[str, ...], dict[str, bool]] = {}

    def conflict(self, task: str, claim: Claim) -> str | None:
        """The task that prevents ``task`` from taking ``claim`` (None when it is free)."""
        for holder, exclusive in self._holders.get(claim.key, {}).items():
            if holder == task:
                continue
            if exclusive or claim.exclusive:
                return holder
        return None

    def holders(self, key: tuple[str, ...]) -> list[str]:
        """Tasks holding ``key``."""
        return list(self._holders.get(key, {}))

    def acquire(self, task: str, claims: list[Claim]) -> None:
        """Take every claim or none.

        Raises:
            DaqmxError: -50103 naming the resource and the task that holds it.
        """
        for claim in claims:
            other = self.conflict(task, claim)
            if other is not None:
                raise DaqmxError(
                    Code.PAL_RESOURCE_RESERVED,
                    f"Resource: {claim.label}\nReserved by task: {other}",
                    task_name=task,
                )
        for claim in claims:
            self._holders.setdefault(claim.key, {})[task] = claim.exclusive

    def release(self, task: str) -> None:
        """Drop everything ``task`` holds."""
        for key in list(self._holders):
            self._holders[key].pop(task, None)
            if not self._holders[key]:
                del self._holders[key]

    def held_by(self, task: str) -> list[tuple[str, ...]]:
        """Resources ``task`` holds."""
        return [key for key, holders in self._holders.items() if task in holders]
