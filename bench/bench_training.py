"""Per-gate training success rate and cost for HGE, finite differences, SPSA and the GA.

A part of the benchmark suite (`labctl bench`, code in `labctl/benchsuite/training.py`); this
script runs that part alone and prints its Markdown table.

Run: ``.venv/bin/python bench/bench_training.py [--size smoke|quick|full] [--out DIR]``
"""

from labctl.benchsuite.script import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("training", description=__doc__.splitlines()[0]))
