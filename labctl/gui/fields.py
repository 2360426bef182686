"""Form fields bound to configuration paths, and how they show a schema problem.

A :class:`Binding` ties one widget to one field path (``"homodyne.window_s"``): it reads the
widget's value for the data, writes a value into the widget, and shows an issue (red border
and the message as tooltip) or clears it. Text fields take YAML scalars and flow collections
(``0.1``, ``[150, 1000]``, ``{e1: 0.02}``), so whatever a user types reaches the schema, which
says what is wrong; an empty text field removes the key (the schema default applies, shown
greyed as the placeholder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from PyQt5.QtWidgets import QCheckBox, QComboBox, QLineEdit, QWidget

INVALID_STYLE = (
    'QLineEdit[invalid="true"], QComboBox[invalid="true"], QCheckBox[invalid="true"], '
    'QPlainTextEdit[invalid="true"] { border: 2px solid #e53935; border-radius: 3px; '
    "background: #3a1f1f; }"
)
"""Style sheet for a form: fields with the ``invalid`` property get a red border."""


def mark(widget: QWidget, message: str | None, base_tip: str = "") -> None:
    """Show ``message`` at ``widget`` (red border, tooltip), or clear it (None)."""
    invalid = message is not None
    if bool(widget.property("invalid")) != invalid:
        widget.setProperty("invalid", invalid)
        style = widget.style()
        if style is not None:
            style.unpolish(widget)
            style.polish(widget)
        widget.update()
    tip = f"<b style='color:#e53935'>{_escape(message)}</b>" if invalid else ""
    if base_tip:
        tip = f"{tip}<br>{_escape(base_tip)}" if tip else _escape(base_tip)
    widget.setToolTip(tip)


def discard(widget: QWidget) -> None:
    """Take ``widget`` off the screen now and delete it later (a rebuilt form row)."""
    widget.hide()
    widget.setParent(None)
    widget.deleteLater()


def is_marked(widget: QWidget) -> bool:
    """Whether ``widget`` shows an issue."""
    return bool(widget.property("invalid"))


def _escape(text: str | None) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def yaml_text(value: Any) -> str:
    """A value as one line of YAML (``0.1``, ``[150.0, 1000.0]``, ``{e1: 0.02}``)."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float | str):
        if isinstance(value, str):
            dumped = yaml.safe_dump(value, default_flow_style=True).strip()
            return dumped.removesuffix("\n...").removesuffix("...").strip()
        return str(value).lower() if isinstance(value, bool) else repr(value)
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()


def parse_yaml_text(text: str) -> Any:
    """The value a user typed: YAML, or the raw text when it is not YAML (None when empty)."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return yaml.safe_load(stripped)
    except yaml.YAMLError:
        return stripped


@dataclass
class Binding:
    """One form field: a widget showing the value at ``path``.

    Attributes:
        path: The field path, as issues name it.
        widget: The widget (its border and tooltip show issues).
        read: The widget's value for the data (None: remove the key).
        write: Puts a data value (or the default, when absent) into the widget.
        base_tip: The field's description, kept in the tooltip.
    """

    path: str
    widget: QWidget
    read: Callable[[], Any]
    write: Callable[[Any, Any], None]
    base_tip: str = ""
    issue: str | None = field(default=None)

    def show_issue(self, message: str | None) -> None:
        """Show (or clear, with None) a problem at this field."""
        self.issue = message
        mark(self.widget, message, self.base_tip)


def text_binding(
    path: str, on_edit: Callable[[], None], tip: str = "", as_string: bool = False
) -> Binding:
    """A line edit for a YAML value (``as_string``: the text itself, e.g. names and paths)."""
    edit = QLineEdit()
    edit.setObjectName(path)
    edit.setClearButtonEnabled(False)

    def read() -> Any:
        if as_string:
            return edit.text().strip() or None
        return parse_yaml_text(edit.text())

    def write(value: Any, default: Any) -> None:
        edit.blockSignals(True)
        edit.setText("" if value is None else (str(value) if as_string else yaml_text(value)))
        edit.setPlaceholderText(
            "" if default is None else (str(default) if as_string else yaml_text(default))
        )
        edit.blockSignals(False)

    edit.textEdited.connect(lambda _text: on_edit())
    binding = Binding(path, edit, read, write, tip)
    mark(edit, None, tip)
    return binding


def choice_binding(
    path: str,
    choices: Sequence[Any],
    on_edit: Callable[[], None],
    tip: str = "",
    editable: bool = False,
) -> Binding:
    """A combo box of ``choices`` (``editable``: free text allowed too, e.g. labelings)."""
    combo = QComboBox()
    combo.setObjectName(path)
    combo.setEditable(editable)
    for choice in choices:
        combo.addItem(str(choice), choice)
    touched = {"value": False}

    def read() -> Any:
        if editable:
            text = combo.currentText().strip()
            index = combo.findText(text)
            return combo.itemData(index) if index >= 0 else (text or None)
        return combo.currentData()

    def write(value: Any, default: Any) -> None:
        shown = value if value is not None else default
        combo.blockSignals(True)
        index = combo.findData(shown) if shown is not None else -1
        if index < 0 and shown is not None:
            index = combo.findText(str(shown))
        if index >= 0:
            combo.setCurrentIndex(index)
        elif editable:
            combo.setEditText("" if shown is None else str(shown))
        else:
            combo.setCurrentIndex(-1)
        combo.blockSignals(False)
        touched["value"] = False

    def edited() -> None:
        touched["value"] = True
        on_edit()

    combo.activated.connect(lambda _index: edited())
    if editable:
        line = combo.lineEdit()
        if line is not None:
            line.textEdited.connect(lambda _text: edited())
    binding = Binding(path, combo, read, write, tip)
    mark(combo, None, tip)
    return binding


def bool_binding(path: str, label: str, on_edit: Callable[[], None], tip: str = "") -> Binding:
    """A check box."""
    box = QCheckBox(label)
    box.setObjectName(path)

    def write(value: Any, default: Any) -> None:
        box.blockSignals(True)
        box.setChecked(bool(value if value is not None else default))
        box.blockSignals(False)

    box.clicked.connect(lambda _checked: on_edit())
    binding = Binding(path, box, box.isChecked, write, tip)
    mark(box, None, tip)
    return binding
