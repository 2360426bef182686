"""Simulated DNPU instruments for labctl.

- :mod:`simulated_hw.hopping`: hopping-conduction physics model of a dopant network (default).
- :mod:`simulated_hw.surrogate`: loader for brains-py-style MLP surrogates (NPZ).
- :mod:`simulated_hw.chain`: amplifier, noise, drift and ADC around either model.
- :mod:`simulated_hw.bench`: one simulated setup that several instruments can share.
- :mod:`simulated_hw.backend`: the in-process ``simulated`` backend of labctl's registry.

The numerics are compiled by numba with ``cache=True``. The compiled code is cached in a
writable user cache directory rather than next to the installed sources: ``$NUMBA_CACHE_DIR``
when the user set it (left alone), else ``$XDG_CACHE_HOME/labctl/numba`` (default
``~/.cache/labctl/numba``). It is set here, before any submodule imports numba.
"""

from simulated_hw.numba_cache import configure_numba_cache

configure_numba_cache()
