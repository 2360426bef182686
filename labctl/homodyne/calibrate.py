"""Chain calibration: measure the complex response of the measurement chain and keep it.

A known resistor R in place of the device, between one electrode and the output, turns a tone
``A sin(2π f t)`` into a current ``A/R sin(2π f t)`` exactly in phase with the drive; whatever
the chain does to it (amplifier bandwidth, ADC filter delay, DAC hold) shows up as the complex
ratio C(f) = measured / expected. The engine divides every later response by C(f).

The calibration is stored as JSON next to the configuration together with the settings it is
valid for (sample rate, amplifier gain and bandwidth); a mismatch makes it unusable.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labctl.config import LoadedConfig
from labctl.device.safety import SafeDevice
from labctl.homodyne.calibration import ChainResponse, response_from_resistor
from labctl.homodyne.demod import fit_tones
from labctl.homodyne.drive import ToneSet, device_drive
from labctl.homodyne.plan import FrequencyPlan

log = logging.getLogger(__name__)


class CalibrationMismatch(ValueError):
    """A stored calibration was made with different chain settings."""


class CalibrationInterrupted(RuntimeError):
    """The run controller asked to stop (or abort) between calibration records."""


def calibration_frequencies(plan: FrequencyPlan) -> list[float]:
    """Every frequency the engine demodulates: the tones and, if planned, curvature bins."""
    frequencies = set(plan.frequencies_hz)
    if plan.curvature:
        for values in plan.curvature_frequencies_hz().values():
            frequencies.update(values)
    return sorted(f for f in frequencies if f > 0)


def setup_fingerprint(loaded: LoadedConfig) -> dict[str, Any]:
    """The settings a calibration is only valid for."""
    setup = loaded.setup
    return {
        "sample_rate_hz": setup.sample_rate_hz,
        "gain_v_per_a": setup.amplifier.gain_v_per_a,
        "bandwidth_hz": setup.amplifier.bandwidth_hz,
    }


def default_calibration_path(loaded: LoadedConfig) -> Path:
    """Where the calibration of this configuration lives."""
    configured = loaded.config.homodyne.calibration.file
    if configured is not None:
        base = loaded.source.parent if loaded.source is not None else Path.cwd()
        return configured if configured.is_absolute() else base / configured
    if loaded.source is None:
        return Path.cwd() / "labctl.calibration.json"
    return loaded.source.with_name(loaded.source.stem + ".calibration.json")


def measure_chain_response(
    device: SafeDevice,
    loaded: LoadedConfig,
    frequencies_hz: list[float],
    window_s: float,
    checkpoint: Callable[[], bool] | None = None,
) -> ChainResponse:
    """Drive each frequency on the resistor's electrode and fit the response.

    The device must have the reference resistor in place (see
    :meth:`SafeDevice.reference_resistor`); one record per frequency.

    Args:
        checkpoint: Called before every record (a run controller's checkpoint: it blocks while
            paused); when it returns False the calibration ends with
            :class:`CalibrationInterrupted`.
    """
    config = loaded.config
    calibration = config.homodyne.calibration
    electrode_name = calibration.electrode or config.perturbed_electrodes()[0]
    index = loaded.setup.electrode_index(electrode_name)
    rate = device.sample_rate_hz
    responses = []
    amplitudes = []
    rest = device.rest_voltages()
    for frequency in frequencies_hz:
        if checkpoint is not None and not checkpoint():
            raise CalibrationInterrupted("calibration interrupted by a stop or abort request")
        # Half the slew budget at most, so the fade and ramps keep room.
        amplitude = min(
            calibration.amplitude_v, 0.5 * device.limits.slew_v_per_s / (2 * math.pi * frequency)
        )
        amplitudes.append(amplitude)
        tones = ToneSet((index,), (frequency,), (amplitude,))
        drive = device_drive(
            device,
            rest[None, :],
            tones,
            window_s,
            config.homodyne.settle_s,
            config.homodyne.fade_periods,
        )
        acquisition = device.apply(drive.waveform_v, rate)
        window = drive.windows[0]
        fit = fit_tones(
            acquisition.current_a[0, window.start : window.stop],
            rate,
            [frequency],
            start_index=window.start,
        )
        responses.append(complex(np.atleast_1d(fit.complex_amplitude)[0]))
    return response_from_resistor(
        np.array(responses),
        np.array(amplitudes),
        calibration.resistance_ohm,
        np.array(frequencies_hz),
        metadata={"electrode": electrode_name, "amplitudes_v": amplitudes},
    )


def save_calibration(path: Path, response: ChainResponse, loaded: LoadedConfig) -> None:
    """Write the calibration and the settings it is valid for as JSON.

    Atomic: the document goes to a temporary file beside ``path`` that then replaces it, so a
    reader (another run, a crash) sees the old file or the complete new one, never part of one.
    """
    document = {
        "labctl_calibration": 1,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": setup_fingerprint(loaded),
        "response": response.to_dict(),
    }
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_calibration(path: Path, loaded: LoadedConfig) -> ChainResponse:
    """Read a calibration and check it matches the configuration.

    Raises:
        FileNotFoundError: No calibration at ``path``.
        CalibrationMismatch: It was made with another rate, gain or bandwidth.
    """
    document = json.loads(path.read_text())
    stored = document.get("setup", {})
    wanted = setup_fingerprint(loaded)
    for key, value in wanted.items():
        other = stored.get(key)
        same = (
            other == value
            if value is None or other is None
            else math.isclose(float(other), float(value), rel_tol=1e-9)
        )
        if not same:
            raise CalibrationMismatch(
                f"{path}: calibration made with {key} = {other}, setup has {value}; "
                "run `labctl calibrate` again"
            )
    return ChainResponse.from_dict(document["response"])


def load_calibration_if_valid(loaded: LoadedConfig) -> tuple[ChainResponse | None, str]:
    """The stored calibration for this config, or None with the reason it is not used."""
    path = default_calibration_path(loaded)
    if not path.is_file():
        return None, f"no calibration at {path}"
    try:
        return load_calibration(path, loaded), f"calibration {path}"
    except (CalibrationMismatch, KeyError, ValueError) as exc:
        return None, str(exc)
