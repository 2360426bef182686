"""numba compiles the simulator into a user cache directory, never into the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simulated_hw.numba_cache import configure_numba_cache, default_numba_cache_dir
from tests.conftest import REPO

COMPILE_ONE = """
import numpy as np
import simulated_hw, simulated_hw.chain as chain
print(simulated_hw.__file__)
out = np.zeros(4)
chain._ar1_bank(np.ones((2, 4)), np.full(2, 0.5), np.ones(2), np.zeros(2), out)
"""


@pytest.mark.slow
def test_a_fresh_process_compiles_into_the_cache_dir_not_the_package(tmp_path: Path) -> None:
    package = tmp_path / "site" / "simulated_hw"
    shutil.copytree(REPO / "simulated_hw", package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(tmp_path / "site"))
    done = subprocess.run(
        [sys.executable, "-c", COMPILE_ONE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(package / "__init__.py")  # the copy is used
    cache = tmp_path / "xdg" / "labctl" / "numba"
    assert list(cache.rglob("chain._ar1_bank-*.nbi")), "nothing compiled into the cache dir"
    assert list(cache.rglob("chain._ar1_bank-*.nbc"))
    written = [p for p in package.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert written == [], f"numba wrote into the package: {written}"


def test_a_users_numba_cache_dir_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/of/mine")
    assert configure_numba_cache() == "/somewhere/of/mine"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert default_numba_cache_dir() == Path("/xdg/labctl/numba")
    assert configure_numba_cache() == "/xdg/labctl/numba"
    assert os.environ["NUMBA_CACHE_DIR"] == "/xdg/labctl/numba"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_numba_cache_dir() == Path.home() / ".cache" / "labctl" / "numba"
