"""Counter outputs (pulse trains) of the simulated NI gRPC Device Server, through real nidaqmx.

The CO task is written as NI's examples write one: ``co_channels.add_co_pulse_chan_freq``,
``timing.cfg_implicit_timing`` and, to tie its phase to an AI/AO record, a digital-edge start
trigger on the AI start trigger.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
nidaqmx = pytest.importorskip("nidaqmx")

from nidaqmx.constants import AcquisitionType, Level  # noqa: E402
from nidaqmx.errors import DaqError  # noqa: E402
from nidaqmx.stream_readers import AnalogMultiChannelReader  # noqa: E402

from simulated_hw.nidaq_server import SimDaqServer, serve  # noqa: E402


@pytest.fixture
def cdaq() -> Iterator[SimDaqServer]:
    with serve() as server:
        yield server


def options(server: SimDaqServer) -> nidaqmx.GrpcSessionOptions:
    return nidaqmx.GrpcSessionOptions(grpc.insecure_channel(server.address), "")


def test_pulse_train_armed_on_the_ai_start_trigger_starts_with_the_record(
    cdaq: SimDaqServer,
) -> None:
    events: list[tuple[str, float | None, float]] = []
    cdaq.daq.counter_listeners.append(lambda *event: events.append(event))
    rate, n = 10_000.0, 1000
    cdaq.bench.play(np.zeros((7, 250)), rate)  # the bench's clock is not at 0 any more
    t_record = cdaq.bench.timebase.now_s
    with (
        nidaqmx.Task("ai", grpc_options=options(cdaq)) as ai_task,
        nidaqmx.Task("ref", grpc_options=options(cdaq)) as co_task,
    ):
        ai_task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0", min_val=-10.0, max_val=10.0)
        ai_task.timing.cfg_samp_clk_timing(
            rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n
        )
        channel = co_task.co_channels.add_co_pulse_chan_freq(
            "cDAQ1/_ctr0", freq=333.0, duty_cycle=0.5, idle_state=Level.LOW, initial_delay=0.002
        )
        assert channel.name == "cDAQ1/_ctr0"
        co_task.timing.cfg_implicit_timing(sample_mode=AcquisitionType.CONTINUOUS)
        co_task.triggers.start_trigger.cfg_dig_edge_start_trig("/cDAQ1/ai/StartTrigger")
        co_task.start()
        assert events == [], "armed: nothing happens before the AI task starts"
        assert not co_task.is_task_done()
        ai_task.start()
        AnalogMultiChannelReader(ai_task.in_stream).read_many_sample(
            np.zeros((1, n)), n, timeout=10.0
        )
        co_task.stop()
    (counter, frequency, edge_s), stopped = events
    assert counter == "cdaq1/ctr0"
    assert frequency == pytest.approx(80e6 / round(80e6 / 333.0), rel=1e-12)  # 80 MHz ticks
    assert edge_s == pytest.approx(t_record + 0.002)
    assert stopped == ("cdaq1/ctr0", None, 0.0)
    assert "CreateCOPulseChanFreq" in cdaq.calls and "CfgImplicitTiming" in cdaq.calls


def test_counter_outputs_refuse_what_daqmx_refuses(cdaq: SimDaqServer) -> None:
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        with pytest.raises(DaqError, match="C Series modules have no counters"):
            task.co_channels.add_co_pulse_chan_freq("cDAQ1Mod1/ctr0", freq=100.0)
        with pytest.raises(DaqError, match="cDAQ1/_ctr3"):
            task.co_channels.add_co_pulse_chan_freq("cDAQ1/ctr4", freq=100.0)
        with pytest.raises(DaqError, match="DAQmx_CO_Pulse_DutyCyc"):
            task.co_channels.add_co_pulse_chan_freq("cDAQ1/ctr1", freq=100.0, duty_cycle=1.0)
        with pytest.raises(DaqError, match="DAQmx_CO_Pulse_Freq"):
            task.co_channels.add_co_pulse_chan_freq("cDAQ1/ctr1", freq=50e6)
        task.co_channels.add_co_pulse_chan_freq("cDAQ1/ctr1", freq=100.0)
        with pytest.raises(DaqError, match="task of their own"):
            task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0")
    with nidaqmx.Task(grpc_options=options(cdaq)) as ai_task:
        ai_task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0")
        with pytest.raises(DaqError, match="counter-output tasks only"):
            ai_task.timing.cfg_implicit_timing()


def test_finite_pulse_train_without_trigger_finishes_in_simulated_time(
    cdaq: SimDaqServer,
) -> None:
    events: list[tuple[str, float | None, float]] = []
    cdaq.daq.counter_listeners.append(lambda *event: events.append(event))
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        task.co_channels.add_co_pulse_chan_freq("cDAQ1/ctr2", freq=1000.0)
        task.timing.cfg_implicit_timing(sample_mode=AcquisitionType.FINITE, samps_per_chan=10)
        task.start()  # no trigger: generates at once
        assert events[0][0] == "cdaq1/ctr2" and not task.is_task_done()
        cdaq.bench.play(np.zeros((7, 200)), 10_000.0)  # 20 ms of simulated time: 20 periods
        assert task.is_task_done()
        task.wait_until_done(timeout=1.0)


def test_the_nidaq_driver_arms_its_reference_with_every_record_rpc_by_rpc(
    cdaq: SimDaqServer,
) -> None:
    """``NidaqDevice.set_reference_output``: the CO task is made once, armed on the AI start
    trigger before the AO starts, stopped after every record, and cleared on close."""
    import yaml

    from drivers.nidaq.driver import NidaqDevice
    from drivers.nidaq.settings import NidaqSettings
    from labctl.config import merge_overrides, parse_config
    from tests.conftest import CONFIGS

    data = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())
    override = {"setup": {"backend": {"settings": {"grpc": {"port": cdaq.port}}}}}
    loaded = parse_config(
        yaml.safe_dump(merge_overrides(data, override)), source=CONFIGS / "sim_cdaq_grpc.yaml"
    )
    settings = loaded.instrument_settings["nidaq"]
    assert isinstance(settings, NidaqSettings)
    events: list[tuple[str, float | None, float]] = []
    cdaq.daq.counter_listeners.append(lambda *event: events.append(event))
    device = NidaqDevice(loaded.setup, settings)

    def since(mark: int) -> list[str]:  # task calls only (nidaqmx also reads attributes)
        return [c for c in cdaq.calls[mark:] if "Attribute" not in c]

    device.open()
    try:
        rate = device.coerce_sample_rate(10_000.0)
        start = len(cdaq.calls)
        assert device.set_reference_output("cDAQ1/_ctr0", 35.0) == 35.0
        assert device.set_reference_output("cDAQ1/_ctr0", 35.0) == 35.0  # unchanged: no RPC
        assert since(start) == ["CreateTask", "CreateCOPulseChanFreq", "CfgImplicitTiming"]
        assert device.reference_delay_s() == 0.0
        for _ in range(2):
            mark = len(cdaq.calls)
            t_record = cdaq.bench.timebase.now_s
            device.arm(500, rate)
            device.play(np.zeros((7, 500)), rate, None)
            device.fetch()
            calls = since(mark)
            co_start = calls.index("StartTask")  # the CO task starts first (armed) ...
            assert calls[co_start + 1 :].count("StartTask") == 2  # ... then AO, then AI
            assert calls[-1] == "StopTask" and calls.count("StopTask") == 3
            assert events[-2] == (
                "cdaq1/ctr0",
                pytest.approx(35.0, rel=1e-6),
                pytest.approx(t_record),
            )
            assert events[-1] == ("cdaq1/ctr0", None, 0.0)
        assert cdaq.calls.count("CfgDigEdgeStartTrig") >= 1
        co_triggers = [c for c in since(start) if c == "CfgDigEdgeStartTrig"]
        assert len(co_triggers) == 1, "the CO trigger is configured once, not per record"
        mark = len(cdaq.calls)
        assert device.set_reference_output("cDAQ1/_ctr0", None) is None
        assert since(mark) == ["ClearTask"]
    finally:
        device.close()
