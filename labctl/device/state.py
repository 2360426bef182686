"""The last commanded electrode voltages, persisted per setup so a new process knows them.

Analog outputs hold their last sample when a program dies, and many (NI AO among them) cannot
be read back. :class:`VoltageStateFile` keeps, in one small JSON file replaced atomically, what
the safety layer last commanded on each electrode and, while a record plays, that record's
envelope. A process started after a SIGKILL reads it: electrodes that were holding a value hold
it still; electrodes that were in the middle of a record are unknown (somewhere inside the
recorded envelope), and the layer treats them as such.

The default directory is ``$LABCTL_STATE_DIR``, else ``$XDG_STATE_HOME/labctl``, else
``~/.local/state/labctl``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl.device.types import FloatArray

log = logging.getLogger(__name__)


def default_state_dir() -> Path:
    """Where per-setup voltage state files live unless a configuration names one."""
    explicit = os.environ.get("LABCTL_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "labctl"


def default_state_path(setup_name: str) -> Path:
    """The state file of the setup called ``setup_name``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", setup_name).strip("._") or "setup"
    return default_state_dir() / f"{safe}.voltages.json"


@dataclass(frozen=True)
class PersistedVoltages:
    """What a state file says.

    Attributes:
        held_v: Per electrode, the voltage (V) it holds, NaN where unknown.
        in_flight: Whether a record was playing when the file was last written.
        envelope_v: For a record in flight, per electrode (lowest, highest) voltage (V) of it.
    """

    held_v: FloatArray
    in_flight: bool
    envelope_v: tuple[tuple[float, float], ...] | None


class VoltageStateFile:
    """Atomic JSON record of the commanded voltages of one setup's electrodes.

    Args:
        path: The file.
        electrode_names: Electrode names in row order; a file for other electrodes is ignored.
    """

    def __init__(self, path: Path, electrode_names: tuple[str, ...]) -> None:
        self._path = Path(path)
        self._names = electrode_names

    @property
    def path(self) -> Path:
        """The file."""
        return self._path

    def load(self) -> PersistedVoltages | None:
        """The persisted state, or None when there is none usable (logged)."""
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("voltage state file %s is unreadable (%s): ignoring it", self._path, exc)
            return None
        if not isinstance(data, dict) or data.get("electrodes") != list(self._names):
            log.warning("voltage state file %s describes other electrodes: ignoring it", self._path)
            return None
        try:
            held = np.array(
                [np.nan if v is None else float(v) for v in data["held_v"]], dtype=np.float64
            )
            flight = data.get("in_flight")
            envelope = None
            if flight:
                envelope = tuple(
                    (float(lo), float(hi))
                    for lo, hi in zip(flight["min_v"], flight["max_v"], strict=True)
                )
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("voltage state file %s is malformed (%s): ignoring it", self._path, exc)
            return None
        if held.shape != (len(self._names),):
            return None
        return PersistedVoltages(held_v=held, in_flight=bool(flight), envelope_v=envelope)

    def record_start(self, held_v: FloatArray, waveform_v: FloatArray, rate_hz: float) -> None:
        """Note that ``waveform_v`` starts playing from ``held_v`` (V)."""
        self._write(
            held_v,
            {
                "min_v": [float(v) for v in np.min(waveform_v, axis=1)],
                "max_v": [float(v) for v in np.max(waveform_v, axis=1)],
                "end_v": [float(v) for v in waveform_v[:, -1]],
                "samples": int(waveform_v.shape[1]),
                "rate_hz": float(rate_hz),
                "started_unix_s": time.time(),
            },
        )

    def record_held(self, held_v: FloatArray) -> None:
        """Note that the electrodes hold ``held_v`` (V; NaN = unknown) and nothing plays."""
        self._write(held_v, None)

    def _write(self, held_v: FloatArray, in_flight: dict[str, object] | None) -> None:
        data = {
            "electrodes": list(self._names),
            "held_v": [None if not np.isfinite(v) else float(v) for v in held_v],
            "in_flight": in_flight,
            "updated_unix_s": time.time(),
        }
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self._path)
        except OSError as exc:
            log.error("could not persist electrode voltages to %s: %s", self._path, exc)
