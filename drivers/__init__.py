"""Instrument drivers for real hardware, each a labctl backend plug-in.

A driver implements :class:`labctl.device.ElectrodeBackend` and registers a
:class:`labctl.registry.BackendSpec` under the ``labctl.backends`` entry-point group. The NI-DAQmx
(``nidaqmx``) and lock-in amplifier (``pyvisa``) drivers are to come; their simulated
counterparts will stand behind the unmodified client libraries, not inside the drivers.
"""
