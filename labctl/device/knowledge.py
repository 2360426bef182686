"""What the safety layer knows each electrode holds, and why, when it does not, it does not.

:class:`ElectrodeKnowledge` plays every record on the voltage source and learns from the
outcome: a completed record leaves its last sample, a record stopped at a counted sample leaves
that sample, and a record stopped at an unknown sample leaves whatever the readback locates,
or an unknown voltage. Readback is believed only when it is plausible: finite, within the
ceiling plus :data:`READBACK_MARGIN_V`, and consistent with what is already known (within
:data:`AGREEMENT_V`). The knowledge is persisted in a :class:`VoltageStateFile` after every
change, so the next process starts from it.
"""

from __future__ import annotations

import logging
import math
import threading

import numpy as np

from labctl.device.checks import SafetyLimits
from labctl.device.protocols import VoltageSource
from labctl.device.state import VoltageStateFile
from labctl.device.types import Electrode, FloatArray, RecordInterrupted, UnknownVoltage

log = logging.getLogger(__name__)

READBACK_MARGIN_V = 0.05
"""Readback beyond the ceiling by more than this (V) is taken as a faulty instrument."""
AGREEMENT_V = 0.01
"""Readback further than this (V) from what the layer expects is taken as wrong."""


class ElectrodeKnowledge:
    """The voltage each electrode holds (NaN where unknown), kept from what the source confirms.

    Args:
        electrodes: The electrodes, in row order.
        limits: The global limits (the ceiling bounds plausible readback).
        source: The voltage source that plays every record.
        state_file: Where the knowledge persists (None: not persisted).
    """

    def __init__(
        self,
        electrodes: tuple[Electrode, ...],
        limits: SafetyLimits,
        source: VoltageSource,
        state_file: VoltageStateFile | None,
    ) -> None:
        self._electrodes = electrodes
        self._limits = limits
        self._source = source
        self._state_file = state_file
        self._held_v = np.full(len(electrodes), np.nan)
        self._reason = "the device is not open"
        self._driven_s = 0.0

    @property
    def held_v(self) -> FloatArray:
        """What each electrode holds (V), NaN where unknown (a copy)."""
        return self._held_v.copy()

    @property
    def driven_s(self) -> float:
        """Time (s) the electrodes have been driven: every sample that went out, counted."""
        return self._driven_s

    @property
    def reason(self) -> str:
        """Why some electrodes are unknown ("" when all are known)."""
        return self._reason if self.unknown() else ""

    def unknown(self) -> list[str]:
        """Names of the electrodes whose voltage is unknown."""
        return [e.name for e, v in zip(self._electrodes, self._held_v, strict=True) if v != v]

    def require_known(self) -> None:
        """Raise :class:`UnknownVoltage` naming every unknown electrode, if any."""
        unknown = self.unknown()
        if unknown:
            raise UnknownVoltage(unknown, self._reason or "not confirmed by the source")

    def learn_at_open(self) -> None:
        """Learn the voltages from plausible readback, else from the persisted state."""
        persisted = self._state_file.load() if self._state_file is not None else None
        expected = None
        if persisted is not None:
            if persisted.in_flight and persisted.envelope_v is not None:
                expected = np.array(persisted.envelope_v, dtype=np.float64)
            elif not persisted.in_flight:
                expected = np.stack([persisted.held_v, persisted.held_v], axis=1)
        known, problems = self.readback(expected)
        reasons = list(problems.values())
        for row, electrode in enumerate(self._electrodes):
            if math.isfinite(known[row]) or electrode.name in problems:
                continue
            if persisted is None:
                reasons.append(f"{electrode.name}: no readback and no persisted state")
            elif persisted.in_flight:
                lo, hi = (persisted.envelope_v or ((math.nan, math.nan),) * len(known))[row]
                reasons.append(
                    f"{electrode.name}: a record was playing when the last process ended "
                    f"(somewhere in [{lo:.4g}, {hi:.4g}] V)"
                )
            elif math.isfinite(persisted.held_v[row]):
                known[row] = persisted.held_v[row]
            else:
                reasons.append(f"{electrode.name}: unknown when the last process ended")
        self._held_v = known
        self._reason = "; ".join(reasons)
        if reasons:
            log.warning("electrode voltages unknown at open: %s", self._reason)
        self._persist()

    def readback(self, expected_v: FloatArray | None = None) -> tuple[FloatArray, dict[str, str]]:
        """The source's readback with implausible values replaced by NaN, and the problems.

        A value is implausible when it is infinite, beyond the ceiling plus
        :data:`READBACK_MARGIN_V`, or further than :data:`AGREEMENT_V` outside the range
        ``expected_v[row] = (lowest, highest)`` it must lie in (NaN rows are not cross-checked).
        Problems are keyed by electrode name (``""`` when the readback itself failed).
        """
        n = len(self._electrodes)
        try:
            raw = np.asarray(self._source.present_voltages(), dtype=np.float64).reshape(n)
        except Exception as exc:
            return np.full(n, np.nan), {"": f"readback failed: {exc}"}
        values = raw.copy()
        problems: dict[str, str] = {}
        bound = self._limits.max_abs_v + READBACK_MARGIN_V
        for row, electrode in enumerate(self._electrodes):
            v = raw[row]
            if math.isnan(v):
                continue
            if not math.isfinite(v) or abs(v) > bound:
                problems[electrode.name] = (
                    f"{electrode.name}: reads back {v:.6g} V, beyond the ceiling "
                    f"{self._limits.max_abs_v:g} V + {READBACK_MARGIN_V:g} V (wrong units or a "
                    "faulty instrument)"
                )
                values[row] = np.nan
            elif expected_v is not None and np.all(np.isfinite(expected_v[row])):
                lo, hi = float(np.min(expected_v[row])), float(np.max(expected_v[row]))
                if not lo - AGREEMENT_V <= v <= hi + AGREEMENT_V:
                    problems[electrode.name] = (
                        f"{electrode.name}: reads back {v:.6g} V where it must hold a value in "
                        f"[{lo:.6g}, {hi:.6g}] V (wrong units or a faulty instrument)"
                    )
                    values[row] = np.nan
        return values, problems

    def play(self, full: FloatArray, rate: float, cancel: threading.Event | None) -> None:
        """Play an already checked waveform on the source and learn where it left the
        electrodes; exceptions from the source propagate after that."""
        before = self._held_v.copy()
        if self._state_file is not None:
            self._state_file.record_start(before, full, rate)
        try:
            self._source.play(full, rate, cancel)
        except RecordInterrupted as exc:
            done = exc.samples_generated
            if done is None:
                self._locate(full, before, f"record interrupted: {exc}")
            else:
                done = min(max(int(done), 0), full.shape[1])
                if done:
                    self._held_v = full[:, done - 1].copy()
                self._driven_s += done / rate
            self._persist()
            raise
        except BaseException as exc:
            self._locate(full, before, f"record failed: {exc!r}")
            self._persist()
            raise
        self._held_v = full[:, -1].copy()
        self._driven_s += full.shape[1] / rate
        self._persist()

    def _locate(self, full: FloatArray, before: FloatArray, reason: str) -> None:
        """After a record stopped at an unknown sample, find that sample from the readback.

        The electrodes hold one column of what was sent (or what they held before it), all at
        the same sample. The readback must match one such column on every electrode it reads
        (within :data:`AGREEMENT_V`); that column's exact values become the known voltages. A
        readback that matches no column is wrong (units, a faulty instrument), and every
        electrode is unknown; so is any electrode the instrument cannot read back.
        """
        readback, problems = self.readback()
        finite = np.isfinite(readback)
        known = np.full(readback.size, np.nan)
        why = [reason, *problems.values()]
        if finite.any():
            columns = np.concatenate([before[:, None], full], axis=1)
            distance = np.max(np.abs(columns[finite] - readback[finite, None]), axis=0)
            sample = int(np.argmin(distance))
            if distance[sample] <= AGREEMENT_V:
                known = np.where(finite, columns[:, sample], np.nan)
            else:
                why.append(
                    f"the readback matches no sample of the record (closest off by "
                    f"{distance[sample]:.3g} V)"
                )
        else:
            why.append("no readback")
        self._held_v = known
        unknown = self.unknown()
        if unknown:
            self._reason = "; ".join(why)
            log.error("voltages unknown on %s after: %s", ", ".join(unknown), reason)

    def _persist(self) -> None:
        if self._state_file is not None:
            self._state_file.record_held(self._held_v)
