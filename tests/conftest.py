"""Shared fixtures: simulated devices built from the shipped configurations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.config import LoadedConfig, merge_overrides, parse_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SHARED_DEVICES = REPO.parent / "shared" / "devices"
SURROGATE_A = SHARED_DEVICES / "dnpu_surrogate_a.npz"


def config_from(name: str, override: dict[str, Any] | None = None) -> LoadedConfig:
    """A shipped config (configs/NAME) with a nested override merged in."""
    path = CONFIGS / name
    data = yaml.safe_load(path.read_text())
    if override:
        data = merge_overrides(data, override)
    return parse_config(yaml.safe_dump(data), source=path)


NO_EFFECTS = {
    "noise": False,
    "flicker": False,
    "drift": False,
    "bandwidth": False,
    "saturation": False,
    "quantisation": False,
}


def bench_of(device: Any) -> Any:
    """The simulated bench behind a SafeDevice's voltage source (tests look at it directly)."""
    return next(iter(device.instruments.values())).bench


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test (and every process it starts) persists electrode voltages in its own dir."""
    state_dir = tmp_path / "labctl-state"
    monkeypatch.setenv("LABCTL_STATE_DIR", str(state_dir))
    return state_dir


@pytest.fixture
def sim_config() -> Callable[..., LoadedConfig]:
    """Factory: the default simulated-DNPU config with overrides (``exact=True``: no effects)."""

    def make(override: dict[str, Any] | None = None, exact: bool = False) -> LoadedConfig:
        extra: dict[str, Any] = {}
        if exact:
            extra = {"setup": {"backend": {"settings": {"effects": NO_EFFECTS}}}}
        return config_from("sim_dnpu.yaml", merge_overrides(extra, override or {}))

    return make


@pytest.fixture
def surrogate_path() -> Path:
    """The shared surrogate NPZ; skips the test when ../shared is absent."""
    if not SURROGATE_A.is_file():
        pytest.skip("../shared/devices/dnpu_surrogate_a.npz is not available")
    return SURROGATE_A
