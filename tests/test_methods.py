"""Baseline training methods (finite differences, SPSA, genetic algorithm) beside HGE.

Real simulated DNPU (hopping model, every chain effect on), real run store and run control.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.cli import main
from labctl.config import ConfigError, parse_config
from labctl.run.control import RunController, RunState
from labctl.run.events import Event, IterationCompleted
from labctl.training.methods import get_method, method_names
from labctl.training.session import execute, new_run, resume_run
from tests.conftest import CONFIGS

METHODS = ["hge", "finite_difference", "spsa", "genetic"]


def method_config(
    tmp_path: Path,
    method: str,
    gate: str = "NAND",
    params: dict[str, Any] | None = None,
    **run: Any,
) -> Path:
    """configs/<gate>_sim.yaml trained by ``method``, runs under tmp_path."""
    data = yaml.safe_load((CONFIGS / f"{gate.lower()}_sim.yaml").read_text())
    data["run"].update({"directory": str(tmp_path / "runs"), "report": False, **run})
    data["method"] = {"name": method, "params": params or {}}
    path = tmp_path / f"{gate.lower()}-{method}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start(path: Path):
    return new_run(parse_config(path.read_text(), source=path))


def test_registry_lists_the_built_in_methods() -> None:
    assert method_names()[:4] == tuple(METHODS)
    assert get_method("hge").uses_homodyne
    assert not get_method("genetic").uses_homodyne


@pytest.mark.parametrize("method", METHODS)
def test_each_method_solves_an_easy_gate(tmp_path: Path, method: str) -> None:
    run = start(method_config(tmp_path, method, "OR", max_iterations=60, seed=0))
    controller = RunController()
    controller.start()
    assert execute(run, controller) is RunState.FINISHED
    outcome = run.outcome
    assert outcome is not None and outcome.solved, outcome.as_dict()
    records = run.store.iterations()
    assert [r.run_iteration for r in records] == list(range(outcome.iterations))
    assert run.store.summary()["solved"] is True
    assert run.store.status_history()[1][2]["method"] == method


def test_shipped_baseline_configs_train(tmp_path: Path) -> None:
    for name in ("nand_fd_sim.yaml", "nand_spsa_sim.yaml", "or_ga_sim.yaml"):
        data = yaml.safe_load((CONFIGS / name).read_text())
        data["run"].update({"directory": str(tmp_path / "runs"), "report": False})
        data["run"]["max_iterations"] = 40
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        run = start(path)
        controller = RunController()
        controller.start()
        execute(run, controller)
        assert run.outcome is not None and run.outcome.solved, (name, run.outcome.as_dict())


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("finite_difference", {"step_v": -0.01}, "method.params.step_v"),
        ("finite_difference", {"stepv": 0.01}, "method.params.stepv"),
        ("spsa", {"n_pairs": 0}, "method.params.n_pairs"),
        ("genetic", {"population": 5, "elites": 4}, "method.params"),
        ("genetic", {"mutation_rate": 0.1}, "method.params.mutation_rate"),
        ("hge", {"window_s": 0.1}, "method.params.window_s"),
        ("annealing", {}, "method.name"),
    ],
)
def test_invalid_method_params_exit_2_naming_the_field(
    tmp_path: Path, capsys, method: str, params: dict[str, Any], field: str
) -> None:
    path = method_config(tmp_path, method, params=params)
    with pytest.raises(ConfigError) as caught:
        parse_config(path.read_text(), source=path)
    assert any(issue.path == field for issue in caught.value.issues), caught.value.issues
    assert main(["train", str(path)]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing was created, no device was opened


def test_method_params_are_stored_with_defaults(tmp_path: Path) -> None:
    run = start(method_config(tmp_path, "spsa", params={"n_pairs": 2}, max_iterations=1))
    stored = yaml.safe_load(run.store.config_text())["method"]
    assert stored["name"] == "spsa"
    assert stored["params"] == {
        "window_s": None,
        "settle_s": None,
        "perturbation_v": 0.05,
        "decay_exponent": 0.0,
        "n_pairs": 2,
    }
    run.store.close()


def _stop_after(controller: RunController, iterations: int) -> None:
    def on_event(event: Event) -> None:
        if isinstance(event, IterationCompleted) and event.record.run_iteration == iterations - 1:
            controller.request_stop("test")

    controller.bus.subscribe(on_event)


@pytest.mark.parametrize("method", METHODS)
def test_stop_then_resume_and_abort(tmp_path: Path, method: str) -> None:
    path = method_config(tmp_path, method, "XOR", max_iterations=6, accuracy_hold_iterations=None)
    run = start(path)
    controller = RunController()
    controller.start()
    _stop_after(controller, 2)
    assert execute(run, controller) is RunState.FINISHED
    assert run.store.iteration_count() == 2
    assert run.outcome is not None and run.outcome.stop_reason == "stop requested"
    run.store.close()

    resumed = resume_run(run.path)
    controller = RunController()
    controller.start()
    assert execute(resumed, controller) is RunState.FINISHED
    assert [r.run_iteration for r in resumed.store.iterations()] == list(range(6))
    resumed.store.close()

    # abort in the middle of a fresh run: the device is shut down at once, the run ends aborted
    run = start(path)
    controller = RunController()
    controller.start()
    aborted = threading.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, IterationCompleted) and not aborted.is_set():
            aborted.set()
            controller.abort("test abort")

    controller.bus.subscribe(on_event)
    devices: list[Any] = []
    assert execute(run, controller, on_device=devices.append) is RunState.ABORTED
    assert devices[0].is_shut_down
    report = run.shutdown_report
    assert report is not None and report.ok
    assert run.store.iteration_count() == 1
    assert run.store.status() == "aborted"


@pytest.mark.parametrize(("method", "per_case"), [("finite_difference", 11), ("spsa", 3)])
def test_device_seconds_count_every_plateau_with_ramps_and_settling(
    tmp_path: Path, method: str, per_case: int
) -> None:
    run = start(method_config(tmp_path, method, max_iterations=3, accuracy_hold_iterations=None))
    controller = RunController()
    controller.start()
    execute(run, controller)
    records = run.store.iterations()
    homodyne = run.loaded.config.homodyne
    plateau_s = homodyne.window_s + homodyne.settle_s
    steps = np.diff([0.0] + [r.device_seconds for r in records])
    assert records[0].extra["saturated"] is False
    # 4 cases x per_case plateaus, each window + settling, plus the ramps between them
    assert np.all(steps > 4 * per_case * plateau_s)
    assert np.all(steps < 4 * per_case * plateau_s * 1.5)
    assert run.outcome is not None
    assert run.outcome.device_seconds > records[-1].device_seconds  # + the final evaluation


def test_genetic_stores_one_iteration_per_generation(tmp_path: Path) -> None:
    run = start(
        method_config(tmp_path, "genetic", "XOR", max_iterations=3, accuracy_hold_iterations=None)
    )
    controller = RunController()
    controller.start()
    execute(run, controller)
    records = run.store.iterations()
    assert len(records) == 3
    for generation, record in enumerate(records):
        extra = record.extra
        assert extra["generation"] == generation
        assert extra["population"] == 26
        assert extra["loss_median"] >= record.loss
        assert extra["loss_worst"] >= extra["loss_median"]
        assert np.isnan(record.gradients_a_per_v).all()
        assert record.gradients_a_per_v.shape == (4, 5)
    rates = [r.extra["mutation_rate"] for r in records]
    assert rates[0] == pytest.approx(0.31) and rates[1] < rates[0]
    # elites are kept: the best loss so far never gets worse by more than the noise allows
    homodyne = run.loaded.config.homodyne
    steps = np.diff([0.0] + [r.device_seconds for r in records])
    assert np.all(steps > 26 * 4 * (homodyne.window_s + homodyne.settle_s))
    assert math.isfinite(run.outcome.best_loss)  # type: ignore[union-attr]


def test_cli_trains_a_baseline_and_refuses_to_resume_it_when_finished(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load((CONFIGS / "or_ga_sim.yaml").read_text())
    data["run"].update({"directory": str(tmp_path / "runs"), "max_iterations": 20})
    path = tmp_path / "or_ga.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "solved" in out and "yes" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "report.png").is_file()
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "already finished (accuracy_hold" in capsys.readouterr().err


def test_a_new_method_is_one_registry_entry(tmp_path: Path) -> None:
    from pydantic import BaseModel

    from labctl.training.methods import MethodSpec, register_method
    from labctl.training.methods.base import MethodContext
    from labctl.training.methods.gradient import FiniteDifferenceEstimator, GradientDescentMethod
    from labctl.training.methods.params import FiniteDifferenceParams

    class CoarseParams(BaseModel):
        model_config = {"extra": "forbid"}
        step_v: float = 0.05

    def build(context: MethodContext, params: BaseModel):
        assert isinstance(params, CoarseParams)
        fd = FiniteDifferenceParams(step_v=params.step_v)
        return GradientDescentMethod(context, FiniteDifferenceEstimator(context, fd))

    if "test_coarse_fd" not in method_names():
        register_method(MethodSpec("test_coarse_fd", "test", CoarseParams, build))
    with pytest.raises(ValueError, match="already registered"):
        register_method(MethodSpec("test_coarse_fd", "test", CoarseParams, build))
    path = method_config(tmp_path, "test_coarse_fd", params={"step_v": 0.04}, max_iterations=2)
    run = start(path)
    controller = RunController()
    controller.start()
    assert execute(run, controller) is RunState.FINISHED
    assert run.store.iteration_count() == 2
    with pytest.raises(ConfigError, match=r"method\.params\.step"):
        parse_config(path.read_text().replace("step_v: 0.04", "step: 0.04"), source=path)


def test_compare_prints_the_device_time_table(capsys) -> None:
    from labctl.training.compare import main as compare

    assert compare(["--gate", "NAND", "--seeds", "0", "--budget", "8", "--methods", "spsa"]) == 0
    out = capsys.readouterr().out
    assert "| spsa | 1/1 | 5 |" in out
