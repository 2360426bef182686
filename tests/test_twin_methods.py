"""Training methods that use a digital twin: twin_transfer and twin_hge (issue: twins, part 4).

The device is the simulated DNPU behind the shared surrogate (a twin of a measured chip); the
twin given to the methods is that same network, so its controls must transfer.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.cli import main
from labctl.config import ConfigError, load_config, merge_overrides
from labctl.run.control import RunController, RunState
from labctl.training.session import execute, new_run, resume_run
from tests.conftest import CONFIGS


def twin_config(tmp_path: Path, surrogate: Path, method: dict[str, Any]) -> Path:
    data = yaml.safe_load((CONFIGS / "xnor_surrogate.yaml").read_text())
    data["setup"]["backend"]["settings"]["surrogate_path"] = str(surrogate)
    data = merge_overrides(
        data,
        {
            "method": method,
            "run": {"directory": str(tmp_path / "runs"), "report": False, "max_iterations": 40},
        },
    )
    path = tmp_path / "twin.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def train(path: Path) -> Any:
    run = new_run(load_config(path))
    controller = RunController()
    controller.start()
    assert execute(run, controller) is RunState.FINISHED
    return run


def test_twin_transfer_applies_the_twins_controls_once_and_counts_the_sampling(
    tmp_path: Path, surrogate_path: Path
) -> None:
    # the twin sits next to the config, named relatively: the stored config makes it absolute
    (tmp_path / "chip_twin.npz").write_bytes(surrogate_path.read_bytes())
    method = {
        "name": "twin_transfer",
        "params": {"twin": "chip_twin.npz", "sampling_device_seconds": 101.0},
    }
    run = train(twin_config(tmp_path, surrogate_path, method))
    records = run.store.iterations(include_raw=False)
    assert len(records) == 1  # the method's iteration limit
    (record,) = records
    assert np.all(np.isnan(record.gradients_a_per_v))  # nothing measured but DC
    assert record.extra["twin_separation_a"] > 0  # solved on the twin...
    assert run.outcome is not None and run.outcome.solved  # ...and on the device
    assert 101.0 < record.device_seconds < 103.0  # sampling + one DC record
    assert run.outcome.device_seconds > 101.0
    stored = yaml.safe_load((run.store.path / "config.yaml").read_text())
    assert Path(stored["method"]["params"]["twin"]).is_absolute()
    run.store.close()
    assert main(["train", "--resume", str(run.store.path)]) == 2  # finished: nothing to resume


def test_twin_hge_starts_in_materia_hge_from_the_twins_solution(
    tmp_path: Path, surrogate_path: Path
) -> None:
    twin = {"twin": str(surrogate_path), "sampling_device_seconds": 50.0}
    transfer_config = twin_config(
        tmp_path, surrogate_path, {"name": "twin_transfer", "params": twin}
    )
    transfer = train(transfer_config)
    twin_controls = transfer.store.iterations(include_raw=False)[0].controls_v
    transfer.store.close()
    hge_dir = tmp_path / "hge"
    hge_dir.mkdir()
    run = train(twin_config(hge_dir, surrogate_path, {"name": "twin_hge", "params": twin}))
    records = run.store.iterations(include_raw=False)
    np.testing.assert_allclose(records[0].controls_v, twin_controls, atol=1e-12)
    assert np.all(np.isfinite(records[0].gradients_a_per_v))  # measured with tones
    assert records[0].device_seconds > 50.0
    assert run.outcome is not None and run.outcome.solved
    run.store.close()


def test_twin_hge_resumes_exactly(tmp_path: Path, surrogate_path: Path) -> None:
    method = {"name": "twin_hge", "params": {"twin": str(surrogate_path)}}
    path = twin_config(tmp_path, surrogate_path, method)
    data = yaml.safe_load(path.read_text())
    data["run"].update({"max_iterations": 6, "accuracy_hold_iterations": None})
    path.write_text(yaml.safe_dump(data))
    run = new_run(load_config(path))
    controller = RunController()
    controller.start()

    def stop_after_three(event: Any) -> None:
        if getattr(event, "record", None) is not None and event.record.run_iteration == 2:
            controller.request_stop()

    controller.bus.subscribe(stop_after_three)
    execute(run, controller)
    assert run.store.iteration_count() == 3
    run.store.close()
    resumed = resume_run(run.store.path)
    controller = RunController()
    controller.start()
    assert execute(resumed, controller) is RunState.FINISHED
    records = resumed.store.iterations(include_raw=False)
    assert [r.run_iteration for r in records] == list(range(6))
    # the resumed session continues from the controls the third iteration chose
    np.testing.assert_allclose(records[3].controls_v, records[2].extra["next_controls_v"])
    resumed.store.close()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"twin": "missing.npz"}, "method.params.twin"),
        ({"twin": "hostile.pt"}, "method.params.twin"),
        ({"twin": "chip.npz", "samples": "missing.h5"}, "method.params.samples"),
        ({"twin": "chip.npz", "samples": "x.h5", "sampling_device_seconds": 3.0}, "not both"),
        ({}, "method.params.twin"),
    ],
)
def test_bad_twin_parameters_are_refused_before_any_device_opens(
    tmp_path: Path, surrogate_path: Path, params: dict[str, Any], field: str
) -> None:
    (tmp_path / "chip.npz").write_bytes(surrogate_path.read_bytes())

    class Hostile:
        def __reduce__(self) -> Any:
            return (eval, ("1",))

    (tmp_path / "hostile.pt").write_bytes(pickle.dumps(Hostile()))
    path = twin_config(tmp_path, surrogate_path, {"name": "twin_transfer", "params": params})
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(path)
    assert main(["train", str(path)]) == 2
    assert not (tmp_path / "runs").exists()
