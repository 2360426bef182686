"""Simulated Stanford Research SR830 and SR860 lock-in amplifiers on local TCP ports.

Each instrument reads a :class:`~simulated_hw.bench.SimBench` (the amplifier output, or the
current in current mode), demodulates every played sample at its reference with real RC filters,
and, if wired, drives its sine output onto an electrode. Third-party drivers reach it through
pyvisa's pyvisa-py backend as ``TCPIP::127.0.0.1::PORT::SOCKET``::

    import pyvisa
    from simulated_hw.lockin_server import serve_lockin

    with serve_lockin("sr830", sine_electrode=3) as server:
        rm = pyvisa.ResourceManager("@py")
        lockin = rm.open_resource(server.resource, read_termination="\\n",
                                  write_termination="\\n")
        print(lockin.query("*IDN?"))

``labctl sim-lockin`` serves one instrument on its own bench; ``labctl sim-lab CONFIG`` serves
the simulated NI gRPC server and lock-ins on one shared bench (``configs/sim_lab/``).
"""

from simulated_hw.lockin_server.instrument import SimLockin
from simulated_hw.lockin_server.server import MODELS, LockinServer, bench_from_config, serve_lockin
from simulated_hw.lockin_server.sr830 import SR830
from simulated_hw.lockin_server.sr860 import SR860

__all__ = [
    "MODELS",
    "SR830",
    "SR860",
    "LockinServer",
    "SimLockin",
    "bench_from_config",
    "serve_lockin",
]
