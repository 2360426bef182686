"""Simulated DNPU instruments for labctl.

- :mod:`simulated_hw.hopping`: hopping-conduction physics model of a dopant network (default).
- :mod:`simulated_hw.surrogate`: loader for brains-py-style MLP surrogates (NPZ).
- :mod:`simulated_hw.chain`: amplifier, noise, drift and ADC around either model.
- :mod:`simulated_hw.bench`: one simulated setup that several instruments can share.
- :mod:`simulated_hw.backend`: the in-process ``simulated`` backend of labctl's registry.
"""
