"""Training sweeps: a grid of runs (tasks × seeds × hyper-parameters × methods) in parallel.

- :mod:`labctl.sweep.spec`: the sweep file's schema, grid expansion and up-front validation.
- :mod:`labctl.sweep.entry`: :func:`~labctl.sweep.entry.train_from_dict`, one run from plain data.
- :mod:`labctl.sweep.placement`: which runs may share a machine, and the per-run file locations.
- :mod:`labctl.sweep.executors`: the local process pool and the Dask cluster.
- :mod:`labctl.sweep.runner`: the sweep directory, scheduling, Ctrl-C and resume.
- :mod:`labctl.sweep.summary`: the per-point and grouped summary tables.
- :mod:`labctl.sweep.cli`: ``labctl sweep``.
"""
