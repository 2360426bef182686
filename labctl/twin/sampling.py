"""Measure an I–V dataset on a device for fitting a twin, block by block, through SafeDevice.

Two drives, both inside every electrode's ``[min_v, max_v]`` and the slew limit:

- ``sine`` (as brainspy-smg samples a chip): electrode ``k`` follows
  ``c_k + a_k sin(2π f_k t + φ_k)`` over its whole range, ``f_k ∝ √p_k`` for the ``k``-th prime
  (pairwise incommensurate, so the trajectory never repeats and fills the voltage box), the
  fastest at ``max_frequency_hz`` (lowered if the slew limit needs it: ``2π f a`` at most half
  the limit). Each point is the mean over ``point_samples`` consecutive samples, its voltage the
  mean of the commanded voltages over the same samples.
- ``steps``: each point is a DC plateau at uniformly random voltages, reached by a slew-limited
  ramp, settled for ``settle_s`` and averaged over ``window_s``.

Every block is one record that starts and ends on the resting voltages (ramps and settling are
played, checked and counted as device time). The sine is a function of the global sample
index, so the trajectory continues across blocks and a resumed run measures exactly what an
uninterrupted one would have.

Before the first block a **noise record** holds a few random DC points and splits each into
point-long groups: the spread of the group means is the measurement noise of one point (white,
1/f and drift at that time scale), the floor a fitted twin's RMSE is compared with.

Storage: HDF5 (h5py) in SWMR mode. Each block is appended (datasets resized and written) and
flushed before ``progress`` records it, so a crash at any moment loses at most the block being
measured; :func:`sample_device` with ``resume=True`` copies the complete blocks into a fresh
file (dropping any partly written tail; a killed writer leaves the file flagged "open", which
only SWMR readers ignore), replaces the old file with it and continues after the last complete
block.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from labctl.config import LoadedConfig
from labctl.device import FloatArray
from labctl.device.checks import ramp_samples
from labctl.device.safety import SafeDevice
from labctl.homodyne.drive import device_drive

log = logging.getLogger(__name__)

FORMAT_NAME = "labctl-twin-samples"
FORMAT_VERSION = 1
SLEW_FRACTION = 0.5
"""Largest fraction of the slew limit a sampling sine may use."""
RANGE_FRACTION = 0.999
"""Fraction of each half-range a sine spans (keeps round-off inside the range)."""
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73)


class SamplingError(ValueError):
    """The sampling request cannot be carried out as asked (nothing was driven)."""


class SamplingPlan(BaseModel):
    """What ``labctl twin sample`` measures (validated once, from the command's options).

    Attributes:
        waveform: ``sine`` or ``steps`` (see the module docstring).
        points: Total number of points in the dataset.
        block_points: Points per record (and per appended block).
        point_samples: Samples averaged into one point (sine).
        max_frequency_hz: Frequency of the fastest electrode's sine (Hz).
        window_s: Averaging window per point (steps, s).
        settle_s: Settling after a ramp (s).
        noise_points: DC points of the noise record (0: none).
        noise_groups: Point-long groups measured at each noise point.
        seed: Seed of the sine phases, the step voltages and the noise points.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    waveform: Literal["sine", "steps"] = "sine"
    points: int = Field(100_000, ge=1)
    block_points: int = Field(5_000, ge=1)
    point_samples: int = Field(10, ge=1)
    max_frequency_hz: float = Field(2.0, gt=0)
    window_s: float = Field(0.002, gt=0)
    settle_s: float = Field(0.01, ge=0)
    noise_points: int = Field(4, ge=0)
    noise_groups: int = Field(100, ge=2)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _sizes(self) -> SamplingPlan:
        if self.block_points > self.points:
            object.__setattr__(self, "block_points", self.points)
        return self


@dataclass(frozen=True)
class SineDrive:
    """The sampling sines: one per electrode (V, Hz, rad)."""

    center_v: FloatArray
    amplitude_v: FloatArray
    frequency_hz: FloatArray
    phase_rad: FloatArray

    def voltages(self, sample_index: np.ndarray, sample_rate_hz: float) -> FloatArray:
        """Shape ``(n_electrodes, len(sample_index))`` (V)."""
        t = np.asarray(sample_index, dtype=np.float64)[None, :] / sample_rate_hz
        arg = 2 * np.pi * self.frequency_hz[:, None] * t + self.phase_rad[:, None]
        return self.center_v[:, None] + self.amplitude_v[:, None] * np.sin(arg)


def sine_drive(ranges_v: FloatArray, slew_v_per_s: float, plan: SamplingPlan) -> SineDrive:
    """The sines for ``ranges_v`` (``(n, 2)``), within ``SLEW_FRACTION`` of the slew limit."""
    n = ranges_v.shape[0]
    if n > len(_PRIMES):
        raise SamplingError(f"at most {len(_PRIMES)} electrodes can be sampled, got {n}")
    center = ranges_v.mean(axis=1)
    amplitude = 0.5 * (ranges_v[:, 1] - ranges_v[:, 0]) * RANGE_FRACTION
    roots = np.sqrt(np.array(_PRIMES[:n], dtype=np.float64))
    frequency = plan.max_frequency_hz * roots / roots.max()
    peak_slew = float(np.max(2 * np.pi * frequency * amplitude))
    allowed = SLEW_FRACTION * slew_v_per_s
    if peak_slew > allowed:
        scale = allowed / peak_slew
        log.warning(
            "sampling sines slowed by %.3g to stay within %.0f %% of the %.3g V/s slew limit",
            scale,
            100 * SLEW_FRACTION,
            slew_v_per_s,
        )
        frequency = frequency * scale
    phase = np.asarray(np.random.default_rng([plan.seed, 1]).uniform(0, 2 * np.pi, n), float)
    return SineDrive(center, amplitude, frequency, phase)


@dataclass(frozen=True)
class Block:
    """One measured block of points.

    Attributes:
        voltages_v: ``(n_points, n_electrodes)`` (V).
        current_a: Mean current of each point (A).
        current_sd_a: Standard deviation of the samples of each point (A).
        saturated: Whether a sample of the point reached the amplifier swing.
        device_seconds: Device time of the block's record (s).
    """

    voltages_v: FloatArray
    current_a: FloatArray
    current_sd_a: FloatArray
    saturated: np.ndarray
    device_seconds: float


def _saturation_a(loaded: LoadedConfig) -> float:
    amplifier = loaded.setup.amplifier
    return 0.99 * amplifier.output_swing_v / amplifier.gain_v_per_a


def _play(device: SafeDevice, wave: FloatArray) -> tuple[FloatArray, float]:
    start = device.device_seconds
    acquisition = device.apply(wave, device.sample_rate_hz)
    return acquisition.current_a[0], device.device_seconds - start


def _framed(device: SafeDevice, segment: FloatArray, settle_samples: int) -> tuple[FloatArray, int]:
    """``segment`` between slew-limited ramps from and to rest; returns it and its start index."""
    rest = device.rest_voltages()
    rate = device.sample_rate_hz
    ramp_rate = device.limits.effective_ramp_v_per_s
    up = ramp_samples(rest, segment[:, 0], rate, ramp_rate)
    hold = np.repeat(segment[:, :1], settle_samples, axis=1)
    down = ramp_samples(segment[:, -1], rest, rate, ramp_rate)
    pieces = [rest[:, None], up[:, :-1] if up.shape[1] else up, hold, segment, down]
    if not down.shape[1]:
        pieces.append(rest[:, None])
    start = 1 + max(up.shape[1] - 1, 0) + settle_samples
    return np.concatenate(pieces, axis=1), start


def measure_sine_block(
    device: SafeDevice, drive: SineDrive, plan: SamplingPlan, block: int, saturation_a: float
) -> Block:
    """Block ``block`` of the sine trajectory (points ``block * block_points`` on)."""
    rate = device.sample_rate_hz
    first = block * plan.block_points
    n_points = min(plan.block_points, plan.points - first)
    m = plan.point_samples
    index = np.arange(first * m, (first + n_points) * m)
    segment = drive.voltages(index, rate)
    wave, start = _framed(device, segment, round(plan.settle_s * rate))
    current, seconds = _play(device, wave)
    samples = current[start : start + n_points * m].reshape(n_points, m)
    volts = segment.T.reshape(n_points, m, -1).mean(axis=1)
    return Block(
        voltages_v=volts,
        current_a=samples.mean(axis=1),
        current_sd_a=samples.std(axis=1),
        saturated=np.abs(samples).max(axis=1) >= saturation_a,
        device_seconds=seconds,
    )


def measure_steps_block(
    device: SafeDevice, ranges_v: FloatArray, plan: SamplingPlan, block: int, saturation_a: float
) -> Block:
    """Block ``block`` of random DC plateaus (seeded by the plan's seed and the block)."""
    first = block * plan.block_points
    n_points = min(plan.block_points, plan.points - first)
    rng = np.random.default_rng([plan.seed, 2, block])
    points = rng.uniform(ranges_v[:, 0], ranges_v[:, 1], size=(n_points, ranges_v.shape[0]))
    drive = device_drive(device, points, None, plan.window_s, plan.settle_s)
    current, seconds = _play(device, drive.waveform_v)
    windows = [drive.window_samples(current, c) for c in range(n_points)]
    return Block(
        voltages_v=points,
        current_a=np.array([w.mean() for w in windows]),
        current_sd_a=np.array([w.std() for w in windows]),
        saturated=np.array([np.abs(w).max() >= saturation_a for w in windows]),
        device_seconds=seconds,
    )


def measure_noise(
    device: SafeDevice, ranges_v: FloatArray, plan: SamplingPlan
) -> tuple[FloatArray, FloatArray, float]:
    """Point-long group means at ``noise_points`` random DC points.

    Returns:
        The DC points ``(noise_points, n)`` (V), the group means ``(noise_points, groups)`` (A)
        and the device time (s).
    """
    rate = device.sample_rate_hz
    group = plan.point_samples if plan.waveform == "sine" else max(1, round(plan.window_s * rate))
    rng = np.random.default_rng([plan.seed, 3])
    points = rng.uniform(ranges_v[:, 0], ranges_v[:, 1], size=(plan.noise_points, len(ranges_v)))
    window_s = group * plan.noise_groups / rate
    drive = device_drive(device, points, None, window_s, plan.settle_s)
    current, seconds = _play(device, drive.waveform_v)
    means = np.empty((plan.noise_points, plan.noise_groups))
    for c in range(plan.noise_points):
        samples = drive.window_samples(current, c)[: group * plan.noise_groups]
        means[c] = samples.reshape(plan.noise_groups, group).mean(axis=1)
    return points, means, seconds


def noise_floor_a(noise_means_a: FloatArray) -> float:
    """Pooled standard deviation of one point's current (A) from the noise record."""
    if noise_means_a.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean(np.var(noise_means_a, axis=1, ddof=1))))


# -- storage ---------------------------------------------------------------------------------


def _setup_description(loaded: LoadedConfig, device: SafeDevice) -> dict[str, Any]:
    setup = loaded.setup
    return {
        "electrodes": [e.name for e in setup.electrodes],
        "ranges_v": [[e.min_v, e.max_v] for e in setup.electrodes],
        "sample_rate_hz": device.sample_rate_hz,
        "gain_v_per_a": setup.amplifier.gain_v_per_a,
        "slew_v_per_s": device.limits.slew_v_per_s,
        "device": device.identity(),
    }


def _canonical(setup: dict[str, Any]) -> str:
    return json.dumps(setup, sort_keys=True, default=str)


_NOISE_DATASETS = ("noise_voltages_v", "noise_current_a")


def _new_file(path: Path, attrs: dict[str, Any], n: int, plan: SamplingPlan) -> Any:
    """An empty dataset file with ``attrs``, in SWMR-write mode."""
    import h5py

    f = h5py.File(path, "w", libver="latest")
    try:
        for key, value in attrs.items():
            f.attrs[key] = value
        chunk = min(plan.block_points, 65536)
        f.create_dataset("voltages_v", (0, n), maxshape=(None, n), dtype="f8", chunks=(chunk, n))
        for name, dtype in (("current_a", "f8"), ("current_sd_a", "f8"), ("saturated", "?")):
            f.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=(chunk,))
        f.create_dataset("block_device_seconds", (0,), maxshape=(None,), dtype="f8", chunks=(64,))
        f.create_dataset("noise_voltages_v", (plan.noise_points, n), dtype="f8")
        f.create_dataset("noise_current_a", (plan.noise_points, plan.noise_groups), dtype="f8")
        # progress: complete points, complete blocks, noise measured (0/1), device seconds
        f.create_dataset("progress", (4,), dtype="f8", data=np.zeros(4))
        f.swmr_mode = True
        f.flush()
    except BaseException:
        f.close()
        raise
    return f


class SampleStore:
    """The HDF5 dataset file (see the module docstring); open with :meth:`create`/:meth:`resume`."""

    def __init__(self, handle: Any, path: Path) -> None:
        self._f = handle
        self.path = path

    @classmethod
    def create(
        cls, path: Path, plan: SamplingPlan, setup: dict[str, Any], drive: SineDrive | None
    ) -> SampleStore:
        """A new, empty dataset file at ``path`` (SWMR mode, flushed)."""
        attrs: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "plan": plan.model_dump_json(),
            "setup": _canonical(setup),
            "electrodes": json.dumps(setup["electrodes"]),
            "voltage_ranges_v": np.array(setup["ranges_v"], dtype=np.float64),
        }
        if drive is not None:
            attrs["sine_frequency_hz"] = drive.frequency_hz
            attrs["sine_phase_rad"] = drive.phase_rad
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(_new_file(path, attrs, len(setup["electrodes"]), plan), path)

    @classmethod
    def resume(cls, path: Path, plan: SamplingPlan, setup: dict[str, Any]) -> SampleStore:
        """Continue ``path``: its complete blocks are copied into a fresh file that replaces it.

        A process killed while writing leaves the HDF5 file marked "open for writing" (and
        possibly a block written but not recorded in ``progress``); it can still be read in
        SWMR mode, so the complete blocks are read and written anew, and sampling goes on in the
        new file. The old file is replaced only once the new one is flushed.
        """
        import h5py

        try:
            old = h5py.File(path, "r", libver="latest", swmr=True)
        except OSError as exc:
            raise SamplingError(f"{path} cannot be opened to resume ({exc})") from exc
        with old:
            if old.attrs.get("format") != FORMAT_NAME:
                raise SamplingError(f"{path} is not a labctl twin sample file")
            stored_plan = json.loads(str(old.attrs["plan"]))
            asked = json.loads(plan.model_dump_json())
            if stored_plan != asked:
                diff = {
                    k: (stored_plan.get(k), v) for k, v in asked.items() if stored_plan.get(k) != v
                }
                raise SamplingError(
                    f"{path} was sampled with other options {diff} (stored, asked): resume with "
                    "the same options, or sample into a new file"
                )
            if str(old.attrs["setup"]) != _canonical(setup):
                raise SamplingError(
                    f"{path} was sampled on another setup or device (electrodes, ranges, rate, "
                    "gain or device identity differ): sample into a new file"
                )
            attrs = {key: old.attrs[key] for key in old.attrs}
            progress = np.asarray(old["progress"][...], dtype=np.float64)
            done, blocks = int(progress[0]), int(progress[1])
            arrays = {
                name: np.asarray(old[name][:done])
                for name in ("voltages_v", "current_a", "current_sd_a", "saturated")
            }
            arrays["block_device_seconds"] = np.asarray(old["block_device_seconds"][:blocks])
            noise = {name: np.asarray(old[name][...]) for name in _NOISE_DATASETS}
        tmp = path.with_name(path.name + ".resume.tmp")
        f = _new_file(tmp, attrs, arrays["voltages_v"].shape[1], plan)
        try:
            for name, values in arrays.items():
                f[name].resize(values.shape[0], axis=0)
                f[name][...] = values
            for name, values in noise.items():
                f[name][...] = values
            f["progress"][...] = progress
            f.flush()
            os.replace(tmp, path)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        log.info("resuming %s after %d points (%d blocks)", path, done, blocks)
        return cls(f, path)

    @property
    def complete_points(self) -> int:
        return int(self._f["progress"][0])

    @property
    def complete_blocks(self) -> int:
        return int(self._f["progress"][1])

    @property
    def has_noise(self) -> bool:
        return bool(self._f["progress"][2])

    @property
    def device_seconds(self) -> float:
        return float(self._f["progress"][3])

    def noise_means_a(self) -> FloatArray:
        """The noise record's group means ``(noise_points, groups)`` (A)."""
        return np.asarray(self._f["noise_current_a"][...], dtype=np.float64)

    def write_noise(self, points_v: FloatArray, means_a: FloatArray, seconds: float) -> None:
        self._f["noise_voltages_v"][...] = points_v
        self._f["noise_current_a"][...] = means_a
        self._f["noise_voltages_v"].flush()
        self._f["noise_current_a"].flush()
        progress = self._f["progress"][...]
        progress[2] = 1.0
        progress[3] += seconds
        self._set_progress(progress)

    def append(self, block: Block) -> None:
        done = self.complete_points
        n = block.current_a.size
        for name, values in (
            ("voltages_v", block.voltages_v),
            ("current_a", block.current_a),
            ("current_sd_a", block.current_sd_a),
            ("saturated", block.saturated),
        ):
            dataset = self._f[name]
            dataset.resize(done + n, axis=0)
            dataset[done : done + n] = values
            dataset.flush()
        seconds = self._f["block_device_seconds"]
        blocks = self.complete_blocks
        seconds.resize(blocks + 1, axis=0)
        seconds[blocks] = block.device_seconds
        seconds.flush()
        progress = self._f["progress"][...]
        progress[0] = done + n
        progress[1] = blocks + 1
        progress[3] += block.device_seconds
        self._set_progress(progress)

    def _set_progress(self, progress: np.ndarray) -> None:
        self._f["progress"][...] = progress
        self._f["progress"].flush()
        self._f.flush()

    def close(self) -> None:
        self._f.close()


@dataclass(frozen=True)
class SamplingResult:
    """What a sampling call left in the file."""

    path: Path
    points: int
    blocks_measured: int
    device_seconds: float
    noise_floor_a: float
    complete: bool


def sample_device(
    device: SafeDevice,
    loaded: LoadedConfig,
    plan: SamplingPlan,
    path: str | Path,
    *,
    resume: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> SamplingResult:
    """Measure ``plan`` on the opened ``device`` into ``path`` (HDF5), block by block.

    Args:
        device: The opened safe device of ``loaded``'s setup.
        loaded: The configuration (electrode ranges, amplifier).
        plan: What to measure.
        path: The dataset file; it must not exist unless ``resume``.
        resume: Continue an existing file after its last complete block.
        on_progress: Called with (complete points, total points) after every block.

    Raises:
        SamplingError: The file exists (without ``resume``), or it was sampled with other
            options or on another setup (with ``resume``); nothing was driven.
    """
    out = Path(path)
    ranges = np.array([[e.min_v, e.max_v] for e in loaded.setup.electrodes], dtype=np.float64)
    setup = _setup_description(loaded, device)
    drive = (
        sine_drive(ranges, device.limits.slew_v_per_s, plan) if plan.waveform == "sine" else None
    )
    if resume:
        if not out.is_file():
            raise SamplingError(f"--resume: {out} does not exist; start without --resume")
        store = SampleStore.resume(out, plan, setup)
    else:
        if out.exists():
            raise SamplingError(
                f"{out} exists: continue it with --resume, or choose another output file"
            )
        store = SampleStore.create(out, plan, setup, drive)
    saturation = _saturation_a(loaded)
    n_blocks = math.ceil(plan.points / plan.block_points)
    measured = 0
    try:
        if plan.noise_points and not store.has_noise:
            store.write_noise(*measure_noise(device, ranges, plan))
        if on_progress is not None:
            on_progress(store.complete_points, plan.points)
        for block in range(store.complete_blocks, n_blocks):
            if drive is not None:
                result = measure_sine_block(device, drive, plan, block, saturation)
            else:
                result = measure_steps_block(device, ranges, plan, block, saturation)
            store.append(result)
            measured += 1
            if on_progress is not None:
                on_progress(store.complete_points, plan.points)
        floor = noise_floor_a(store.noise_means_a()) if store.has_noise else float("nan")
        return SamplingResult(
            path=out,
            points=store.complete_points,
            blocks_measured=measured,
            device_seconds=store.device_seconds,
            noise_floor_a=floor,
            complete=store.complete_points >= plan.points,
        )
    finally:
        store.close()


@dataclass(frozen=True, eq=False)
class SampleData:
    """A dataset read back from a sample file."""

    voltages_v: FloatArray
    current_a: FloatArray
    current_sd_a: FloatArray
    saturated: np.ndarray
    voltage_ranges_v: FloatArray
    electrodes: tuple[str, ...]
    noise_floor_a: float
    device_seconds: float
    plan: dict[str, Any]
    setup: dict[str, Any]


def read_samples(path: str | Path) -> SampleData:
    """The complete points of a sample file (a partly written block is ignored).

    Raises:
        SamplingError: Not a readable labctl twin sample file.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise SamplingError(f"{p} does not exist")
    try:
        f = h5py.File(p, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise SamplingError(f"{p} is not a readable HDF5 file ({exc})") from exc
    with f:
        if f.attrs.get("format") != FORMAT_NAME:
            raise SamplingError(f"{p} is not a labctl twin sample file (labctl twin sample)")
        done = int(f["progress"][0])
        has_noise = bool(f["progress"][2])
        noise = np.asarray(f["noise_current_a"][...]) if has_noise else np.empty((0, 0))
        return SampleData(
            voltages_v=np.asarray(f["voltages_v"][:done], dtype=np.float64),
            current_a=np.asarray(f["current_a"][:done], dtype=np.float64),
            current_sd_a=np.asarray(f["current_sd_a"][:done], dtype=np.float64),
            saturated=np.asarray(f["saturated"][:done], dtype=bool),
            voltage_ranges_v=np.asarray(f.attrs["voltage_ranges_v"], dtype=np.float64),
            electrodes=tuple(json.loads(str(f.attrs["electrodes"]))),
            noise_floor_a=noise_floor_a(noise),
            device_seconds=float(f["progress"][3]),
            plan=json.loads(str(f.attrs["plan"])),
            setup=json.loads(str(f.attrs["setup"])),
        )
