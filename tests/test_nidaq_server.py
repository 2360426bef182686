"""The simulated NI gRPC Device Server, driven through the real, unmodified nidaqmx package.

The programs below are written the way NI's nidaqmx examples are (tasks as context managers,
stream writers/readers, start-trigger synchronisation); the server behind them simulates a
cDAQ-9178 with NI 9264 + NI 9202, or a PCIe-6363, wired to one simulated DNPU bench.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

grpc = pytest.importorskip("grpc")
nidaqmx = pytest.importorskip("nidaqmx")

from nidaqmx.constants import (  # noqa: E402
    READ_ALL_AVAILABLE,
    AcquisitionType,
    ProductCategory,
    RegenerationMode,
    TaskMode,
)
from nidaqmx.error_codes import DAQmxErrors  # noqa: E402
from nidaqmx.errors import DaqError, DaqReadError, RpcError  # noqa: E402
from nidaqmx.stream_readers import AnalogMultiChannelReader  # noqa: E402
from nidaqmx.stream_writers import AnalogMultiChannelWriter  # noqa: E402

from labctl.config import load_config  # noqa: E402
from simulated_hw.backend import make_bench  # noqa: E402
from simulated_hw.bench import BenchRecord  # noqa: E402
from simulated_hw.nidaq_server import SimDaqServer, load_sim_daq_config, serve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CDAQ = REPO / "configs" / "sim_daq" / "cdaq9178.yaml"
PCIE = REPO / "configs" / "sim_daq" / "pcie6363.yaml"
N_ELECTRODES = 7


@pytest.fixture
def cdaq() -> Iterator[SimDaqServer]:
    """The default server: cDAQ-9178 + NI 9264 + NI 9202, fast time base."""
    with serve() as server:
        yield server


@pytest.fixture
def pcie() -> Iterator[SimDaqServer]:
    """A PCIe-6363 server, fast time base."""
    with serve(PCIE) as server:
        yield server


@pytest.fixture
def realtime_cdaq(tmp_path: Path) -> Iterator[SimDaqServer]:
    """The cDAQ server with the bench paced to the wall clock."""
    data = yaml.safe_load(CDAQ.read_text())
    data["bench"] = {"config": str(REPO / "configs" / "sim_dnpu.yaml"), "realtime": True}
    path = tmp_path / "cdaq_realtime.yaml"
    path.write_text(yaml.safe_dump(data))
    with serve(path) as server:
        yield server


def options(server: SimDaqServer) -> nidaqmx.GrpcSessionOptions:
    """gRPC session options for a new task on ``server``."""
    return nidaqmx.GrpcSessionOptions(grpc.insecure_channel(server.address), "")


def record_of(records: list[BenchRecord]) -> BenchRecord:
    """One record made of the chunks the bench played (chunks are at most 50 ms)."""
    assert records, "the bench played nothing"
    first = records[0]
    return BenchRecord(
        t0_s=first.t0_s,
        sample_rate_hz=first.sample_rate_hz,
        voltages_v=np.concatenate([r.voltages_v for r in records], axis=1),
        device_current_a=np.concatenate([r.device_current_a for r in records]),
        tia_v=np.concatenate([r.tia_v for r in records]),
        adc_v=np.concatenate([r.adc_v for r in records]),
        saturated=any(r.saturated for r in records),
        measured_current_a=np.concatenate([r.measured_current_a for r in records]),
    )


def tones(n_channels: int, n: int, rate_hz: float, amplitude_v: float = 0.3) -> np.ndarray:
    """A C-contiguous (n_channels, n) waveform: one sine per channel, ending near 0 V."""
    t = np.arange(n) / rate_hz
    rows = [amplitude_v * np.sin(2 * np.pi * (20.0 + 7.0 * k) * t) for k in range(n_channels)]
    return np.ascontiguousarray(np.vstack(rows))


# -- synchronised AO/AI records ---------------------------------------------------------------


def test_xseries_ao_armed_by_ai_start_trigger(pcie: SimDaqServer) -> None:
    rate, n = 20_000.0, 3000
    records: list[BenchRecord] = []
    unsubscribe = pcie.bench.subscribe(records.append)
    with (
        nidaqmx.Task(grpc_options=options(pcie)) as ai_task,
        nidaqmx.Task(grpc_options=options(pcie)) as ao_task,
    ):
        ai_task.ai_channels.add_ai_voltage_chan("Dev1/ai0", min_val=-5.0, max_val=5.0)
        ai_task.timing.cfg_samp_clk_timing(
            rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n
        )
        ao_task.ao_channels.add_ao_voltage_chan("Dev1/ao0:3", min_val=-2.0, max_val=2.0)
        ao_task.timing.cfg_samp_clk_timing(
            rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n
        )
        ao_task.triggers.start_trigger.cfg_dig_edge_start_trig("/Dev1/ai/StartTrigger")
        assert ai_task.triggers.start_trigger.term == "/Dev1/ai/StartTrigger"
        assert ao_task.timing.samp_clk_rate == ai_task.timing.samp_clk_rate == rate

        waveform = tones(4, n, rate)
        writer = AnalogMultiChannelWriter(ao_task.out_stream, auto_start=False)
        assert writer.write_many_sample(waveform) == n
        ao_task.start()
        assert pcie.bench.last_record is None, "armed AO must wait for the AI start trigger"
        ai_task.start()
        data = np.zeros((1, n))
        reader = AnalogMultiChannelReader(ai_task.in_stream)
        assert reader.read_many_sample(data, number_of_samples_per_channel=n, timeout=10.0) == n
        ao_task.wait_until_done(timeout=10.0)
        assert ao_task.out_stream.total_samp_per_chan_generated == n
        ai_task.stop()
        ao_task.stop()
    unsubscribe()
    record = record_of(records)
    assert record.n_samples == n
    assert record.sample_rate_hz == rate
    np.testing.assert_array_equal(data[0], record.adc_v)
    np.testing.assert_array_equal(record.voltages_v[:4], waveform)
    np.testing.assert_array_equal(record.voltages_v[4:], 0.0)
    np.testing.assert_array_equal(pcie.bench.applied_v, [*waveform[:, -1], 0.0, 0.0, 0.0])


def test_cdaq_sync_through_chassis_terminals_matches_in_process_bench(cdaq: SimDaqServer) -> None:
    rate, n = 10_000.0, 1500
    records: list[BenchRecord] = []
    cdaq.bench.subscribe(records.append)
    with (
        nidaqmx.Task("ai", grpc_options=options(cdaq)) as ai_task,
        nidaqmx.Task("ao", grpc_options=options(cdaq)) as ao_task,
    ):
        ai_task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0", min_val=-10.0, max_val=10.0)
        ai_task.timing.cfg_samp_clk_timing(
            rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n
        )
        ai_task.control(TaskMode.TASK_RESERVE)  # the chassis picks the AI timing engine here
        trigger = ai_task.triggers.start_trigger.term
        assert trigger == "/cDAQ1/ai/StartTrigger"
        assert ai_task.timing.samp_clk_term == "/cDAQ1/ai/SampleClock"

        ao_task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6", min_val=-1.5, max_val=1.5)
        ao_task.timing.cfg_samp_clk_timing(
            rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n
        )
        # NI's examples find the terminals' device by skipping C Series modules.
        chassis = [
            d for d in ao_task.devices if d.product_category != ProductCategory.C_SERIES_MODULE
        ]
        assert [d.name for d in chassis] == ["cDAQ1"]
        ao_task.triggers.start_trigger.cfg_dig_edge_start_trig(trigger)

        waveform = tones(N_ELECTRODES, n, rate, amplitude_v=0.5)
        AnalogMultiChannelWriter(ao_task.out_stream, auto_start=False).write_many_sample(waveform)
        ao_task.start()
        ai_task.start()
        data = np.zeros((1, n))
        AnalogMultiChannelReader(ai_task.in_stream).read_many_sample(data, n, timeout=10.0)
        ao_task.wait_until_done(timeout=10.0)
    record = record_of(records)
    np.testing.assert_array_equal(data[0], record.adc_v)
    np.testing.assert_array_equal(record.voltages_v, waveform)
    np.testing.assert_array_equal(cdaq.bench.applied_v, waveform[:, -1])
    assert len(records) == 3, "1500 samples at 10 kS/s are played in 50 ms chunks"

    # The same labctl config builds the same device: the in-process bench plays the same record.
    loaded = load_config(REPO / "configs" / "sim_dnpu.yaml")
    reference = make_bench(loaded.setup, loaded.backend_settings).play(waveform, rate)
    np.testing.assert_array_equal(data[0], reference.adc_v)


def test_ao_clocked_from_ai_sample_clock(cdaq: SimDaqServer) -> None:
    rate, n = 5_000.0, 600
    records: list[BenchRecord] = []
    cdaq.bench.subscribe(records.append)
    with (
        nidaqmx.Task(grpc_options=options(cdaq)) as ai_task,
        nidaqmx.Task(grpc_options=options(cdaq)) as ao_task,
    ):
        ai_task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0:1", min_val=-10.0, max_val=10.0)
        ai_task.timing.cfg_samp_clk_timing(
            rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n
        )
        ao_task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6")
        ao_task.timing.cfg_samp_clk_timing(
            rate,
            source="/cDAQ1/ai/SampleClock",
            sample_mode=AcquisitionType.FINITE,
            samps_per_chan=n,
        )
        waveform = tones(N_ELECTRODES, n, rate)
        ao_task.write(waveform, auto_start=False)
        ao_task.start()
        ai_task.start()
        data = np.asarray(ai_task.read(number_of_samples_per_channel=n, timeout=10.0))
    record = record_of(records)
    assert data.shape == (2, n)
    np.testing.assert_array_equal(data[0], record.adc_v)
    assert np.std(data[1]) < 1e-3, "ai1 is not wired: it reads a little noise around 0 V"
    np.testing.assert_array_equal(record.voltages_v, waveform)


# -- rates ------------------------------------------------------------------------------------


def test_rates_are_coerced_to_the_timebase(cdaq: SimDaqServer, pcie: SimDaqServer) -> None:
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0", min_val=-10.0, max_val=10.0)
        task.timing.cfg_samp_clk_timing(10_000.0)
        assert task.timing.samp_clk_rate == 10_000.0
        task.timing.cfg_samp_clk_timing(7_000.0)
        assert task.timing.samp_clk_rate == 80e6 / round(80e6 / 7_000.0)
        assert task.timing.samp_clk_timebase_rate == 80e6
        assert task.timing.samp_clk_max_rate == 10_000.0
    with nidaqmx.Task(grpc_options=options(pcie)) as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0:1")
        task.timing.cfg_samp_clk_timing(333_333.0)
        assert task.timing.samp_clk_rate == 100e6 / 300
        assert task.timing.samp_clk_max_rate == 2.0e6


def test_rate_above_the_module_maximum_is_refused(cdaq: SimDaqServer) -> None:
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0")
        task.timing.cfg_samp_clk_timing(30_000.0)  # NI 9264: 25 kS/s/ch
        with pytest.raises(DaqError) as exc_info:
            _ = task.timing.samp_clk_rate
        assert exc_info.value.error_code == DAQmxErrors.INVALID_ATTRIBUTE_VALUE
        assert "25000" in str(exc_info.value)
        task.write([0.0, 0.1], auto_start=False)
        with pytest.raises(DaqError) as exc_info:
            task.start()
        assert exc_info.value.error_code == DAQmxErrors.INVALID_ATTRIBUTE_VALUE


# -- finite, continuous, regeneration, simple I/O ---------------------------------------------


def test_finite_and_continuous_acquisition(cdaq: SimDaqServer) -> None:
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0", min_val=-10.0, max_val=10.0)
        task.timing.cfg_samp_clk_timing(
            2_000.0, sample_mode=AcquisitionType.FINITE, samps_per_chan=250
        )
        data = task.read(READ_ALL_AVAILABLE, timeout=10.0)  # starts and stops the task itself
        assert len(data) == 250
        assert task.is_task_done()

        task.timing.cfg_samp_clk_timing(2_000.0, sample_mode=AcquisitionType.CONTINUOUS)
        task.start()
        chunks = [task.read(number_of_samples_per_channel=400, timeout=10.0) for _ in range(3)]
        assert [len(c) for c in chunks] == [400, 400, 400]
        assert not task.is_task_done()
        assert task.in_stream.total_samp_per_chan_acquired >= 1200
        task.stop()
    np.testing.assert_array_equal(cdaq.bench.applied_v, 0.0)  # AI alone: electrodes held


def test_regeneration_loops_the_buffer_until_stopped(cdaq: SimDaqServer) -> None:
    rate, period = 10_000.0, 100
    records: list[BenchRecord] = []
    cdaq.bench.subscribe(records.append)
    with (
        nidaqmx.Task(grpc_options=options(cdaq)) as ai_task,
        nidaqmx.Task(grpc_options=options(cdaq)) as ao_task,
    ):
        ai_task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0", min_val=-10.0, max_val=10.0)
        ai_task.timing.cfg_samp_clk_timing(rate, sample_mode=AcquisitionType.CONTINUOUS)
        ao_task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6")
        ao_task.timing.cfg_samp_clk_timing(rate, sample_mode=AcquisitionType.CONTINUOUS)
        ao_task.triggers.start_trigger.cfg_dig_edge_start_trig("ai/StartTrigger")
        assert ao_task.out_stream.regen_mode == RegenerationMode.ALLOW_REGENERATION
        waveform = tones(N_ELECTRODES, period, rate, amplitude_v=0.2)
        AnalogMultiChannelWriter(ao_task.out_stream, auto_start=False).write_many_sample(waveform)
        ao_task.start()
        ai_task.start()
        data = np.zeros((1, 2000))
        AnalogMultiChannelReader(ai_task.in_stream).read_many_sample(data, 2000, timeout=10.0)
        ai_task.stop()
        ao_task.stop()
        generated = ao_task.out_stream.total_samp_per_chan_generated
    played = record_of(records).voltages_v
    assert generated >= 2000
    assert played.shape[1] == generated
    np.testing.assert_array_equal(played, np.tile(waveform, generated // period + 1)[:, :generated])
    np.testing.assert_array_equal(cdaq.bench.applied_v, played[:, -1])


def test_streaming_without_regeneration_plays_every_sample_once(cdaq: SimDaqServer) -> None:
    rate = 10_000.0
    chunks = [tones(N_ELECTRODES, 250, rate, amplitude_v=0.1 * (k + 1)) for k in range(6)]
    records: list[BenchRecord] = []
    cdaq.bench.subscribe(records.append)
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6")
        task.timing.cfg_samp_clk_timing(rate, sample_mode=AcquisitionType.CONTINUOUS)
        task.out_stream.regen_mode = RegenerationMode.DONT_ALLOW_REGENERATION
        task.out_stream.output_buf_size = 500
        writer = AnalogMultiChannelWriter(task.out_stream, auto_start=False)
        writer.write_many_sample(chunks[0])
        task.start()  # no trigger: the AO task runs on its own clock
        for chunk in chunks[1:]:
            writer.write_many_sample(chunk, timeout=10.0)
        while task.out_stream.total_samp_per_chan_generated < 1500:
            time.sleep(0.005)
        task.stop()
    played = record_of(records).voltages_v
    np.testing.assert_array_equal(played, np.concatenate(chunks, axis=1))


def test_finite_generation_regenerates_a_short_buffer(cdaq: SimDaqServer) -> None:
    records: list[BenchRecord] = []
    cdaq.bench.subscribe(records.append)
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6")
        task.timing.cfg_samp_clk_timing(
            1_000.0, sample_mode=AcquisitionType.FINITE, samps_per_chan=250
        )
        waveform = tones(N_ELECTRODES, 100, 1_000.0)
        task.write(waveform, auto_start=True)
        task.wait_until_done(timeout=10.0)
        assert task.out_stream.total_samp_per_chan_generated == 250
    np.testing.assert_array_equal(record_of(records).voltages_v, np.tile(waveform, 3)[:, :250])


def test_simple_write_and_read(cdaq: SimDaqServer) -> None:
    with (
        nidaqmx.Task(grpc_options=options(cdaq)) as ao_task,
        nidaqmx.Task(grpc_options=options(cdaq)) as ai_task,
    ):
        ao_task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6", min_val=-1.0, max_val=1.0)
        setpoint = [0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7]
        assert ao_task.write(setpoint) == 1  # on demand: applied at once
        np.testing.assert_allclose(cdaq.bench.applied_v, setpoint)
        assert [c.name for c in ao_task.ao_channels] == [f"cDAQ1Mod1/ao{i}" for i in range(7)]

        ai_task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0", min_val=-10.0, max_val=10.0)
        value = ai_task.read()
        assert isinstance(value, float)
        assert value == pytest.approx(cdaq.bench.last_record.adc_v[0])
        samples = ai_task.read(number_of_samples_per_channel=5)
        assert len(samples) == 5
        np.testing.assert_allclose(cdaq.bench.applied_v, setpoint)


# -- device and system queries ----------------------------------------------------------------


def test_device_and_system_queries(cdaq: SimDaqServer, pcie: SimDaqServer) -> None:
    system = nidaqmx.system.System.remote(options(cdaq))
    assert system.driver_version == (25, 5, 0)
    assert [d.name for d in system.devices] == ["cDAQ1", "cDAQ1Mod1", "cDAQ1Mod2"]
    chassis = system.devices["cDAQ1"]
    assert chassis.product_type == "cDAQ-9178"
    assert chassis.product_category == ProductCategory.COMPACT_DAQ_CHASSIS
    assert chassis.is_simulated
    assert [m.name for m in chassis.chassis_module_devices] == ["cDAQ1Mod1", "cDAQ1Mod2"]
    assert "/cDAQ1/ai/StartTrigger" in chassis.terminals
    ao_module = nidaqmx.system.Device("cDAQ1Mod1", grpc_options=options(cdaq))
    assert ao_module.product_type == "NI 9264"
    assert ao_module.product_category == ProductCategory.C_SERIES_MODULE
    assert ao_module.ao_voltage_rngs == [-10.0, 10.0]
    assert ao_module.ao_max_rate == 25_000.0
    assert len(ao_module.ao_physical_chans) == 16
    assert ao_module.compact_daq_chassis_device.name == "cDAQ1"
    ai_module = system.devices["cDAQ1Mod2"]
    assert ai_module.product_type == "NI 9202"
    assert ai_module.ai_max_single_chan_rate == 10_000.0
    assert ai_module.ai_simultaneous_sampling_supported
    assert ai_module.ai_physical_chans.channel_names[0] == "cDAQ1Mod2/ai0"

    dev = nidaqmx.system.System.remote(options(pcie)).devices["Dev1"]
    assert dev.product_type == "PCIe-6363"
    assert dev.product_category == ProductCategory.X_SERIES_DAQ
    assert dev.ai_max_single_chan_rate == 2.0e6
    assert dev.ai_max_multi_chan_rate == 1.0e6
    assert dev.ao_max_rate == 2.86e6
    assert dev.ai_voltage_rngs[-2:] == [-10.0, 10.0]
    assert len(dev.ai_physical_chans) == 32
    assert len(dev.ao_physical_chans) == 4
    assert not dev.ai_simultaneous_sampling_supported


# -- misuse -----------------------------------------------------------------------------------


def test_write_outside_min_max_is_refused_and_nothing_is_written(cdaq: SimDaqServer) -> None:
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0", min_val=-1.0, max_val=1.0)
        task.timing.cfg_samp_clk_timing(1_000.0, samps_per_chan=3)
        with pytest.raises(DaqError) as exc_info:
            task.write([0.0, 0.5, 1.5])
        assert exc_info.value.error_code == DAQmxErrors.INVALID_AO_DATA_WRITE
        assert task.out_stream.curr_write_pos == 0
        with pytest.raises(DaqError) as exc_info:
            task.start()  # nothing was written
        assert exc_info.value.error_code == DAQmxErrors.OUTPUT_BUFFER_EMPTY
    assert cdaq.bench.audit.total_samples == 0


def test_read_times_out_when_the_trigger_never_comes(cdaq: SimDaqServer) -> None:
    with nidaqmx.Task(grpc_options=options(cdaq)) as task:
        task.ai_channels.add_ai_voltage_chan("cDAQ1Mod2/ai0", min_val=-10.0, max_val=10.0)
        task.timing.cfg_samp_clk_timing(1_000.0, samps_per_chan=100)
        task.triggers.start_trigger.cfg_dig_edge_start_trig("/cDAQ1/PFI0")
        task.start()
        with pytest.raises(DaqReadError) as exc_info:
            task.read(number_of_samples_per_channel=100, timeout=0.2)
        assert exc_info.value.error_code == DAQmxErrors.SAMPLES_NOT_YET_AVAILABLE
        assert exc_info.value.samps_per_chan_read == 0
        assert not task.is_task_done()
        with pytest.raises(DaqError) as exc_info:
            task.wait_until_done(timeout=0.1)
        assert exc_info.value.error_code == DAQmxErrors.WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE


@pytest.mark.parametrize(
    ("physical_channel", "code"),
    [
        ("cDAQ1Mod1/ao16", DAQmxErrors.PHYSICAL_CHAN_DOES_NOT_EXIST),
        ("cDAQ1Mod2/ao0", DAQmxErrors.PHYSICAL_CHAN_DOES_NOT_EXIST),
        ("cDAQ7Mod1/ao0", DAQmxErrors.INVALID_DEVICE_ID),
    ],
)
def test_unknown_channels_and_devices(cdaq: SimDaqServer, physical_channel: str, code: int) -> None:
    with nidaqmx.Task(grpc_options=options(cdaq)) as task, pytest.raises(DaqError) as exc_info:
        task.ao_channels.add_ao_voltage_chan(physical_channel)
    assert exc_info.value.error_code == code


def test_one_hardware_timed_ao_task_per_chassis(cdaq: SimDaqServer) -> None:
    with (
        nidaqmx.Task(grpc_options=options(cdaq)) as first,
        nidaqmx.Task(grpc_options=options(cdaq)) as second,
    ):
        for task, channel in ((first, "cDAQ1Mod1/ao0"), (second, "cDAQ1Mod1/ao1")):
            task.ao_channels.add_ao_voltage_chan(channel)
            task.timing.cfg_samp_clk_timing(1_000.0, sample_mode=AcquisitionType.CONTINUOUS)
            task.write([0.0, 0.1, 0.0], auto_start=False)
        first.start()
        with pytest.raises(DaqError) as exc_info:
            second.start()
        assert exc_info.value.error_code == DAQmxErrors.PAL_RESOURCE_RESERVED
        first.stop()
        second.start()  # free again once the first one stopped
        second.stop()


def test_calls_on_a_cleared_task(cdaq: SimDaqServer) -> None:
    task = nidaqmx.Task("short_lived", grpc_options=options(cdaq))
    task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0")
    attached = nidaqmx.Task(
        "short_lived",
        grpc_options=nidaqmx.GrpcSessionOptions(grpc.insecure_channel(cdaq.address), "short_lived"),
    )
    task.close()
    with pytest.raises(DaqError) as exc_info:
        attached.start()
    assert exc_info.value.error_code == DAQmxErrors.INVALID_TASK


def test_unknown_attribute_and_unimplemented_call(pcie: SimDaqServer) -> None:
    from nidaqmx._stubs import nidaqmx_pb2, nidaqmx_pb2_grpc
    from session_pb2 import Session

    channel = grpc.insecure_channel(pcie.address)
    with nidaqmx.Task("t", grpc_options=options(pcie)) as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0")
        with pytest.raises(RpcError) as rpc_info:
            task.triggers.start_trigger.cfg_anlg_edge_start_trig("Dev1/ai0", trigger_level=1.0)
        assert rpc_info.value.rpc_code == grpc.StatusCode.UNIMPLEMENTED

        stub = nidaqmx_pb2_grpc.NiDAQmxStub(channel)
        with pytest.raises(grpc.RpcError) as grpc_info:
            stub.CfgAnlgEdgeStartTrig(
                nidaqmx_pb2.CfgAnlgEdgeStartTrigRequest(task=Session(name="t"))
            )
        assert grpc_info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "CfgAnlgEdgeStartTrig" in grpc_info.value.details()

        request = nidaqmx_pb2.GetTimingAttributeDoubleRequest(
            task=Session(name="t"), attribute_raw=0x7FFE
        )
        with pytest.raises(grpc.RpcError) as grpc_info:
            stub.GetTimingAttributeDouble(request)
        metadata = dict(grpc_info.value.trailing_metadata())
        assert int(metadata["ni-error"]) == DAQmxErrors.ATTR_NOT_SUPPORTED
        assert "0x7FFE" in grpc_info.value.details()


# -- stop mid-record (real time) --------------------------------------------------------------


def test_stop_mid_record_holds_the_sample_reached(realtime_cdaq: SimDaqServer) -> None:
    rate, n = 1_000.0, 2_000  # a 2 s ramp, stopped after about 0.3 s
    ramp = np.linspace(0.0, 1.0, n)
    waveform = np.ascontiguousarray(np.vstack([ramp * (k + 1) / N_ELECTRODES for k in range(7)]))
    with nidaqmx.Task(grpc_options=options(realtime_cdaq)) as task:
        task.ao_channels.add_ao_voltage_chan("cDAQ1Mod1/ao0:6", min_val=-2.0, max_val=2.0)
        task.timing.cfg_samp_clk_timing(rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n)
        AnalogMultiChannelWriter(task.out_stream, auto_start=False).write_many_sample(waveform)
        task.start()
        time.sleep(0.3)
        assert not task.is_task_done()
        task.stop()
        generated = task.out_stream.total_samp_per_chan_generated
        held = realtime_cdaq.bench.applied_v
        time.sleep(0.1)
        np.testing.assert_array_equal(realtime_cdaq.bench.applied_v, held)  # it really stopped
    assert 0 < generated < n
    np.testing.assert_array_equal(held, waveform[:, generated - 1])
    assert realtime_cdaq.bench.audit.total_samples == generated


# -- configuration and command line -----------------------------------------------------------


def test_server_config_validation(tmp_path: Path) -> None:
    from labctl.config import ConfigError

    config = load_sim_daq_config(CDAQ)
    assert config.bench.config == (REPO / "configs" / "sim_dnpu.yaml").resolve()
    data = yaml.safe_load(CDAQ.read_text())
    data["wiring"]["output"] = "cDAQ1Mod1/ai0"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"wiring\.output"):
        load_sim_daq_config(bad)


def test_labctl_sim_daq_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from labctl.cli import main; sys.exit(main())",
            "sim-daq",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("NI gRPC Device Server (simulated) listening on 127.0.0.1:")
        address = line.rsplit(" ", 1)[-1].strip()
        system = nidaqmx.system.System.remote(
            nidaqmx.GrpcSessionOptions(grpc.insecure_channel(address), "")
        )
        assert system.devices.device_names == ["cDAQ1", "cDAQ1Mod1", "cDAQ1Mod2"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
