"""Instrument drivers for real hardware, each a labctl backend plug-in.

A driver implements the capability protocols of :mod:`labctl.device.protocols` it can fill
(voltage source, sampled or demodulated readout, sine source, ...) and registers a
:class:`labctl.device.registry.BackendSpec` under the ``labctl.backends`` entry-point group.
The NI-DAQmx (``nidaqmx``) and lock-in amplifier (``pyvisa``) drivers are to come; their simulated
counterparts will stand behind the unmodified client libraries, not inside the drivers.
"""
