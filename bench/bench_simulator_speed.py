"""Simulator speed vs real time and demodulation throughput.

A part of the benchmark suite (`labctl bench`, code in `labctl/benchsuite/speed.py`); this
script runs that part alone and prints its Markdown table.

Run: ``.venv/bin/python bench/bench_simulator_speed.py [--size smoke|quick|full] [--out DIR]``
"""

from labctl.benchsuite.script import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("speed", description=__doc__.splitlines()[0]))
