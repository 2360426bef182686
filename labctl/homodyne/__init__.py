"""Homodyne gradient extraction engine: frequency plans, demodulation, lock-in filtering."""
