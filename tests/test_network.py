"""Network exposure: the simulated servers listen on localhost only, NI gRPC connections run over
TLS (server certificate verified against configured root certificates), and no secret (the
server's API key) reaches a log, the terminal or a run store."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.cli import main
from labctl.config import ConfigError, parse_config
from labctl.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_SHUTDOWN_FAILED

grpc = pytest.importorskip("grpc")
pytest.importorskip("nidaqmx")

from simulated_hw.backend import bench_from_config  # noqa: E402
from simulated_hw.lockin_server.server import serve_lockin  # noqa: E402
from simulated_hw.nidaq_server.server import serve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SECRET = "9f1c-SECRET-API-KEY-do-not-log-4b2e"


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than 127.x (None when there is none)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, a route is chosen
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def bench() -> Any:
    return bench_from_config(CONFIGS / "sim_dnpu.yaml")


def test_simulated_servers_listen_on_localhost_only(bench: Any) -> None:
    other = _non_loopback_address()
    with serve(port=0, bench=bench) as daq, serve_lockin("sr860", bench=bench, port=0) as lockin:
        assert daq.address.startswith("127.0.0.1:")
        assert lockin.host == "127.0.0.1"
        for port in (daq.port, lockin.port):
            assert _accepts("127.0.0.1", port)
            if other is not None:
                assert not _accepts(other, port), f"port {port} is reachable on {other}"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 (openssl) and its private key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "server.key", folder / "server.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.fixture
def tls_server(bench: Any, certificate: tuple[Path, Path]) -> Iterator[Any]:
    key, cert = certificate
    with serve(port=0, bench=bench, tls=(key.read_bytes(), cert.read_bytes())) as server:
        yield server


def _config(tmp_path: Path, port: int, grpc_extra: dict[str, Any]) -> Path:
    data = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())
    data["setup"]["backend"]["settings"]["grpc"].update({"port": port, **grpc_extra})
    data["setup"]["safety"]["state_file"] = str(tmp_path / "volts.json")
    data["run"] = {**data.get("run", {}), "max_iterations": 2, "directory": str(tmp_path / "runs")}
    data["run"]["report"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_tls_connection_and_no_secret_in_logs_or_run_store(
    tls_server: Any,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, cert = certificate
    tls = {"root_certificates": str(cert), "target_name_override": "localhost"}
    path = _config(tmp_path, tls_server.port, {"tls": tls, "api_key": SECRET})
    caplog.set_level(logging.DEBUG)
    # AO has no read-back: the first park steps the unknown electrodes to 0 V (exit 3)
    assert main(["-v", "park", str(path)]) in (EXIT_OK, EXIT_SHUTDOWN_FAILED)
    assert main(["-v", "gradient", str(path)]) == EXIT_OK
    assert main(["-v", "train", str(path)]) == EXIT_OK
    assert len(tls_server.calls) > 10  # the driver really went through the TLS channel
    out = capsys.readouterr()
    assert "dI/dV" in out.out
    texts = [out.out, out.err, caplog.text]
    store = list((tmp_path / "runs").rglob("*"))
    assert any(p.name == "run.sqlite" for p in store)
    for file in [*store, tmp_path / "volts.json"]:
        if file.is_file():
            texts.append(file.read_bytes().decode("latin-1"))
    assert not any(SECRET in text for text in texts)
    # the private key never appears either (only the CA certificate path is configured)
    key_body = certificate[0].read_text().splitlines()[1]
    assert not any(key_body in text for text in texts)


def test_plaintext_client_cannot_use_a_tls_server(
    tls_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, tls_server.port, {"connect_timeout_s": 1.0})
    code = main(["park", str(path)])
    assert code in (EXIT_FAILED, EXIT_SHUTDOWN_FAILED)
    err = capsys.readouterr().err
    assert f"127.0.0.1:{tls_server.port}" in err


def test_api_key_is_a_secret_in_every_representation(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIGS / "sim_cdaq_grpc.yaml").read_text())
    data["setup"]["backend"]["settings"]["grpc"]["api_key"] = SECRET
    loaded = parse_config(yaml.safe_dump(data), source=CONFIGS / "x.yaml")
    settings = loaded.backend_settings
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in yaml.safe_dump(loaded.resolved_dict())
    assert settings.grpc.resolved_api_key() == SECRET  # type: ignore[attr-defined]
    # from the environment instead of the file
    data["setup"]["backend"]["settings"]["grpc"]["api_key_env"] = "LABCTL_TEST_KEY"
    with pytest.raises(ConfigError, match="api_key or api_key_env, not both"):
        parse_config(yaml.safe_dump(data), source=CONFIGS / "x.yaml")
