"""The ``sr830`` and ``sr860`` backends: SRS lock-ins as demodulated readouts and sine sources.

Registered through the ``labctl.backends`` entry points
``sr830 = "drivers.srs.backend:SR830_BACKEND"`` and ``sr860 = "drivers.srs.backend:SR860_BACKEND"``.
The factory touches no hardware: :meth:`SRSLockinInstrument.open` connects, identifies the
instrument and puts its sine output at the minimum (the safe state); ``close`` does the same
before disconnecting.

Input: ``voltage_tia`` reads the transimpedance amplifier's output on the voltage input
(currents are volts divided by ``setup.amplifier.gain_v_per_a``, its sign included);
``current_1M`` / ``current_100M`` take the chip's current on the lock-in's own current input.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.srs.base import InputMode, SRSLockin
from drivers.srs.common import (
    LockinConnectionError,
    LockinError,
    LockinValueError,
    format_si,
    socket_address,
)
from drivers.srs.sr830 import SR830
from drivers.srs.sr860 import SR860
from labctl.config import SetupConfig
from labctl.device.protocols import DemodulatedReading, DemodulatedTrace, DemodulatorSettings
from labctl.device.registry import BackendSpec, DeviceDiscoveryError
from labctl.device.tones import ToneSpec

log = logging.getLogger(__name__)

InputChoice = Literal["voltage_tia", "current_1M", "current_100M"]

_DRIVER_INPUT: dict[str, InputMode] = {
    "voltage_tia": "voltage",
    "current_1M": "current_1M",
    "current_100M": "current_100M",
}


class _LockinSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    resource: str = Field(
        min_length=1,
        description="VISA resource string: GPIB0::8::INSTR, ASRL/dev/ttyUSB0::INSTR, "
        "TCPIP::host::port::SOCKET.",
    )
    visa_library: str = Field(
        "@py", description="pyvisa library: '@py' (pyvisa-py), '' (system VISA) or a path."
    )
    timeout_s: float = Field(2.0, gt=0, le=600, description="Reply timeout (s).")

    @field_validator("resource")
    @classmethod
    def _is_a_visa_resource(cls, resource: str) -> str:
        try:
            from pyvisa import rname
        except ImportError:  # validated again when opened
            return resource
        try:
            rname.parse_resource_name(resource)
        except Exception as exc:
            raise ValueError(
                f"{resource!r} is not a VISA resource string ({exc}); e.g. GPIB0::8::INSTR, "
                "ASRL/dev/ttyUSB0::INSTR or TCPIP::192.168.1.5::1865::SOCKET"
            ) from None
        return resource

    input: InputChoice = Field(
        "voltage_tia",
        description="'voltage_tia': the voltage input reads the transimpedance amplifier "
        "(setup.amplifier.gain_v_per_a); 'current_1M'/'current_100M': the lock-in's current "
        "input (10^6 / 10^8 V/A).",
    )


class SR830Settings(_LockinSettings):
    """Settings of the ``sr830`` backend."""

    expect_model: Literal["SR830"] | None = Field(
        None, description="Refuse any other instrument (the driver accepts only an SR830)."
    )


class SR860Settings(_LockinSettings):
    """Settings of the ``sr860`` backend."""

    expect_model: Literal["SR860", "SR865", "SR865A"] | None = Field(
        None, description="Refuse any other model of the SR86x family."
    )


class SRSLockinInstrument:
    """One SRS lock-in in a setup: Instrument + DemodulatedReadout + SineSource.

    Every method needs :meth:`open` first. Readings are in amperes (rms): through the TIA
    gain in ``voltage_tia`` mode, directly on a current input.
    """

    DRIVER: ClassVar[type[SRSLockin]]
    BACKEND: ClassVar[str]

    def __init__(
        self,
        settings: _LockinSettings,
        *,
        tia_gain_v_per_a: float,
        connect: Callable[[], SRSLockin] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Build (not connect).

        Args:
            settings: The validated settings.
            tia_gain_v_per_a: Transimpedance gain (V/A, sign included) of the amplifier the
                voltage input reads (``setup.amplifier.gain_v_per_a``).
            connect: Opens the driver (default: from ``settings``); tests pass a fake.
            sleep: How the driver waits (s).
        """
        if tia_gain_v_per_a == 0 or not math.isfinite(tia_gain_v_per_a):
            raise ValueError("tia_gain_v_per_a must be a non-zero finite number of V/A")
        self._settings = settings
        self._gain = tia_gain_v_per_a
        self._connect = connect
        self._sleep = sleep
        self._driver: SRSLockin | None = None
        self._identity: dict[str, str] = {}
        self._tone: ToneSpec | None = None
        self._tone_v_rms: float | None = None
        self._reference_hz: float | None = None
        """The internal reference (and so sine output) frequency (Hz); None: not known."""
        self._residual_v_peak: float | None = None
        self._max_frequency_hz = 0.0

    # -- Instrument --------------------------------------------------------------------------
    @property
    def settings(self) -> _LockinSettings:
        """The settings the instrument opens with."""
        return self._settings

    @property
    def resource(self) -> str:
        """Where :meth:`open` connects (VISA resource string)."""
        return self._settings.resource

    @resource.setter
    def resource(self, resource: str) -> None:
        if self._driver is not None:
            raise LockinError(
                f"{self.BACKEND}: cannot point an open instrument at {resource!r}; close it first",
                self._settings.resource,
            )
        data = {**self._settings.model_dump(), "resource": resource}
        self._settings = type(self._settings).model_validate(data)

    @property
    def driver(self) -> SRSLockin:
        """The standalone driver underneath (after :meth:`open`)."""
        if self._driver is None or self._driver.closed:
            raise LockinConnectionError(
                f"{self.BACKEND} at {self._settings.resource} is not open; open it first",
                self._settings.resource,
            )
        return self._driver

    def _make_driver(self) -> SRSLockin:
        if self._connect is not None:
            return self._connect()
        return self.DRIVER(
            self._settings.resource,
            visa_library=self._settings.visa_library,
            timeout_s=self._settings.timeout_s,
            expect_model=getattr(self._settings, "expect_model", None),
            sleep=self._sleep,
        )

    def open(self) -> None:
        """Connect, identify, sine output to its minimum, select the input. Idempotent."""
        if self._driver is not None and not self._driver.closed:
            return
        driver = self._make_driver()
        try:
            driver.safe_state()
            driver.input_mode = _DRIVER_INPUT[self._settings.input]
            driver.check_errors()
        except BaseException:
            try:
                driver.close()
            except LockinError as exc:
                log.error("closing %s after a failed open: %s", driver.resource_name, exc)
            raise
        self._driver = driver
        self._identity = driver.identity.as_dict()
        self._residual_v_peak = math.sqrt(2) * driver.safe_sine_v_rms
        self._max_frequency_hz = driver.max_frequency_hz
        self._reference_hz = driver.frequency_hz

    def close(self) -> None:
        """Sine output to its minimum, then disconnect (idempotent)."""
        driver, self._driver = self._driver, None
        self._tone = None
        self._residual_v_peak = None
        if driver is not None:
            driver.close(safe_state=True)

    def identity(self) -> dict[str, Any]:
        """Backend, resource, input and (once opened) the instrument's ``*IDN?`` fields."""
        info: dict[str, Any] = {
            "backend": self.BACKEND,
            "resource": self._settings.resource,
            "input": self._settings.input,
        }
        if self._settings.input == "voltage_tia":
            info["tia_gain_v_per_a"] = self._gain
        info.update(self._identity)
        return info

    # -- DemodulatedReadout ------------------------------------------------------------------
    def _to_amperes(self) -> float:
        """Amperes per instrument unit of X/Y."""
        return 1.0 / self._gain if self._settings.input == "voltage_tia" else 1.0

    def configure(self, settings: DemodulatorSettings) -> DemodulatorSettings:
        """Internal reference at ``reference_hz`` × ``harmonic`` (or, with ``reference:
        external``, locked to REF IN, which will carry ``reference_hz``), the slope, and the
        smallest time constant and full scale at or above those asked for; returns what the
        instrument uses (frequency, τ and sensitivity read back; with an external reference the
        frequency is the one expected on REF IN, which need not be there yet).

        Raises:
            LockinValueError: A value the instrument cannot take (nothing sent).
            LockinCommandError: The instrument flagged an error.
        """
        driver = self.driver
        tone = self._tone
        external = settings.reference == "external"
        if tone is not None and external:
            raise LockinValueError(
                f"{self.BACKEND}: its sine output runs a tone on {tone.electrode}; an external "
                "reference would move it unchecked. Switch the tone off first "
                "(SafeDevice.tones_off)"
            )
        if tone is not None and not math.isclose(
            settings.reference_hz, tone.frequency_hz, rel_tol=1e-9
        ):
            raise LockinValueError(
                f"{self.BACKEND}: its sine output runs a tone at "
                f"{format_si(tone.frequency_hz, 'Hz')} on {tone.electrode}, checked by the safety "
                f"layer at that frequency, and follows the reference: configuring "
                f"{format_si(settings.reference_hz, 'Hz')} would move the tone unchecked. "
                "Configure at the tone's frequency, or switch the tone off first "
                "(SafeDevice.tones_off)"
            )
        if settings.slope_db_per_oct not in (6, 12, 18, 24):
            raise LockinValueError(
                f"filter slope {settings.slope_db_per_oct} dB/oct: give 6, 12, 18 or 24"
            )
        driver.check_reference(settings.reference_hz, settings.harmonic)
        per_unit = self._to_amperes()
        table = driver.sensitivity_table(_DRIVER_INPUT[self._settings.input])
        wanted = settings.sensitivity_a / abs(per_unit)
        try:
            sensitivity_index = table.index_at_least(wanted)
        except LockinValueError as exc:
            raise LockinValueError(
                f"sensitivity {format_si(settings.sensitivity_a, 'A')} full scale "
                f"({table.describe(wanted)} at the {self._settings.input} input): {exc}"
            ) from None
        tau_index = driver.TIME_CONSTANTS.index_at_least(settings.time_constant_s)
        with driver.lock:
            if external:
                driver.use_external_reference(settings.reference_hz, settings.harmonic)
            else:
                driver.reference_source = "internal"
                driver.set_reference(settings.reference_hz, settings.harmonic)
            driver.filter_slope_db_per_oct = settings.slope_db_per_oct
            driver.time_constant_index = tau_index
            driver.sensitivity_index = sensitivity_index
            driver.check_errors()
            frequency = settings.reference_hz if external else driver.frequency_hz
            self._reference_hz = frequency
            tau = driver.time_constant_s
            full_scale = driver.sensitivity
        used = DemodulatorSettings(
            reference_hz=frequency,
            harmonic=settings.harmonic,
            time_constant_s=tau,
            slope_db_per_oct=settings.slope_db_per_oct,
            sensitivity_a=full_scale * abs(per_unit),
            reference=settings.reference,
        )
        if used != settings:
            log.info("%s configured %s (asked %s)", self.BACKEND, used, settings)
        return used

    def settling_time_s(self) -> float:
        """5/7/9/10 τ for 6/12/18/24 dB/oct, from the instrument's present τ and slope (s)."""
        return self.driver.settling_time_s()

    def read(self) -> DemodulatedReading:
        """X/Y now, in A rms, with the overload state at the time of the reading."""
        reading = self.driver.read_xy()
        per_unit = self._to_amperes()
        return DemodulatedReading(
            reading.x * per_unit, reading.y * per_unit, reading.status.overload
        )

    # -- TriggeredDemodulatedReadout ---------------------------------------------------------
    def arm_trace(self, duration_s: float, max_rate_hz: float) -> float:
        """Arm the data buffer (SR830) or capture (SR86x) on TRIG IN; returns the rate (Hz).

        Clears the latched status first, so :meth:`fetch_trace` reports overloads of the
        trace only.

        Raises:
            LockinValueError: The buffer cannot hold ``duration_s`` (nothing stored).
        """
        driver = self.driver
        with driver.lock:
            driver.status()
            return driver.start_xy_trace(duration_s, max_rate_hz)

    def fetch_trace(self) -> DemodulatedTrace:
        """The stored X/Y in A rms, the overload state since :meth:`arm_trace`, and the
        filter the points went through."""
        driver = self.driver
        with driver.lock:
            x, y, rate = driver.read_xy_trace()
            overload = driver.status().overload
            tau = driver.time_constant_s
            slope = driver.filter_slope_db_per_oct
        per_unit = self._to_amperes()
        return DemodulatedTrace(
            rate_hz=rate,
            x_a=np.asarray(x, dtype=np.float64) * per_unit,
            y_a=np.asarray(y, dtype=np.float64) * per_unit,
            overload=overload,
            time_constant_s=tau,
            slope_db_per_oct=slope,
        )

    # -- SineSource --------------------------------------------------------------------------
    def program_tone(self, spec: ToneSpec) -> None:
        """FREQ/PHAS/SLVL for ``spec`` (SLVL = amplitude/√2 rms, rounded down); the sine goes
        to its minimum first and back there on any failure.

        The sine output is the instrument's reference: while the tone runs, :meth:`configure`
        accepts only its frequency (the safety layer checked 2πfA at that frequency)."""
        driver = self.driver
        self._tone = spec
        self._tone_v_rms = None
        self._reference_hz = None  # moving: count the worst case until it is known again
        self._tone_v_rms = driver.apply_tone(spec)
        self._reference_hz = spec.frequency_hz

    def programmed_amplitude_v(self) -> float | None:
        """The running tone's amplitude (V peak) as programmed: √2 × the level in V rms,
        rounded down to the instrument's step. None without a tone."""
        if self._tone is None or self._tone_v_rms is None:
            return None
        return math.sqrt(2.0) * self._tone_v_rms

    def tone_off(self) -> None:
        """Sine output to its minimum, verified by reading it back (an error when it cannot
        be: a tone that may still run is reported, never assumed off)."""
        self.driver.safe_state(require_verified=True)
        self._tone = None
        self._tone_v_rms = None

    def residual_tone(self, electrode: str, reference_hz: float | None = None) -> ToneSpec | None:
        """The sine the output still makes at its minimum level (an SR830 cannot go below
        4 mV rms), at the reference frequency; the instrument's highest frequency while that
        is not known (conservative). No I/O."""
        if self._residual_v_peak is None or self._residual_v_peak == 0.0:
            return None
        frequency = reference_hz if reference_hz is not None else self._reference_hz
        if frequency is None:
            frequency = self._max_frequency_hz
        return ToneSpec(electrode, frequency, self._residual_v_peak)


class SR830Lockin(SRSLockinInstrument):
    """An SR830 in a setup."""

    DRIVER: ClassVar[type[SRSLockin]] = SR830
    BACKEND: ClassVar[str] = "sr830"


class SR860Lockin(SRSLockinInstrument):
    """An SR860, SR865 or SR865A in a setup."""

    DRIVER: ClassVar[type[SRSLockin]] = SR860
    BACKEND: ClassVar[str] = "sr860"


# -- registry glue -----------------------------------------------------------------------------
SR830_MAX_STORAGE_RATE_HZ = 512.0
"""Fastest SR830 data-buffer storage rate (Hz, ``SRAT 13``): its X/Y samples come no faster."""
SR860_MAX_CAPTURE_RATE_HZ = 1.25e6
"""Fastest SR86x capture rate (Hz, ``CAPTURERATEMAX?`` at the shortest time constant)."""


def _sr830_factory(
    setup: SetupConfig, settings: SR830Settings, built: Mapping[str, object]
) -> SR830Lockin:
    return SR830Lockin(settings, tia_gain_v_per_a=setup.amplifier.gain_v_per_a)


def _sr860_factory(
    setup: SetupConfig, settings: SR860Settings, built: Mapping[str, object]
) -> SR860Lockin:
    return SR860Lockin(settings, tia_gain_v_per_a=setup.amplifier.gain_v_per_a)


def _lister(driver: type[SRSLockin], backend: str) -> Callable[[_LockinSettings | None], str]:
    def list_devices(settings: _LockinSettings | None) -> str:
        """Probe the configured resource (``*IDN?`` only: no output changes)."""
        if settings is None:
            return (
                f"  {backend}: lock-ins are not discovered; run `labctl devices CONFIG` with a "
                "configuration that gives the instrument's resource string"
            )
        try:
            lockin = driver(
                settings.resource,
                visa_library=settings.visa_library,
                timeout_s=settings.timeout_s,
                expect_model=getattr(settings, "expect_model", None),
                clear_status=False,
            )
        except LockinError as exc:
            raise DeviceDiscoveryError(str(exc)) from exc
        try:
            identity = lockin.identity
            limit = lockin.max_frequency_hz
            low, high = lockin.SINE_RANGE_V_RMS
        finally:
            lockin.close(safe_state=False)
        address = socket_address(settings.resource)
        at = f"{settings.resource} ({address})" if address else settings.resource
        return (
            f"  {identity.model} s/n {identity.serial}, firmware {identity.firmware} at {at}: "
            f"detection up to {format_si(limit, 'Hz')}, sine output "
            f"{format_si(low, 'V')} … {format_si(high, 'V')} rms; input {settings.input}"
        )

    return list_devices


SR830_BACKEND = BackendSpec(
    name="sr830",
    description="SRS SR830 lock-in amplifier over VISA (demodulated readout + sine source)",
    settings_model=SR830Settings,
    factory=_sr830_factory,
    list_devices=_lister(SR830, "sr830"),
    max_sample_rate_hz=lambda settings: SR830_MAX_STORAGE_RATE_HZ,
)

SR860_BACKEND = BackendSpec(
    name="sr860",
    description="SRS SR860 (500 kHz), SR865 (2 MHz), SR865A (4 MHz) lock-in amplifier over VISA "
    "(demodulated readout + sine source)",
    settings_model=SR860Settings,
    factory=_sr860_factory,
    list_devices=_lister(SR860, "sr860"),
    max_sample_rate_hz=lambda settings: SR860_MAX_CAPTURE_RATE_HZ,
)
