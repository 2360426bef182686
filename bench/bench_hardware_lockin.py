"""Device-seconds per gradient at equal error: hardware lock-ins, sampled HGE, finite differences.

Everything runs on one simulated lab (``configs/sim_lab/cdaq_sr860s.yaml``: the simulated NI
gRPC Device Server and five SR860s on one simulated DNPU bench, reached through the real
``nidaq`` and SR860 drivers), at the operating point of ``configs/sim_lockin_sr860.yaml``:

- lock-in mode, parallel (five lock-ins at once) and sequential (one at a time);
- sampled HGE (the DAQ makes the tones and samples the output; least-squares demodulation);
- central finite differences at DC (``homodyne.mode: fd``);
- tones from the DAQ read by ONE SR830 on external reference (``configs/sim_lab/
  cdaq_one_lockin.yaml`` + ``configs/sim_lockin_daq_sr830.yaml``, a second lab on the same
  simulated device): harmonics of one reference (the lock-in switches harmonic between
  electrodes) and one reference per tone (the counter task and the lock-in's lock move).

For each method the gradient is measured ``--repeats`` times. The error of one call is the RMS
over the electrodes of the scatter of the repeats around the model's exact gradient (the
simulated device is the hopping model, whose gradient is known) times the amplifier's
magnitude response at each tone (no method is calibrated here: every tone reads the gradient
through the first-order roll-off, which would otherwise count as error where a plan puts its
tones high); the cost is its device time
(ramps and settling included). Device-seconds to reach the error of the best method follow from
``t × (σ / σ_ref)²`` (errors shrink as 1/√t when a measurement is repeated).

    python bench/bench_hardware_lockin.py [--repeats 6]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labctl.config import load_config, merge_overrides
from labctl.connect import build_device
from labctl.homodyne.session import open_engine
from simulated_hw.hopping import HoppingNetworkModel
from simulated_hw.lockin_server.lab import SimLab, load_lab_config, on_free_ports, start_lab

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
POINT = {"e1": 0.2, "e2": -0.4, "e3": 0.6, "e4": -0.2, "e5": 0.3}


def _config(
    lab: SimLab, directory: Path, override: dict[str, Any], base: str = "sim_lockin_sr860.yaml"
) -> Path:
    data = yaml.safe_load((CONFIGS / base).read_text())
    instruments = data["setup"]["instruments"]
    instruments["daq"]["settings"]["grpc"]["port"] = lab.daq.port
    for k, server in enumerate(lab.lockins, start=1):
        instruments[f"li{k}"]["settings"]["resource"] = server.resource
    data["homodyne"]["calibration"] = {"file": str(directory / "chain.json")}
    path = directory / f"bench_{len(list(directory.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(merge_overrides(data, override)))
    return path


def _measure(path: Path, repeats: int, truth: np.ndarray) -> tuple[float, float, float, float]:
    """(device-s per call, RMS error per call (A/V), mean reported stderr (A/V), wall-s per
    call)."""
    loaded = load_config(path)
    with build_device(loaded) as device:
        engine, _ = open_engine(device, loaded)
        point = device.rest_voltages()
        for name, value in POINT.items():
            point[device.electrode_names.index(name)] = value
        gradients, stderrs, seconds = [], [], []
        wall = time.perf_counter()
        for _ in range(repeats):
            batch = engine.measure(point[None, :])
            gradients.append(batch.gradients_a_per_v[0])
            stderrs.append(batch.stderr_a_per_v[0])
            seconds.append(batch.device_seconds)
        wall_s = (time.perf_counter() - wall) / repeats
        # uncalibrated (sign-by-phase) tones read |H(f)| x the gradient, H the amplifier's
        # first-order roll-off: compare each method with what it can read, so that the errors
        # are its noise and not where its plan put the tones (finite differences: at DC)
        expected = truth
        if loaded.config.homodyne.mode != "fd":
            f = np.asarray(engine.plan.frequencies_hz)
            bandwidth = loaded.config.setup.amplifier.bandwidth_hz
            if bandwidth is not None:
                expected = truth / np.sqrt(1.0 + (f / bandwidth) ** 2)
    error = np.sqrt(np.mean((np.array(gradients) - expected) ** 2))
    return float(np.mean(seconds)), float(error), float(np.mean(stderrs)), wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6, help="calls per method")
    args = parser.parse_args()
    config = on_free_ports(load_lab_config(CONFIGS / "sim_lab" / "cdaq_sr860s.yaml"))
    with tempfile.TemporaryDirectory() as tmp, start_lab(config) as lab:
        directory = Path(tmp)
        os.environ["LABCTL_STATE_DIR"] = str(directory / "state")
        model = lab.bench.model
        assert isinstance(model, HoppingNetworkModel)
        point = np.zeros(7)
        for name, value in POINT.items():
            point[int(name[1])] = value
        truth = model.gradient_a_per_v(point[None, :])[0][1:6]
        from labctl.cli import main as labctl

        labctl(["park", str(_config(lab, directory, {}))])  # AO has no readback: learn 0 V
        lockin_freqs: list[float] | None = None
        loaded = load_config(_config(lab, directory, {}))
        with build_device(loaded) as device:
            engine, _ = open_engine(device, loaded)
            lockin_freqs = list(engine.plan.frequencies_hz)
        methods: dict[str, dict[str, Any]] = {
            "lock-in, parallel": {},
            "lock-in, sequential": {"homodyne": {"mode": "sequential"}},
            "sampled HGE, parallel": {
                "homodyne": {
                    "demodulation": "least_squares",
                    "frequencies_hz": lockin_freqs,
                    "insist": True,
                }
            },
            "sampled HGE, sequential": {
                "homodyne": {
                    "mode": "sequential",
                    "demodulation": "least_squares",
                    "frequencies_hz": lockin_freqs,
                    "insist": True,
                }
            },
            "finite differences (10 mV)": {
                "homodyne": {"mode": "fd", "demodulation": "least_squares", "fd_step_v": 0.01}
            },
        }
        rows = []
        for name, override in methods.items():
            path = _config(lab, directory, override)
            rows.append((name, *_measure(path, args.repeats, truth)))
    counters: dict[str, int] = {}
    one = on_free_ports(load_lab_config(CONFIGS / "sim_lab" / "cdaq_one_lockin.yaml"))
    with tempfile.TemporaryDirectory() as tmp, start_lab(one) as lab:
        directory = Path(tmp)
        os.environ["LABCTL_STATE_DIR"] = str(directory / "state")
        base = "sim_lockin_daq_sr830.yaml"
        from labctl.cli import main as labctl

        labctl(["park", str(_config(lab, directory, {}, base))])
        daq_methods: dict[str, dict[str, Any]] = {
            "one lock-in, DAQ tones, harmonics of one reference": {},
            "one lock-in, DAQ tones, one reference per tone": {
                "homodyne": {"hardware_lockin": {"harmonics": False}}
            },
        }
        for name, override in daq_methods.items():
            path = _config(lab, directory, override, base)
            made = lab.daq.calls.count("CreateCOPulseChanFreq")
            rows.append((name, *_measure(path, args.repeats, truth)))
            counters[name] = lab.daq.calls.count("CreateCOPulseChanFreq") - made
    best = min(rows, key=lambda r: r[1] * r[2] ** 2)
    reference = best[2]
    print(
        f"gradient of 5 controls at one operating point, {args.repeats} calls per method "
        f"(simulated SR860s + NI gRPC server, paper noise)\n"
    )
    print(
        "| method | device-s per call | RMS error (nA/V) | reported stderr (nA/V) | "
        f"device-s at {reference * 1e9:.2f} nA/V | ratio | wall-s per call |"
    )
    print("|---|---|---|---|---|---|---|")
    cost_best = best[1] * (best[2] / reference) ** 2
    for name, seconds, error, stderr, wall_s in rows:
        cost = seconds * (error / reference) ** 2
        print(
            f"| {name} | {seconds:.3f} | {error * 1e9:.3f} | {stderr * 1e9:.3f} | "
            f"{cost:.3f} | {cost / cost_best:.2f} | {wall_s:.2f} |"
        )
    for name, made in counters.items():
        print(f"\n{name}: {made} counter-output task(s) made for {args.repeats} calls")
    print(
        "\nerrors: RMS over repeats and electrodes of (measured - exact); ratio: device-seconds "
        "relative to the cheapest method at the same error"
    )
    if not math.isfinite(reference):
        raise SystemExit("no finite error measured")


if __name__ == "__main__":
    main()
