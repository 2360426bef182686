"""Where numba caches the simulator's compiled functions: a user cache directory.

numba's default for ``cache=True`` is a ``__pycache__`` folder next to the source, which in an
installed package may be read-only or shared by several users. :func:`configure_numba_cache`
points numba at a per-user directory instead, unless the user chose one with
``NUMBA_CACHE_DIR``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "NUMBA_CACHE_DIR"


def default_numba_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/labctl/numba``, or ``~/.cache/labctl/numba`` without XDG_CACHE_HOME."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "labctl" / "numba"


def configure_numba_cache() -> str:
    """Set ``NUMBA_CACHE_DIR`` to :func:`default_numba_cache_dir` unless it is set already.

    Must run before the ``@numba.njit(cache=True)`` functions are defined; if numba was
    imported already (by the caller's own code), its configuration is updated too. A user's
    ``NUMBA_CACHE_DIR`` (even an empty one, which means numba's default) is never changed.
    Returns the cache directory in effect ("" for numba's default).
    """
    if ENV_VAR not in os.environ:
        os.environ[ENV_VAR] = str(default_numba_cache_dir())
        numba_config = sys.modules.get("numba.core.config")
        if numba_config is not None and not getattr(numba_config, "CACHE_DIR", ""):
            numba_config.CACHE_DIR = os.environ[ENV_VAR]  # type: ignore[attr-defined]
    return os.environ[ENV_VAR]
