"""Stanford Research Systems lock-in amplifiers over VISA: SR830 and SR860/SR865/SR865A.

Standalone drivers with validated properties in SI units (in the spirit of PyMeasure's
instruments, written here), and the ``sr830`` / ``sr860`` backends that put them behind the
device seam as demodulated readouts and sine sources.

- :mod:`~drivers.srs.common`: errors, index tables, identity, the VISA transport.
- :mod:`~drivers.srs.base`: :class:`~drivers.srs.base.SRSLockin`, what both families share.
- :mod:`~drivers.srs.sr830`: :class:`~drivers.srs.sr830.SR830`.
- :mod:`~drivers.srs.sr860`: :class:`~drivers.srs.sr860.SR860` (SR860, SR865, SR865A).
- :mod:`~drivers.srs.backend`: ``SR830_BACKEND``, ``SR860_BACKEND`` and the seam adapters.

No driver ever sends ``*RST`` (it restores a non-zero sine output); the safe state is the
sine output at its minimum. Importing this package does not import ``pyvisa``.
"""

from drivers.srs.base import INPUT_MODES, InputMode, LockinStatus, SRSLockin, XYReading
from drivers.srs.common import (
    Identity,
    IndexTable,
    LockinAutoRangeError,
    LockinCommandError,
    LockinConnectionError,
    LockinError,
    LockinIdentityError,
    LockinProtocolError,
    LockinTimeout,
    LockinValueError,
)
from drivers.srs.sr830 import SR830
from drivers.srs.sr860 import SR860

__all__ = [
    "INPUT_MODES",
    "SR830",
    "SR860",
    "Identity",
    "IndexTable",
    "InputMode",
    "LockinAutoRangeError",
    "LockinCommandError",
    "LockinConnectionError",
    "LockinError",
    "LockinIdentityError",
    "LockinProtocolError",
    "LockinStatus",
    "LockinTimeout",
    "LockinValueError",
    "SRSLockin",
    "XYReading",
]
