"""Parameter models of the built-in training methods (``method.params`` in the YAML).

Pydantic only, so validating a configuration does not import the trainers. Every model forbids
unknown keys; volts, seconds and plain numbers as the field names say.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HgeParams(_Params):
    """Homodyne gradient extraction takes its settings from the ``homodyne`` section."""


class DcWindowParams(_Params):
    """DC plateau timing shared by the baselines (default: the ``homodyne`` section's)."""

    window_s: float | None = Field(
        None, gt=0, description="Averaging window per DC plateau (s); default homodyne.window_s."
    )
    settle_s: float | None = Field(
        None, ge=0, description="Settling after each DC change (s); default homodyne.settle_s."
    )


class FiniteDifferenceParams(DcWindowParams):
    """Central finite differences: 2N + 1 DC plateaus per case (centre, ±step per control)."""

    step_v: float = Field(
        0.01, gt=0, le=0.5, description="Half step h of (I(V+h) - I(V-h))/2h (V)."
    )


class SpsaParams(DcWindowParams):
    """SPSA (Spall 1992): per pair one random ±c vector, two DC plateaus per case (+ centre)."""

    perturbation_v: float = Field(
        0.05, gt=0, le=0.5, description="Perturbation c (V) of the first iteration."
    )
    decay_exponent: float = Field(
        0.0,
        ge=0,
        le=1,
        description="c_k = c / (k + 1)^gamma; Spall's choice is 0.101, 0 keeps c fixed.",
    )
    n_pairs: int = Field(1, ge=1, le=64, description="Random ± pairs averaged per iteration.")


class GeneticParams(DcWindowParams):
    """The DNPU genetic algorithm (brains-py style): elites, rank selection, BLX-α-β, mutation."""

    population: int = Field(26, ge=4, le=1000, description="Genomes per generation.")
    elites: int = Field(4, ge=1, description="Best genomes kept unchanged (re-measured).")
    alpha: float = Field(0.6, ge=0, le=2, description="BLX-α-β: extension on the better side.")
    beta: float = Field(0.4, ge=0, le=2, description="BLX-α-β: extension on the worse side.")
    mutation_start: float = Field(0.31, ge=0, le=1, description="Mutation rate of generation 0.")
    mutation_end: float = Field(0.09, ge=0, le=1, description="Mutation rate after the decay.")
    mutation_generations: int = Field(
        100, ge=1, description="Generations over which the rate decays linearly."
    )

    @model_validator(mode="after")
    def _sizes(self) -> GeneticParams:
        if self.elites >= self.population - 1:
            raise ValueError(
                f"elites ({self.elites}) must leave at least 2 offspring in a population of "
                f"{self.population}"
            )
        return self


class TwinParams(_Params):
    """Training on a digital twin of this device (``labctl twin import`` / ``labctl twin fit``).

    The device time it took to sample the twin's data counts like any other device time: give
    the sample file (its recorded device-seconds are charged at the start of the run) or the
    figure itself.
    """

    twin: Path = Field(
        description="The twin: labctl NPZ or a brains-py .pt/.pickle file (relative to the config)."
    )
    samples: Path | None = Field(
        None,
        description="HDF5 file of `labctl twin sample` the twin was fitted to (its "
        "device-seconds count); relative to the config.",
    )
    sampling_device_seconds: float | None = Field(
        None, ge=0, description="Device time (s) the twin's data took, when there is no file."
    )
    twin_iterations: int = Field(
        500, ge=1, le=100_000, description="Gradient steps per start on the twin."
    )
    twin_starts: int = Field(10, ge=1, le=1000, description="Random starts on the twin at most.")

    @model_validator(mode="after")
    def _one_sampling_figure(self) -> TwinParams:
        if self.samples is not None and self.sampling_device_seconds is not None:
            raise ValueError(
                "give samples or sampling_device_seconds, not both (the file records the time)"
            )
        return self


class TwinTransferParams(TwinParams):
    """Train on the twin with its exact gradients, then apply the controls to the device."""


class TwinHgeParams(TwinParams):
    """Train on the twin, then go on in materia with HGE from the twin's solution."""


class ScreenedHgeParams(_Params):
    """HGE descent from the best of many screened random control sets (``screened_hge``).

    Screening: ``screen_sets`` random control sets, every case of every set one short DC
    plateau (no tones), all in one record through the safe device; ranked by the configured
    loss. Descent: HGE with the configured optimiser from the best set; a start that has not
    improved for ``stall_patience`` iterations gives way to the next-best set (a fresh screen
    when all ``candidates`` are used). The run counts as solved, and stops, at the first
    iteration with 100 % accuracy and a separation of at least ``margin_noise_multiple`` times
    its measured noise.
    """

    screen_sets: int = Field(
        32, ge=1, le=10_000, description="Random control sets measured per screen."
    )
    screen_window_s: float = Field(
        0.005, gt=0, le=10, description="DC averaging window per case while screening (s)."
    )
    screen_settle_s: float | None = Field(
        None,
        ge=0,
        le=10,
        description="Settling per screened plateau (s); default homodyne.settle_s.",
    )
    candidates: int = Field(
        12, ge=1, le=10_000, description="Best screened sets kept as starts, best first."
    )
    stall_patience: int = Field(
        6,
        ge=1,
        le=100_000,
        description="Iterations without a relative improvement of run.stall_min_improvement "
        "before the next start.",
    )
    start_iterations: int | None = Field(
        12,
        ge=1,
        le=100_000,
        description="Iterations a start gets to reach 100 % accuracy before the next start "
        "(a start that is still improving slowly is predictably failing by then); null: only "
        "the stall rule.",
    )
    margin_noise_multiple: float | None = Field(
        5.0,
        gt=0,
        le=1e6,
        description="Stop as solved once accuracy is 100 % and the separation is at least this "
        "many times its noise (standard error of the difference of two case means); a "
        "refinement of the accuracy hold, so off when run.accuracy_hold_iterations is null; "
        "null: only the run section's stop rules.",
    )
    margin_weight: float = Field(
        0.0,
        ge=0,
        le=1e6,
        description="Weight of a squared hinge on the separation added to the configured "
        "loss, with its margin at margin_noise_multiple times the measured noise: it keeps "
        "pulling after 100 % accuracy until that margin (0: the configured loss alone).",
    )
    max_step_v: float | None = Field(
        None,
        gt=0,
        le=10,
        description="Trust region: the longest control step (V, Euclidean) of one iteration; "
        "null: the optimiser's step unchanged.",
    )

    @model_validator(mode="after")
    def _candidates(self) -> ScreenedHgeParams:
        if self.margin_weight > 0 and self.margin_noise_multiple is None:
            raise ValueError("margin_weight > 0 needs margin_noise_multiple (the margin)")
        if self.candidates > self.screen_sets:
            raise ValueError(
                f"candidates ({self.candidates}) cannot exceed screen_sets ({self.screen_sets})"
            )
        return self
