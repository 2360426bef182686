"""Screened HGE (``screened_hge``): screening, trust region, the separation margin (stop rule and
hinge loss) and its parameter validation, on the real simulated DNPU and run store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.config import ConfigError, parse_config
from labctl.connect import build_device
from labctl.homodyne.session import open_engine
from labctl.run.control import RunController, RunState
from labctl.run.store import RunStore
from labctl.training.baselines import block_sem, measure_plateaus
from labctl.training.losses import get_loss, separation_margin
from labctl.training.methods.base import MethodContext
from labctl.training.methods.screened import ScreenedHgeMethod, screen, short_tour
from labctl.training.metrics import separation_noise
from labctl.training.optimisers import Adam, StopCriteria, StopReason, trust_region_step
from labctl.training.session import execute, new_run
from labctl.training.trainer import Trainer
from tests.conftest import CONFIGS


def screened_config(
    tmp_path: Path, gate: str = "XOR", params: dict[str, Any] | None = None, **run: Any
) -> Path:
    data = yaml.safe_load((CONFIGS / f"{gate.lower()}_sim.yaml").read_text())
    data["run"].update({"directory": str(tmp_path / "runs"), "report": False, **run})
    data["method"] = {"name": "screened_hge", "params": params or {}}
    path = tmp_path / f"{gate.lower()}-screened.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_screening_ranks_what_it_measured_and_starts_from_the_best(tmp_path: Path) -> None:
    path = screened_config(tmp_path, params={"screen_sets": 6, "candidates": 3})
    loaded = parse_config(path.read_text(), source=path)
    store = RunStore.create(tmp_path / "runs", "screen", loaded.resolved_dict())
    with build_device(loaded) as device:
        engine, _ = open_engine(device, loaded)
        trainer = Trainer(device, loaded, engine, store, RunController())
        method = trainer.method
        assert isinstance(method, ScreenedHgeMethod)
        before = device.device_seconds
        method.start()
        result = method.last_screen
        assert result is not None
        # the screen's device time (ramps and settling included) is the device's own count
        assert device.device_seconds - before == pytest.approx(result.device_seconds)
        targets = trainer.task.targets
        loss = get_loss(loaded.config.loss.name, **loaded.config.loss.params)
        recomputed = [loss(out, targets)[0] for out in result.outputs_a]
        np.testing.assert_allclose(result.losses, recomputed)
        best = int(np.argmin(result.losses))
        assert result.ranking()[0] == best
        np.testing.assert_array_equal(method.fallback_controls(), result.controls_v[best])
        # the per-set outputs belong to their sets: re-measure two sets one by one
        context = MethodContext(
            device=device,
            loaded=loaded,
            engine=engine,
            loss=loss,
            operating_points=trainer.operating_points,
            first_iteration=0,
            message=lambda text: None,
            task=trainer.task,
            input_volts=np.array([[-1.2, -1.2], [-1.2, 1.2], [1.2, -1.2], [1.2, 1.2]]),
        )
        for i in (best, result.ranking()[-1]):
            points = trainer.operating_points(result.controls_v[i], context.input_volts)
            alone = measure_plateaus(device, points, window_s=0.02, settle_s=0.015)
            np.testing.assert_allclose(alone.means_a, result.outputs_a[i], atol=0.5e-9)
        again = screen(
            context,
            result.controls_v,
            context.input_volts,
            targets,
            loss,
            window_s=0.02,
            settle_s=0.015,
        )
        assert again.ranking()[0] == best
    store.close()


def test_short_tour_visits_every_set_once_with_shorter_ramps() -> None:
    points = np.random.default_rng(3).uniform(-1, 1, (30, 5))
    tour = short_tour(points)
    assert sorted(tour) == list(range(30))

    def longest_steps(order: list[int]) -> float:
        return float(np.sum(np.max(np.abs(np.diff(points[order], axis=0)), axis=1)))

    assert longest_steps(tour) < longest_steps(list(range(30)))


def test_block_sem_of_white_noise_matches_the_standard_error() -> None:
    samples = np.random.default_rng(0).normal(0.0, 1.0, (400, 800))
    estimates = [block_sem(s) for s in samples]
    assert np.mean(estimates) == pytest.approx(1 / np.sqrt(800), rel=0.1)
    assert np.isnan(block_sem(np.ones(10)))


def test_trust_region_step_reduces_a_quadratic_within_its_radius() -> None:
    a = np.array([[3.0, 0.5], [0.5, 0.2]])  # ill-conditioned quadratic f = v'Av/2

    def f(v: np.ndarray) -> float:
        return float(v @ a @ v / 2)

    v = np.array([1.0, -1.0])
    optimiser = Adam(0.5)  # far too long a step alone
    values = [f(v)]
    for _ in range(15):
        proposed = optimiser.step(v, a @ v)
        nxt = trust_region_step(v, proposed, 0.1)
        assert np.linalg.norm(nxt - v) <= 0.1 + 1e-12
        v = nxt
        values.append(f(v))
    assert values[-1] < 0.5 * values[0]
    assert all(values[i + 1] <= values[i] + 1e-12 for i in range(4))
    short = np.array([1.0, -0.99])
    np.testing.assert_array_equal(trust_region_step(np.array([1.0, -1.0]), short, 0.1), short)


def test_margin_stop_needs_full_accuracy_and_k_times_the_noise() -> None:
    def check(accuracy: float, sep: float, noise: float | None) -> StopReason | None:
        criteria = StopCriteria(max_iterations=100, separation_noise_multiple=5.0)
        return criteria.check(1, 1.0, accuracy, 1.0, sep, noise)

    assert check(1.0, 0.49e-9, 0.1e-9) is None
    assert check(1.0, 0.5e-9, 0.1e-9) is StopReason.SOLVED_WITH_MARGIN
    assert check(0.75, 5e-9, 0.1e-9) is None
    assert check(1.0, 5e-9, None) is None
    with pytest.raises(ValueError, match="separation_noise_multiple"):
        StopCriteria(max_iterations=1, separation_noise_multiple=0.0)


def test_margin_loss_pulls_after_full_accuracy_until_the_margin() -> None:
    t = np.array([0, 1, 1, 0])
    margin_na = 0.5
    for delta_na in (0.05, 0.2, 0.45):  # 100 % accuracy, separation below the margin
        x = np.array([1.0, 1.0 + delta_na, 2.0, 0.5]) * 1e-9
        loss, grad = separation_margin(x, t, margin_na)
        assert loss > 0
        assert grad[1] < 0 and grad[0] > 0  # raise the lowest high, lower the highest low
        h = 1e-13
        for i in range(4):
            e = np.zeros(4)
            e[i] = h
            up, down = (
                separation_margin(x + e, t, margin_na)[0],
                separation_margin(x - e, t, margin_na)[0],
            )
            numeric = (up - down) / (2 * h)
            assert numeric == pytest.approx(grad[i], rel=1e-3, abs=1e3)
    x = np.array([1.0, 1.6, 2.0, 0.5]) * 1e-9  # beyond the margin: flat
    loss, grad = separation_margin(x, t, margin_na)
    assert loss == 0 and not np.any(grad)
    assert separation_noise(x, t, [0.3, 0.4, 0.0, 0.0]) == pytest.approx(0.5)


@pytest.mark.slow
def test_screened_run_stops_on_the_margin_and_counts_the_screen(tmp_path: Path) -> None:
    path = screened_config(
        tmp_path, "OR", params={"screen_sets": 8, "candidates": 4}, max_iterations=40, seed=1
    )
    run = new_run(parse_config(path.read_text(), source=path))
    controller = RunController()
    controller.start()
    assert execute(run, controller) is RunState.FINISHED
    outcome = run.outcome
    assert outcome is not None and outcome.solved, outcome.as_dict()
    assert outcome.stop_reason == "solved_with_margin"
    records = run.store.iterations(include_raw=False)
    last = records[-1]
    assert last.accuracy == 1.0
    assert last.separation_a >= 5.0 * last.extra["separation_noise_a"]
    first = records[0]
    assert first.device_seconds > first.extra["screen_device_seconds"] > 0
    assert outcome.final_separation_noise_a > 0
    run.store.close()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"screen_sets": 0}, "method.params.screen_sets"),
        ({"screen_sets": 4, "candidates": 5}, "method.params"),
        ({"margin_weight": 1.0, "margin_noise_multiple": None}, "method.params"),
        ({"max_step_v": -0.1}, "method.params.max_step_v"),
        ({"screen_window": 0.01}, "method.params.screen_window"),
    ],
)
def test_invalid_screened_params_name_the_field(
    tmp_path: Path, params: dict[str, Any], field: str
) -> None:
    path = screened_config(tmp_path, params=params)
    with pytest.raises(ConfigError) as caught:
        parse_config(path.read_text(), source=path)
    assert any(issue.path == field for issue in caught.value.issues), caught.value.issues
