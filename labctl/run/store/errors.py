"""The base exception of the run store."""

from __future__ import annotations


class RunStoreError(RuntimeError):
    """A run directory is missing, incomplete or used incorrectly."""
