"""Simulated NI gRPC Device Server: the NiDAQmx service on a simulated DNPU bench.

Any nidaqmx program (and labctl's NI driver) talks to it through the unmodified ``nidaqmx``
package's gRPC client::

    import grpc, nidaqmx
    from simulated_hw.nidaq_server import serve

    with serve() as server:                       # cDAQ-9178 + NI 9264 + NI 9202
        options = nidaqmx.GrpcSessionOptions(grpc.insecure_channel(server.address), "")
        with nidaqmx.Task(grpc_options=options) as task:
            task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6")
            ...

Devices come from a YAML (``configs/sim_daq/*.yaml``, see
:mod:`~simulated_hw.nidaq_server.config`); AO channels wired to electrodes drive
``server.bench`` and the AI channel wired to the amplifier reads it on the same clock.
``labctl sim-daq [--config FILE] [--port N]`` runs it stand-alone.
"""

from simulated_hw.nidaq_server.config import SimDaqConfig, load_sim_daq_config
from simulated_hw.nidaq_server.server import SimDaqServer, build_bench, serve
from simulated_hw.nidaq_server.servicer import IMPLEMENTED_RPCS

__all__ = [
    "IMPLEMENTED_RPCS",
    "SimDaqConfig",
    "SimDaqServer",
    "build_bench",
    "load_sim_daq_config",
    "serve",
]
