"""YAML configuration: typed schema, loading and error reporting.

A configuration is validated once, at the edge, into typed objects; nothing deeper re-validates
dicts. Every problem is reported with its field path (``setup.electrodes[2].max_v``) and a
one-line reason. Unknown keys are errors. A configuration never reaches a device before it has
validated: :func:`load_config` also validates the backend's own settings and cross-checks the
setup against the backend, without building or opening anything.

Sections: ``setup`` (required: backend, electrodes, amplifier, rates, safety limits),
``measure`` (``labctl measure``), ``homodyne`` (gradient measurement), ``task``,
``optimiser``, ``run`` and ``method`` (training).
"""

from labctl.config.homodyne import AdaptiveAmplitudeConfig, CalibrationConfig, HomodyneConfig
from labctl.config.lab import LabConfig
from labctl.config.loader import (
    ConfigError,
    ConfigIssue,
    LoadedConfig,
    json_schema,
    load_config,
    load_model_file,
    merge_overrides,
    parse_config,
)
from labctl.config.setup import (
    HARD_VOLTAGE_CEILING_V,
    AmplifierConfig,
    BackendConfig,
    ElectrodeConfig,
    MeasureConfig,
    OutputConfig,
    SafetyConfig,
    SetupConfig,
    SweepConfig,
)
from labctl.config.training import (
    LossConfig,
    MethodConfig,
    OptimiserConfig,
    RunConfig,
    TaskConfig,
)

__all__ = [
    "HARD_VOLTAGE_CEILING_V",
    "AdaptiveAmplitudeConfig",
    "AmplifierConfig",
    "BackendConfig",
    "CalibrationConfig",
    "ConfigError",
    "ConfigIssue",
    "ElectrodeConfig",
    "HomodyneConfig",
    "LabConfig",
    "LoadedConfig",
    "LossConfig",
    "MeasureConfig",
    "MethodConfig",
    "OptimiserConfig",
    "OutputConfig",
    "RunConfig",
    "SafetyConfig",
    "SetupConfig",
    "SweepConfig",
    "TaskConfig",
    "json_schema",
    "load_config",
    "load_model_file",
    "merge_overrides",
    "parse_config",
]
