"""Exit codes of the ``labctl`` command (documented in the README next to the commands)."""

EXIT_OK = 0
"""Success."""
EXIT_FAILED = 1
"""A run or command failed (instrument error, safety violation, a failed run)."""
EXIT_BAD_INPUT = 2
"""Bad input: an invalid configuration or argument; nothing touched a device."""
EXIT_SHUTDOWN_FAILED = 3
"""The electrodes could not be verified at 0 V afterwards; wins over 1, 130 and 143."""
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C (SIGINT), electrodes at 0 V."""
EXIT_TERMINATED = 143
"""Terminated by SIGTERM, electrodes at 0 V."""
