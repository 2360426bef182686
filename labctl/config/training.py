"""Schema of the training sections: ``task``, ``loss``, ``optimiser``, ``run`` and ``method``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from labctl.config.setup import _Strict


class TaskConfig(_Strict):
    """What the device is trained to do."""

    kind: Literal["gate", "vc4", "sphere", "csv"] = Field(
        "gate",
        description="'gate' (Boolean gate), 'vc4' (a labeling of 4 points), 'sphere' (3-D "
        "inside/outside) or 'csv' (your own cases).",
    )
    name: str | None = Field(
        None, description="Gate name (AND, OR, NAND, NOR, XOR, XNOR) or VC labeling ('0110')."
    )
    inputs: list[str] | None = Field(
        None, description="Input electrodes in task-input order (default: every input)."
    )
    input_range: tuple[float, float] | None = Field(
        None, description="Task-unit interval mapped onto each input electrode's range."
    )
    margin_v: float = Field(0.0, ge=0, description="Keep inputs this far inside their ranges.")
    input_windows_v: dict[str, tuple[float, float]] | None = Field(
        None,
        description="Per input electrode (by name) the voltage window (V, low < high) that "
        "input_range maps onto instead of the electrode's whole range; inside that range.",
    )
    csv_path: Path | None = Field(None, description="CSV of cases (kind: csv), relative path ok.")
    input_columns: list[str] | None = Field(None, description="CSV input columns.")
    target_column: str = Field("target", description="CSV target column (0/1).")
    n_points: int = Field(200, ge=10, description="Sphere task: number of points.")
    test_fraction: float = Field(0.25, ge=0, lt=1, description="Sphere: held-out fraction.")
    seed: int = Field(0, ge=0, description="Sphere task: sampling seed.")
    batch_size: int | None = Field(
        None, ge=2, description="Cases per iteration (default: all training cases)."
    )

    @model_validator(mode="after")
    def _named(self) -> TaskConfig:
        gates = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")
        if self.kind == "gate" and (self.name or "").upper() not in gates:
            raise ValueError(f"task.name must be one of {', '.join(gates)} for kind 'gate'")
        if self.kind == "vc4":
            labels = self.name or ""
            if len(labels) != 4 or set(labels) - {"0", "1"} or len(set(labels)) < 2:
                raise ValueError("task.name must be a 4-digit labeling such as '0110' for 'vc4'")
        if self.kind == "csv" and self.csv_path is None:
            raise ValueError("task.csv_path is required for kind 'csv'")
        return self


class LossConfig(_Strict):
    """The loss and its parameters."""

    name: Literal["corrsig", "cor_sigmoid", "mse", "fisher"] = "corrsig"
    params: dict[str, float] = Field(
        default_factory=dict, description="Loss parameters (in nA where they carry a scale)."
    )


class OptimiserConfig(_Strict):
    """The optimiser that turns dL/dV into steps on the control voltages."""

    name: Literal["gd", "momentum", "adam"] = "adam"
    learning_rate: float = Field(0.05, gt=0, description="Step size (V per unit gradient).")
    params: dict[str, float | bool] = Field(
        default_factory=dict, description="Extra parameters (beta, beta1, beta2, eps, nesterov)."
    )


class RunConfig(_Strict):
    """Stopping, restarts and storage of a training run."""

    max_iterations: int = Field(300, ge=1, description="Iteration budget.")
    max_device_seconds: float | None = Field(None, gt=0, description="Device-time budget (s).")
    loss_threshold: float | None = Field(None, description="Stop when the loss is below this.")
    accuracy_hold_iterations: int | None = Field(
        5, ge=1, description="Stop after this many iterations at 100% accuracy."
    )
    stall_patience: int = Field(40, ge=1, description="Iterations without improvement = stall.")
    stall_min_improvement: float = Field(
        0.01, ge=0, description="Relative loss improvement that counts as progress."
    )
    max_restarts: int | None = Field(None, ge=0, description="Restarts allowed on stall.")
    seed: int = Field(0, ge=0, description="Seed of the initial and restart controls.")
    directory: Path = Field(Path("runs"), description="Where run directories are created.")
    name: str | None = Field(None, description="Run name (default: task name).")
    store_raw: bool = Field(False, description="Also store every raw record (large).")
    report: bool = Field(True, description="Write report.png at the end.")


class MethodConfig(_Strict):
    """The training method: homodyne gradient extraction or one of the baselines.

    ``params`` is validated by the method's own model (see
    :mod:`labctl.training.methods`): unknown keys and bad values are errors naming
    ``method.params.<field>``; after validation it holds every parameter, defaults included.
    """

    name: str = Field(
        "hge",
        description="Training method: 'hge' (default), 'finite_difference', 'spsa', 'genetic', "
        "'twin_transfer' or 'twin_hge' "
        "(see labctl.training.methods for the registered ones).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Method-specific parameters (validated per method)."
    )
    _parsed: BaseModel | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _validate_params(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic reports the wrong type
        from labctl.training.methods import UnknownMethodError, get_method

        name = data.get("name", "hge")
        if not isinstance(name, str):
            return data  # pydantic reports the wrong type
        try:
            spec = get_method(name)
        except UnknownMethodError as exc:
            raise _located("name", name, str(exc)) from None
        params = data.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise _located("params", params, "must be a mapping of parameter names to values")
        try:
            parsed = spec.params_model.model_validate(params)
        except ValidationError as exc:
            details = [
                InitErrorDetails(
                    type=error["type"],
                    loc=("params", *error["loc"]),
                    input=error["input"],
                    ctx=error.get("ctx", {}),
                )
                for error in exc.errors()
            ]
            raise ValidationError.from_exception_data("MethodConfig", details) from None
        return {**data, "name": spec.name, "params": parsed.model_dump(mode="json")}

    @model_validator(mode="after")
    def _keep_parsed(self) -> MethodConfig:
        from labctl.training.methods import get_method

        self._parsed = get_method(self.name).params_model.model_validate(self.params)
        return self

    def parsed_params(self) -> BaseModel:
        """The parameters as the method's validated model."""
        if self._parsed is None:  # pragma: no cover - set by the validator
            raise RuntimeError("method parameters were not validated")
        return self._parsed


def _located(field: str, value: Any, message: str) -> ValidationError:
    """A validation error at ``field`` of the method section with ``message``."""
    return ValidationError.from_exception_data(
        "MethodConfig",
        [
            InitErrorDetails(
                type=PydanticCustomError("method_error", message),
                loc=(field,),
                input=value,
            )
        ],
    )
