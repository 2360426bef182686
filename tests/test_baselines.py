"""SPSA gradient baseline on the simulated DNPU (exact chain: no noise, drift or filtering)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from labctl.config import LoadedConfig
from labctl.connect import build_device
from labctl.device.safety import SafeDevice
from labctl.training.baselines import SpsaResult, spsa_gradient

CONTROLS = [1, 2, 3, 4, 5]
POINT = np.array([0.3, 0.2, -0.4, 0.6, -0.2, 0.3, -0.5])
C_V = 0.01
WINDOW_S = 0.002
SETTLE_S = 0.0


@pytest.fixture
def device(sim_config: Callable[..., LoadedConfig]) -> Iterator[SafeDevice]:
    """The 7-electrode simulated DNPU with every chain effect off, opened."""
    with build_device(sim_config(exact=True)) as opened:
        yield opened


def _spsa(device: SafeDevice, n_pairs: int, seed: int, **kwargs: object) -> SpsaResult:
    options: dict[str, object] = {"window_s": WINDOW_S, "settle_s": SETTLE_S}
    options.update(kwargs)
    return spsa_gradient(
        device,
        POINT,
        CONTROLS,
        C_V,
        n_pairs,
        np.random.default_rng(seed),
        **options,  # type: ignore[arg-type]
    )


def _truth(device: SafeDevice) -> np.ndarray:
    reference = device.reference_gradient(POINT)
    assert reference is not None
    return reference[CONTROLS]


def test_converges_to_model_gradient(device: SafeDevice) -> None:
    truth = _truth(device)
    scale = float(np.linalg.norm(truth))
    assert scale > 1e-9  # tens of nA/V: a meaningful target
    errors = {}
    for n_pairs in (8, 128, 2048):
        per_seed = [
            np.linalg.norm(_spsa(device, n_pairs, seed).gradient_a_per_v - truth) / scale
            for seed in range(4)
        ]
        errors[n_pairs] = float(np.sqrt(np.mean(np.square(per_seed))))
    assert errors[2048] < 0.06
    assert errors[2048] < errors[128] < errors[8]
    # Mean-square error falls like 1/n_pairs: 16x the pairs, ~4x smaller RMS error.
    assert 2.0 < errors[8] / errors[128] < 8.0


def test_stderr_shrinks_like_inverse_sqrt_pairs(device: SafeDevice) -> None:
    small = np.mean([_spsa(device, 64, seed).stderr_a_per_v for seed in range(4)], axis=0)
    large = np.mean([_spsa(device, 1024, seed).stderr_a_per_v for seed in range(4)], axis=0)
    ratio = small / large
    assert np.all(ratio > 3.0) and np.all(ratio < 5.3), ratio


def test_stderr_matches_actual_error(device: SafeDevice) -> None:
    truth = _truth(device)
    z = np.concatenate(
        [
            (r.gradient_a_per_v - truth) / r.stderr_a_per_v
            for r in (_spsa(device, 256, seed) for seed in range(10, 22))
        ]
    )
    assert 0.4 < float(np.mean(z**2)) < 2.0


def test_single_electrode_is_central_difference(device: SafeDevice) -> None:
    result = spsa_gradient(
        device,
        POINT,
        [3],
        C_V,
        6,
        np.random.default_rng(1),
        window_s=WINDOW_S,
        settle_s=SETTLE_S,
    )
    truth = _truth(device)[CONTROLS.index(3)]
    assert result.gradient_a_per_v.shape == (1,)
    assert result.gradient_a_per_v[0] == pytest.approx(truth, rel=2e-3, abs=1e-11)
    # Every pair measures the same central difference: no spread.
    assert result.stderr_a_per_v[0] < 1e-3 * abs(truth) + 1e-13


def test_result_shapes_device_time_and_reproducibility(device: SafeDevice) -> None:
    n_pairs = 10
    before = device.device_seconds
    first = _spsa(device, n_pairs, 7, window_s=0.005, settle_s=0.015)
    assert first.device_seconds == pytest.approx(device.device_seconds - before)
    assert first.device_seconds >= 2 * n_pairs * (0.005 + 0.015)
    assert first.pair_gradients_a_per_v.shape == (n_pairs, len(CONTROLS))
    assert set(np.unique(first.perturbations)) == {-1.0, 1.0}
    assert first.currents_a.shape == (n_pairs, 2)
    assert first.n_pairs == n_pairs
    assert not first.saturated
    again = _spsa(device, n_pairs, 7, window_s=0.005, settle_s=0.015)
    np.testing.assert_array_equal(first.gradient_a_per_v, again.gradient_a_per_v)
    np.testing.assert_array_equal(first.perturbations, again.perturbations)


def test_single_pair_has_no_stderr(device: SafeDevice) -> None:
    result = _spsa(device, 1, 3)
    assert np.all(np.isfinite(result.gradient_a_per_v))
    assert np.all(np.isnan(result.stderr_a_per_v))


def test_perturbation_leaving_range_is_refused(device: SafeDevice) -> None:
    high = device.electrodes[2].max_v
    point = POINT.copy()
    point[2] = high - 0.005  # 5 mV from the edge, perturbation 10 mV
    before = device.device_seconds
    with pytest.raises(ValueError, match=r"e2.*no room for a ±10\.0 mV perturbation"):
        spsa_gradient(
            device,
            point,
            CONTROLS,
            C_V,
            4,
            np.random.default_rng(0),
            window_s=WINDOW_S,
            settle_s=SETTLE_S,
        )
    assert device.device_seconds == before  # nothing was played
    # The same point is fine when that electrode is not perturbed.
    result = spsa_gradient(
        device,
        point,
        [1, 3],
        C_V,
        2,
        np.random.default_rng(0),
        window_s=WINDOW_S,
        settle_s=SETTLE_S,
    )
    assert result.gradient_a_per_v.shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"point_v": np.zeros(6)}, "one voltage per electrode"),
        ({"electrode_indices": []}, "is empty"),
        ({"electrode_indices": [1, 1]}, "distinct"),
        ({"electrode_indices": [9]}, "do not exist"),
        ({"perturbation_v": 0.0}, "positive"),
        ({"n_pairs": 0}, "n_pairs"),
    ],
)
def test_bad_arguments_are_refused(
    device: SafeDevice, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "point_v": POINT,
        "electrode_indices": CONTROLS,
        "perturbation_v": C_V,
        "n_pairs": 2,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        spsa_gradient(
            device,
            arguments["point_v"],  # type: ignore[arg-type]
            arguments["electrode_indices"],  # type: ignore[arg-type]
            arguments["perturbation_v"],  # type: ignore[arg-type]
            arguments["n_pairs"],  # type: ignore[arg-type]
            np.random.default_rng(0),
            window_s=WINDOW_S,
            settle_s=SETTLE_S,
        )
