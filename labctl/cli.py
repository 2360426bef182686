"""The ``labctl`` command line.

Exit codes: 0 success; 1 a run failed (instrument error, safety violation); 2 bad input (invalid
configuration or arguments: nothing touched a device); 3 the electrodes could not be verified at
0 V afterwards (the message says which, and why); 130 interrupted (Ctrl-C); 143 SIGTERM. Exit 3
wins over 1, 130 and 143: it is the one that needs a person at the bench.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from labctl import __version__
from labctl.config import ConfigError, LoadedConfig, json_schema, load_config
from labctl.device.safety import (
    SafeDevice,
    ShutdownFailed,
    TerminatedBySignal,
    shutdown_on_signals,
)
from labctl.exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SHUTDOWN_FAILED,
    EXIT_TERMINATED,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SHUTDOWN_FAILED",
    "EXIT_TERMINATED",
    "build_parser",
    "main",
]

log = logging.getLogger("labctl")


def _load(path: str, *, plan: bool = False) -> LoadedConfig:
    """The validated configuration; with ``plan``, its frequency plan checked too."""
    loaded = load_config(path)
    if plan:
        from labctl.config.loader import check_frequency_plan

        check_frequency_plan(loaded)
    return loaded


def _device(args: argparse.Namespace, loaded: LoadedConfig) -> SafeDevice:
    """Build the configured device and remember it, so exit messages can report on it."""
    from labctl.connect import build_device

    device = build_device(loaded)
    args.devices.append(device)
    return device


def _final_state(args: argparse.Namespace) -> tuple[str, bool]:
    """What the devices of this command hold now, in words, and whether that is all 0 V."""
    devices: list[SafeDevice] = getattr(args, "devices", [])
    texts: list[str] = []
    ok = True
    for device in devices:
        report = device.last_shutdown_report
        if report is not None and not device.is_open:
            texts.append(report.summary())
            ok = ok and report.ok
        elif device.is_open:
            texts.append("the device was not shut down: its electrodes may still be energised")
            ok = False
    return ("; ".join(texts) or "no electrode was driven"), ok


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate each configuration file; report every problem."""
    status = EXIT_OK
    for path in args.config:
        from labctl.sweep.spec import SweepSpecError, describe_sweep_file, is_sweep_file

        if is_sweep_file(Path(path)):  # a sweep file (labctl sweep): every grid point validated
            try:
                print(describe_sweep_file(Path(path)))
            except SweepSpecError as exc:
                print(str(exc), file=sys.stderr)
                status = EXIT_BAD_INPUT
            continue
        try:
            loaded = _load(path, plan=True)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        setup = loaded.setup
        instruments = ", ".join(
            f"{name} ({config.backend})" for name, config in setup.instrument_configs().items()
        )
        print(
            f"{path}: OK (setup {setup.name!r}, instruments: {instruments}, "
            f"{len(setup.electrodes)} electrodes)"
        )
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the configuration."""
    print(json_schema())
    return EXIT_OK


def cmd_backends(args: argparse.Namespace) -> int:
    """List the installed backends."""
    from labctl.device.registry import available_backends, get_backend

    for name in sorted(available_backends()):
        try:
            description = get_backend(name).description
        except Exception as exc:  # a broken plug-in must not hide the others
            description = f"(failed to load: {exc})"
        print(f"{name:12s} {description}")
    return EXIT_OK


def cmd_measure(args: argparse.Namespace) -> int:
    """Apply the configured operating point or sweep and print the output current."""
    from labctl.measure import measure

    loaded = _load(args.config)
    setup = loaded.setup
    with _device(args, loaded) as device:
        points = measure(device, loaded.config)
        device_seconds = device.device_seconds
    names = [e.name for e in setup.electrodes]
    header = [f"{n} (V)" for n in names] + ["I mean (nA)", "I sd (nA)", "saturated"]
    rows = [
        [f"{v:+.4f}" for v in p.voltages_v]
        + [f"{p.mean_current_a[0] * 1e9:+.4f}", f"{p.std_current_a[0] * 1e9:.4f}", str(p.saturated)]
        for p in points
    ]
    _print_table(header, rows)
    print(f"device time: {device_seconds:.3f} s")
    if args.output:
        _save_points(Path(args.output), names, points)
        print(f"saved {args.output}")
    return EXIT_OK


def _save_points(path: Path, names: list[str], points: list) -> None:
    if path.suffix == ".json":
        data = [
            {
                "voltages_v": dict(zip(names, map(float, p.voltages_v), strict=True)),
                "mean_current_a": float(p.mean_current_a[0]),
                "std_current_a": float(p.std_current_a[0]),
                "saturated": p.saturated,
            }
            for p in points
        ]
        path.write_text(json.dumps(data, indent=2))
        return
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [f"{n}_v" for n in names] + ["mean_current_a", "std_current_a", "saturated"]
        )
        for p in points:
            writer.writerow(
                [repr(float(v)) for v in p.voltages_v]
                + [repr(float(p.mean_current_a[0])), repr(float(p.std_current_a[0])), p.saturated]
            )


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def _operating_point(loaded: LoadedConfig, overrides: Sequence[str]) -> list[float]:
    """Rest voltages, then ``measure.operating_point``, then ``--at NAME=V`` overrides."""
    from labctl.measure import operating_points

    setup = loaded.setup
    point = [float(v) for v in operating_points(loaded.config)[0]]
    if loaded.config.measure.sweep is not None:
        sweep = loaded.config.measure.sweep
        point[setup.electrode_index(sweep.electrode)] = setup.electrodes[
            setup.electrode_index(sweep.electrode)
        ].rest_v
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--at {item!r}: expected ELECTRODE=VOLTS, e.g. --at e1=0.2")
        try:
            index = setup.electrode_index(name.strip())
        except KeyError:
            known = ", ".join(e.name for e in setup.electrodes)
            raise UsageError(f"--at {item!r}: no electrode {name!r}; known: {known}") from None
        try:
            volts = float(value)
        except ValueError:
            raise UsageError(f"--at {item!r}: {value!r} is not a number of volts") from None
        electrode = setup.electrodes[index]
        if not electrode.min_v <= volts <= electrode.max_v:
            raise UsageError(
                f"--at {item!r}: {volts} V is outside {name}'s range "
                f"[{electrode.min_v}, {electrode.max_v}] V"
            )
        point[index] = volts
    return point


def cmd_gradient(args: argparse.Namespace) -> int:
    """Measure the gradient at an operating point and compare with the model if simulated."""
    from labctl.homodyne.report import gradient_report, print_gradient_report
    from labctl.homodyne.session import open_engine

    loaded = _load(args.config, plan=True)
    point = _operating_point(loaded, args.at or [])
    with _device(args, loaded) as device:
        engine, calibration_note = open_engine(device, loaded, curvature=args.curvature)
        adaptive = loaded.config.homodyne.adaptive
        if adaptive is not None and (args.mode or loaded.config.homodyne.mode) != "fd":
            from labctl.homodyne.adaptive import apply_adaptive_amplitudes

            choice = apply_adaptive_amplitudes(engine, np.array(point), adaptive)
            print(
                "adaptive amplitudes (mV): "
                + " ".join(f"{a * 1e3:.2f}" for a in choice.amplitudes_v)
                + f" (probing took {choice.probe_device_seconds:.2f} device-s)",
                file=sys.stderr,
            )
        batch = engine.measure(np.array([point]), mode=args.mode)
        report = gradient_report(device, engine, batch, calibration_note)
    if args.json:
        print(json.dumps(_json_safe(report), indent=2, allow_nan=False))
    else:
        print_gradient_report(report)
    return EXIT_OK


def _json_safe(value: object) -> object:
    """``value`` with every NaN or infinity as None: strict JSON (jq, JavaScript) has neither."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if np.isfinite(number) else None
    return value


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure the chain response against the reference resistor and save it."""
    from labctl.homodyne.calibrate import (
        calibration_frequencies,
        default_calibration_path,
        measure_chain_response,
        save_calibration,
    )
    from labctl.homodyne.session import open_engine

    loaded = _load(args.config, plan=True)
    cal = loaded.config.homodyne.calibration
    electrode = cal.electrode or loaded.config.perturbed_electrodes()[0]
    path = Path(args.output) if args.output else default_calibration_path(loaded)
    with _device(args, loaded) as device:
        engine, _ = open_engine(device, loaded, curvature=args.curvature, use_calibration=False)
        frequencies = calibration_frequencies(engine.plan)
        index = loaded.setup.electrode_index(electrode)
        with contextlib.ExitStack() as stack:
            if device.can_switch_reference:
                stack.enter_context(device.reference_resistor(index, cal.resistance_ohm))
            else:
                with device.hands_on():  # parked at 0 V, nothing else may drive meanwhile
                    print(
                        "Electrodes parked at 0 V. Connect a "
                        f"{cal.resistance_ohm:g} ohm resistor between {electrode} and the "
                        "output in place of the device."
                    )
                    if not args.yes:
                        input("Press Enter when it is connected (Ctrl-C to cancel) ")
            response = measure_chain_response(
                device, loaded, frequencies, loaded.config.homodyne.window_s
            )
    save_calibration(path, response, loaded)
    print(f"{'f (Hz)':>9}  {'|C|':>7}  {'phase (deg)':>11}")
    for f, c in zip(response.frequencies_hz, response.response, strict=True):
        print(f"{f:9.1f}  {abs(c):7.4f}  {np.degrees(np.angle(c)):11.2f}")
    print(f"saved {path}")
    return EXIT_OK


def cmd_park(args: argparse.Namespace) -> int:
    """Bring every electrode of the configured setup to 0 V and leave it there."""
    loaded = _load(args.config)
    device = _device(args, loaded)
    with device:
        unknown = device.unknown_electrodes()
        if unknown:
            print(
                f"voltage unknown on {', '.join(unknown)}: they get one step to 0 V, "
                "the only move that cannot leave their range"
            )
        try:
            report = device.park()
        except ShutdownFailed as exc:
            report = exc.report
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_SHUTDOWN_FAILED


def cmd_train(args: argparse.Namespace) -> int:
    """Train a task on the configured device (see :mod:`labctl.train_cli`)."""
    from labctl.train_cli import cmd_train as train

    if bool(args.config) == bool(args.resume):
        raise UsageError("give either a CONFIG to start a run or --resume RUN_DIR")
    if args.resume and not (Path(args.resume) / "run.sqlite").is_file():
        raise UsageError(
            f"--resume {args.resume}: not a run directory (no run.sqlite in it); "
            "`labctl runs DIRECTORY` lists the runs that can be resumed"
        )
    if args.config:
        from labctl.config.loader import check_run_directory

        check_run_directory(_load(args.config, plan=True))
    return train(args)


def cmd_runs(args: argparse.Namespace) -> int:
    """List the runs in a directory."""
    from labctl.run.store import list_runs

    runs = list_runs(args.directory)
    if not runs:
        print(f"no runs in {args.directory}")
        return EXIT_OK
    header = ["run", "status", "iterations", "best loss", "started (UTC)"]
    rows = [
        [
            r.name,
            r.status,
            str(r.iterations),
            "-" if r.best_loss is None else f"{r.best_loss:.4g}",
            str(r.start_time)[:19] if r.start_time else "-",
        ]
        for r in runs
    ]
    _print_table(header, rows)
    interrupted = [r for r in runs if r.status == "interrupted"]
    for r in interrupted:
        print(f"interrupted: continue with  labctl train --resume {r.path}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """``labctl bench``: the benchmark suite (see :mod:`labctl.benchsuite`)."""
    from labctl.benchsuite.cli import command

    return command(args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``labctl reproduce``: the paper's key figures (see :mod:`labctl.reproduce`)."""
    from labctl.reproduce.cli import command

    return command(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    """``labctl sweep``: a grid of training runs in parallel (see :mod:`labctl.sweep`)."""
    from labctl.sweep.cli import cmd_sweep as sweep

    return sweep(args)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run's iterations to HDF5 or CSV."""
    from labctl.run.export import export_run

    run_dir = Path(args.run_dir)
    if not (run_dir / "run.sqlite").is_file():
        raise UsageError(f"{run_dir} is not a run directory (no run.sqlite in it)")
    path = export_run(run_dir, args.format, Path(args.output) if args.output else None)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_devices(args: argparse.Namespace) -> int:
    """List the hardware each backend can reach (those of CONFIG, or every installed one)."""
    from labctl.device.registry import DeviceDiscoveryError, available_backends, get_backend

    targets: list[tuple[str, str, object]] = []
    if args.config:
        loaded = _load(args.config)
        for name, config in loaded.setup.instrument_configs().items():
            targets.append((name, config.backend, loaded.instrument_settings[name]))
    else:
        targets = [(name, name, None) for name in sorted(available_backends())]
    status = EXIT_OK
    for label, backend, settings in targets:
        spec = get_backend(backend)
        if spec.list_devices is None:
            if args.config:
                print(f"{label} ({backend}): this backend cannot list devices")
            continue
        try:
            listing = spec.list_devices(settings)
        except DeviceDiscoveryError as exc:
            print(f"{label} ({backend}): {exc}")
            status = EXIT_FAILED
            continue
        print(f"{label} ({backend}):")
        print(listing)
    return status


def cmd_gui(args: argparse.Namespace) -> int:
    """Open the desktop application (PyQt5 + pyqtgraph; the `gui` extra)."""
    try:
        from labctl.gui.app import run_gui
    except ImportError as exc:
        raise UsageError(
            f"the GUI needs PyQt5 and pyqtgraph ({exc}); install them with "
            "`pip install -e '.[gui]'`"
        ) from None
    return run_gui(args)


def cmd_sim_daq(args: argparse.Namespace) -> int:
    """Serve the simulated NI gRPC Device Server on localhost until interrupted."""
    with _needs_hardware_extra():
        from simulated_hw.nidaq_server.cli import run_sim_daq

    return run_sim_daq(args)


def cmd_sim_lockin(args: argparse.Namespace) -> int:
    """Serve one simulated lock-in amplifier (SR830 or SR860) on localhost until interrupted."""
    with _needs_hardware_extra():
        from simulated_hw.lockin_server.cli import run_sim_lockin

    return run_sim_lockin(args)


def cmd_sim_lab(args: argparse.Namespace) -> int:
    """Serve the simulated NI gRPC server and lock-ins over one shared bench."""
    with _needs_hardware_extra():
        from simulated_hw.lockin_server.cli import run_sim_lab

    return run_sim_lab(args)


@contextlib.contextmanager
def _needs_hardware_extra() -> Iterator[None]:
    """Turn a missing instrument package (grpc, nidaqmx, pyvisa) into a clear usage error."""
    try:
        yield
    except ImportError as exc:
        raise UsageError(
            f"this command needs the instrument packages ({exc}); install them with "
            "`pip install -e '.[hardware]'`"
        ) from None


class UsageError(ValueError):
    """A command-line argument is wrong (exit 2)."""


def _tcp_port(text: str) -> int:
    """A ``--port`` value: an integer 0-65535 (0: any free port)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text} is not a TCP port: give 1-65535, or 0 for any free port"
        )
    return port


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="labctl",
        description="Train dopant network processing units in materia by homodyne gradient "
        "extraction.",
    )
    parser.add_argument("--version", action="version", version=f"labctl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check configuration files (exit 2 on any problem)")
    p.add_argument("config", nargs="+", help="YAML configuration file(s)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the configuration's JSON Schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("backends", help="list installed device backends")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("measure", help="apply an operating point or sweep, print the current")
    p.add_argument("config", help="YAML configuration file")
    p.add_argument("-o", "--output", help="save the points (.csv or .json)")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("gradient", help="measure dI/dV at an operating point (HGE)")
    p.add_argument("config", help="YAML configuration file")
    p.add_argument(
        "--at", action="append", metavar="ELECTRODE=V", help="set an electrode (repeatable)"
    )
    p.add_argument("--mode", choices=["parallel", "sequential", "fd"], help="override the mode")
    p.add_argument("--curvature", action="store_true", help="also measure the Hessian")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_gradient)

    p = sub.add_parser("calibrate", help="measure the chain's phase and gain, save it")
    p.add_argument("config", help="YAML configuration file")
    p.add_argument("--curvature", action="store_true", help="also cover the curvature bins")
    p.add_argument("-o", "--output", help="calibration file (default: next to the config)")
    p.add_argument("-y", "--yes", action="store_true", help="do not wait for confirmation")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("park", help="ramp every electrode to 0 V (from an unknown state too)")
    p.add_argument("config", help="YAML configuration file")
    p.set_defaults(func=cmd_park)

    p = sub.add_parser("train", help="train a task on the device (Ctrl-C: stop, twice: abort)")
    p.add_argument("config", nargs="?", help="YAML configuration file with a task section")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list training runs")
    p.add_argument("directory", nargs="?", default="runs", help="runs directory (default: runs)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("gui", help="open the desktop application (setup, manual, runs, plots)")
    p.add_argument("config", nargs="?", help="YAML configuration to load")
    p.add_argument("--runs", default="runs", help="runs directory for the run browser")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("devices", help="list the DAQ devices and instruments a backend reaches")
    p.add_argument("config", nargs="?", help="YAML configuration (default: every backend)")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "sim-daq", help="serve a simulated NI gRPC Device Server on localhost (nidaqmx clients)"
    )
    p.add_argument("--config", help="simulated devices and bench (YAML; default: built in)")
    p.add_argument("--port", type=_tcp_port, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    p.set_defaults(func=cmd_sim_daq)

    p = sub.add_parser("sim-lockin", help="serve a simulated SR830/SR860 lock-in on localhost")
    p.add_argument("--model", choices=["sr830", "sr860"], default="sr830")
    p.add_argument("--port", type=_tcp_port, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    p.add_argument("--bench-config", help="labctl YAML whose simulated bench it reads")
    p.set_defaults(func=cmd_sim_lockin)

    p = sub.add_parser(
        "sim-lab", help="serve the simulated NI gRPC server and lock-ins over one shared bench"
    )
    p.add_argument("config", help="YAML describing the simulated instruments and their wiring")
    p.set_defaults(func=cmd_sim_lab)

    from labctl.benchsuite.cli import add_arguments as add_bench_arguments
    from labctl.reproduce.cli import add_arguments as add_reproduce_arguments

    p = sub.add_parser("bench", help="run the benchmark suite, write a Markdown report and PNGs")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("reproduce", help="regenerate the paper's key figures on the simulator")
    add_reproduce_arguments(p)
    p.set_defaults(func=cmd_reproduce)

    from labctl.sweep.cli import add_arguments as add_sweep_arguments

    p = sub.add_parser("sweep", help="a grid of training runs in parallel, with a summary table")
    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("export", help="export a run to HDF5 or CSV")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--format", choices=["hdf5", "csv"], default="hdf5")
    p.add_argument("-o", "--output", help="output file (default: inside the run directory)")
    p.set_defaults(func=cmd_export)

    from labctl.twin.cli import add_twin_commands

    p = sub.add_parser("twin", help="digital twins: import a PyTorch twin, sample a device, fit")
    add_twin_commands(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labctl`` console script."""
    from labctl.homodyne.plan import PlanError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.devices = []
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with shutdown_on_signals():
            return func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except PlanError as exc:
        print(f"labctl {args.command}: frequency plan: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as exc:
        print(f"labctl {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # output piped into a program that stopped reading (e.g. `| head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except ShutdownFailed as exc:
        print(f"labctl {args.command}: {exc}", file=sys.stderr)
        return EXIT_SHUTDOWN_FAILED
    except KeyboardInterrupt:
        state, ok = _final_state(args)
        print(f"interrupted: {state}", file=sys.stderr)
        return EXIT_INTERRUPTED if ok else EXIT_SHUTDOWN_FAILED
    except TerminatedBySignal as exc:
        state, ok = _final_state(args)
        print(f"terminated by signal {exc.signum}: {state}", file=sys.stderr)
        code = int(exc.code) if isinstance(exc.code, int) else EXIT_FAILED
        return code if ok else EXIT_SHUTDOWN_FAILED
    except Exception as exc:
        log.debug("command failed", exc_info=True)
        state, ok = _final_state(args)
        print(f"error: {exc}", file=sys.stderr)
        if args.devices:
            print(f"device: {state}", file=sys.stderr)
        return EXIT_FAILED if ok else EXIT_SHUTDOWN_FAILED


if __name__ == "__main__":
    sys.exit(main())
