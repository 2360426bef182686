"""One hardware-timed run: the tasks started together on one clock, simulated in chunks.

A run has at most one AO participant (one AO engine per timing device) and any number of AI
participants. The bench is played at the AO rate when an AO task takes part, else at the first
AI task's rate; AI sample ``k`` of a task at rate ``f`` reads the bench sample played at or
before its instant ``k / f`` (the same sample when the rates are equal, the usual case).

The run advances in chunks of at most ``chunk_s`` of bench samples, each one ``bench.play``:
the electrodes get the AO samples of the wired channels (electrodes not driven by the task
hold their voltage), and AI channels wired to the amplifier output receive the bench's ADC
reading ``record.adc_v`` clipped to the channel's input range; other AI channels read
Gaussian noise. In real-time mode a chunk is applied when the wall clock reaches its end, so
a stop lands on a chunk boundary and the electrodes hold the last sample generated; in fast
mode chunks follow each other at once, except that a run never overflows an AI buffer or
underflows a non-regenerating AO buffer (it waits for the reader or writer instead).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from nidaqmx.constants import UnderflowBehavior  # type: ignore[import-untyped, unused-ignore]

from simulated_hw.bench import BenchRecord, SimBench
from simulated_hw.nidaq_server.buffers import FloatArray
from simulated_hw.nidaq_server.devices import Kind
from simulated_hw.nidaq_server.errors import Code, DaqmxError
from simulated_hw.nidaq_server.tasks import SimTask

logger = logging.getLogger(__name__)

_EPS = 1e-9
_HALT = UnderflowBehavior.HALT_OUTPUT_AND_ERROR.value
FAST_YIELD_S = 0.001
"""Pause (s) between chunks of a continuous run in fast mode, so the server stays responsive."""


@dataclass(eq=False)
class Participant:
    """A task taking part in a run.

    Attributes:
        task: The task.
        kind: ``"ao"`` or ``"ai"``.
        rate_hz: Its sample rate (S/s): its own coerced rate, or its clock parent's.
        total: Samples per channel of a finite operation (None: continuous).
        clock_parent: The participant whose sample clock it uses (None: its own clock).
        electrode_map: AO: ``(channel index, electrode index)`` of wired channels.
        wired: AI: per channel, whether it reads the amplifier output.
        clip_v: AI: per channel, the input range ``(low, high)`` (V).
        regenerate: AO: whether the buffer is regenerated.
        overwrite: AI: whether unread samples may be overwritten.
        b_start: Bench sample at which it joined the run.
        count: Samples per channel generated or acquired.
    """

    task: SimTask
    kind: Kind
    rate_hz: float
    total: int | None
    clock_parent: Participant | None = None
    electrode_map: list[tuple[int, int]] = field(default_factory=list)
    wired: list[bool] = field(default_factory=list)
    clip_v: list[tuple[float, float]] = field(default_factory=list)
    regenerate: bool = True
    overwrite: bool = False
    b_start: int = 0
    count: int = 0
    finished: bool = False
    removed: bool = False

    def active(self) -> bool:
        """Still generating/acquiring (not stopped, not finished, clock running)."""
        if self.removed or self.finished:
            return False
        parent = self.clock_parent
        return parent is None or parent.active()


@dataclass
class _Plan:
    m: int
    ao: Participant | None
    ao_samples: FloatArray | None
    ai: list[Participant]
    plays_bench: bool


class Run:
    """The background thread of one run. Every method but :meth:`start` needs ``cond`` held.

    Args:
        cond: The server's condition (its lock guards every task).
        bench: The shared bench.
        participants: Tasks started together (at least one).
        chunk_s: Longest chunk (s).
        realtime: Pace chunks to the wall clock.
        noise_v: RMS noise (V) of AI channels not wired to the amplifier.
        adc_limit_v: |reading| (V) at which the bench's ADC is over range (an overload).
        rng: Noise generator (used under ``cond``).
        on_end: Called (under ``cond``) when the run is over.
    """

    def __init__(
        self,
        cond: threading.Condition,
        bench: SimBench,
        participants: list[Participant],
        *,
        chunk_s: float,
        realtime: bool,
        noise_v: float,
        adc_limit_v: float,
        rng: np.random.Generator,
        on_end: Callable[[Run], None],
    ) -> None:
        self._cond = cond
        self._bench = bench
        self.participants = list(participants)
        ao = [p for p in participants if p.kind == "ao"]
        self.rate_hz = ao[0].rate_hz if ao else participants[0].rate_hz
        self._chunk_s = chunk_s
        self._realtime = realtime
        self._noise_v = noise_v
        self._adc_limit_v = adc_limit_v
        self._rng = rng
        self._on_end = on_end
        self.b = 0
        self.over = False
        names = "+".join(p.task.name for p in participants)
        self._thread = threading.Thread(target=self._main, name=f"sim-daq run {names}", daemon=True)
        for p in participants:
            p.task.run = self

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def join_thread(self, timeout_s: float | None = None) -> None:
        """Wait for the thread to end (call without holding ``cond``)."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def add(self, participant: Participant) -> None:
        """A clock follower joins the running run at the next chunk."""
        participant.b_start = self.b
        self.participants.append(participant)
        participant.task.run = self
        self._cond.notify_all()

    def participant(self, task: SimTask) -> Participant | None:
        """The participant of ``task`` (None when it is not in this run)."""
        return next((p for p in self.participants if p.task is task), None)

    # -- sample bookkeeping -------------------------------------------------------------

    def _ratio(self, p: Participant) -> float:
        return self.rate_hz / p.rate_hz

    def _count_at(self, p: Participant, bench_samples: int) -> int:
        """Samples per channel ``p`` has taken once the bench played ``bench_samples``."""
        rel = bench_samples - p.b_start
        if rel <= 0:
            return 0
        if p.kind == "ao" or p.rate_hz == self.rate_hz:
            count = rel
        else:
            count = math.ceil((rel - _EPS) / self._ratio(p))
        return count if p.total is None else min(count, p.total)

    def _bench_index(self, p: Participant, k: int) -> int:
        """Absolute bench sample read by sample ``k`` of ``p``."""
        if p.kind == "ao" or p.rate_hz == self.rate_hz:
            return p.b_start + k
        return p.b_start + math.floor(k * self._ratio(p) + _EPS)

    def _bench_end(self, p: Participant) -> int:
        """Bench samples after which the finite participant ``p`` is complete."""
        assert p.total is not None
        return self._bench_index(p, p.total - 1) + 1

    # -- the thread -----------------------------------------------------------------------

    def _main(self) -> None:
        wall0 = time.monotonic()
        try:
            while True:
                with self._cond:
                    plan = self._plan()
                    if plan is None:
                        break
                    if isinstance(plan, str):
                        if plan == "wait":
                            self._cond.wait(0.05)
                        continue
                    if self._realtime and not self._wait_wall(
                        wall0 + (self.b + plan.m) / self.rate_hz
                    ):
                        continue
                record = self._play(plan)
                with self._cond:
                    self._commit(plan, record)
                    self._cond.notify_all()
                    continuous = any(p.total is None and p.active() for p in self.participants)
                if continuous and not self._realtime:
                    time.sleep(FAST_YIELD_S)
        except Exception as exc:
            logger.exception("simulated DAQ run failed")
            with self._cond:
                for p in self.participants:
                    if not p.removed:
                        self._fail(p, DaqmxError(Code.UNKNOWN, f"Simulation error: {exc!r}"))
        finally:
            with self._cond:
                self.over = True
                for p in self.participants:
                    p.removed = True
                    if p.task.run is self:
                        p.task.run = None
                self._on_end(self)
                self._cond.notify_all()

    def _wait_wall(self, deadline: float) -> bool:
        """Wait (releasing ``cond``) until the wall clock reaches ``deadline``.

        Returns False if a stop request arrived first (the chunk is then not played).
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if any(p.task.stop_requested and not p.removed for p in self.participants):
                return False
            self._cond.wait(remaining)

    def _apply_stops(self) -> None:
        for p in self.participants:
            if p.task.stop_requested and not p.removed:
                p.removed = True
                if p.task.run is self:
                    p.task.run = None
                self._cond.notify_all()

    def _fail(self, p: Participant, error: DaqmxError) -> None:
        p.task.error = error.for_task(p.task.name)
        p.removed = True
        if p.task.run is self:
            p.task.run = None
        self._cond.notify_all()

    def _plan(self) -> _Plan | str | None:
        """The next chunk; None when the run is over; "wait"/"retry" to back off/re-plan."""
        self._apply_stops()
        active = [p for p in self.participants if p.active()]
        if not active:
            return None
        m = max(1, math.floor(self._chunk_s * self.rate_hz))
        for p in active:
            if p.total is not None:
                m = min(m, self._bench_end(p) - self.b)
        ao = next((p for p in active if p.kind == "ao"), None)
        if ao is not None:
            out = ao.task.out
            assert out is not None
            available = out.available(ao.count, ao.regenerate)
            if available < m:
                if available >= 1:
                    m = int(available)
                elif self._realtime and ao.task.timing.underflow == _HALT:
                    self._fail(
                        ao,
                        DaqmxError(
                            Code.GEN_STOPPED_TO_PREVENT_REGEN_OF_OLD_SAMPLES,
                            f"Samples generated per channel: {ao.count}",
                        ),
                    )
                    return "retry"
                else:
                    return "wait"
        ai = [p for p in active if p.kind == "ai"]
        for p in ai:
            inp = p.task.inp
            assert inp is not None
            if self._realtime:
                continue
            space = inp.size - inp.unread
            if self._count_at(p, self.b + m) - p.count > space:
                if space <= 0:
                    return "wait"
                m = min(m, max(0, self._bench_index(p, p.count + space) - self.b))
                if m < 1:
                    return "wait"
        samples = None
        if ao is not None:
            assert ao.task.out is not None
            samples = ao.task.out.take(ao.count, m).copy()
        plays = bool(ao is not None and ao.electrode_map) or any(any(p.wired) for p in ai)
        return _Plan(m=m, ao=ao, ao_samples=samples, ai=ai, plays_bench=plays)

    def _play(self, plan: _Plan) -> BenchRecord | None:
        """Apply the chunk to the bench (outside the lock)."""
        if not plan.plays_bench:
            return None
        held = self._bench.applied_v
        waveform = np.repeat(held[:, None], plan.m, axis=1)
        if plan.ao is not None and plan.ao_samples is not None:
            for channel, electrode in plan.ao.electrode_map:
                waveform[electrode] = plan.ao_samples[channel]
        return self._bench.play(waveform, self.rate_hz)

    def _commit(self, plan: _Plan, record: BenchRecord | None) -> None:
        b0, b1 = self.b, self.b + plan.m
        ao = plan.ao
        if ao is not None and not ao.removed:
            ao.count = self._count_at(ao, b1)
            ao.task.generated = ao.count
            if ao.total is not None and ao.count >= ao.total:
                ao.finished = True
                ao.task.done = True
        for p in plan.ai:
            if p.removed:
                continue
            k0, k1 = p.count, self._count_at(p, b1)
            if k1 > k0:
                self._acquire(p, k0, k1, b0, plan.m, record)
            if p.total is not None and p.count >= p.total:
                p.finished = True
                p.task.done = True
        self.b = b1

    def _acquire(
        self, p: Participant, k0: int, k1: int, b0: int, m: int, record: BenchRecord | None
    ) -> None:
        n = k1 - k0
        inp = p.task.inp
        assert inp is not None
        data = np.empty((len(p.wired), n))
        ks = np.arange(k0, k1, dtype=np.int64)
        if p.rate_hz == self.rate_hz:
            index = ks + (p.b_start - b0)
        else:
            index = p.b_start - b0 + np.floor(ks * self._ratio(p) + _EPS).astype(np.int64)
        index = np.clip(index, 0, m - 1)
        for row, wired in enumerate(p.wired):
            low, high = p.clip_v[row]
            if wired and record is not None:
                values = np.asarray(record.adc_v, dtype=np.float64)[index]
                clipped = np.clip(values, low, high)
                if np.any(clipped != values) or np.any(np.abs(values) >= self._adc_limit_v):
                    p.task.overloaded.add(p.task.channels[row].name)
                data[row] = clipped
            else:
                data[row] = np.clip(self._rng.normal(0.0, self._noise_v, n), low, high)
        inp.append(data, p.overwrite)
        p.count = k1
        if inp.overflowed and not p.overwrite:
            self._fail(
                p,
                DaqmxError(
                    Code.SAMPLES_NO_LONGER_AVAILABLE,
                    f"The acquisition overflowed its buffer of {inp.size} samples per channel: "
                    "read faster or set in_stream.input_buf_size larger.",
                ),
            )
