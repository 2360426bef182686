"""Device-seconds per gradient at equal error: HGE, central FD and SPSA on larger devices.

A part of the benchmark suite (`labctl bench`, code in `labctl/benchsuite/cost.py`); this
script runs that part alone and prints its Markdown table.

Run: ``.venv/bin/python bench/bench_gradient_cost.py [--size smoke|quick|full] [--out DIR]``
"""

from labctl.benchsuite.script import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("cost", description=__doc__.splitlines()[0]))
