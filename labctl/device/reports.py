"""What a shutdown or park did, and the errors that say the device cannot be driven."""

from __future__ import annotations

from dataclasses import dataclass, field


class DeviceShutDown(RuntimeError):
    """The device has been shut down (abort, error or exit) and accepts no more waveforms."""


@dataclass
class ShutdownReport:
    """What a shutdown or park did.

    Attributes:
        ok: Every electrode was brought to 0 V by a slew-limited ramp and, where the source
            can read back, reads back 0 V.
        completed: The move to 0 V went out to every electrode (possibly as the single step
            from an unknown voltage); False when an instrument failed, so it may be retried.
        failed_electrodes: Electrodes whose move raised or whose readback is not 0 V.
        stepped_electrodes: Electrodes that were at an unknown voltage and got one step to 0 V.
        errors: Every problem, in order, in words.
    """

    ok: bool = True
    completed: bool = True
    failed_electrodes: list[str] = field(default_factory=list)
    stepped_electrodes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people: the final state of the electrodes."""
        if self.ok:
            return "electrodes ramped to 0 V"
        parts = []
        if self.failed_electrodes:
            parts.append(f"NOT verified at 0 V: {', '.join(self.failed_electrodes)}")
        if self.stepped_electrodes:
            parts.append(
                f"stepped to 0 V from an unknown voltage: {', '.join(self.stepped_electrodes)}"
            )
        detail = "; ".join(self.errors)
        return "; ".join(parts) + (f" ({detail})" if detail else "")


class ShutdownFailed(RuntimeError):
    """The electrodes could not be verified at 0 V; :attr:`report` says which and why."""

    def __init__(self, report: ShutdownReport) -> None:
        self.report = report
        super().__init__(f"safe shutdown failed: {report.summary()}")
