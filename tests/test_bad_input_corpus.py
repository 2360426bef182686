"""The bad-input corpus (tests/bad_inputs/): every malformed configuration and command line is
refused with exit code 2 and a message naming the field or argument, and nothing reaches a
device: the simulated backend's bench state file is never written (the backend writes it when
it opens), and the simulated NI gRPC server and lock-ins log no RPC or command.

Each ``*.yaml`` case starts with comment lines: a description, ``# expect: TEXT`` (every one
must appear in the error output), ``# command: labctl SUBCOMMAND``, ``# validates: yes`` when only
running the command can find the problem (an unwritable run directory), and, for cases against
the simulated network instruments, ``# server: nidaq|lockin``. ``cli_cases.txt`` lists malformed
command lines. ``_base.yaml`` is the valid configuration the cases are edits of.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.cli import main
from labctl.config import ConfigError, parse_config
from labctl.exit_codes import EXIT_BAD_INPUT, EXIT_OK

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
BASE = CORPUS / "_base.yaml"
REPO = CORPUS.parents[1]
BENCH_STATE = "bench.state.json"


@dataclass(frozen=True)
class Case:
    """One corpus file and what its header says."""

    path: Path
    expect: tuple[str, ...]
    command: str
    server: str | None
    validates: bool


def _case(path: Path) -> Case:
    expect: list[str] = []
    command, server, validates = "validate", None, False
    for raw in path.read_bytes().splitlines():
        if not raw.startswith(b"#"):
            break
        line = raw.decode("ascii", errors="replace")[1:].strip()
        key, _, value = line.partition(":")
        if key == "expect":
            expect.append(value.strip())
        elif key == "command":
            command = value.strip()
        elif key == "server":
            server = value.strip()
        elif key == "validates":
            validates = True
    assert expect, f"{path.name}: no '# expect:' line"
    return Case(path, tuple(expect), command, server, validates)


CASES = [_case(p) for p in sorted(CORPUS.glob("*.yaml")) if p != BASE]
LOCAL = [c for c in CASES if c.server is None]
NETWORK = [c for c in CASES if c.server is not None]
CLI_CASES = [
    tuple(part.strip() for part in line.split("=>", 1))
    for line in (CORPUS / "cli_cases.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def _run(argv: list[str]) -> int:
    """``labctl ARGV`` in this process; argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 1


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with a directory and a plain file the cases refer to."""
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "a_file").write_text("not a directory\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_corpus_is_large_and_its_base_is_valid(workdir: Path) -> None:
    assert len(CASES) + len(CLI_CASES) >= 50
    assert len(NETWORK) >= 5
    shutil.copy(BASE, workdir / "config.yaml")
    assert _run(["validate", "config.yaml"]) == EXIT_OK
    # the proof of device contact works: a valid command writes the bench state file
    assert _run(["park", "config.yaml"]) == EXIT_OK
    assert (workdir / BENCH_STATE).is_file()


def _check_refused(case: Case, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if case.validates:  # a problem of the machine, not the file: only the command finds it
        assert _run(["validate", str(config)]) == EXIT_OK
        capsys.readouterr()
    commands = [] if case.validates else ["validate"]
    commands += [] if case.command == "validate" else [case.command]
    for command in commands:
        assert _run([command, str(config)]) == EXIT_BAD_INPUT, f"labctl {command}"
        err = _flat(capsys.readouterr().err)
        for text in case.expect:
            assert _flat(text) in err, f"labctl {command}: {text!r} not in {err!r}"
        assert "Traceback" not in err


@pytest.mark.parametrize("case", LOCAL, ids=[c.path.stem for c in LOCAL])
def test_bad_configuration_is_refused_before_any_device(
    case: Case, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workdir / "config.yaml"
    shutil.copy(case.path, config)
    _check_refused(case, config, capsys)
    assert not (workdir / BENCH_STATE).exists(), "the simulated backend was opened"
    assert not (workdir / "pwned").exists()
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_is_refused_before_any_device(
    case: tuple[str, str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, expected = case
    shutil.copy(BASE, workdir / "config.yaml")
    (workdir / "notes.txt").write_bytes(b"\xff\xfe not a configuration\n")
    fill = {"{config}": "config.yaml", "{dir}": "a_directory", "{missing}": "no_such_file.yaml"}
    fill["{file}"] = "notes.txt"
    argv = [fill.get(part, part) for part in args.split()]
    assert _run(argv) == EXIT_BAD_INPUT
    err = _flat(capsys.readouterr().err)
    for text in expected.split(";"):
        assert _flat(text.strip()) in err, f"{text!r} not in {err!r}"
    assert not (workdir / BENCH_STATE).exists()


def _numeric_leaves(data: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _numeric_leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _numeric_leaves(value, (*path, index))
    elif isinstance(data, int | float) and not isinstance(data, bool):
        yield path


def _label(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


BASE_DATA = yaml.safe_load(BASE.read_text())
NUMERIC = list(_numeric_leaves(BASE_DATA))


def test_every_numeric_field_of_the_base_is_covered() -> None:
    assert len(NUMERIC) >= 50


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("path", NUMERIC, ids=[_label(p) for p in NUMERIC])
def test_nan_and_infinity_in_every_numeric_field(
    path: tuple[Any, ...], value: float, tmp_path: Path
) -> None:
    data = yaml.safe_load(BASE.read_text())
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(data), source=tmp_path / "config.yaml")
    assert _label(path) in str(info.value)


# -- against the simulated network instruments --------------------------------------------------


@pytest.fixture(scope="module")
def instruments() -> Iterator[dict[str, Any]]:
    """A simulated NI gRPC server and five simulated SR830s on free localhost ports."""
    pytest.importorskip("grpc")
    pytest.importorskip("pyvisa")
    from simulated_hw.backend import bench_from_config
    from simulated_hw.lockin_server.server import serve_lockin
    from simulated_hw.nidaq_server.server import serve

    bench = bench_from_config(REPO / "configs" / "sim_dnpu.yaml")
    daq = serve(port=0, bench=bench)
    lockins = [serve_lockin("sr830", bench=bench, port=0) for _ in range(5)]
    try:
        yield {"daq": daq, "lockins": lockins, "bench": bench}
    finally:
        for lockin in lockins:
            lockin.stop()
        daq.stop()


def _point_at(text: str, instruments: dict[str, Any]) -> str:
    text = re.sub(r"port: 31763\b", f"port: {instruments['daq'].port}", text)
    for k, lockin in enumerate(instruments["lockins"], start=1):
        text = text.replace(f"::{31770 + k}::", f"::{lockin.port}::")
    return text


@pytest.mark.parametrize("case", NETWORK, ids=[c.path.stem for c in NETWORK])
def test_bad_configuration_reaches_no_network_instrument(
    case: Case, instruments: dict[str, Any], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workdir / "config.yaml"
    config.write_text(_point_at(case.path.read_text(), instruments))
    daq, lockins, bench = instruments["daq"], instruments["lockins"], instruments["bench"]
    calls_before = len(daq.calls)
    _check_refused(case, config, capsys)
    assert daq.calls[calls_before:] == [], "an RPC reached the simulated NI gRPC server"
    assert all(lockin.commands == [] for lockin in lockins), "a lock-in got a command"
    assert bench.audit.n_plays == 0


def test_the_network_command_logs_record_a_valid_command(
    instruments: dict[str, Any], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Control: the logs the tests above read do record what a valid command sends."""
    config = workdir / "config.yaml"
    config.write_text(_point_at((REPO / "configs" / "sim_cdaq_grpc.yaml").read_text(), instruments))
    before = len(instruments["daq"].calls)
    assert _run(["devices", str(config)]) == EXIT_OK
    assert len(instruments["daq"].calls) > before
