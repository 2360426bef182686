"""Every Boolean gate trains to `solved` with the shipped configurations.

On the default simulated DNPU (hopping model, paper noise level) each of the six gates trains
with its ``configs/<gate>_sim.yaml`` and one fixed run seed; on the measured chip's surrogate
(when ``../shared/devices`` is present) XNOR, the hardest gate there, and AND train with
``configs/xnor_surrogate.yaml``'s settings, restarts allowed. The success rates over many seeds
are measured by ``bench/bench_training.py``; these tests pin single reproducible runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.config import parse_config
from labctl.run.control import RunController, RunState
from labctl.training.session import execute, new_run
from labctl.training.trainer import TrainingOutcome
from tests.conftest import CONFIGS

GATES = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")


def train(tmp_path: Path, data: dict[str, Any], **run: Any) -> TrainingOutcome:
    """Train the configuration ``data`` (with run overrides) with runs under ``tmp_path``."""
    data["run"].update({"directory": str(tmp_path / "runs"), "report": False, **run})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    training = new_run(parse_config(path.read_text(), source=path))
    controller = RunController()
    controller.start()
    assert execute(training, controller) is RunState.FINISHED
    assert training.outcome is not None
    return training.outcome


@pytest.mark.parametrize("gate", GATES)
def test_gate_solves_on_the_simulated_dnpu(tmp_path: Path, gate: str) -> None:
    data = yaml.safe_load((CONFIGS / f"{gate.lower()}_sim.yaml").read_text())
    outcome = train(tmp_path, data)
    assert outcome.solved, outcome.as_dict()
    assert outcome.stop_reason == "solved_with_margin"  # the shipped default: screened_hge
    assert outcome.iterations < data["run"]["max_iterations"]


@pytest.mark.shared
@pytest.mark.parametrize(("gate", "seed"), [("XNOR", 0), ("AND", 0)])
def test_gate_solves_on_the_surrogate(
    tmp_path: Path, surrogate_path: Path, gate: str, seed: int
) -> None:
    data = yaml.safe_load((CONFIGS / "xnor_surrogate.yaml").read_text())
    data["task"]["name"] = gate
    data["setup"]["backend"]["settings"].update(surrogate_path=str(surrogate_path), seed=seed)
    outcome = train(tmp_path, data, seed=seed, max_restarts=None)
    assert outcome.solved, outcome.as_dict()
    assert outcome.final_separation_a > 0
