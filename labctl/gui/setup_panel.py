"""The setup panel: open, edit, validate and save a configuration; connect the device.

The form shows the settings users change most (setup and backend, electrodes and ranges,
task, homodyne plan, optimiser, stopping) and keeps every other key of the file as it is.
After each edit (debounced) the whole data is validated by the schema the CLI uses
(:meth:`~labctl.gui.presenters.ConfigFormModel.validate`); each problem is shown at its field
(red border, message in the tooltip) and listed above the form, and :attr:`validation` tells
the window whether Start is allowed. The frequency plan of a valid configuration is drawn with
its collision check (:class:`~labctl.gui.plan_view.PlanView`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from labctl.config import ConfigError
from labctl.gui.device_session import SessionInfo
from labctl.gui.fields import (
    INVALID_STYLE,
    Binding,
    bool_binding,
    choice_binding,
    discard,
    text_binding,
)
from labctl.gui.plan_view import PlanView
from labctl.gui.presenters import (
    ConfigFormModel,
    Validation,
    get_in,
    parse_path,
    path_text,
    plan_markers,
    resolve_issue,
    schema_defaults,
)

log = logging.getLogger(__name__)

GATES = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")

STARTER_YAML = """\
# A new configuration: the simulated DNPU, XOR on inputs e0/e6, controls e1-e5.
setup:
  name: sim-dnpu
  backend:
    name: simulated
    settings: {model: hopping, seed: 0}
  sample_rate_hz: 10000
  amplifier: {gain_v_per_a: 2.53e7, bandwidth_hz: 2000, output_swing_v: 4.0}
  safety: {max_abs_v: 1.6, slew_v_per_s: 200}
  electrodes:
    - {name: e0, role: input,   min_v: -1.2, max_v: 1.2}
    - {name: e1, role: control, min_v: -1.2, max_v: 1.2}
    - {name: e2, role: control, min_v: -1.2, max_v: 1.2}
    - {name: e3, role: control, min_v: -1.2, max_v: 1.2}
    - {name: e4, role: control, min_v: -1.2, max_v: 1.2}
    - {name: e5, role: control, min_v: -1.2, max_v: 1.2}
    - {name: e6, role: input,   min_v: -1.2, max_v: 1.2}
homodyne: {mode: parallel, amplitude_v: 0.01, window_s: 0.1, settle_s: 0.015}
task: {kind: gate, name: XOR}
loss: {name: cor_sigmoid}
optimiser: {name: adam, learning_rate: 0.05}
run: {max_iterations: 300, directory: runs}
"""


def _backend_names() -> list[str]:
    from labctl.device.registry import available_backends

    try:
        return sorted(available_backends())
    except Exception as exc:  # a broken entry point must not stop the GUI
        log.warning("could not list the backends: %s", exc)
        return []


class SetupPanel(QWidget):
    """Edit and validate a configuration; connect and disconnect the device session.

    Signals:
        validated(Validation): After every validation.
        connect_requested(), disconnect_requested(): The device buttons.
        path_changed(str): The file being edited changed (for the window title).
    """

    validated = pyqtSignal(object)
    connect_requested = pyqtSignal()
    disconnect_requested = pyqtSignal()
    path_changed = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setStyleSheet(INVALID_STYLE)
        self._defaults = schema_defaults()
        self._model = ConfigFormModel.from_text(STARTER_YAML)
        self._save_path: Path | None = None
        self._bindings: dict[str, Binding] = {}
        self._targets: dict[str, list[Binding]] = {}
        self._rows: list[list[Binding]] = []
        self._sample_rate_hz: float | None = None
        self._validation = Validation(loaded=None)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self._validate_slot)
        self._build()
        self._rebuild_electrodes()
        self._refresh_fields()
        self.validate_now()

    # ------------------------------------------------------------------ public
    @property
    def validation(self) -> Validation:
        """The latest validation (the configuration a run would start with)."""
        return self._validation

    @property
    def model(self) -> ConfigFormModel:
        """The configuration being edited."""
        return self._model

    @property
    def save_path(self) -> Path | None:
        """Where Save writes (None: Save asks, as Save as)."""
        return self._save_path

    def field(self, path: str) -> QWidget:
        """The widget of the field at ``path`` (e.g. ``"setup.electrodes[2].max_v"``)."""
        return self._bindings[path].widget

    def binding(self, path: str) -> Binding:
        """The binding of the field at ``path``."""
        return self._bindings[path]

    def field_paths(self) -> list[str]:
        """Every field path in the form."""
        return list(self._bindings)

    def set_value(self, path: str, value: Any) -> None:
        """Set a field as if typed (tests, the run browser): updates widget and data."""
        binding = self._bindings[path]
        binding.write(value, get_in(self._defaults, parse_path(path)))
        self._model.set(parse_path(path), value)
        self._edited_any()

    def open_file(self, path: Path) -> bool:
        """Load a YAML configuration file; False (and the reason shown) if it cannot be read."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            self._show_load_error(f"cannot read {path}: {exc}")
            return False
        if self.load_text(text, Path(path).resolve()):
            self._save_path = Path(path).resolve()
            self.path_changed.emit(str(self._save_path))
            log.info("opened configuration %s", self._save_path)
            return True
        return False

    def load_text(self, text: str, source: Path | None, save_path: Path | None = None) -> bool:
        """Edit configuration ``text`` (``source`` anchors relative paths; Save goes to
        ``save_path``, or asks when None)."""
        try:
            model = ConfigFormModel.from_text(text, source)
        except ConfigError as exc:
            self._show_load_error("; ".join(str(i) for i in exc.issues))
            return False
        self._model = model
        self._save_path = save_path
        self._rebuild_electrodes()
        self._refresh_fields()
        self.validate_now()
        self.path_changed.emit(str(save_path) if save_path else "(unsaved)")
        return True

    def save(self) -> bool:
        """Write the configuration to its file (asks for one when it has none)."""
        if self._save_path is None:
            return self.save_as()
        return self._write(self._save_path)

    def save_as(self, path: Path | None = None) -> bool:
        """Write the configuration to ``path`` (asks when None) and keep editing that file."""
        if path is None:
            chosen, _ = QFileDialog.getSaveFileName(
                self,
                "Save configuration",
                str(self._save_path or "config.yaml"),
                "YAML (*.yaml *.yml)",
            )
            if not chosen:
                return False
            path = Path(chosen)
        return self._write(Path(path).resolve())

    def ask_open(self) -> None:
        """The Open button: choose a file."""
        chosen, _ = QFileDialog.getOpenFileName(
            self, "Open configuration", str(self._save_path or Path.cwd()), "YAML (*.yaml *.yml)"
        )
        if chosen:
            self.open_file(Path(chosen))

    def set_device_rate(self, sample_rate_hz: float | None) -> None:
        """Plan with the rate the connected device runs at (None: the configured rate)."""
        if sample_rate_hz != self._sample_rate_hz:
            self._sample_rate_hz = sample_rate_hz
            self.validate_now()

    def set_session(self, state: str, info: SessionInfo | None) -> None:
        """Show the device session's state and the instruments' identities."""
        self._session_state.setText(f"device: {state}")
        self._connect.setEnabled(state == "disconnected")
        self._disconnect.setEnabled(state == "connected")
        if info is None:
            self._identity.setPlainText("")
            return
        lines = [f"setup {info.setup_name}, {info.sample_rate_hz:g} S/s"]
        lines.append(yaml.safe_dump(info.identity, sort_keys=False, default_flow_style=False))
        self._identity.setPlainText("\n".join(lines))

    def set_connect_allowed(self, allowed: bool) -> None:
        """Connecting is refused while a run owns the instruments."""
        self._connect.setEnabled(allowed and self._session_state.text() == "device: disconnected")

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        open_button = QPushButton("Open…", self)
        open_button.clicked.connect(self.ask_open)
        save_button = QPushButton("Save", self)
        save_button.clicked.connect(self._save_clicked)
        save_as_button = QPushButton("Save as…", self)
        save_as_button.clicked.connect(self._save_as_clicked)
        self._path_label = QLabel("(unsaved)", self)
        self._path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        files = QHBoxLayout()
        for widget in (open_button, save_button, save_as_button):
            files.addWidget(widget)
        files.addWidget(self._path_label, 1)
        self.path_changed.connect(self._path_label.setText)

        self.issues_label = QLabel(self)
        self.issues_label.setWordWrap(True)
        self.issues_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.issues_label.setStyleSheet("QLabel { color: #ff6e6e; }")

        form = QWidget()
        form_layout = QVBoxLayout(form)
        form_layout.addWidget(self._setup_group())
        form_layout.addWidget(self._electrode_group())
        form_layout.addWidget(self._task_group())
        form_layout.addWidget(self._homodyne_group())
        form_layout.addWidget(self._optimiser_group())
        form_layout.addWidget(self._stopping_group())
        form_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(form)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        plan_box = QGroupBox("Frequency plan and collision check", right)
        plan_layout = QVBoxLayout(plan_box)
        self.plan_view = PlanView(plan_box)
        plan_layout.addWidget(self.plan_view)
        right_layout.addWidget(plan_box, 2)
        right_layout.addWidget(self._device_group(), 1)

        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(files)
        layout.addWidget(self.issues_label)
        layout.addWidget(splitter, 1)

    def _save_clicked(self) -> None:
        self.save()

    def _save_as_clicked(self) -> None:
        self.save_as()

    def _add(self, binding: Binding) -> Binding:
        self._bindings[binding.path] = binding
        self._targets.setdefault(binding.path, []).append(binding)
        return binding

    def _text(self, path: str, tip: str = "", as_string: bool = False) -> QWidget:
        return self._add(text_binding(path, self._editor(path), tip, as_string)).widget

    def _choice(
        self, path: str, choices: list[Any], tip: str = "", editable: bool = False
    ) -> QWidget:
        return self._add(choice_binding(path, choices, self._editor(path), tip, editable)).widget

    def _bool(self, path: str, label: str, tip: str = "") -> QWidget:
        return self._add(bool_binding(path, label, self._editor(path), tip)).widget

    def _editor(self, path: str) -> Callable[[], None]:
        return lambda: self._edited(path)

    def _setup_group(self) -> QGroupBox:
        box = QGroupBox("Setup and backend")
        form = QFormLayout(box)
        form.addRow("Setup name", self._text("setup.name", "recorded with every run", True))
        form.addRow(
            "Backend",
            self._choice(
                "setup.backend.name", list(_backend_names()), "installed device backends (registry)"
            ),
        )
        form.addRow(
            "Backend settings",
            self._text(
                "setup.backend.settings",
                "the backend's own settings as a YAML mapping, e.g. {model: hopping, seed: 0, "
                "realtime: false}",
            ),
        )
        self._composite_note = QLabel("")
        self._composite_note.setWordWrap(True)
        form.addRow(self._composite_note)
        form.addRow("Sample rate (S/s)", self._text("setup.sample_rate_hz", "AO/AI rate (Hz)"))
        form.addRow(
            "Amplifier gain (V/A)",
            self._text("setup.amplifier.gain_v_per_a", "transimpedance gain; negative: inverting"),
        )
        form.addRow(
            "Amplifier bandwidth (Hz)",
            self._text("setup.amplifier.bandwidth_hz", "first-order bandwidth; empty: fast"),
        )
        form.addRow("Max |V| (V)", self._text("setup.safety.max_abs_v", "global ceiling"))
        form.addRow("Slew limit (V/s)", self._text("setup.safety.slew_v_per_s"))
        return box

    def _electrode_group(self) -> QGroupBox:
        box = QGroupBox("Electrodes and ranges (V)")
        outer = QVBoxLayout(box)
        self._electrode_grid = QGridLayout()
        outer.addLayout(self._electrode_grid)
        buttons = QHBoxLayout()
        add = QPushButton("Add electrode", box)
        add.clicked.connect(self._add_electrode)
        remove = QPushButton("Remove last", box)
        remove.clicked.connect(self._remove_electrode)
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        outer.addLayout(buttons)
        return box

    def _task_group(self) -> QGroupBox:
        box = QGroupBox("Task and loss")
        form = QFormLayout(box)
        form.addRow("Kind", self._choice("task.kind", ["gate", "vc4", "sphere", "csv"]))
        form.addRow(
            "Name",
            self._choice(
                "task.name", list(GATES), "gate name, or a 4-digit labeling for vc4", editable=True
            ),
        )
        form.addRow("Inputs", self._text("task.inputs", "input electrodes, e.g. [e0, e6]"))
        form.addRow("CSV file", self._text("task.csv_path", "cases (kind csv)", True))
        form.addRow("Batch size", self._text("task.batch_size", "cases per iteration"))
        form.addRow("Loss", self._choice("loss.name", ["corrsig", "cor_sigmoid", "mse", "fisher"]))
        return box

    def _homodyne_group(self) -> QGroupBox:
        box = QGroupBox("Homodyne plan")
        form = QFormLayout(box)
        form.addRow("Mode", self._choice("homodyne.mode", ["parallel", "sequential", "fd"]))
        form.addRow(
            "Perturbed electrodes",
            self._text("homodyne.electrodes", "default: every control, e.g. [e1, e2]"),
        )
        form.addRow(
            "Tone amplitude (V)",
            self._text("homodyne.amplitude_v", "one value, or per electrode {e1: 0.02}"),
        )
        form.addRow(
            "Frequencies (Hz)",
            self._text("homodyne.frequencies_hz", "explicit tones; empty: planned"),
        )
        form.addRow("Window (s)", self._text("homodyne.window_s", "per operating point"))
        form.addRow("Settle (s)", self._text("homodyne.settle_s"))
        form.addRow("Band (Hz)", self._text("homodyne.band_hz", "[low, high]"))
        form.addRow("Min spacing (Hz)", self._text("homodyne.min_spacing_hz"))
        form.addRow("Mains (Hz)", self._text("homodyne.mains_hz", "fundamentals to avoid"))
        form.addRow("Mains guard (bins)", self._text("homodyne.mains_guard_bins"))
        form.addRow("Max order", self._choice("homodyne.max_order", [2, 3]))
        form.addRow("", self._bool("homodyne.curvature", "curvature (Hessian from the record)"))
        form.addRow("Phase", self._choice("homodyne.phase", ["projection", "sign"]))
        form.addRow(
            "Demodulation",
            self._choice("homodyne.demodulation", ["least_squares", "boxcar", "software_lockin"]),
        )
        form.addRow(
            "Calibration file",
            self._text(
                "homodyne.calibration.file", "default: next to the config, *.calibration.json", True
            ),
        )
        return box

    def _optimiser_group(self) -> QGroupBox:
        box = QGroupBox("Optimiser")
        form = QFormLayout(box)
        form.addRow("Optimiser", self._choice("optimiser.name", ["gd", "momentum", "adam"]))
        form.addRow("Learning rate", self._text("optimiser.learning_rate"))
        form.addRow("Parameters", self._text("optimiser.params", "e.g. {beta1: 0.9}"))
        return box

    def _stopping_group(self) -> QGroupBox:
        box = QGroupBox("Stopping and storage")
        form = QFormLayout(box)
        form.addRow("Max iterations", self._text("run.max_iterations"))
        form.addRow("Max device time (s)", self._text("run.max_device_seconds"))
        form.addRow("Loss threshold", self._text("run.loss_threshold"))
        form.addRow("Hold at 100 % (it.)", self._text("run.accuracy_hold_iterations"))
        form.addRow("Stall patience (it.)", self._text("run.stall_patience"))
        form.addRow("Max restarts", self._text("run.max_restarts", "empty: unlimited"))
        form.addRow("Seed", self._text("run.seed"))
        form.addRow(
            "Run directory", self._text("run.directory", "relative to the working directory", True)
        )
        form.addRow("Run name", self._text("run.name", "default: the task name", True))
        form.addRow("", self._bool("run.store_raw", "store raw records (spectrum plot)"))
        form.addRow("", self._bool("run.report", "write report.png at the end"))
        return box

    def _device_group(self) -> QGroupBox:
        box = QGroupBox("Device session")
        layout = QVBoxLayout(box)
        buttons = QHBoxLayout()
        self._connect = QPushButton("Connect", box)
        self._connect.clicked.connect(self.connect_requested.emit)
        self._disconnect = QPushButton("Disconnect", box)
        self._disconnect.clicked.connect(self.disconnect_requested.emit)
        self._disconnect.setEnabled(False)
        self._session_state = QLabel("device: disconnected", box)
        buttons.addWidget(self._connect)
        buttons.addWidget(self._disconnect)
        buttons.addWidget(self._session_state, 1)
        self._identity = QPlainTextEdit(box)
        self._identity.setReadOnly(True)
        self._identity.setPlaceholderText("instrument identities appear here once connected")
        layout.addLayout(buttons)
        layout.addWidget(self._identity)
        return box

    # ------------------------------------------------------------------ electrodes
    def _rebuild_electrodes(self) -> None:
        for row in self._rows:
            for binding in row:
                self._bindings.pop(binding.path, None)
                discard(binding.widget)
        self._targets = {
            k: v for k, v in self._targets.items() if not k.startswith("setup.electrodes")
        }
        self._rows = []
        grid = self._electrode_grid
        while grid.count():
            item = grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                discard(widget)
        for col, title in enumerate(("name", "role", "min (V)", "max (V)", "rest (V)")):
            grid.addWidget(QLabel(f"<b>{title}</b>"), 0, col)
        electrodes = self._model.get(("setup", "electrodes"), [])
        count = len(electrodes) if isinstance(electrodes, list) else 0
        for index in range(count):
            prefix = f"setup.electrodes[{index}]"
            row = [
                text_binding(f"{prefix}.name", self._editor(f"{prefix}.name"), "unique name", True),
                choice_binding(
                    f"{prefix}.role", ["input", "control"], self._editor(f"{prefix}.role")
                ),
                text_binding(f"{prefix}.min_v", self._editor(f"{prefix}.min_v"), "lowest voltage"),
                text_binding(f"{prefix}.max_v", self._editor(f"{prefix}.max_v"), "highest voltage"),
                text_binding(
                    f"{prefix}.rest_v", self._editor(f"{prefix}.rest_v"), "resting voltage"
                ),
            ]
            for col, binding in enumerate(row):
                self._add(binding)
                grid.addWidget(binding.widget, index + 1, col)
            self._targets[prefix] = row[2:]  # a range problem shows at min, max and rest
            self._rows.append(row)

    def _add_electrode(self) -> None:
        electrodes = self._model.get(("setup", "electrodes"), [])
        if not isinstance(electrodes, list):
            electrodes = []
        names = set(self._model.electrode_names())
        k = len(electrodes)
        while f"e{k}" in names:
            k += 1
        electrodes.append({"name": f"e{k}", "role": "control", "min_v": -1.0, "max_v": 1.0})
        self._model.set(("setup", "electrodes"), electrodes)
        self._rebuild_electrodes()
        self._refresh_fields()
        self._edited_any()

    def _remove_electrode(self) -> None:
        electrodes = self._model.get(("setup", "electrodes"), [])
        if isinstance(electrodes, list) and electrodes:
            self._model.set(("setup", "electrodes"), electrodes[:-1])
            self._rebuild_electrodes()
            self._refresh_fields()
            self._edited_any()

    # ------------------------------------------------------------------ editing
    def _refresh_fields(self) -> None:
        composite = self._model.get(("setup", "instruments")) is not None
        for path in ("setup.backend.name", "setup.backend.settings"):
            self._bindings[path].widget.setEnabled(not composite)
        self._composite_note.setText(
            "composite setup (setup.instruments): edit the instruments in the YAML file"
            if composite
            else ""
        )
        backend = self._model.get(("setup", "backend", "name"))
        combo = self._bindings["setup.backend.name"].widget
        known = isinstance(combo, QComboBox) and combo.findText(str(backend)) >= 0
        if isinstance(combo, QComboBox) and isinstance(backend, str) and backend and not known:
            combo.addItem(backend, backend)  # an unknown name stays visible, marked invalid
        for path, binding in self._bindings.items():
            parts = parse_path(path)
            default = get_in(self._defaults, parts)
            if path.endswith(".rest_v"):
                default = 0.0
            binding.write(self._model.get(parts), default)

    def _edited(self, path: str) -> None:
        binding = self._bindings.get(path)
        if binding is None:
            return
        self._model.set(parse_path(path), binding.read())
        self._edited_any()

    def _edited_any(self) -> None:
        label = str(self._save_path) if self._save_path else "(unsaved)"
        self._path_label.setText(f"{label} *" if self._model.dirty else label)
        self._timer.start()

    def _validate_slot(self) -> None:
        self.validate_now()

    def validate_now(self) -> Validation:
        """Validate the edited data now and show every problem at its field."""
        self._timer.stop()
        validation = self._model.validate(self._sample_rate_hz)
        self._validation = validation
        messages: dict[str, list[str]] = {}
        lines: list[str] = []
        names = self._model.electrode_names()
        for issue in validation.issues:
            target = resolve_issue(issue, self._targets.keys(), names)
            for binding in self._targets.get(target, []) if target else []:
                messages.setdefault(binding.path, []).append(issue.message)
            where = issue.path or target or "configuration"
            lines.append(f"• <b>{where}</b>: {_html(issue.message)}")
        for path, binding in self._bindings.items():
            found = messages.get(path)
            binding.show_issue("\n".join(found) if found else None)
        if validation.plan_error is not None:
            lines.append(f"• <b>homodyne plan</b>: {_html(validation.plan_error)}")
        elif validation.loaded is not None and not validation.has_task:
            lines.append("• no <b>task</b> section: nothing to train (the manual panel works)")
        self.issues_label.setText("<br>".join(lines))
        self.issues_label.setVisible(bool(lines))
        if validation.plan is not None and validation.loaded is not None:
            config = validation.loaded.config
            self.plan_view.show_plan(
                plan_markers(
                    validation.plan,
                    config.perturbed_electrodes(),
                    config.homodyne.mains_hz,
                    config.homodyne.band_hz,
                )
            )
        else:
            self.plan_view.show_plan(None, validation.plan_error)
        self.validated.emit(validation)
        return validation

    def _write(self, path: Path) -> bool:
        text = self._model.to_yaml()
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self._show_load_error(f"cannot save {path}: {exc}")
            return False
        self._model.saved_as(path)
        self._save_path = path
        self._path_label.setText(str(path))
        self.path_changed.emit(str(path))
        log.info("saved configuration %s", path)
        self.validate_now()  # relative paths now resolve next to the new file
        return True

    def _show_load_error(self, text: str) -> None:
        log.error(text)
        self.issues_label.setText(f"• {_html(text)}")
        self.issues_label.setVisible(True)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["STARTER_YAML", "SetupPanel", "path_text"]
