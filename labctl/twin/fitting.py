"""Fit an MLP twin to a sampled I–V dataset (scikit-learn's ``MLPRegressor``, CPU only).

Architecture: brains-py's by default, ``n_electrodes → 5 × 90 → 1`` with ReLU. Inputs are
scaled to ``[-1, 1]`` with the sampled voltage ranges and the current standardised with the
training set's mean and spread; both scalings are folded into the first and last layer
afterwards, so the result is a plain labctl NPZ surrogate (network output × amplification = nA).

Split: the points are cut into runs of ``split_run_points`` consecutive points and whole runs
go to train, validation or test at random (seeded). Sine-sampled neighbours are nearly the same
point, so a point-wise split would measure interpolation between a point's own neighbours, not
generalisation.

Training: Adam over shuffled mini-batches, one ``partial_fit`` per epoch; the validation RMSE
after every epoch decides early stopping (patience) and the best epoch's weights are kept; the
step size is cut by ``lr_decay`` after ``patience // 2`` epochs without improvement.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl.device import FloatArray
from labctl.twin.sampling import SampleData

log = logging.getLogger(__name__)

_SKLEARN_ACTIVATION = {
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "logistic",
    "identity": "identity",
}
A_TO_NA = 1e9


class FitError(ValueError):
    """The dataset cannot be fitted as asked."""


class FitSettings(BaseModel):
    """How ``labctl twin fit`` fits (validated once, from the command's options).

    Attributes:
        hidden: Width of each hidden layer.
        activation: Hidden-layer activation.
        val_fraction: Fraction of the runs for validation (early stopping).
        test_fraction: Fraction of the runs held out for the test RMSE.
        split_run_points: Consecutive points kept together in one split.
        max_epochs: Epoch budget.
        patience: Epochs without a better validation RMSE before stopping.
        batch_size: Mini-batch size.
        learning_rate: Adam's initial step size.
        lr_decay: Factor applied to the step size on a plateau.
        l2: L2 penalty (scikit-learn's ``alpha``).
        seed: Seed of the split, the initial weights and the batch order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: tuple[int, ...] = Field((90, 90, 90, 90, 90), min_length=1)
    activation: Literal["relu", "tanh", "sigmoid", "identity"] = "relu"
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    split_run_points: int = Field(50, ge=1)
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(12, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    lr_decay: float = Field(0.3, gt=0, le=1)
    l2: float = Field(0.0, ge=0)
    seed: int = Field(0, ge=0)


@dataclass(frozen=True, eq=False)
class FitResult:
    """A fitted twin and how well it does.

    Attributes:
        arrays: The NPZ surrogate arrays (``W0…``, ``b0…``, activation, amplification, ranges).
        train_rmse_na: Training RMSE per epoch (nA).
        val_rmse_na: Validation RMSE per epoch (nA).
        best_epoch: Epoch whose weights were kept (0-based).
        test_rmse_na: RMSE on the held-out test points (nA).
        noise_floor_na: Measurement noise of one point (nA), from the noise record.
        test_measured_na: Measured test currents (nA).
        test_predicted_na: Twin's test predictions (nA).
        test_voltages_v: Voltages of the test points (V).
        counts: Points per split (train, validation, test) and saturated points dropped.
    """

    arrays: dict[str, np.ndarray]
    train_rmse_na: list[float]
    val_rmse_na: list[float]
    best_epoch: int
    test_rmse_na: float
    noise_floor_na: float
    test_measured_na: FloatArray
    test_predicted_na: FloatArray
    test_voltages_v: FloatArray
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The figures of the fit, JSON-ready."""
        ratio = self.test_rmse_na / self.noise_floor_na if self.noise_floor_na > 0 else math.nan
        return {
            "test_rmse_na": self.test_rmse_na,
            "noise_floor_na": self.noise_floor_na,
            "rmse_over_noise": ratio,
            "best_epoch": self.best_epoch,
            "epochs": len(self.val_rmse_na),
            "best_val_rmse_na": self.val_rmse_na[self.best_epoch],
            "counts": self.counts,
            "architecture": " → ".join(
                str(s)
                for s in [self.arrays["W0"].shape[1]]
                + [self.arrays[f"W{k}"].shape[0] for k in range(self.n_layers)]
            ),
        }

    @property
    def n_layers(self) -> int:
        return sum(1 for key in self.arrays if key.startswith("W"))


def split_indices(
    n_points: int, settings: FitSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices: whole runs of consecutive points, seeded."""
    runs = np.arange(n_points) // settings.split_run_points
    n_runs = int(runs[-1]) + 1 if n_points else 0
    if n_runs < 3:
        raise FitError(
            f"{n_points} points make {n_runs} runs of {settings.split_run_points}; at least 3 "
            "are needed for train, validation and test: sample more or lower --split-run-points"
        )
    order = np.random.default_rng([settings.seed, 10]).permutation(n_runs)
    n_test = max(1, round(settings.test_fraction * n_runs))
    n_val = max(1, round(settings.val_fraction * n_runs))
    test_runs = order[:n_test]
    val_runs = order[n_test : n_test + n_val]
    which = np.zeros(n_runs, dtype=np.int8)
    which[val_runs] = 1
    which[test_runs] = 2
    kind = which[runs]
    return np.flatnonzero(kind == 0), np.flatnonzero(kind == 1), np.flatnonzero(kind == 2)


def _fold(
    coefs: Sequence[np.ndarray],
    intercepts: Sequence[np.ndarray],
    center_v: FloatArray,
    half_v: FloatArray,
    y_mean_na: float,
    y_scale_na: float,
    activation: str,
    ranges_v: FloatArray,
) -> dict[str, np.ndarray]:
    """NPZ arrays of the network with the input and output scalings folded in."""
    weights = [np.asarray(c, dtype=np.float64).T.copy() for c in coefs]
    biases = [np.asarray(b, dtype=np.float64).copy() for b in intercepts]
    weights[0] = weights[0] / half_v[None, :]
    biases[0] = biases[0] - weights[0] @ center_v
    biases[-1] = biases[-1] + y_mean_na / y_scale_na
    arrays: dict[str, np.ndarray] = {}
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        arrays[f"W{k}"] = w
        arrays[f"b{k}"] = b
    arrays["activation"] = np.array(activation)
    arrays["amplification"] = np.array([y_scale_na])
    arrays["voltage_ranges"] = np.asarray(ranges_v, dtype=np.float64)
    return arrays


def fit_twin(
    data: SampleData,
    settings: FitSettings,
    *,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Fit an MLP twin to ``data`` (see the module docstring).

    Args:
        data: The sampled dataset (:func:`labctl.twin.sampling.read_samples`).
        settings: Architecture, split and training settings.
        on_epoch: Called with (epoch, train RMSE nA, validation RMSE nA) after every epoch.

    Raises:
        FitError: Too few usable points.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    usable = ~data.saturated & np.isfinite(data.current_a)
    dropped = int(np.count_nonzero(~usable))
    volts = data.voltages_v[usable]
    current_na = data.current_a[usable] * A_TO_NA
    train, val, test = split_indices(volts.shape[0], settings)
    ranges = data.voltage_ranges_v
    center = ranges.mean(axis=1)
    half = 0.5 * (ranges[:, 1] - ranges[:, 0])
    x = ((volts - center) / half).astype(np.float32)
    y_mean = float(current_na[train].mean())
    y_scale = float(current_na[train].std()) or 1.0
    y = ((current_na - y_mean) / y_scale).astype(np.float32)
    model = MLPRegressor(
        hidden_layer_sizes=settings.hidden,
        activation=_SKLEARN_ACTIVATION[settings.activation],
        solver="adam",
        alpha=settings.l2,
        batch_size=min(settings.batch_size, train.size),
        learning_rate_init=settings.learning_rate,
        shuffle=True,
        random_state=settings.seed,
    )
    rng = np.random.default_rng([settings.seed, 11])
    train_probe = train if train.size <= 20_000 else rng.choice(train, 20_000, replace=False)

    def rmse_na(idx: np.ndarray) -> float:
        pred = model.predict(x[idx]).astype(np.float64)
        return float(np.sqrt(np.mean((pred - y[idx]) ** 2)) * y_scale)

    train_hist: list[float] = []
    val_hist: list[float] = []
    no_weights: list[np.ndarray] = []
    best = (math.inf, -1, no_weights, no_weights)
    since_best = 0
    for epoch in range(settings.max_epochs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x[train], y[train])
        train_hist.append(rmse_na(train_probe))
        val_hist.append(rmse_na(val))
        if on_epoch is not None:
            on_epoch(epoch, train_hist[-1], val_hist[-1])
        if val_hist[-1] < best[0] * (1 - 1e-4):
            best = (
                val_hist[-1],
                epoch,
                [c.copy() for c in model.coefs_],
                [b.copy() for b in model.intercepts_],
            )
            since_best = 0
        else:
            since_best += 1
            if since_best >= settings.patience:
                break
            if since_best % max(1, settings.patience // 2) == 0:
                _decay_step(model, settings.lr_decay)
    _, best_epoch, coefs, intercepts = best
    model.coefs_, model.intercepts_ = coefs, intercepts
    test_pred_na = model.predict(x[test]).astype(np.float64) * y_scale + y_mean
    test_meas_na = current_na[test]
    arrays = _fold(coefs, intercepts, center, half, y_mean, y_scale, settings.activation, ranges)
    return FitResult(
        arrays=arrays,
        train_rmse_na=train_hist,
        val_rmse_na=val_hist,
        best_epoch=best_epoch,
        test_rmse_na=float(np.sqrt(np.mean((test_pred_na - test_meas_na) ** 2))),
        noise_floor_na=data.noise_floor_a * A_TO_NA,
        test_measured_na=test_meas_na,
        test_predicted_na=test_pred_na,
        test_voltages_v=volts[test],
        counts={
            "train": int(train.size),
            "validation": int(val.size),
            "test": int(test.size),
            "saturated_dropped": dropped,
        },
    )


def _decay_step(model: Any, factor: float) -> None:
    """Cut Adam's step size (scikit-learn keeps it on its optimiser object)."""
    optimiser = getattr(model, "_optimizer", None)
    if optimiser is not None and hasattr(optimiser, "learning_rate"):
        optimiser.learning_rate *= factor
        log.debug("learning rate cut to %.3g", optimiser.learning_rate)


def save_report(result: FitResult, path: str | Path, title: str = "") -> Path:
    """PNG: loss curves (train/validation RMSE per epoch) and predicted vs measured current."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(path)
    fig, (ax_loss, ax_pred) = plt.subplots(1, 2, figsize=(11, 4.5))
    epochs = np.arange(1, len(result.val_rmse_na) + 1)
    ax_loss.semilogy(epochs, result.train_rmse_na, label="train")
    ax_loss.semilogy(epochs, result.val_rmse_na, label="validation")
    if result.noise_floor_na > 0:
        ax_loss.axhline(result.noise_floor_na, color="k", ls=":", label="noise floor")
    ax_loss.axvline(result.best_epoch + 1, color="grey", ls="--", lw=0.8, label="kept")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("RMSE (nA)")
    ax_loss.legend()
    ax_loss.set_title("loss curves")
    meas, pred = result.test_measured_na, result.test_predicted_na
    ax_pred.plot(meas, pred, ".", ms=1.5, alpha=0.5)
    if meas.size:
        lo, hi = float(min(meas.min(), pred.min())), float(max(meas.max(), pred.max()))
        ax_pred.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax_pred.set_xlabel("measured current (nA)")
    ax_pred.set_ylabel("twin prediction (nA)")
    ax_pred.set_title(
        f"test RMSE {result.test_rmse_na:.3g} nA, noise floor {result.noise_floor_na:.3g} nA"
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
