"""Instrument drivers for real hardware, each a labctl backend plug-in.

A driver implements the capability protocols of :mod:`labctl.device.protocols` it can fill
(voltage source, sampled or demodulated readout, sine source, ...) and registers a
:class:`labctl.device.registry.BackendSpec` under the ``labctl.backends`` entry-point group.
:mod:`drivers.nidaq` is the NI-DAQmx (``nidaqmx``) driver, backend ``nidaq``; the lock-in
amplifier (``pyvisa``) drivers are to come. Simulated counterparts stand behind the unmodified
client libraries (the simulated NI gRPC Device Server), not inside the drivers.
"""
