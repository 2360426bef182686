"""The benchmark suite behind ``labctl bench``: one entry point, one Markdown report with PNGs.

Parts (each a module with ``run(size, out_dir, log) -> Section``): :mod:`~.crb` (estimator
variance vs the Cramér–Rao bound, reported vs measured errors), :mod:`~.parallel` (parallel vs
sequential HGE), :mod:`~.cost` (device-seconds per gradient at equal error as the number of
parameters grows, on the larger hopping devices), :mod:`~.training` (per-gate training success
and cost per method), :mod:`~.speed` (simulator speed, demodulation throughput).
:mod:`~.suite` runs them and writes the report; :mod:`~.readme` generates the README's figures
table from it. The suite runs from a source checkout (it reads ``configs/``).
"""
