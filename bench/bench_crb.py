"""Estimator variance vs the Cramér–Rao bound (white and 1/f noise), reported vs measured errors.

A part of the benchmark suite (`labctl bench`, code in `labctl/benchsuite/crb.py`); this
script runs that part alone and prints its Markdown table.

Run: ``.venv/bin/python bench/bench_crb.py [--size smoke|quick|full] [--out DIR]``
"""

from labctl.benchsuite.script import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("crb", description=__doc__.splitlines()[0]))
