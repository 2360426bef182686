"""Overhead of the NI-DAQmx driver path per record, as a fraction of the record's device time.

The same record (7 AO channels with five tones, 1 AI channel, 0.1 s window plus settling, at
10 kS/s) is played N times through two paths onto identical simulated benches (fast time base):

- in-process: ``SafeDevice`` -> the simulated backend -> the bench;
- driver: ``SafeDevice`` -> ``drivers.nidaq`` -> the unmodified ``nidaqmx`` package -> gRPC
  over loopback -> the simulated NI gRPC Device Server -> the bench.

Both paths compute the same physics, so the difference of their wall times per record is
what the driver path adds: gRPC round trips, serialisation, buffer handling and the server's
task logic. It is printed with the number of RPCs per record (counted by a client-side
interceptor) and as a fraction of the record's device time (goal: below 5 %).

    python bench/bench_nidaq_overhead.py [--records 40]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drivers.nidaq import connection  # noqa: E402
from labctl.config import LoadedConfig, merge_overrides, parse_config  # noqa: E402
from labctl.connect import build_device  # noqa: E402
from labctl.device.safety import SafeDevice, ShutdownFailed  # noqa: E402
from labctl.homodyne.drive import ToneSet, device_drive  # noqa: E402
from simulated_hw.nidaq_server import load_sim_daq_config, serve  # noqa: E402

CONFIGS = REPO / "configs"
FREQUENCIES_HZ = (130.0, 170.0, 270.0, 330.0, 520.0)
AMPLITUDE_V = 0.01


class CountingInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc, unused-ignore]
    """Counts the unary RPCs the client makes."""

    def __init__(self) -> None:
        self.calls = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.calls += 1
        return continuation(details, request)


def configs(port: int, state_dir: Path) -> tuple[LoadedConfig, LoadedConfig]:
    """The in-process simulated config and the driver config, with private state files."""
    sim = yaml.safe_load((CONFIGS / "sim_dnpu.yaml").read_text())
    drv = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())
    drv = merge_overrides(drv, {"setup": {"backend": {"settings": {"grpc": {"port": port}}}}})
    for data, name in ((sim, "sim"), (drv, "drv")):
        data["setup"]["safety"]["state_file"] = str(state_dir / f"{name}.voltages.json")
    return (
        parse_config(yaml.safe_dump(sim), source=CONFIGS / "sim_dnpu.yaml"),
        parse_config(yaml.safe_dump(drv), source=CONFIGS / "sim_cdaq_grpc.yaml"),
    )


def record(device: SafeDevice) -> np.ndarray:
    """One engine-style record: ramp to an operating point, tones, a 0.1 s window, back."""
    point = np.array([0.3, 0.2, -0.4, 0.6, -0.2, 0.3, -0.3])
    tones = ToneSet((1, 2, 3, 4, 5), FREQUENCIES_HZ, (AMPLITUDE_V,) * 5)
    drive = device_drive(device, point[None, :], tones, window_s=0.1, settle_s=0.015)
    return np.asarray(drive.waveform_v)


def time_records(device: SafeDevice, n: int) -> tuple[list[float], float]:
    """Wall time (s) of each of ``n`` records, and the device time (s) of one."""
    wave = record(device)
    device.apply(wave)  # warm up: tasks configured, caches filled
    walls = []
    for _ in range(n):
        start = time.perf_counter()
        device.apply(wave)
        walls.append(time.perf_counter() - start)
    return walls, wave.shape[1] / device.sample_rate_hz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40, help="records per path")
    args = parser.parse_args()
    counter = CountingInterceptor()
    plain_open = connection.open_channel

    def counted_channel(settings: Any) -> Any:
        return grpc.intercept_channel(plain_open(settings), counter)

    connection.open_channel = counted_channel  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp, serve(load_sim_daq_config(None)) as server:
        sim_loaded, drv_loaded = configs(server.port, Path(tmp))
        with build_device(sim_loaded) as sim_device:
            sim_walls, device_s = time_records(sim_device, args.records)
        driver = build_device(drv_loaded)
        driver.open()
        try:
            with contextlib.suppress(ShutdownFailed):  # AO cannot be read back: the first
                driver.park()  # open knows nothing, and park steps to 0 V (reported)
            driver.unpark()
            before = counter.calls
            drv_walls, _ = time_records(driver, args.records)
            rpcs = (counter.calls - before) / (args.records + 1)
        finally:
            driver.close()
    sim_ms = statistics.median(sim_walls) * 1e3
    drv_ms = statistics.median(drv_walls) * 1e3
    overhead_ms = drv_ms - sim_ms
    print(f"record: {device_s * 1e3:.1f} ms of device time (7 AO + 1 AI at 10 kS/s, 5 tones)")
    print(f"median wall time per record, in-process simulated backend: {sim_ms:8.2f} ms")
    print(f"median wall time per record, nidaq driver over gRPC:       {drv_ms:8.2f} ms")
    print(f"driver path overhead: {overhead_ms:.2f} ms per record, {rpcs:.0f} RPCs per record")
    print(
        f"overhead / device time: {overhead_ms / (device_s * 1e3):.1%} "
        "(goal: below 5 %; real hardware adds its own start latency, not measured here)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
