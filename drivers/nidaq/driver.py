"""The NI-DAQmx instrument: a voltage source and a synchronised sampled readout.

One hardware-timed AO task carries every electrode (DC and tones come in the same waveform:
a cDAQ chassis allows one hardware-timed AO task, and a module in it cannot also take
software-timed writes); one AI task reads the transimpedance amplifier output(s). Both run on
one clock:

- ``sync: start_trigger`` (default): both tasks are timed by their own sample clocks at the
  same rate on the same timebase, and the AO task is armed on the AI start trigger.
- ``sync: ai_sample_clock``: the AO task is clocked by the AI sample clock (for delta-sigma AI
  modules, which have discrete rates and clock themselves).

The terminal is ``/<trigger_device>/ai/StartTrigger`` (or ``/ai/SampleClock``) when
``trigger_device`` is set. Otherwise the AI task is reserved first (on a cDAQ chassis the
timing engine is chosen at reservation, nidaqmx-python #162) and the terminal DAQmx reports for
it is used; if DAQmx reports none, the AI task's device (for a C Series module, its chassis) is.

Each record (``arm`` + ``play`` + ``fetch``) is one finite acquisition of ``n`` samples: the
timing is configured when ``n`` or the rate changes (the coerced rate is read back from DAQmx),
the waveform goes out through a preallocated ``AnalogMultiChannelWriter`` (auto_start False),
the AO task starts (armed), then the AI task, whose samples are read through a preallocated
``AnalogMultiChannelReader`` as they become available, looking at the cancel event every
:data:`POLL_S`. AO and AI are stopped after every record; a cancel stops them at once and
reports the AO task's count of generated samples.

Reference output (:class:`labctl.device.protocols.ReferenceOutput`): with
:meth:`NidaqDevice.set_reference_output` a third task, a counter output (CO) pulse train at the
reference frequency (50 % duty, idle low), is armed on the AI start trigger with every record,
so its first rising edge is the record's first sample and its phase is tied to the AO waveform
(a lock-in on external reference wired to the counter's output detects the AO-made tones
phase-locked). It is stopped after every record and cleared with :meth:`NidaqDevice.close`.

Safety: the AO channel limits are each electrode's range widened by ``ao_margin_v``, so DAQmx
refuses (error -200561) any sample the safety layer should have refused: a second layer, never
the only one. ``open()`` writes nothing. AO has no readback, so :meth:`present_voltages` is
NaN: what the electrodes hold is tracked by the safety layer (and persisted across restarts).

Units: volts, amperes, seconds, hertz.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Any, Literal

import numpy as np

from drivers.nidaq.connection import (
    describe,
    diagnose,
    import_nidaqmx,
    open_channel,
    session_options,
)
from drivers.nidaq.errors import (
    NidaqConfigurationError,
    NidaqConnectionError,
    NidaqError,
    NidaqRecordInterrupted,
    NidaqTimeout,
    translate,
)
from drivers.nidaq.settings import NidaqSettings
from labctl.config import SetupConfig
from labctl.device.types import Acquisition, CurrentOutput, Electrode, FloatArray

log = logging.getLogger(__name__)

MIN_HW_SAMPLES = 2
"""DAQmx refuses to start a finite AO generation of fewer samples (error -200609): a shorter
record is padded by holding its last sample, which moves no electrode."""
POLL_S = 0.01
"""Longest pause (s) between two looks at the AI task during a record; with the stop calls it
bounds the cancel latency well below the 50 ms the safety layer asks for."""
FIRST_POLL_S = 0.0005
"""First pause (s) after a look that found too few samples; doubled up to :data:`POLL_S`, so a
fast device is read as soon as its samples are there and a slow one costs few looks."""
READ_CHUNK_S = 0.02
"""Smallest AI read while a record plays, as seconds of the record (s); also the piece size of
blocking reads on a server that cannot report the available samples."""
SATURATION_TOLERANCE = 1e-3
"""An AI sample within this fraction of the amplifier swing or the AI range counts as saturated."""
REFERENCE_DELAY_S = 0.0
"""Initial delay (s) of the reference pulse train after the start trigger (DAQmx raises 0 to
its two-tick minimum, 25 ns on an 80 MHz timebase: 0.009° at 1 kHz)."""
RATE_TOLERANCE = 1e-9
"""Relative difference (-) below which two read-back rates are the same rate."""

TerminalKind = Literal["StartTrigger", "SampleClock"]


class _Cancelled(Exception):
    """Internal: the cancel event was set during a record."""


class _Tasks:
    """What :meth:`NidaqDevice.open` created: tasks, stream reader/writer, gRPC channel."""

    def __init__(self, ao: Any, ai: Any, writer: Any, reader: Any, channel: Any) -> None:
        self.ao = ao
        self.ai = ai
        self.writer = writer
        self.reader = reader
        self.channel = channel
        self.co: Any = None
        """The reference output's CO task (None: no reference)."""


class NidaqDevice:
    """An NI DAQ (cDAQ chassis, X Series card; local or through an NI gRPC Device Server) as
    voltage source and sampled readout of one setup.

    Building it touches no hardware and imports no ``nidaqmx``: :meth:`open` does.

    Args:
        setup: The validated setup (electrodes in AO channel order, outputs, amplifier).
        settings: The validated ``nidaq`` settings.
    """

    def __init__(self, setup: SetupConfig, settings: NidaqSettings) -> None:
        self._setup = setup
        self._settings = settings
        self._electrodes = setup.electrode_objects()
        self._outputs = setup.output_objects()
        self._gain_v_per_a = setup.amplifier.gain_v_per_a
        margin = settings.ao_margin_v
        self._ao_limits_v = [(e.min_v - margin, e.max_v + margin) for e in self._electrodes]
        limit = min(setup.amplifier.output_swing_v, settings.ai_range_v)
        self._saturation_v = limit * (1.0 - SATURATION_TOLERANCE)
        self._where = describe(settings.grpc)
        self._tasks: _Tasks | None = None
        self._lock = threading.RLock()
        self._configured: tuple[int, float] | None = None
        self._rate_hz = math.nan
        self._coerced: dict[float, float] = {}
        self._terminal = ""
        self._trigger_terminal_set = ""
        self._armed: tuple[int, float] | None = None
        self._recorded: int | None = None
        self._ai_buf = np.empty((len(settings.ai_channel_list), 0))
        self._ai_scratch = np.empty(0)
        self._ao_buf = np.empty((len(self._electrodes), 0))
        self._reference: tuple[str, float] | None = None
        self._co_trigger_set = ""

    # -- description ---------------------------------------------------------------------------
    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """The electrodes, in waveform row order (= AO channel order)."""
        return self._electrodes

    @property
    def outputs(self) -> tuple[CurrentOutput, ...]:
        """The current outputs, in acquisition row order (= AI channel order)."""
        return self._outputs

    @property
    def is_open(self) -> bool:
        """Whether the tasks exist."""
        return self._tasks is not None

    @property
    def ao_limits_v(self) -> list[tuple[float, float]]:
        """The DAQmx (min_val, max_val) of each AO channel (V): electrode range ± margin."""
        return list(self._ao_limits_v)

    @property
    def terminal(self) -> str:
        """The AI start-trigger (or sample-clock) terminal the AO task follows ("" before use)."""
        return self._terminal

    def identity(self) -> dict[str, Any]:
        """Driver settings and resolved timing worth keeping with every run (JSON-compatible)."""
        s = self._settings
        return {
            "backend": "nidaq",
            "connection": self._where,
            "ao_channels": list(s.ao_channels),
            "ai_channels": s.ai_channel_list,
            "ai_range_v": s.ai_range_v,
            "terminal_config": s.terminal_config,
            "sync": s.sync,
            "terminal": self._terminal or None,
            "ao_limits_v": [list(pair) for pair in self._ao_limits_v],
            "discard_first_samples": s.discard_first_samples,
            "sample_rate_hz": None if math.isnan(self._rate_hz) else self._rate_hz,
        }

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        """Create the AO and AI tasks and their stream writer and reader. Writes nothing.

        Raises:
            NidaqDriverMissing: No NI-DAQmx driver (local) or no nidaqmx/grpcio package.
            NidaqConnectionError: The gRPC server cannot be used (the message says why).
            NidaqError: DAQmx refused a channel or range (subclass per cause).
        """
        with self._lock:
            if self._tasks is not None:
                return
            nidaqmx = import_nidaqmx()
            from nidaqmx.constants import TerminalConfiguration  # type: ignore[import-untyped, unused-ignore]
            from nidaqmx.stream_readers import (  # type: ignore[import-untyped, unused-ignore]
                AnalogMultiChannelReader,
            )
            from nidaqmx.stream_writers import (  # type: ignore[import-untyped, unused-ignore]
                AnalogMultiChannelWriter,
            )

            s = self._settings
            channel: Any = None
            created: list[Any] = []
            step = "connecting"
            try:
                if s.grpc is not None:
                    channel = open_channel(s.grpc)
                step = "creating the AO task"
                ao = self._new_task(nidaqmx, channel, "ao")
                created.append(ao)
                for physical, (lo, hi) in zip(s.ao_channels, self._ao_limits_v, strict=True):
                    step = f"adding AO channel {physical} ([{lo:g}, {hi:g}] V)"
                    ao.ao_channels.add_ao_voltage_chan(physical, min_val=lo, max_val=hi)
                step = "creating the AI task"
                ai = self._new_task(nidaqmx, channel, "ai")
                created.append(ai)
                terminal = TerminalConfiguration[s.terminal_config]
                for physical in s.ai_channel_list:
                    step = f"adding AI channel {physical} (±{s.ai_range_v:g} V)"
                    ai.ai_channels.add_ai_voltage_chan(
                        physical,
                        terminal_config=terminal,
                        min_val=-s.ai_range_v,
                        max_val=s.ai_range_v,
                    )
                writer = AnalogMultiChannelWriter(ao.out_stream, auto_start=False)
                writer.verify_array_shape = False  # shapes are checked here, saving RPCs
                reader = AnalogMultiChannelReader(ai.in_stream)
                reader.verify_array_shape = False
            except BaseException as exc:
                for task in reversed(created):
                    with contextlib.suppress(Exception):
                        task.close()
                if channel is not None:
                    with contextlib.suppress(Exception):
                        channel.close()
                if isinstance(exc, Exception):
                    raise self._translate(exc, f"opening the DAQ: {step}") from exc
                raise
            self._tasks = _Tasks(ao, ai, writer, reader, channel)
            self._configured = None
            self._coerced.clear()
            self._terminal = ""
            self._trigger_terminal_set = ""
            self._armed = None
            self._recorded = None
            self._reference = None
            self._co_trigger_set = ""
            log.info("nidaq: tasks created (%s)", self._where)

    def close(self) -> None:
        """Clear both tasks (the electrodes hold their last sample: the safety layer brought
        them to 0 V before) and close the gRPC channel.

        Raises:
            NidaqError: A task could not be cleared (everything else was still released).
        """
        with self._lock:
            tasks, self._tasks = self._tasks, None
            self._configured = None
            self._armed = None
            if tasks is None:
                return
            failures: list[NidaqError] = []
            self._reference = None
            labelled = [("AO", tasks.ao), ("AI", tasks.ai)]
            if tasks.co is not None:
                labelled.append(("reference CO", tasks.co))
            for label, task in labelled:
                try:
                    task.close()
                except Exception as exc:
                    failures.append(self._translate(exc, f"clearing the {label} task"))
            if tasks.channel is not None:
                with contextlib.suppress(Exception):
                    tasks.channel.close()
            if failures:
                raise failures[0]

    # -- voltage source ------------------------------------------------------------------------
    def coerce_sample_rate(self, sample_rate_hz: float) -> float:
        """The rate (Hz) DAQmx runs both tasks at when asked for ``sample_rate_hz``.

        Configures the timing with the requested rate and reads it back (cached per rate).

        Raises:
            NidaqError: Not open, or DAQmx refused the rate.
        """
        rate = float(sample_rate_hz)
        with self._lock:
            cached = self._coerced.get(rate)
            if cached is not None:
                return cached
            n = self._configured[0] if self._configured is not None else MIN_HW_SAMPLES
            actual = self._configure(n, rate)
            self._coerced[rate] = actual
            self._coerced.setdefault(actual, actual)
            return actual

    def present_voltages(self) -> FloatArray:
        """NaN for every electrode: NI analog outputs cannot be read back."""
        return np.full(len(self._electrodes), np.nan)

    def play(
        self, waveform_v: FloatArray, sample_rate_hz: float, cancel: threading.Event | None
    ) -> None:
        """Generate ``waveform_v`` (V, shape ``(n_electrodes, n)``) at ``sample_rate_hz`` (Hz)
        while the AI task samples on the same clock; return when the last sample is out.

        Raises:
            NidaqRecordInterrupted: Cancelled (``cancelled=True``) or failed part-way, with the
                AO task's count of generated samples (None when it could not be read).
            ValueError: The waveform's shape does not fit the electrodes.
        """
        with self._lock:
            tasks = self._require_open()
            wave = np.ascontiguousarray(waveform_v, dtype=np.float64)
            if wave.ndim != 2 or wave.shape[0] != len(self._electrodes):
                raise ValueError(
                    f"waveform shape {wave.shape}: expected ({len(self._electrodes)}, n_samples)"
                )
            n = int(wave.shape[1])
            if n == 0:
                return
            if self._armed is not None and self._armed[0] != n:
                # the arm belonged to a record that was interrupted (this is e.g. the ramp of a
                # park): it is void, and nothing of this play will be fetched
                log.debug("nidaq: dropping the arm for %d samples (playing %d)", self._armed[0], n)
                self._armed = None
            self._recorded = None
            if cancel is not None and cancel.is_set():
                self._armed = None
                raise NidaqRecordInterrupted(
                    f"record cancelled before its first sample (0 of {n})", 0, cancelled=True
                )
            try:
                self._play_locked(tasks, wave, float(sample_rate_hz), cancel)
            except BaseException:
                self._armed = None  # an interrupted record is never fetched
                raise
            finally:
                self._stop_reference(tasks)
            self._recorded = n

    def _play_locked(
        self, tasks: _Tasks, wave: FloatArray, rate: float, cancel: threading.Event | None
    ) -> None:
        """One record (see :meth:`play`); the caller holds the lock."""
        n = int(wave.shape[1])
        n_hw = self._hw_samples(n)
        try:
            self._configure(n_hw, rate)
            self._ensure_buffers(n_hw)
            data = wave if n_hw == n else self._padded(wave, n_hw)
            tasks.writer.write_many_sample(data, timeout=self._settings.timeout_s)
            self._arm_reference(tasks)
            tasks.ao.start()
        except Exception as exc:
            self._stop_quietly(tasks)
            self._configured = None
            raise self._interrupted(exc, "preparing the record", 0) from exc
        try:
            tasks.ai.start()
            self._read_record(tasks, n_hw, rate, cancel)
            remaining = self._settings.timeout_s + n_hw / rate
            tasks.ao.wait_until_done(timeout=remaining)
        except _Cancelled:
            done = self._stop_and_count(tasks)
            shown = "an unknown number" if done is None else str(min(done, n))
            raise NidaqRecordInterrupted(
                f"record cancelled after {shown} of {n} samples",
                None if done is None else min(done, n),
                cancelled=True,
            ) from None
        except Exception as exc:
            done = self._stop_and_count(tasks)
            self._configured = None
            raise self._interrupted(exc, "during the record", done, n) from exc
        try:
            tasks.ao.stop()
            tasks.ai.stop()
        except Exception as exc:
            self._configured = None
            raise self._interrupted(exc, "stopping the tasks after the record", n_hw, n) from exc

    # -- reference output ----------------------------------------------------------------------
    def set_reference_output(self, counter: str, frequency_hz: float | None) -> float | None:
        """Generate a pulse train at ``frequency_hz`` (Hz) on ``counter`` (e.g.
        ``cDAQ1/_ctr0``) with every following record, armed on its AI start trigger; None
        stops it. Returns the frequency asked for (DAQmx rounds it to its timebase: 80 MHz
        ticks, < 1e-5 relative below 1 kHz), None when stopped.

        Raises:
            ValueError: ``frequency_hz`` is not positive.
            NidaqError: Not open, or DAQmx refused the counter or the frequency.
        """
        with self._lock:
            tasks = self._require_open()
            if frequency_hz is None:
                self._clear_reference(tasks)
                return None
            frequency = float(frequency_hz)
            if not (math.isfinite(frequency) and frequency > 0):
                raise ValueError(f"reference frequency must be positive (Hz), not {frequency_hz}")
            if tasks.co is not None and self._reference == (counter, frequency):
                return frequency
            self._clear_reference(tasks)
            nidaqmx = import_nidaqmx()
            from nidaqmx.constants import AcquisitionType, Level

            co: Any = None
            try:
                co = self._new_task(nidaqmx, tasks.channel, "ref")
                co.co_channels.add_co_pulse_chan_freq(
                    counter,
                    freq=frequency,
                    duty_cycle=0.5,
                    idle_state=Level.LOW,
                    initial_delay=REFERENCE_DELAY_S,
                )
                co.timing.cfg_implicit_timing(sample_mode=AcquisitionType.CONTINUOUS)
            except Exception as exc:
                if co is not None:
                    with contextlib.suppress(Exception):
                        co.close()
                raise self._translate(
                    exc, f"creating the reference output on {counter} ({frequency:g} Hz)"
                ) from exc
            tasks.co = co
            self._reference = (counter, frequency)
            self._co_trigger_set = ""
            log.info("nidaq: reference output %s at %g Hz", counter, frequency)
            return frequency

    def reference_delay_s(self) -> float:
        """Time (s) from a record's first sample to the reference's first rising edge."""
        return REFERENCE_DELAY_S

    def _arm_reference(self, tasks: _Tasks) -> None:
        """Start the reference CO task armed on the AI start trigger (before the AO starts)."""
        co = tasks.co
        if co is None:
            return
        terminal = self._resolve_terminal(tasks, "StartTrigger")
        if terminal != self._co_trigger_set:
            co.triggers.start_trigger.cfg_dig_edge_start_trig(terminal)
            self._co_trigger_set = terminal
        co.start()

    def _stop_reference(self, tasks: _Tasks) -> None:
        if tasks.co is None:
            return
        try:
            tasks.co.stop()
        except Exception as exc:  # it may not have been started; the next record retries
            log.debug("nidaq: stopping the reference output: %s", exc)

    def _clear_reference(self, tasks: _Tasks) -> None:
        co, tasks.co = tasks.co, None
        self._reference = None
        self._co_trigger_set = ""
        if co is not None:
            try:
                co.close()
            except Exception as exc:
                raise self._translate(exc, "clearing the reference output") from exc

    # -- sampled readout -----------------------------------------------------------------------
    def arm(self, n_samples: int, sample_rate_hz: float) -> None:
        """Configure both tasks for a record of ``n_samples`` at ``sample_rate_hz`` (Hz).

        Raises:
            NidaqError: Not open, or DAQmx refused the timing.
        """
        n = int(n_samples)
        if n < 1:
            raise ValueError(f"n_samples must be at least 1, not {n}")
        with self._lock:
            self._require_open()
            self._configure(self._hw_samples(n), float(sample_rate_hz))
            self._ensure_buffers(self._hw_samples(n))
            self._armed = (n, float(sample_rate_hz))
            self._recorded = None

    def fetch(self) -> Acquisition:
        """The current(s) (A) sampled during the armed record: AI volts / amplifier gain.

        Raises:
            RuntimeError: Nothing was armed, or the armed record was not played to the end.
        """
        with self._lock:
            armed, self._armed = self._armed, None
            if armed is None:
                raise RuntimeError("fetch() without arm(): nothing was recorded")
            n, _ = armed
            if self._recorded != n:
                raise RuntimeError(f"the armed record of {n} samples was not played to the end")
            self._recorded = None
            skip = self._settings.discard_first_samples
            volts = self._ai_buf[:, skip : skip + n]
            saturated = np.max(np.abs(volts), axis=1) >= self._saturation_v
            return Acquisition(
                current_a=volts / self._gain_v_per_a,
                sample_rate_hz=self._rate_hz,
                saturated=np.asarray(saturated, dtype=np.bool_),
                metadata={
                    "gain_v_per_a": self._gain_v_per_a,
                    "ai_range_v": self._settings.ai_range_v,
                    "discarded_samples": skip,
                    "instrument": self.identity(),
                },
            )

    # -- internals: tasks and timing ---------------------------------------------------------
    def _require_open(self) -> _Tasks:
        if self._tasks is None:
            raise NidaqError("the NI-DAQmx device is not open (use it through SafeDevice)")
        return self._tasks

    def _new_task(self, nidaqmx: Any, channel: Any, kind: str) -> Any:
        prefix = self._settings.grpc.session_name if self._settings.grpc is not None else ""
        name = f"{prefix}_{kind}" if prefix else ""
        if channel is None:
            return nidaqmx.Task(name)
        assert self._settings.grpc is not None
        return nidaqmx.Task(name, grpc_options=session_options(self._settings.grpc, channel, name))

    def _translate(self, exc: BaseException, action: str) -> NidaqError:
        """``exc`` translated; a lost or unreachable server is diagnosed (TCP, TLS, service)."""
        error = translate(exc, action, where=self._where)
        if isinstance(error, NidaqConnectionError) and self._settings.grpc is not None:
            diagnosis = diagnose(self._settings.grpc)
            if not diagnosis.ok:
                return NidaqConnectionError(f"{action}: {diagnosis.reason}")
        return error

    def _hw_samples(self, n: int) -> int:
        return max(n + self._settings.discard_first_samples, MIN_HW_SAMPLES)

    def _configure(self, n_hw: int, rate: float) -> float:
        """Finite timing for ``n_hw`` samples on both tasks (reused when unchanged); the
        coerced rate (Hz) read back from DAQmx."""
        if self._configured == (n_hw, rate):
            return self._rate_hz
        tasks = self._require_open()
        from nidaqmx.constants import AcquisitionType

        finite = AcquisitionType.FINITE
        step = f"configuring the AO and AI timing ({rate:g} Hz, {n_hw} samples"
        terminal = ""
        try:
            ai = tasks.ai
            ao = tasks.ao
            ai.timing.cfg_samp_clk_timing(rate, sample_mode=finite, samps_per_chan=n_hw)
            ai_rate = float(ai.timing.samp_clk_rate)
            if self._settings.sync == "ai_sample_clock":
                terminal = self._resolve_terminal(tasks, "SampleClock")
                ao.timing.cfg_samp_clk_timing(
                    ai_rate, source=terminal, sample_mode=finite, samps_per_chan=n_hw
                )
            else:
                ao.timing.cfg_samp_clk_timing(rate, sample_mode=finite, samps_per_chan=n_hw)
                ao_rate = float(ao.timing.samp_clk_rate)
                if not math.isclose(ao_rate, ai_rate, rel_tol=RATE_TOLERANCE):
                    raise NidaqConfigurationError(
                        f"asked for {rate:g} Hz, the AO task runs at {ao_rate:.12g} Hz but the AI "
                        f"task at {ai_rate:.12g} Hz: they cannot share a start trigger. Use sync: "
                        "ai_sample_clock (AO clocked by the AI), or a rate both support"
                    )
                terminal = self._resolve_terminal(tasks, "StartTrigger")
                if terminal != self._trigger_terminal_set:
                    ao.triggers.start_trigger.cfg_dig_edge_start_trig(terminal)
                    self._trigger_terminal_set = terminal
            self._terminal = terminal
        except NidaqError:
            self._configured = None
            raise
        except Exception as exc:
            self._configured = None
            via = f", AO following {terminal}" if terminal else ""
            raise self._translate(exc, f"{step}{via})") from exc
        self._configured = (n_hw, rate)
        self._rate_hz = ai_rate
        return ai_rate

    def _resolve_terminal(self, tasks: _Tasks, kind: TerminalKind) -> str:
        """The fully qualified AI terminal the AO task follows (see the module docstring)."""
        device = self._settings.trigger_device
        if device:
            return f"/{device.strip('/')}/ai/{kind}"
        from nidaqmx.constants import TaskMode

        try:
            tasks.ai.control(TaskMode.TASK_RESERVE)  # cDAQ: picks the AI timing engine
        except Exception as exc:
            raise self._translate(exc, "reserving the AI task") from exc
        reported = ""
        try:
            if kind == "StartTrigger":
                reported = str(tasks.ai.triggers.start_trigger.term or "")
            else:
                reported = str(tasks.ai.timing.samp_clk_term or "")
        except Exception as exc:  # not reported: fall back to the device's terminal
            error = self._translate(exc, f"reading the AI {kind} terminal")
            if error.error_code is None and not _is_unimplemented(exc):
                raise error from exc
            log.debug("nidaq: AI %s terminal not reported (%s); using the device", kind, error)
        if reported:
            return reported if reported.startswith("/") else f"/{reported}"
        return f"/{self._terminal_device(tasks)}/ai/{kind}"

    def _terminal_device(self, tasks: _Tasks) -> str:
        """The AI task's device whose terminals to use: a non-module device, else the chassis
        of a C Series module, else the first channel's device prefix."""
        from nidaqmx.constants import ProductCategory

        fallback = self._settings.ai_channel_list[0].strip("/").split("/")[0]
        try:
            devices = list(tasks.ai.devices)
        except Exception:
            return fallback
        modules = []
        for dev in devices:
            category = _attribute(dev, "product_category")
            if category == ProductCategory.C_SERIES_MODULE:
                modules.append(dev)
            elif category is not None:
                return str(dev.name)
        for dev in modules:
            chassis = _attribute(dev, "compact_daq_chassis_device", "name")
            if chassis:
                return str(chassis)
        return fallback

    # -- internals: one record -------------------------------------------------------------------
    def _ensure_buffers(self, n_hw: int) -> None:
        n_ai = len(self._settings.ai_channel_list)
        if self._ai_buf.shape[1] != n_hw:
            self._ai_buf = np.zeros((n_ai, n_hw))
            self._ai_scratch = np.zeros(n_ai * n_hw) if n_ai > 1 else np.empty(0)

    def _padded(self, wave: FloatArray, n_hw: int) -> FloatArray:
        """``wave`` followed by its last sample held up to ``n_hw`` samples (preallocated)."""
        if self._ao_buf.shape[1] != n_hw:
            self._ao_buf = np.empty((len(self._electrodes), n_hw))
        n = wave.shape[1]
        self._ao_buf[:, :n] = wave
        self._ao_buf[:, n:] = wave[:, -1:]
        return self._ao_buf

    def _read_record(
        self, tasks: _Tasks, n_hw: int, rate: float, cancel: threading.Event | None
    ) -> None:
        """Read ``n_hw`` AI samples into the preallocated buffer while watching ``cancel``.

        Each round reads what the AI task has available once that is at least
        :data:`READ_CHUNK_S` worth of samples (or the rest of the record), else waits (from
        :data:`FIRST_POLL_S`, doubling up to :data:`POLL_S`; returning at once when ``cancel``
        is set); a server that cannot count the available samples is read in blocking pieces of
        :data:`READ_CHUNK_S` instead.
        """
        deadline = time.monotonic() + n_hw / rate + self._settings.timeout_s
        chunk = max(1, math.floor(rate * READ_CHUNK_S))
        got = 0
        count_available = True
        pause_s = FIRST_POLL_S
        while got < n_hw:
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise NidaqTimeout(
                    f"the AI task delivered {got} of {n_hw} samples within the record's "
                    f"duration + timeout_s ({self._settings.timeout_s:g} s): check the trigger "
                    f"route ({self._terminal or 'unresolved'}) and that the device is running"
                )
            left = n_hw - got
            if count_available:
                try:
                    available = min(int(tasks.ai.in_stream.avail_samp_per_chan), left)
                except Exception as exc:
                    if not _is_unimplemented(exc):
                        raise
                    log.debug("nidaq: the server cannot count available samples: blocking reads")
                    count_available = False
                    continue
                if available >= min(chunk, left):
                    got += self._read_into(tasks, got, available, remaining_s)
                    pause_s = FIRST_POLL_S
                else:  # too little yet for one read: look again shortly
                    _wait(cancel, pause_s)
                    pause_s = min(2 * pause_s, POLL_S)
            else:
                got += self._read_into(tasks, got, min(chunk, left), remaining_s)

    def _read_into(self, tasks: _Tasks, start: int, count: int, timeout_s: float) -> int:
        """Read ``count`` samples per channel into columns ``start:`` of the AI buffer."""
        n_ai = self._ai_buf.shape[0]
        if n_ai == 1:
            view = self._ai_buf[:, start : start + count]  # one row: C-contiguous
            return int(tasks.reader.read_many_sample(view, count, timeout=timeout_s))
        flat = self._ai_scratch[: n_ai * count].reshape(n_ai, count)
        read = int(tasks.reader.read_many_sample(flat, count, timeout=timeout_s))
        self._ai_buf[:, start : start + read] = flat[:, :read]
        return read

    def _stop_and_count(self, tasks: _Tasks) -> int | None:
        """Stop AO then AI; the AO task's total samples generated (None if unreadable)."""
        done: int | None = None
        try:
            tasks.ao.stop()
        except Exception as exc:
            log.error("nidaq: stopping the AO task failed: %s", exc)
        try:
            done = int(tasks.ao.out_stream.total_samp_per_chan_generated)
        except Exception as exc:
            log.error("nidaq: reading the generated-sample count failed: %s", exc)
        with contextlib.suppress(Exception):
            tasks.ai.stop()
        return done

    def _stop_quietly(self, tasks: _Tasks) -> None:
        for task in (tasks.ao, tasks.ai):
            with contextlib.suppress(Exception):
                task.stop()

    def _interrupted(
        self, exc: BaseException, action: str, done: int | None, n: int | None = None
    ) -> NidaqRecordInterrupted:
        error = self._translate(exc, action)
        if done is not None and n is not None:
            done = min(done, n)
        count = "an unknown number of" if done is None else f"{done}"
        total = f" of {n}" if n is not None else ""
        return NidaqRecordInterrupted(
            f"{error} ({count}{total} samples reached the electrodes)",
            done,
            cancelled=False,
            error_code=error.error_code,
            cause_kind=type(error),
        )


def _wait(cancel: threading.Event | None, seconds: float) -> None:
    """Sleep ``seconds`` (s), or less when ``cancel`` is set meanwhile."""
    if cancel is None:
        time.sleep(seconds)
    else:
        cancel.wait(seconds)


def _is_unimplemented(exc: BaseException) -> bool:
    code = getattr(getattr(exc, "rpc_code", None), "name", "")
    return code == "UNIMPLEMENTED"


def _attribute(obj: Any, *names: str) -> Any:
    """``obj.<names[0]>.<names[1]>...``, or None when DAQmx (or the server) cannot say."""
    try:
        for name in names:
            obj = getattr(obj, name)
    except Exception:
        return None
    return obj
