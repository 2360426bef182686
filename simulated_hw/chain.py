"""The measurement chain between a simulated device and the numbers a DAQ returns.

Signal path, per sample (each stage can be switched off for exact tests)::

    device current (A)
      + white noise + 1/f (flicker) noise + random-walk drift      [input-referred current noise]
      × gain_v_per_a                                               [transimpedance amplifier]
      → first-order low-pass, bandwidth_hz                         [amplifier bandwidth]
      → clip to ±output_swing_v                                    [amplifier saturation]
      → clip to ±adc_range_v, round to the ADC step                [ADC]

Noise model: one-sided current-noise PSD ``S(f) = S_white (1 + f_c / f)`` (A²/Hz), with
``f_c = flicker_corner_hz`` and ``S_white`` chosen so that ``S(1 kHz)`` equals
``noise_psd_at_1khz_a2_per_hz`` (default 1e-23 A²/Hz = 1e-5 nA²/Hz, the published figure). The
white part is Gaussian with variance ``S_white · f_s / 2`` per sample. The 1/f part is a sum of
independent Ornstein–Uhlenbeck (first-order autoregressive) processes with log-spaced corners
(``flicker_poles_per_decade`` per decade from ``flicker_min_hz`` up to the Nyquist frequency of
the call), each of variance ``ln(10)/poles_per_decade · S_white · f_c``; their Lorentzian spectra
add up to ``S_white · f_c / f`` within about 1 % between a few times ``flicker_min_hz`` and
``f_s/2``. Every process draws from its own seeded stream, sample by sample, so the chain is one
continuous process however a record is cut into calls (corners above the Nyquist frequency of a
call pause while the rate is that low).

Amplifier bandwidth: the DAC holds each sample for ``1/f_s`` (zero-order hold); a first-order
low-pass with corner ``f_c`` driven by that staircase and sampled at the sample instants is
exactly ``y[n+1] = a·y[n] + (1 − a)·x[n]`` with ``a = exp(−2π f_c / f_s)``. The reading at sample
``n`` therefore depends on inputs up to ``n − 1``; the phase lag at frequency ``f`` is about
``atan(f / f_c) + π f / f_s`` (low-pass plus the hold's half-sample delay), see
:meth:`MeasurementChain.tia_response` for the exact value.

The default gain, 1/(39.5 nA/V) ≈ 2.53e7 V/A, is the measured setup behind the reference
surrogate (39.5 nA per ADC volt, ±4 V swing ⇒ ±158 nA before the amplifier saturates). It is
positive (the reading has the sign of the current); set a negative gain to model an inverting
amplifier.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.signal import lfilter

from labctl.rng import generator_state, set_generator_state

FloatArray = NDArray[np.float64]

DEFAULT_GAIN_V_PER_A = 1.0 / 39.5e-9
"""Default transimpedance gain (V/A): 39.5 nA per output volt."""

_FLICKER_GRID_MAX_HZ = 1e7
"""Highest corner of the fixed flicker-pole grid (Hz); covers sample rates up to 20 MS/s."""

_REFERENCE_FREQUENCY_HZ = 1000.0
"""Frequency (Hz) at which ``noise_psd_at_1khz_a2_per_hz`` is specified."""


@dataclass(frozen=True)
class ChainSettings:
    """Parameters of the measurement chain (SI units).

    Attributes:
        gain_v_per_a: Transimpedance gain (V/A); negative for an inverting amplifier.
        bandwidth_hz: −3 dB corner of the amplifier's first-order low-pass (Hz); ``None`` for
            infinite bandwidth.
        output_swing_v: Amplifier output limit (V, magnitude).
        noise_psd_at_1khz_a2_per_hz: One-sided current-noise PSD at 1 kHz (A²/Hz), white + 1/f.
        flicker_corner_hz: Frequency (Hz) where the 1/f part equals the white floor; 0 for none.
        drift_a_per_sqrt_s: Random-walk drift of the current (A/√s): after ``t`` seconds the
            drift has standard deviation ``drift · √t``.
        adc_range_v: ADC input range ±``adc_range_v`` (V).
        adc_bits: ADC resolution; the step is ``2 · adc_range_v / 2**adc_bits`` (V).
        flicker_min_hz: Lowest corner of the 1/f generator (Hz); below it the 1/f part flattens.
        flicker_poles_per_decade: Number of first-order processes per decade in the 1/f generator.
        enable_noise: Add the white part of the noise.
        enable_flicker: Add the 1/f part of the noise.
        enable_drift: Add the random-walk drift.
        enable_bandwidth: Apply the amplifier low-pass (ignored when ``bandwidth_hz`` is None).
        enable_saturation: Clip at the amplifier swing and the ADC range (and flag it).
        enable_quantisation: Round the ADC reading to its step.
        adc_delay_samples: Group delay of the ADC's digital filter (whole samples), as on
            delta-sigma modules; a phase lag of 360° · f · delay / f_s.
    """

    gain_v_per_a: float = DEFAULT_GAIN_V_PER_A
    bandwidth_hz: float | None = 2000.0
    output_swing_v: float = 4.0
    noise_psd_at_1khz_a2_per_hz: float = 1e-23
    flicker_corner_hz: float = 100.0
    drift_a_per_sqrt_s: float = 2e-12
    adc_range_v: float = 10.0
    adc_bits: int = 16
    flicker_min_hz: float = 1e-3
    flicker_poles_per_decade: int = 2
    enable_noise: bool = True
    enable_flicker: bool = True
    enable_drift: bool = True
    enable_bandwidth: bool = True
    enable_saturation: bool = True
    enable_quantisation: bool = True
    adc_delay_samples: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.adc_delay_samples, int) or self.adc_delay_samples < 0:
            raise ValueError(
                f"adc_delay_samples must be a non-negative integer, got {self.adc_delay_samples!r}."
            )
        if not math.isfinite(self.gain_v_per_a) or self.gain_v_per_a == 0.0:
            raise ValueError(
                f"gain_v_per_a must be finite and non-zero (V/A), got {self.gain_v_per_a}."
            )
        if self.bandwidth_hz is not None and not (
            math.isfinite(self.bandwidth_hz) and self.bandwidth_hz > 0
        ):
            raise ValueError(
                f"bandwidth_hz must be positive (Hz) or None for infinite, got {self.bandwidth_hz}."
            )
        _positive("output_swing_v", self.output_swing_v)
        _positive("adc_range_v", self.adc_range_v)
        _positive("flicker_min_hz", self.flicker_min_hz)
        _non_negative("noise_psd_at_1khz_a2_per_hz", self.noise_psd_at_1khz_a2_per_hz)
        _non_negative("flicker_corner_hz", self.flicker_corner_hz)
        _non_negative("drift_a_per_sqrt_s", self.drift_a_per_sqrt_s)
        if not isinstance(self.adc_bits, int) or not 1 <= self.adc_bits <= 32:
            raise ValueError(f"adc_bits must be an integer in 1..32, got {self.adc_bits!r}.")
        if not isinstance(self.flicker_poles_per_decade, int) or self.flicker_poles_per_decade < 1:
            raise ValueError(
                "flicker_poles_per_decade must be a positive integer, "
                f"got {self.flicker_poles_per_decade!r}."
            )

    @classmethod
    def ideal(cls, gain_v_per_a: float = DEFAULT_GAIN_V_PER_A) -> ChainSettings:
        """Settings with every effect off: the reading is exactly ``gain_v_per_a × current``."""
        return cls(
            gain_v_per_a=gain_v_per_a,
            enable_noise=False,
            enable_flicker=False,
            enable_drift=False,
            enable_bandwidth=False,
            enable_saturation=False,
            enable_quantisation=False,
        )

    @property
    def white_psd_a2_per_hz(self) -> float:
        """White floor ``S_white`` (A²/Hz) of the current noise."""
        return self.noise_psd_at_1khz_a2_per_hz / (
            1.0 + self.flicker_corner_hz / _REFERENCE_FREQUENCY_HZ
        )

    @property
    def adc_step_v(self) -> float:
        """ADC quantisation step (V): full span ``2 · adc_range_v`` over ``2**adc_bits`` codes."""
        return 2.0 * self.adc_range_v / 2.0**self.adc_bits

    @property
    def saturation_current_a(self) -> float:
        """Current magnitude (A) at which the amplifier swing or the ADC range is reached."""
        return min(self.output_swing_v, self.adc_range_v) / abs(self.gain_v_per_a)

    @property
    def filter_active(self) -> bool:
        """Whether the amplifier low-pass is applied."""
        return self.enable_bandwidth and self.bandwidth_hz is not None

    def noise_psd_a2_per_hz(self, frequency_hz: ArrayLike) -> FloatArray:
        """Target one-sided PSD (A²/Hz) of the enabled white and 1/f noise (drift excluded)."""
        f = np.asarray(frequency_hz, dtype=np.float64)
        psd = np.zeros_like(f)
        s_white = self.white_psd_a2_per_hz
        if self.enable_noise:
            psd = psd + s_white
        if self.enable_flicker:
            psd = psd + s_white * self.flicker_corner_hz / f
        return psd


@dataclass(frozen=True)
class ChainOutput:
    """What the chain produced for one call.

    Attributes:
        tia_v: Amplifier output (V), after bandwidth and swing limit, shape ``(n,)``.
        adc_v: ADC reading (V): clipped to the range and quantised, shape ``(n,)``.
        saturated: Whether any sample hit the amplifier swing or the ADC range (always False
            when ``enable_saturation`` is off).
    """

    tia_v: FloatArray
    adc_v: FloatArray
    saturated: bool


@dataclass
class _State:
    """Mutable state of the chain, carried across calls.

    Each random process has its own generator, so each stream is consumed sample by sample
    whatever the call boundaries are.
    """

    white_rng: np.random.Generator
    drift_rng: np.random.Generator
    pole_rngs: list[np.random.Generator]
    flicker_a: FloatArray
    drift_a: float = 0.0
    tia_next_v: float | None = None
    delay_line: FloatArray | None = None


class MeasurementChain:
    """A stateful measurement chain: device current (A) in, amplifier and ADC voltages (V) out.

    Calls continue one another: filter states, noise processes and drift carry over, so
    processing a record in pieces gives bit-for-bit the same output as processing it whole
    (at the same sample rate). Not thread-safe on its own; :class:`simulated_hw.bench.SimBench`
    serialises access.

    Args:
        settings: Chain parameters; the defaults of :class:`ChainSettings` when None.
        seed: Seed of all random processes (noise, drift, initial 1/f state).
        block_samples: Samples processed per internal block (bounds memory for long records).
    """

    def __init__(
        self,
        settings: ChainSettings | None = None,
        seed: int = 0,
        *,
        block_samples: int = 65536,
    ) -> None:
        if block_samples < 1:
            raise ValueError(f"block_samples must be a positive integer, got {block_samples}.")
        self._settings = settings if settings is not None else ChainSettings()
        self._seed = int(seed)
        self._block = int(block_samples)
        s = self._settings
        n_poles = int(
            math.floor(
                s.flicker_poles_per_decade * math.log10(_FLICKER_GRID_MAX_HZ / s.flicker_min_hz)
            )
            + 1
        )
        n_poles = max(n_poles, 1)
        self._pole_hz = s.flicker_min_hz * 10.0 ** (
            np.arange(n_poles, dtype=np.float64) / s.flicker_poles_per_decade
        )
        self._pole_sd_a = math.sqrt(
            math.log(10.0)
            / s.flicker_poles_per_decade
            * s.white_psd_a2_per_hz
            * s.flicker_corner_hz
        )
        self._state = self._initial_state()

    @property
    def settings(self) -> ChainSettings:
        """The chain's parameters."""
        return self._settings

    @property
    def seed(self) -> int:
        """The seed the random processes were started from."""
        return self._seed

    def _initial_state(self) -> _State:
        init_ss, white_ss, drift_ss, *pole_ss = np.random.SeedSequence(self._seed).spawn(
            3 + self._pole_hz.size
        )
        flicker = _generator(init_ss).standard_normal(self._pole_hz.size) * self._pole_sd_a
        return _State(
            white_rng=_generator(white_ss),
            drift_rng=_generator(drift_ss),
            pole_rngs=[_generator(ss) for ss in pole_ss],
            flicker_a=flicker,
        )

    def reset(self) -> None:
        """Restore the state right after construction (same seed, same future output)."""
        self._state = self._initial_state()

    def state_dict(self) -> dict[str, Any]:
        """The random streams and filter states as JSON-ready values.

        :meth:`load_state_dict` on a chain with the same settings continues bit for bit from
        here (a resumed run sees the noise the uninterrupted one would have seen).
        """
        st = self._state
        return {
            "white_rng": generator_state(st.white_rng),
            "drift_rng": generator_state(st.drift_rng),
            "pole_rngs": [generator_state(rng) for rng in st.pole_rngs],
            "flicker_a": [float(v) for v in st.flicker_a],
            "drift_a": float(st.drift_a),
            "tia_next_v": st.tia_next_v,
            "delay_line": None if st.delay_line is None else [float(v) for v in st.delay_line],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a state :meth:`state_dict` returned.

        Raises:
            ValueError: The state belongs to a chain with another number of flicker poles.
        """
        st = self._initial_state()
        if len(state["pole_rngs"]) != len(st.pole_rngs):
            raise ValueError(
                f"chain state has {len(state['pole_rngs'])} flicker poles, this chain "
                f"{len(st.pole_rngs)}: it was saved with other settings"
            )
        for rng, saved in zip(
            [st.white_rng, st.drift_rng, *st.pole_rngs],
            [state["white_rng"], state["drift_rng"], *state["pole_rngs"]],
            strict=True,
        ):
            set_generator_state(rng, saved)
        st.flicker_a = np.array(state["flicker_a"], dtype=np.float64)
        st.drift_a = float(state["drift_a"])
        tia = state.get("tia_next_v")
        st.tia_next_v = None if tia is None else float(tia)
        line = state.get("delay_line")
        st.delay_line = None if line is None else np.array(line, dtype=np.float64)
        self._state = st

    def settle(self, current_a: float) -> None:
        """Set the amplifier to the steady state for a constant input current (A).

        Without this, the first call settles the amplifier on its own first input sample.
        """
        self._state.tia_next_v = float(current_a) * self._settings.gain_v_per_a

    def to_current_a(self, adc_v: ArrayLike) -> FloatArray:
        """Convert ADC volts back to amperes (divide by the gain)."""
        return np.asarray(adc_v, dtype=np.float64) / self._settings.gain_v_per_a

    def tia_response(
        self, frequency_hz: ArrayLike, sample_rate_hz: float
    ) -> NDArray[np.complex128]:
        """Exact complex response (V/A) from device current to reading at ``frequency_hz``.

        Includes the gain, the low-pass and the hold delay (``H(z) = g (1 − a) z⁻¹ / (1 − a z⁻¹)``
        with ``z = exp(2πj f / f_s)``), or just the gain when the low-pass is off.
        """
        f = np.asarray(frequency_hz, dtype=np.float64)
        gain = self._settings.gain_v_per_a
        z_inv = np.exp(-2j * np.pi * f / sample_rate_hz)
        delay = z_inv**self._settings.adc_delay_samples
        if not self._settings.filter_active:
            return gain * delay
        a = self._pole(sample_rate_hz)
        return gain * delay * (1.0 - a) * z_inv / (1.0 - a * z_inv)

    def _pole(self, sample_rate_hz: float) -> float:
        bandwidth = self._settings.bandwidth_hz
        if bandwidth is None:
            raise ValueError("The low-pass pole is undefined when bandwidth_hz is None.")
        return math.exp(-2.0 * math.pi * bandwidth / sample_rate_hz)

    def process(self, current_a: ArrayLike, sample_rate_hz: float) -> ChainOutput:
        """Pass a current record (A) sampled at ``sample_rate_hz`` (Hz) through the chain.

        Args:
            current_a: Device current per sample, shape ``(n,)`` (A).
            sample_rate_hz: Sample rate (Hz) of the record.

        Returns:
            The amplifier and ADC voltages and the saturation flag.

        Raises:
            ValueError: If the record is not 1-D and finite or the rate is not positive.
        """
        x = np.asarray(current_a, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"current_a must be 1-D (n_samples,), got shape {x.shape}.")
        if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
            raise ValueError(f"sample_rate_hz must be positive (Hz), got {sample_rate_hz}.")
        if not np.all(np.isfinite(x)):
            raise ValueError("current_a contains NaN or infinite values.")
        n = x.size
        if n <= self._block:
            return self._process_block(x, float(sample_rate_hz))
        tia = np.empty(n, dtype=np.float64)
        adc = np.empty(n, dtype=np.float64)
        saturated = False
        for start in range(0, n, self._block):
            stop = min(start + self._block, n)
            part = self._process_block(x[start:stop], float(sample_rate_hz))
            tia[start:stop] = part.tia_v
            adc[start:stop] = part.adc_v
            saturated = saturated or part.saturated
        return ChainOutput(tia_v=tia, adc_v=adc, saturated=saturated)

    def _process_block(self, x: FloatArray, fs: float) -> ChainOutput:
        s = self._settings
        st = self._state
        n = x.size
        if n == 0:
            empty = np.empty(0, dtype=np.float64)
            return ChainOutput(tia_v=empty, adc_v=empty.copy(), saturated=False)
        current = x.copy()

        if s.enable_noise and s.white_psd_a2_per_hz > 0.0:
            sd = math.sqrt(s.white_psd_a2_per_hz * fs / 2.0)
            current += sd * st.white_rng.standard_normal(n)
        if s.enable_drift and s.drift_a_per_sqrt_s > 0.0:
            steps = np.empty(n + 1, dtype=np.float64)
            steps[0] = st.drift_a
            steps[1:] = st.drift_rng.standard_normal(n)
            steps[1:] *= s.drift_a_per_sqrt_s * math.sqrt(1.0 / fs)
            path = np.cumsum(steps)[1:]
            st.drift_a = float(path[-1])
            current += path
        if s.enable_flicker and self._pole_sd_a > 0.0:
            active = np.flatnonzero(self._pole_hz <= fs / 2.0)
            if active.size:
                f_active = self._pole_hz[active]
                rho = np.exp(-2.0 * np.pi * f_active / fs)
                g = self._pole_sd_a * np.sqrt(-np.expm1(-4.0 * np.pi * f_active / fs))
                drive = np.empty((active.size, n), dtype=np.float64)
                for row, k in enumerate(active):
                    st.pole_rngs[k].standard_normal(out=drive[row])
                state = st.flicker_a[active]
                _ar1_bank(drive, rho, g, state, current)
                st.flicker_a[active] = state

        v = current * s.gain_v_per_a
        if s.filter_active:
            a = self._pole(fs)
            if st.tia_next_v is None:
                st.tia_next_v = float(v[0])
            v, zf = lfilter([0.0, 1.0 - a], [1.0, -a], v, zi=[st.tia_next_v])
            st.tia_next_v = float(zf[0])

        saturated = False
        if s.enable_saturation:
            swing = s.output_swing_v
            if np.any(np.abs(v) >= swing):
                saturated = True
                v = np.clip(v, -swing, swing)
        tia = v

        if s.enable_quantisation:
            step = s.adc_step_v
            codes = np.rint(tia / step)
            if s.enable_saturation:
                lo = -(2.0 ** (s.adc_bits - 1))
                hi = 2.0 ** (s.adc_bits - 1) - 1.0
                if np.any(codes <= lo) or np.any(codes >= hi):
                    saturated = True
                    codes = np.clip(codes, lo, hi)
            adc = codes * step
        elif s.enable_saturation:
            rng_v = s.adc_range_v
            if np.any(np.abs(tia) >= rng_v):
                saturated = True
            adc = np.clip(tia, -rng_v, rng_v)
        else:
            adc = tia.copy()
        delay = s.adc_delay_samples
        if delay:
            if st.delay_line is None:
                st.delay_line = np.full(delay, adc[0])
            line = np.concatenate([st.delay_line, adc])
            st.delay_line = line[-delay:].copy()
            adc = line[:n]
        return ChainOutput(tia_v=tia, adc_v=adc, saturated=saturated)


@numba.njit(cache=True)
def _ar1_bank(
    drive: FloatArray, rho: FloatArray, gain: FloatArray, state: FloatArray, out: FloatArray
) -> None:
    """Run AR(1) processes ``x = rho·x + gain·drive`` (one per row) and add them to ``out``.

    ``state`` holds each process's last value on entry and is updated in place. Serial,
    without fastmath, so the result does not depend on how a record is split into calls.
    """
    n_proc, n = drive.shape
    for k in range(n_proc):
        x = state[k]
        r = rho[k]
        g = gain[k]
        for i in range(n):
            x = r * x + g * drive[k, i]
            out[i] += x
        state[k] = x


def _generator(seed_sequence: np.random.SeedSequence) -> np.random.Generator:
    """A fast, seeded generator (SFC64) for one noise stream."""
    return np.random.Generator(np.random.SFC64(seed_sequence))


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}.")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be non-negative and finite, got {value}.")
