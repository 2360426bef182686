"""``labctl twin import|sample|fit``: digital twins from files labs have, or from a device.

Exit codes as for every labctl command: 2 for bad input (an unsafe, unreadable or incomplete
twin file, invalid options, an existing output file) with nothing driven; 1 if a device or fit
fails; the safety layer's codes for interrupted sampling (a resumable file is left behind).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labctl.exit_codes import EXIT_OK


def add_twin_commands(parser: argparse.ArgumentParser) -> None:
    """Add ``import``, ``sample`` and ``fit`` under the ``twin`` sub-command's ``parser``."""
    sub = parser.add_subparsers(dest="twin_command", required=True, metavar="TWIN_COMMAND")

    p = sub.add_parser(
        "import",
        help="convert a brains-py / brainspy-smg / SkyNEt PyTorch twin to labctl's NPZ "
        "(no PyTorch needed, nothing in the file is executed)",
    )
    p.add_argument("file", help="the .pt / .pth / .pickle file (zip or legacy torch format)")
    p.add_argument("-o", "--output", help="NPZ to write (default: FILE with suffix .npz)")
    p.add_argument(
        "--activation", help="hidden-layer activation if the file does not say (e.g. relu)"
    )
    p.add_argument(
        "--amplification", type=float, help="nA per unit of network output if the file has none"
    )
    p.add_argument(
        "--voltage-ranges",
        metavar="MIN:MAX[,MIN:MAX...]",
        help="electrode ranges (V) if the file has none: one pair for all or one per electrode; "
        "write it with '=' when it starts with a minus sign (--voltage-ranges=-1.2:0.6)",
    )
    p.add_argument("--prefix", help="key prefix of the network if the file holds several")
    p.set_defaults(func=cmd_twin_import)

    p = sub.add_parser(
        "sample", help="measure an I–V dataset on the configured device (resumable HDF5)"
    )
    p.add_argument("config", help="YAML configuration of the device to sample")
    p.add_argument("-o", "--output", required=True, help="HDF5 dataset file (.h5)")
    p.add_argument("--waveform", choices=["sine", "steps"], default="sine")
    p.add_argument("--points", type=int, default=100_000, help="points in total (100000)")
    p.add_argument("--block-points", type=int, default=5_000, help="points per record (5000)")
    p.add_argument(
        "--point-samples", type=int, default=10, help="samples averaged per point (sine; 10)"
    )
    p.add_argument("--max-frequency-hz", type=float, default=2.0, help="fastest sine (Hz; 2)")
    p.add_argument("--window-s", type=float, default=0.002, help="window per step (s; 0.002)")
    p.add_argument("--settle-s", type=float, default=0.01, help="settling after a ramp (s)")
    p.add_argument("--noise-points", type=int, default=4, help="DC points of the noise record")
    p.add_argument("--noise-groups", type=int, default=100, help="points per noise DC point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue OUTPUT after its last block")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_twin_sample)

    p = sub.add_parser("fit", help="fit an MLP twin to a sampled dataset, write NPZ and report")
    p.add_argument("data", help="HDF5 dataset from `labctl twin sample`")
    p.add_argument("-o", "--output", required=True, help="NPZ surrogate to write")
    p.add_argument(
        "--hidden",
        default="90,90,90,90,90",
        help="hidden layer widths, comma separated (brains-py: 90,90,90,90,90)",
    )
    p.add_argument("--activation", choices=["relu", "tanh", "sigmoid", "identity"], default="relu")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--split-run-points", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", help="report PNG (default: OUTPUT with suffix _report.png)")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress bar")
    p.set_defaults(func=cmd_twin_fit)


def _usage(message: str) -> Exception:
    from labctl.cli import UsageError

    return UsageError(message)


@contextmanager
def _needs_twin_extra() -> Iterator[None]:
    try:
        yield
    except ImportError as exc:
        raise _usage(
            f"this command needs the twin packages ({exc}); install them with "
            "`pip install -e '.[twin]'`"
        ) from None


def parse_ranges(text: str) -> list[list[float]]:
    """``MIN:MAX[,MIN:MAX...]`` as ``[[min, max], ...]`` (V)."""
    pairs: list[list[float]] = []
    for item in text.split(","):
        low, sep, high = item.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            pairs.append([float(low), float(high)])
        except ValueError:
            raise _usage(
                f"--voltage-ranges {text!r}: {item!r} is not MIN:MAX in volts "
                "(e.g. --voltage-ranges=-1.2:0.6)"
            ) from None
    return pairs


def cmd_twin_import(args: argparse.Namespace) -> int:
    """Convert a PyTorch twin file to NPZ and print what was found."""
    import numpy as np

    from labctl.twin.convert import import_twin, save_npz, twin_arrays
    from labctl.twin.layouts import TwinOptions
    from labctl.twin.unpickle import TorchFileError

    ranges = parse_ranges(args.voltage_ranges) if args.voltage_ranges else None
    options = TwinOptions(
        activation=args.activation,
        amplification=args.amplification,
        voltage_ranges_v=ranges[0] if ranges is not None and len(ranges) == 1 else ranges,
        prefix=args.prefix,
    )
    try:
        twin = import_twin(args.file, options)
    except TorchFileError as exc:
        raise _usage(str(exc)) from None
    output = Path(args.output) if args.output else Path(args.file).with_suffix(".npz")
    written = save_npz(twin_arrays(twin), output)
    print(f"{args.file}: {twin.layout}")
    print(f"  network: {twin.architecture()}, layers {list(twin.layer_keys)} of {twin.prefix!r}")
    print(f"  activation: {twin.activation} ({twin.sources.get('activation')})")
    print(f"  amplification: {twin.amplification:g} nA ({twin.sources.get('amplification')})")
    ranges_text = " ".join(f"[{lo:g}, {hi:g}]" for lo, hi in np.asarray(twin.voltage_ranges_v))
    print(f"  voltage ranges (V): {ranges_text} ({twin.sources.get('voltage_ranges')})")
    print(f"wrote {written}")
    return EXIT_OK


def cmd_twin_sample(args: argparse.Namespace) -> int:
    """Sample the configured device into a resumable HDF5 dataset."""
    from pydantic import ValidationError

    from labctl.cli import _device, _load

    with _needs_twin_extra():
        import h5py  # noqa: F401
        from tqdm import tqdm

        from labctl.twin.sampling import SamplingError, SamplingPlan, sample_device

    try:
        plan = SamplingPlan(
            waveform=args.waveform,
            points=args.points,
            block_points=args.block_points,
            point_samples=args.point_samples,
            max_frequency_hz=args.max_frequency_hz,
            window_s=args.window_s,
            settle_s=args.settle_s,
            noise_points=args.noise_points,
            noise_groups=args.noise_groups,
            seed=args.seed,
        )
    except ValidationError as exc:
        raise _usage(_validation_text(exc)) from None
    output = Path(args.output)
    if output.exists() and not args.resume:
        raise _usage(f"{output} exists: continue it with --resume, or choose another file")
    if args.resume and not output.is_file():
        raise _usage(f"--resume: {output} does not exist; start without --resume")
    loaded = _load(args.config)
    bar: Any = None
    with _device(args, loaded) as device:

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if args.no_progress:
                return
            if bar is None:
                bar = tqdm(total=total, initial=done, unit="pt", desc="sampling", file=sys.stderr)
            else:
                bar.update(done - bar.n)

        try:
            result = sample_device(
                device, loaded, plan, output, resume=args.resume, on_progress=progress
            )
        except SamplingError as exc:
            raise _usage(str(exc)) from None
        finally:
            if bar is not None:
                bar.close()
    print(
        f"{result.path}: {result.points} points ({result.blocks_measured} blocks measured now), "
        f"{result.device_seconds:.1f} device-s in total, noise floor "
        f"{result.noise_floor_a * 1e9:.4g} nA per point"
    )
    return EXIT_OK


def _validation_text(exc: Any) -> str:
    problems = []
    for error in exc.errors():
        name = "--" + "-".join(str(p) for p in error["loc"]).replace("_", "-")
        problems.append(f"{name}: {error['msg']}")
    return "; ".join(problems)


def cmd_twin_fit(args: argparse.Namespace) -> int:
    """Fit an MLP twin to a sample file; write the NPZ, a PNG report and a JSON summary."""
    from pydantic import ValidationError

    with _needs_twin_extra():
        import h5py  # noqa: F401
        import sklearn  # noqa: F401
        from tqdm import tqdm

        from labctl.twin.convert import save_npz
        from labctl.twin.fitting import FitError, FitSettings, fit_twin, save_report
        from labctl.twin.sampling import SamplingError, read_samples

    try:
        hidden = tuple(int(w) for w in args.hidden.split(","))
    except ValueError:
        raise _usage(f"--hidden {args.hidden!r}: give widths like 90,90,90,90,90") from None
    if any(w < 1 for w in hidden):
        raise _usage(f"--hidden {args.hidden!r}: every width must be >= 1")
    try:
        settings = FitSettings(
            hidden=hidden,
            activation=args.activation,
            max_epochs=args.max_epochs,
            patience=args.patience,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            split_run_points=args.split_run_points,
            seed=args.seed,
        )
    except ValidationError as exc:
        raise _usage(_validation_text(exc)) from None
    try:
        data = read_samples(args.data)
    except SamplingError as exc:
        raise _usage(str(exc)) from None
    bar = None if args.no_progress else tqdm(total=settings.max_epochs, unit="epoch", desc="fit")

    def on_epoch(epoch: int, train_na: float, val_na: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(train_nA=f"{train_na:.3g}", val_nA=f"{val_na:.3g}")

    try:
        result = fit_twin(data, settings, on_epoch=on_epoch)
    except FitError as exc:
        raise _usage(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    output = save_npz(result.arrays, args.output)
    report = Path(args.report) if args.report else output.with_name(output.stem + "_report.png")
    save_report(result, report, title=f"twin fitted to {Path(args.data).name}")
    summary = dict(
        result.summary(), data=str(args.data), sampling_device_seconds=data.device_seconds
    )
    summary_path = report.with_suffix(".json")
    summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n")
    print(
        f"test RMSE {result.test_rmse_na:.4g} nA against a noise floor of "
        f"{result.noise_floor_na:.4g} nA per point (x{summary['rmse_over_noise']:.3g}), "
        f"best epoch {result.best_epoch + 1} of {len(result.val_rmse_na)}"
    )
    print(f"wrote {output}, {report}, {summary_path}")
    return EXIT_OK
