"""The NI-DAQmx driver (``nidaq`` backend).

Unit level (no server, no driver): settings validation and setup cross-checks at config load,
DAQmx errors translated into labctl errors with their codes, the record flow on fake tasks
(timing reuse, terminal resolution, padding, cancel and failures mid-record), and
``labctl devices`` saying exactly why nothing can be reached. Integration: the unmodified
driver through SafeDevice against the simulated NI gRPC Device Server.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import nidaqmx
import numpy as np
import pytest
import yaml
from nidaqmx.constants import ProductCategory
from nidaqmx.errors import DaqError, DaqNotFoundError, DaqReadError, RpcError

from drivers.nidaq import (
    NidaqBufferError,
    NidaqConfigurationError,
    NidaqConnectionError,
    NidaqDeviceAbsent,
    NidaqDriverMissing,
    NidaqError,
    NidaqOutOfRange,
    NidaqRecordInterrupted,
    NidaqResourceReserved,
    NidaqRoutingError,
    NidaqTimeout,
    NidaqUnsupported,
)
from drivers.nidaq.backend import NIDAQ_BACKEND
from drivers.nidaq.discovery import format_ranges, list_devices
from drivers.nidaq.driver import NidaqDevice, _Tasks
from drivers.nidaq.errors import translate
from drivers.nidaq.settings import NidaqSettings
from labctl.cli import main
from labctl.config import ConfigError, LoadedConfig, merge_overrides, parse_config
from labctl.connect import build_device
from labctl.device import BackendError, RecordInterrupted
from labctl.device.registry import DeviceDiscoveryError, get_backend
from labctl.device.safety import ShutdownFailed
from labctl.run.control import RunController, RunState
from labctl.training.session import execute, new_run
from tests.conftest import CONFIGS

GAIN = 2.53e7


def grpc_config(override: dict[str, Any] | None = None, port: int | None = None) -> LoadedConfig:
    """configs/sim_cdaq_grpc.yaml with an override (and the server's port) merged in."""
    data = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())
    if port is not None:
        data = merge_overrides(data, {"setup": {"backend": {"settings": {"grpc": {"port": port}}}}})
    if override:
        data = merge_overrides(data, override)
    return parse_config(yaml.safe_dump(data), source=CONFIGS / "sim_cdaq_grpc.yaml")


def settings_override(**settings: Any) -> dict[str, Any]:
    return {"setup": {"backend": {"settings": settings}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def problems_of(override: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        grpc_config(override)
    return str(info.value)


# -- settings and setup cross-checks ---------------------------------------------------------------
def test_template_and_grpc_config_validate_and_register_the_backend(capsys) -> None:
    assert get_backend("nidaq") is NIDAQ_BACKEND
    assert main(["validate", str(CONFIGS / "cdaq_template.yaml")]) == 0
    assert main(["validate", str(CONFIGS / "sim_cdaq_grpc.yaml")]) == 0
    settings = grpc_config().instrument_settings["nidaq"]
    assert isinstance(settings, NidaqSettings)
    assert settings.grpc is not None and settings.grpc.target == "127.0.0.1:31763"
    assert settings.ai_channel_list == ["cDAQ1Mod2/ai0"]


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"ai_channels": ["cDAQ1Mod2/ai0"]}, "either ai_channel"),
        ({"ai_channel": None}, "either ai_channel"),
        ({"ao_channels": ["cDAQ1Mod1/ao0:6"]}, "no lists or ranges"),
        ({"terminal_config": "BAL_DIFF"}, "terminal_config"),
        ({"sync": "software"}, "sync"),
        ({"ai_range_v": 20}, "ai_range_v"),
        ({"grpc": {"address": "127.0.0.1:31763"}}, "host:port"),
        ({"grpc": {"port": 70000}}, "grpc.port"),
        ({"grpc": {"initialization": "attach"}}, "needs a session_name"),
        ({"grpc": {"tls": {"certificate_chain": "/nonexistent.pem"}}}, "not found"),
        ({"grpc": {"tls": {"source": "ni_tls", "root_certificates": __file__}}}, "leave out"),
        ({"grpc": {"tls": {"certificate_chain": __file__}}}, "both certificate_chain"),
        ({"grpc_address": "127.0.0.1"}, "unknown key"),
    ],
)
def test_bad_settings_name_the_field_and_the_fix(override: dict[str, Any], words: str) -> None:
    assert words in problems_of(settings_override(**override))


@pytest.mark.parametrize(
    ("override", "words"),
    [
        (settings_override(ao_channels=["cDAQ1Mod1/ao0"] * 2), "2 AO channels for 7 electrodes"),
        (
            settings_override(
                ao_channels=[f"cDAQ1Mod1/ao{i}" for i in range(6)] + ["CDAQ1MOD1/AO0"]
            ),
            "CDAQ1MOD1/AO0 is listed more than once",
        ),
        (settings_override(ai_range_v=2.0), "below the amplifier's output swing"),
        (settings_override(ai_channel=None, ai_channels=["a/ai0", "a/ai1"]), "2 AI channel(s)"),
        (settings_override(ao_margin_v=0.5, trigger_device="cDAQ1/ai0"), "is a channel"),
    ],
)
def test_setup_cross_checks(override: dict[str, Any], words: str) -> None:
    assert words in problems_of(override)


def test_margin_beyond_full_scale_is_refused() -> None:
    settings = grpc_config().instrument_settings["nidaq"]
    assert isinstance(settings, NidaqSettings)
    wide = grpc_config({"setup": {"safety": {"max_abs_v": 10.0}}}).setup
    wide = wide.model_copy(
        update={"electrodes": [e.model_copy(update={"max_v": 10.0}) for e in wide.electrodes]}
    )
    assert NIDAQ_BACKEND.check_setup is not None
    assert any("leave the ±10 V" in p for p in NIDAQ_BACKEND.check_setup(wide, settings))


def test_factory_touches_no_hardware_and_limits_are_range_plus_margin() -> None:
    device = build_device(grpc_config(settings_override(ao_margin_v=0.02)))  # nothing opened
    source = next(iter(device.instruments.values()))
    assert isinstance(source, NidaqDevice) and not source.is_open
    assert source.ao_limits_v[0] == pytest.approx((-1.22, 1.22))
    assert np.isnan(source.present_voltages()).all()


# -- error translation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (-200279, NidaqBufferError, "overflow"),
        (-200290, NidaqBufferError, "underflow"),
        (-200284, NidaqTimeout, "timed out"),
        (-200561, NidaqOutOfRange, "outside the channel's limits"),
        (-50103, NidaqResourceReserved, "close NI MAX test panels"),
        (-201003, NidaqDeviceAbsent, "cable"),
        (-200220, NidaqDeviceAbsent, "absent"),
        (-89125, NidaqRoutingError, "trigger_device"),
        (-200170, NidaqConfigurationError, "channel name"),
        (-200077, NidaqConfigurationError, "sample_rate_hz"),
        (-209999, NidaqError, "DAQmx error -209999"),
    ],
)
def test_daqmx_errors_say_what_happened_and_what_to_do(
    code: int, kind: type[NidaqError], words: str
) -> None:
    error = translate(DaqError("Something went wrong.\n\nmore", code), "starting the AO task")
    assert type(error) is kind and isinstance(error, BackendError)
    assert error.error_code == code
    assert words in str(error) and "starting the AO task" in str(error) and str(code) in str(error)


def test_driver_and_connection_errors_are_translated() -> None:
    missing = translate(DaqNotFoundError("Could not find an installation"), "opening")
    assert isinstance(missing, NidaqDriverMissing) and "installdriver" in str(missing)
    unreachable = translate(RpcError(grpc.StatusCode.UNAVAILABLE, "Failed to connect"), "open")
    assert isinstance(unreachable, NidaqConnectionError) and "sim-daq" in str(unreachable)
    unsupported = translate(RpcError(grpc.StatusCode.UNIMPLEMENTED, "x"), "reading")
    assert isinstance(unsupported, NidaqUnsupported)


def test_opening_without_a_driver_says_so_through_the_safe_device() -> None:
    try:
        nidaqmx.system.System.local().driver_version  # noqa: B018
    except DaqNotFoundError:
        pass
    else:
        pytest.skip("NI-DAQmx is installed here")
    loaded = grpc_config({"setup": {"backend": {"settings": {"grpc": None}}}})
    device = build_device(loaded)
    with pytest.raises(NidaqDriverMissing, match="no NI-DAQmx driver is installed"):
        device.open()
    assert not device.is_open


# -- the record flow, on fake tasks ---------------------------------------------------------------
class _Obj:
    """A namespace whose attributes the test sets."""


class FakeTiming:
    def __init__(self, coerce: Callable[[float], float], clock_term: str = "") -> None:
        self.coerce = coerce
        self.samp_clk_rate = math.nan
        self.samp_clk_term = clock_term
        self.configured: list[tuple[float, str, int]] = []

    def cfg_samp_clk_timing(
        self, rate: float, source: str = "", sample_mode: Any = None, samps_per_chan: int = 1000
    ) -> None:
        self.samp_clk_rate = self.coerce(rate)
        self.configured.append((rate, source, samps_per_chan))


class FakeStartTrigger:
    def __init__(self, kind: str, log: list[str]) -> None:
        self.kind = kind
        self.log = log
        self.term_error: Exception | None = None

    @property
    def term(self) -> str:
        if self.term_error is not None:
            raise self.term_error
        return "/cDAQ1/te0/StartTrigger"

    def cfg_dig_edge_start_trig(self, source: str) -> None:
        self.log.append(f"{self.kind} trigger {source}")


class FakeTask:
    """Just enough of nidaqmx.Task for the driver, with a log of calls in order."""

    def __init__(self, kind: str, log: list[str], coerce: Callable[[float], float]) -> None:
        self.kind = kind
        self.log = log
        self.timing = FakeTiming(coerce, "/cDAQ1/te0/SampleClock")
        self.triggers = _Obj()
        self.triggers.start_trigger = FakeStartTrigger(kind, log)  # type: ignore[attr-defined]
        self.in_stream = _Obj()
        self.in_stream.avail_samp_per_chan = 0  # type: ignore[attr-defined]
        self.out_stream = _Obj()
        self.out_stream.total_samp_per_chan_generated = 0  # type: ignore[attr-defined]
        self.devices: list[Any] = []

    def control(self, mode: Any) -> None:
        self.log.append(f"{self.kind} control {mode.name}")

    def start(self) -> None:
        self.log.append(f"{self.kind} start")

    def stop(self) -> None:
        self.log.append(f"{self.kind} stop")

    def wait_until_done(self, timeout: float) -> None:
        self.log.append(f"{self.kind} wait")

    def close(self) -> None:
        self.log.append(f"{self.kind} close")


class FakeRig:
    """Fake AO/AI tasks: the AI reads 0.1 V per volt summed over the electrodes."""

    def __init__(self, coerce: Callable[[float], float] = lambda r: 1e5 / round(1e5 / r)):
        self.log: list[str] = []
        self.ao = FakeTask("ao", self.log, coerce)
        self.ai = FakeTask("ai", self.log, coerce)
        self.written: list[np.ndarray] = []
        self.read_error: Exception | None = None
        self.write_error: Exception | None = None
        self.writer = _Obj()
        self.writer.write_many_sample = self._write  # type: ignore[attr-defined]
        self.reader = _Obj()
        self.reader.read_many_sample = self._read  # type: ignore[attr-defined]
        self._pos = 0

    def _write(self, data: np.ndarray, timeout: float) -> int:
        if self.write_error is not None:
            raise self.write_error
        assert data.flags.c_contiguous
        self.written.append(data.copy())
        self._pos = 0
        self.ai.in_stream.avail_samp_per_chan = data.shape[1]  # type: ignore[attr-defined]
        return int(data.shape[1])

    def _read(self, data: np.ndarray, n: int, timeout: float) -> int:
        if self.read_error is not None:
            raise self.read_error
        assert data.flags.c_contiguous and data.shape[1] == n
        wave = self.written[-1]
        data[:] = 0.1 * wave.sum(axis=0)[self._pos : self._pos + n]
        self._pos += n
        self.ai.in_stream.avail_samp_per_chan = wave.shape[1] - self._pos  # type: ignore[attr-defined]
        self.ao.out_stream.total_samp_per_chan_generated = self._pos  # type: ignore[attr-defined]
        return n


RigFactory = Callable[..., tuple[NidaqDevice, FakeRig]]


@pytest.fixture
def rig_device() -> RigFactory:
    """Factory: a NidaqDevice (with settings overrides) on fake tasks, as if opened."""

    def make(**settings: Any) -> tuple[NidaqDevice, FakeRig]:
        loaded = grpc_config(settings_override(**settings))
        nidaq_settings = loaded.instrument_settings["nidaq"]
        assert isinstance(nidaq_settings, NidaqSettings)
        device = NidaqDevice(loaded.setup, nidaq_settings)
        rig = FakeRig()
        device._tasks = _Tasks(rig.ao, rig.ai, rig.writer, rig.reader, None)
        return device, rig

    return make


def ramp_wave(n: int, top: float = 0.5) -> np.ndarray:
    return np.tile(np.linspace(0.0, top, n), (7, 1))


def test_record_flow_on_one_clock(rig_device: RigFactory) -> None:
    device, rig = rig_device()
    rate = device.coerce_sample_rate(30_000.0)
    assert rate == pytest.approx(1e5 / 3)  # read back from the (fake) DAQmx
    assert device.coerce_sample_rate(30_000.0) == rate  # cached: no new configuration
    assert rig.log.index("ai control TASK_RESERVE") < rig.log.index(
        "ao trigger /cDAQ1/te0/StartTrigger"
    )  # reserved before the terminal was read
    for _ in range(2):
        device.arm(100, rate)
        device.play(ramp_wave(100), rate, None)
        acquisition = device.fetch()
    expected = 0.1 * ramp_wave(100).sum(axis=0) / GAIN
    np.testing.assert_allclose(acquisition.current_a[0], expected)
    assert acquisition.sample_rate_hz == rate and not acquisition.saturated[0]
    assert len(rig.ai.timing.configured) == 2  # the coercion, then n=100 once for both records
    assert rig.log[-5:] == ["ao start", "ai start", "ao wait", "ao stop", "ai stop"]
    starts = [entry for entry in rig.log if entry.endswith("start")]
    assert starts[:2] == ["ao start", "ai start"]  # AO armed before AI starts
    assert device.identity()["terminal"] == "/cDAQ1/te0/StartTrigger"


def test_short_records_are_padded_and_discarded_samples_dropped(rig_device: RigFactory) -> None:
    device, rig = rig_device()
    device.play(np.zeros((7, 1)), 10_000.0, None)  # a one-sample step to 0 V (no arm)
    assert rig.written[-1].shape == (7, 2)  # DAQmx needs >= 2 samples: the last one is held
    device, rig = rig_device(discard_first_samples=3)
    device.arm(10, 10_000.0)
    device.play(ramp_wave(10), 10_000.0, None)
    acquisition = device.fetch()
    assert rig.written[-1].shape == (7, 13)
    np.testing.assert_array_equal(rig.written[-1][:, 10:], rig.written[-1][:, 9:10].repeat(3, 1))
    assert acquisition.n_samples == 10
    np.testing.assert_allclose(
        acquisition.current_a[0], 0.1 * rig.written[-1].sum(axis=0)[3:] / GAIN
    )


def test_blocking_reads_and_several_outputs(rig_device: RigFactory) -> None:
    loaded = grpc_config(
        {
            "setup": {
                "outputs": [{"name": "out"}, {"name": "out2"}],
                "backend": {"settings": {"ai_channel": None, "ai_channels": ["m/ai0", "m/ai1"]}},
            }
        }
    )
    nidaq_settings = loaded.instrument_settings["nidaq"]
    assert isinstance(nidaq_settings, NidaqSettings)
    device = NidaqDevice(loaded.setup, nidaq_settings)
    rig = FakeRig()
    device._tasks = _Tasks(rig.ao, rig.ai, rig.writer, rig.reader, None)

    class Uncountable:  # a server that cannot report the available samples
        @property
        def avail_samp_per_chan(self) -> int:
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, "no")

        @avail_samp_per_chan.setter
        def avail_samp_per_chan(self, value: int) -> None:
            pass

    rig.ai.in_stream = Uncountable()
    device.arm(1000, 10_000.0)  # read in blocking pieces of 200 samples
    device.play(ramp_wave(1000), 10_000.0, None)
    acquisition = device.fetch()
    assert acquisition.current_a.shape == (2, 1000)
    expected = 0.1 * ramp_wave(1000).sum(axis=0) / GAIN
    np.testing.assert_allclose(acquisition.current_a, np.stack([expected, expected]))


def test_saturation_is_flagged_at_the_amplifier_swing(rig_device: RigFactory) -> None:
    device, _ = rig_device()
    device.arm(10, 10_000.0)
    device.play(np.full((7, 10), 1.2 * 4.0 / 0.7 / 7), 10_000.0, None)  # 0.1·Σ ≈ 0.69 V
    assert not device.fetch().saturated[0]
    device.arm(10, 10_000.0)
    device.play(np.full((7, 10), 6.0), 10_000.0, None)  # 4.2 V ≥ the 4 V swing
    assert device.fetch().saturated[0]


def test_sync_modes_and_terminal_resolution(rig_device: RigFactory) -> None:
    device, rig = rig_device(sync="ai_sample_clock")
    device.coerce_sample_rate(10_000.0)
    assert rig.ao.timing.configured[-1][1] == "/cDAQ1/te0/SampleClock"
    device, rig = rig_device(trigger_device="cDAQ1")
    device.coerce_sample_rate(10_000.0)
    assert "ao trigger /cDAQ1/ai/StartTrigger" in rig.log
    assert "ai control TASK_RESERVE" not in rig.log
    device, rig = rig_device()
    trigger = rig.ai.triggers.start_trigger  # type: ignore[attr-defined]
    trigger.term_error = RpcError(grpc.StatusCode.UNIMPLEMENTED, "no")  # the server cannot say
    module = _Obj()
    module.name = "cDAQ1Mod2"  # type: ignore[attr-defined]
    module.product_category = ProductCategory.C_SERIES_MODULE  # type: ignore[attr-defined]
    module.compact_daq_chassis_device = _Obj()  # type: ignore[attr-defined]
    module.compact_daq_chassis_device.name = "cDAQ1"  # type: ignore[attr-defined]
    rig.ai.devices = [module]
    device.coerce_sample_rate(10_000.0)
    assert "ao trigger /cDAQ1/ai/StartTrigger" in rig.log  # the module's chassis


def test_rates_that_differ_between_ao_and_ai_are_refused(rig_device: RigFactory) -> None:
    device, rig = rig_device()
    rig.ao.timing.coerce = lambda r: r * 1.001
    with pytest.raises(NidaqConfigurationError, match="ai_sample_clock"):
        device.coerce_sample_rate(10_000.0)


def test_cancel_stops_both_tasks_and_reports_the_generated_samples(rig_device: RigFactory) -> None:
    device, rig = rig_device()
    rig.ao.out_stream.total_samp_per_chan_generated = 37  # type: ignore[attr-defined]
    cancel = threading.Event()

    class CancelledWhileWaiting:  # the park arrives while the record plays
        @property
        def avail_samp_per_chan(self) -> int:
            cancel.set()
            return 0

        @avail_samp_per_chan.setter
        def avail_samp_per_chan(self, value: int) -> None:
            pass

    in_stream, rig.ai.in_stream = rig.ai.in_stream, CancelledWhileWaiting()
    device.arm(100, 10_000.0)
    with pytest.raises(RecordInterrupted) as info:
        device.play(ramp_wave(100), 10_000.0, cancel)
    assert info.value.cancelled and info.value.samples_generated == 37
    assert rig.log[-2:] == ["ao stop", "ai stop"]
    rig.ai.in_stream = in_stream
    device.play(np.zeros((7, 5)), 10_000.0, None)  # the park ramp after it: the arm is void
    assert rig.written[-1].shape == (7, 5)
    with pytest.raises(RecordInterrupted) as info:  # cancelled before it began: nothing sent
        device.play(ramp_wave(100), 10_000.0, cancel)
    assert info.value.samples_generated == 0 and len(rig.written) == 2


def test_opening_an_unreachable_server_says_where() -> None:
    port = free_port()
    loaded = grpc_config(settings_override(grpc={"port": port, "connect_timeout_s": 0.3}))
    device = build_device(loaded)
    with pytest.raises(NidaqConnectionError, match=f"unreachable at 127.0.0.1:{port}"):
        device.open()


def test_failure_mid_record_is_a_record_interrupted_with_the_code(rig_device: RigFactory) -> None:
    device, rig = rig_device()
    rig.ao.out_stream.total_samp_per_chan_generated = 60  # type: ignore[attr-defined]
    rig.read_error = DaqReadError("Attempted to read samples no longer available.", -200279, 10)
    device.arm(100, 10_000.0)
    with pytest.raises(NidaqRecordInterrupted) as info:
        device.play(ramp_wave(100), 10_000.0, None)
    error = info.value
    assert not error.cancelled and error.samples_generated == 60
    assert error.error_code == -200279 and error.cause_kind is NidaqBufferError
    assert "overflow" in str(error) and "60 of 100 samples" in str(error)
    assert "ao stop" in rig.log
    with pytest.raises(RuntimeError, match="nothing was recorded"):
        device.fetch()  # an interrupted record is never fetched


def test_a_refused_write_generated_nothing(rig_device: RigFactory) -> None:
    device, rig = rig_device()
    rig.write_error = DaqError("Invalid analog output data.", -200561)
    with pytest.raises(NidaqRecordInterrupted) as info:
        device.play(ramp_wave(10), 10_000.0, None)
    assert info.value.samples_generated == 0 and info.value.cause_kind is NidaqOutOfRange
    assert "ao start" not in rig.log


def test_a_record_that_never_starts_times_out(rig_device: RigFactory) -> None:
    device, rig = rig_device(timeout_s=0.05)
    rig.writer.write_many_sample = lambda data, timeout: data.shape[1]  # type: ignore[attr-defined]
    with pytest.raises(NidaqRecordInterrupted) as info:
        device.play(ramp_wave(10), 10_000.0, None)
    assert info.value.cause_kind is NidaqTimeout and "trigger route" in str(info.value)


def test_close_clears_both_tasks(rig_device: RigFactory) -> None:
    device, rig = rig_device()
    device.close()
    assert {"ao close", "ai close"} <= set(rig.log) and not device.is_open
    with pytest.raises(NidaqError, match="not open"):
        device.arm(10, 10_000.0)


# -- labctl devices when nothing can be reached ------------------------------------------------
def nidaq_settings(**grpc_settings: Any) -> NidaqSettings:
    override = settings_override(grpc={"connect_timeout_s": 0.3, **grpc_settings})
    settings = grpc_config(override).instrument_settings["nidaq"]
    assert isinstance(settings, NidaqSettings)
    return settings


def test_devices_says_no_driver_or_unreachable_server(tmp_path: Path, capsys) -> None:
    try:
        nidaqmx.system.System.local().driver_version  # noqa: B018
        has_driver = True
    except DaqNotFoundError:
        has_driver = False
    if not has_driver:
        with pytest.raises(DeviceDiscoveryError, match="no NI-DAQmx driver installed"):
            list_devices(None)
    port = free_port()
    with pytest.raises(DeviceDiscoveryError, match=f"unreachable at 127.0.0.1:{port}: conn"):
        list_devices(nidaq_settings(port=port))
    data = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())
    data["setup"]["backend"]["settings"]["grpc"]["port"] = port
    path = tmp_path / "cdaq.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["devices", str(path)]) == 1
    assert f"unreachable at 127.0.0.1:{port}" in capsys.readouterr().out


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


def test_devices_says_tls_refused_or_tls_required_or_not_daqmx(tmp_path: Path) -> None:
    try:
        key, cert = _certificate(tmp_path, "server")
        _, other = _certificate(tmp_path, "other")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openssl is not available to make a test certificate")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        with pytest.raises(DeviceDiscoveryError, match="TLS refused at 127"):
            list_devices(nidaq_settings(port=port, tls={"root_certificates": str(other)}))
        with pytest.raises(DeviceDiscoveryError, match="probably requires TLS"):
            list_devices(nidaq_settings(port=port))
        with pytest.raises(DeviceDiscoveryError, match="does not serve NI-DAQmx"):
            list_devices(nidaq_settings(port=port, tls={"root_certificates": str(cert)}))
    finally:
        server.stop(None)


def test_ranges_are_listed_readably() -> None:
    assert format_ranges([-10.0, 10.0, -5.0, 5.0]) == "±10 V, ±5 V"
    assert format_ranges([0.0, 5.0]) == "0..5 V"
    assert format_ranges(None) == "ranges unknown"


# -- integration: the driver against the simulated NI gRPC Device Server ------------------------
RATE = 10_000.0
NAMES = [f"e{i}" for i in range(7)]


def _serve(**bench: Any) -> Any:
    """A simulated NI gRPC Device Server (cDAQ-9178) with bench overrides (skips if absent)."""
    nidaq_server = pytest.importorskip("simulated_hw.nidaq_server")
    config = nidaq_server.load_sim_daq_config(None)
    if bench:
        config = config.model_copy(update={"bench": config.bench.model_copy(update=bench)})
    return nidaq_server.serve(config)


@pytest.fixture
def server() -> Iterator[Any]:
    with _serve() as srv:
        yield srv


def config_file(tmp_path: Path, port: int, name: str = "sim_cdaq_grpc.yaml") -> Path:
    """A copy of configs/NAME pointing at the server's port (runs stored under tmp_path)."""
    data = yaml.safe_load((CONFIGS / name).read_text())
    if name != "sim_cdaq_grpc.yaml":  # a simulated config: drive it through the server instead
        grpc = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())["setup"]["backend"]
        data["setup"]["backend"] = grpc
    data["setup"]["backend"]["settings"]["grpc"]["port"] = port
    if "run" in data:
        data["run"]["directory"] = str(tmp_path / "runs")
    path = tmp_path / f"nidaq_{name}"
    path.write_text(yaml.safe_dump(data))
    return path


def park_from_unknown(device: Any) -> None:
    """AO cannot be read back: a first open knows nothing, so park (one step to 0 V)."""
    assert device.unknown_electrodes() == NAMES
    with pytest.raises(ShutdownFailed) as info:  # loud by design: a step from unknown
        device.park()
    assert info.value.report.stepped_electrodes == NAMES and info.value.report.completed
    device.unpark()


def bump(n: int, peaks_v: dict[int, float]) -> np.ndarray:
    """A waveform from rest back to rest: sin² bumps of the given peaks (V) on some rows."""
    wave = np.zeros((7, n))
    shape = np.sin(np.pi * np.arange(n) / (n - 1)) ** 2
    for row, peak in peaks_v.items():
        wave[row] = peak * shape
    return wave


def test_records_through_the_safe_device_match_the_bench(server: Any) -> None:
    loaded = grpc_config({"setup": {"sample_rate_hz": 7000.0}}, port=server.port)
    with build_device(loaded) as device:
        park_from_unknown(device)
        rate = device.sample_rate_hz  # coerced by DAQmx and read back at open
        assert rate == 80e6 / round(80e6 / 7000.0) != 7000.0  # 80 MHz / integer divisor
        assert device.coerce_sample_rate(RATE) == RATE
        wave = bump(1400, {1: 0.3, 3: -0.2, 5: 0.1})
        acquisition = device.apply(wave)
        record = server.bench.last_record
        m = record.n_samples
        assert acquisition.sample_rate_hz == record.sample_rate_hz == rate
        np.testing.assert_allclose(acquisition.current_a[0, -m:], record.adc_v / GAIN, rtol=1e-12)
        np.testing.assert_allclose(record.voltages_v, wave[:, -m:], atol=1e-12)
        assert not acquisition.saturated[0]
        source = next(iter(device.instruments.values()))
        assert source.terminal == "/cDAQ1/ai/StartTrigger"  # the chassis, not the module
        assert acquisition.metadata["instrument"]["sync"] == "start_trigger"
    np.testing.assert_array_equal(server.bench.applied_v, np.zeros(7))
    audit = server.bench.audit
    assert np.nanmax(audit.max_v) == pytest.approx(0.3, abs=1e-6)
    assert audit.max_slew_v_per_s.max() <= loaded.setup.safety.slew_v_per_s
    with build_device(loaded) as device:  # a restart: the persisted state says 0 V
        assert device.unknown_electrodes() == []


def test_x_series_card_on_either_sync(tmp_path: Path) -> None:
    nidaq_server = pytest.importorskip("simulated_hw.nidaq_server")
    data = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())
    for section in ("measure", "homodyne", "task", "loss", "optimiser", "run"):
        data.pop(section, None)  # a 4-electrode card: no gate task, no measure point
    data["setup"]["electrodes"] = data["setup"]["electrodes"][:4]  # the card has 4 AO
    with nidaq_server.serve(CONFIGS / "sim_daq" / "pcie6363.yaml") as pcie:
        for sync, terminal in (
            ("start_trigger", "/Dev1/ai/StartTrigger"),
            ("ai_sample_clock", "/Dev1/ai/SampleClock"),
        ):
            settings = {
                "ao_channels": [f"Dev1/ao{i}" for i in range(4)],
                "ai_channel": "Dev1/ai0",
                "sync": sync,
                "grpc": {"address": "127.0.0.1", "port": pcie.port},
            }
            data["setup"]["backend"]["settings"] = settings
            loaded = parse_config(yaml.safe_dump(data))
            nidaq_settings = loaded.instrument_settings["nidaq"]
            assert isinstance(nidaq_settings, NidaqSettings)
            device = NidaqDevice(loaded.setup, nidaq_settings)
            device.open()
            try:
                rate = device.coerce_sample_rate(30_000.0)
                assert rate == 100e6 / 3333  # 100 MHz timebase / integer divisor
                device.arm(600, rate)
                device.play(bump(600, {1: 0.2})[:4], rate, None)
                acquisition = device.fetch()
                assert device.terminal == terminal
                record = pcie.bench.last_record
                m = record.n_samples
                np.testing.assert_allclose(acquisition.current_a[0, -m:], record.adc_v / GAIN)
            finally:
                device.close()


def test_park_from_another_thread_cancels_the_record_in_flight() -> None:
    with _serve(realtime=True) as realtime:
        loaded = grpc_config(port=realtime.port)
        bench = realtime.bench
        with build_device(loaded) as device:
            park_from_unknown(device)
            n = 5000  # 0.5 s at 10 kHz, paced to the wall clock
            wave = bump(n, {1: 0.5, 2: -0.4})
            result: dict[str, Any] = {}
            worker = threading.Thread(
                target=lambda: result.update(acquisition=device.apply(wave)), daemon=True
            )
            start = bench.audit.total_samples
            worker.start()
            for _ in range(2000):  # until the record is well under way (not a timing assert)
                if bench.audit.total_samples - start > 1500:
                    break
                threading.Event().wait(0.005)
            report = device.park()
            played = bench.audit.total_samples - start
            assert report.ok and device.is_parked
            np.testing.assert_array_equal(bench.applied_v, np.zeros(7))
            assert played < n  # the record was cut, then ramped down from the sample it reached
            assert worker.is_alive()  # waiting while parked
            device.unpark()
            worker.join(timeout=30)
            assert not worker.is_alive()
            assert result["acquisition"].n_samples == n  # replayed whole after unpark
        assert bench.audit.max_slew_v_per_s.max() <= loaded.setup.safety.slew_v_per_s
        np.testing.assert_array_equal(bench.applied_v, np.zeros(7))


def test_daqmx_errors_from_the_server(server: Any) -> None:
    def device(**settings: Any) -> NidaqDevice:
        loaded = grpc_config(settings_override(**settings), port=server.port)
        nidaq_settings = loaded.instrument_settings["nidaq"]
        assert isinstance(nidaq_settings, NidaqSettings)
        return NidaqDevice(loaded.setup, nidaq_settings)

    first = device()
    first.open()
    wave = np.zeros((7, 10))
    wave[0, 3:6] = 1.5  # beyond e0's AO limit of 1.21 V: the hardware layer refuses it
    with pytest.raises(NidaqRecordInterrupted) as info:
        first.play(wave, RATE, None)
    assert info.value.samples_generated == 0 and info.value.error_code == -200561
    assert info.value.cause_kind is NidaqOutOfRange
    assert server.bench.audit.total_samples == 0  # nothing reached the electrodes
    second = device()
    second.open()
    with pytest.raises(NidaqResourceReserved, match="another task or program"):
        second.coerce_sample_rate(RATE)  # the first one holds the AI module's timing
    second.close()
    first.close()
    with pytest.raises(NidaqConfigurationError, match="cDAQ1Mod1/ao99") as bad:
        device(ao_channels=[*(f"cDAQ1Mod1/ao{i}" for i in range(6)), "cDAQ1Mod1/ao99"]).open()
    assert bad.value.error_code == -200170
    with pytest.raises(NidaqDeviceAbsent, match="cDAQ1Mod3"):
        device(ai_channel="cDAQ1Mod3/ai0").open()
    named = device(grpc={"session_name": "labctl", "initialization": "initialize"})
    named.open()
    with pytest.raises(NidaqResourceReserved, match="session_name") as duplicate:
        device(grpc={"session_name": "labctl", "initialization": "initialize"}).open()
    assert duplicate.value.error_code == -200089
    named.close()
    lost = device()
    lost.open()
    server.stop()
    with pytest.raises(NidaqConnectionError, match=f"unreachable at 127.0.0.1:{server.port}"):
        lost.arm(100, RATE)
    with pytest.raises(NidaqConnectionError):  # clearing the tasks failed: said, not hidden
        lost.close()
    assert not lost.is_open


def test_devices_lists_the_server(server: Any, tmp_path: Path, capsys) -> None:
    assert main(["devices", str(config_file(tmp_path, server.port))]) == 0
    out = capsys.readouterr().out
    assert "cDAQ1: cDAQ-9178" in out and "cDAQ1Mod1: NI 9264" in out
    assert "AO cDAQ1Mod1/ao0..ao15 (16): ±10 V, max 25 kS/s" in out
    assert "AI cDAQ1Mod2/ai0..ai15 (16): ±10 V, max 10 kS/s" in out


def _json_of(argv: list[str], capsys: Any) -> dict[str, Any]:
    capsys.readouterr()
    assert main(argv) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_gradient_through_the_server_agrees_with_the_in_process_backend(
    server: Any, tmp_path: Path, capsys
) -> None:
    path = config_file(tmp_path, server.port)
    assert main(["park", str(path)]) == 3  # first use: stepped to 0 V from unknown (loud)
    assert main(["park", str(path)]) == 0  # now known from the persisted state
    through = _json_of(["gradient", str(path), "--json"], capsys)
    local = _json_of(["gradient", str(CONFIGS / "sim_dnpu.yaml"), "--json"], capsys)
    a, b = np.array(through["gradient_a_per_v"]), np.array(local["gradient_a_per_v"])
    se = np.hypot(through["stderr_a_per_v"], local["stderr_a_per_v"])
    assert np.all(np.abs(a - b) <= 4 * se), (a, b, se)
    assert through["frequencies_hz"] == local["frequencies_hz"]
    assert through["device_seconds"] == local["device_seconds"]
    assert not through["saturated"]


def test_a_gate_trains_to_solved_through_the_driver(server: Any, tmp_path: Path) -> None:
    data = yaml.safe_load(config_file(tmp_path, server.port, "xor_sim.yaml").read_text())
    data["run"].update({"max_iterations": 200, "report": False})
    data["homodyne"] = {
        **data.get("homodyne", {}),
        "calibration": {"file": str(tmp_path / "c.json")},
    }
    path = tmp_path / "xor_nidaq.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["park", str(path)]) == 3  # first open: AO voltages unknown, one step to 0 V
    run = new_run(parse_config(path.read_text(), source=path))
    controller = RunController()
    controller.start()
    assert execute(run, controller) is RunState.FINISHED
    records = run.store.iterations()
    assert all(math.isfinite(r.loss) for r in records)
    assert run.outcome is not None and run.outcome.solved, run.outcome
    assert run.outcome.final_accuracy == 1.0
    assert run.shutdown_report is not None and run.shutdown_report.ok
    assert server.bench.audit.n_plays > len(records)
    np.testing.assert_array_equal(server.bench.applied_v, np.zeros(7))
    run.store.close()
