"""Parallel vs sequential HGE on the simulated DNPU (paper Fig. 3c,d).

A part of the benchmark suite (`labctl bench`, code in `labctl/benchsuite/parallel.py`); this
script runs that part alone and prints its Markdown table.

Run: ``.venv/bin/python bench/bench_parallel_vs_sequential.py [--size quick] [--out DIR]``
"""

from labctl.benchsuite.script import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("parallel", description=__doc__.splitlines()[0]))
