"""The run browser: the runs in a directory; replay, export, resume, or reuse a configuration.

The table is sortable by date, task and result (and every other column). Opening a run reads
its store in the browser's worker thread and replays its plots in the browser's own
:class:`~labctl.gui.plots.LivePlots`; an iteration slider moves a cursor through it (the
per-iteration plots show that iteration, with its raw record when the run stored them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PyQt5.QtCore import QSortFilterProxyModel, Qt, pyqtSignal
from PyQt5.QtGui import QStandardItem, QStandardItemModel
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from labctl.config import LoadedConfig, parse_config
from labctl.gui.plots import LivePlots
from labctl.gui.presenters import BrowserRow, ControlInfo, RunHistory, browse_runs, plan_for
from labctl.gui.workers import JobThread, Relay
from labctl.homodyne.plan import FrequencyPlan
from labctl.run.store import IterationRecord, RunStore

log = logging.getLogger(__name__)

COLUMNS = ("run", "started (UTC)", "task", "status", "iterations", "best loss", "result")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2


@dataclass(frozen=True)
class Replay:
    """A stored run read back for replay."""

    path: Path
    records: tuple[IterationRecord, ...]
    config_text: str
    loaded: LoadedConfig | None
    controls: tuple[ControlInfo, ...]
    targets: np.ndarray | None
    sample_rate_hz: float | None
    plan: FrequencyPlan | None
    store_raw: bool
    status: str


def read_replay(path: Path) -> Replay:
    """Read a run directory for replay (worker thread): records, configuration, context."""
    with RunStore.open(path, read_only=True) as store:
        records = store.iterations(include_raw=False)
        text = store.config_text()
        status = store.status()
        history = store.status_history()
        if records:
            last = next(iter(store.iter_records(since=records[-1].run_iteration - 1)), None)
            if last is not None:
                records[-1] = last
    loaded: LoadedConfig | None
    try:
        loaded = parse_config(text, source=path / "config.yaml")
    except Exception as exc:
        log.warning("run %s: its configuration does not validate here: %s", path.name, exc)
        loaded = None
    controls: tuple[ControlInfo, ...] = ()
    targets = None
    rate = None
    plan = None
    store_raw = False
    if loaded is not None:
        setup = loaded.setup
        controls = tuple(
            ControlInfo(
                n,
                setup.electrodes[setup.electrode_index(n)].min_v,
                setup.electrodes[setup.electrode_index(n)].max_v,
            )
            for n in loaded.config.perturbed_electrodes()
        )
        store_raw = loaded.config.run.store_raw
        rate = setup.sample_rate_hz
        for _, _, summary in history:
            if isinstance(summary, dict) and "sample_rate_hz" in summary:
                rate = float(summary["sample_rate_hz"])
        try:
            from labctl.training.trainer import build_task

            task = build_task(loaded)
            train = task.subset("train") if task.split is not None else task
            targets = np.asarray(train.targets)
        except Exception as exc:
            log.debug("no targets for %s: %s", path.name, exc)
        try:
            plan = plan_for(loaded.config, rate)
        except Exception:
            plan = None
    return Replay(
        path, tuple(records), text, loaded, controls, targets, rate, plan, store_raw, status
    )


def read_raw(path: Path, run_iteration: int) -> IterationRecord | None:
    """One stored iteration with its raw arrays (worker thread)."""
    with RunStore.open(path, read_only=True) as store:
        record = next(iter(store.iter_records(since=run_iteration - 1)), None)
    return record if record is not None and record.run_iteration == run_iteration else None


class RunBrowser(QWidget):
    """List, replay, export and resume the runs of a directory.

    Signals:
        resume_requested(Path): Continue this run (the window starts it).
        load_config_requested(str, Path): Edit this stored configuration in Setup.
        replayed(Replay): A run was opened and its plots drawn.
    """

    resume_requested = pyqtSignal(object)
    load_config_requested = pyqtSignal(str, object)
    replayed = pyqtSignal(object)
    listed = pyqtSignal()

    def __init__(self, relay: Relay, directory: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._jobs = JobThread(relay, "labctl-run-browser")
        self._directory = Path(directory)
        self._rows: list[BrowserRow] = []
        self.replay: Replay | None = None
        self.history = RunHistory()
        self._build()

    # ------------------------------------------------------------------ public
    @property
    def directory(self) -> Path:
        """The runs directory shown."""
        return self._directory

    def set_directory(self, directory: Path) -> None:
        """Show the runs in ``directory``."""
        self._directory = Path(directory)
        self._dir_edit.setText(str(self._directory))
        self.refresh()

    def rows(self) -> list[BrowserRow]:
        """The runs listed (unsorted)."""
        return list(self._rows)

    def refresh(self) -> None:
        """List the runs again (read in the browser's thread)."""
        directory = self._directory
        self._status.setText(f"reading {directory} …")
        self._jobs.submit(lambda: browse_runs(directory), self._show_rows, self._failed)

    def open_run(self, path: Path) -> None:
        """Replay the run in ``path``."""
        self._status.setText(f"opening {path.name} …")
        self._jobs.submit(lambda: read_replay(Path(path)), self._show_replay, self._failed)

    def selected_path(self) -> Path | None:
        """The run selected in the table."""
        selection = self._table.selectionModel()
        indexes = selection.selectedRows() if selection is not None else []
        if not indexes:
            return None
        value = self._proxy.data(indexes[0], PATH_ROLE)
        return Path(value) if value else None

    def select(self, name: str) -> bool:
        """Select the run called ``name``."""
        for row in range(self._proxy.rowCount()):
            index = self._proxy.index(row, 0)
            if self._proxy.data(index, Qt.ItemDataRole.DisplayRole) == name:
                self._table.selectRow(row)
                return True
        return False

    def sort_by(self, column: str, ascending: bool = True) -> None:
        """Sort by a column (``"started (UTC)"``, ``"task"``, ``"result"`` ...)."""
        self._table.sortByColumn(
            COLUMNS.index(column),
            Qt.SortOrder.AscendingOrder if ascending else Qt.SortOrder.DescendingOrder,
        )

    def sorted_names(self) -> list[str]:
        """Run names in the order shown."""
        return [
            str(self._proxy.data(self._proxy.index(r, 0), Qt.ItemDataRole.DisplayRole))
            for r in range(self._proxy.rowCount())
        ]

    def export(self, fmt: str, out: Path | None = None) -> None:
        """Export the selected (or replayed) run to CSV or HDF5 (``out`` None: ask where)."""
        path = self.selected_path() or (self.replay.path if self.replay else None)
        if path is None:
            self._status.setText("select a run to export")
            return
        if out is None:
            suffix = "csv" if fmt == "csv" else "h5"
            chosen, _ = QFileDialog.getSaveFileName(
                self,
                "Export run",
                str(path / f"{'iterations' if fmt == 'csv' else 'run'}.{suffix}"),
            )
            if not chosen:
                return
            out = Path(chosen)
        from labctl.run.export import export_run

        target = out
        self._status.setText(f"exporting {path.name} …")
        self._jobs.submit(
            lambda: export_run(path, fmt, target),  # type: ignore[arg-type]
            lambda written: self._status.setText(f"exported {written}"),
            self._failed,
        )

    def shutdown(self, timeout: float = 5.0) -> None:
        """End the browser's thread."""
        self._jobs.stop(timeout)

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self._dir_edit = QLineEdit(str(self._directory), self)
        self._dir_edit.returnPressed.connect(
            lambda: self.set_directory(Path(self._dir_edit.text()))
        )
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._choose_directory)
        refresh = QPushButton("Refresh", self)
        refresh.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(QLabel("Runs in", self))
        top.addWidget(self._dir_edit, 1)
        top.addWidget(browse)
        top.addWidget(refresh)

        self._model = QStandardItemModel(0, len(COLUMNS), self)
        self._model.setHorizontalHeaderLabels(list(COLUMNS))
        self._proxy = QSortFilterProxyModel(self)
        self._proxy.setSourceModel(self._model)
        self._proxy.setSortRole(SORT_ROLE)
        self._table = QTableView(self)
        self._table.setModel(self._proxy)
        self._table.setSortingEnabled(True)
        self._table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self._table.setSelectionMode(QAbstractItemView.SingleSelection)
        self._table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        header = self._header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self._table.doubleClicked.connect(lambda _index: self._open_selected())

        buttons = QHBoxLayout()
        actions = (
            ("Open (replay)", self._open_selected),
            ("Export CSV", lambda: self.export("csv")),
            ("Export HDF5", lambda: self.export("hdf5")),
            ("Resume", self._resume_selected),
            ("Load configuration", self._load_selected),
        )
        for label, slot in actions:
            button = QPushButton(label, self)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        self._status = QLabel("", self)
        buttons.addWidget(self._status)

        self.plots = LivePlots(self.history, parent=self)
        self._slider = QSlider(Qt.Orientation.Horizontal, self)
        self._slider.setEnabled(False)
        self._slider.valueChanged.connect(self._cursor_moved)
        self._cursor_label = QLabel("", self)
        cursor_row = QHBoxLayout()
        cursor_row.addWidget(QLabel("iteration", self))
        cursor_row.addWidget(self._slider, 1)
        cursor_row.addWidget(self._cursor_label)
        replay = QWidget(self)
        replay_layout = QVBoxLayout(replay)
        replay_layout.setContentsMargins(0, 0, 0, 0)
        replay_layout.addLayout(cursor_row)
        replay_layout.addWidget(self.plots, 1)

        upper = QWidget(self)
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addLayout(top)
        upper_layout.addWidget(self._table, 1)
        upper_layout.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(upper)
        splitter.addWidget(replay)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([220, 660])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _header(self) -> QHeaderView:
        header = self._table.horizontalHeader()
        assert header is not None  # a table view always has one
        return header

    def _choose_directory(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Runs directory", str(self._directory))
        if chosen:
            self.set_directory(Path(chosen))

    # ------------------------------------------------------------------ results
    def _show_rows(self, rows: list[BrowserRow]) -> None:
        self._rows = rows
        sorting = self._header().sortIndicatorSection()
        order = self._header().sortIndicatorOrder()
        self._model.removeRows(0, self._model.rowCount())
        for row in rows:
            best = "–" if row.best_loss is None else f"{row.best_loss:.4g}"
            cells: list[tuple[str, Any]] = [
                (row.name, row.name),
                (row.start_time_text, row.start_timestamp),
                (row.task, row.task),
                (row.status, row.status),
                (str(row.iterations), row.iterations),
                (best, row.best_loss if row.best_loss is not None else float("inf")),
                (row.result, row.result_key),
            ]
            items = []
            for text, key in cells:
                item = QStandardItem(text)
                item.setData(key, SORT_ROLE)
                item.setData(str(row.path), PATH_ROLE)
                items.append(item)
            self._model.appendRow(items)
        if sorting >= 0:
            self._table.sortByColumn(sorting, order)
        self._status.setText(f"{len(rows)} run(s) in {self._directory}")
        self.listed.emit()

    def _show_replay(self, replay: Replay) -> None:
        self.replay = replay
        self.history.reset(replay.controls, replay.targets)
        self.history.extend(replay.records)
        self.plots.set_context(
            replay.controls, replay.sample_rate_hz, replay.plan, replay.store_raw
        )
        self.plots.refresh(force=True)
        n = len(replay.records)
        self._slider.blockSignals(True)
        self._slider.setRange(0, max(0, n - 1))
        self._slider.setValue(max(0, n - 1))
        self._slider.blockSignals(False)
        self._slider.setEnabled(n > 0)
        self._cursor_label.setText(f"{n} iteration(s)")
        self._status.setText(f"replayed {replay.path.name} ({replay.status}, {n} iterations)")
        self.replayed.emit(replay)

    def _cursor_moved(self, index: int) -> None:
        replay = self.replay
        if replay is None or not 0 <= index < len(replay.records):
            return
        record = replay.records[index]
        last = index == len(replay.records) - 1
        self.plots.pin(None if last else record)
        self._cursor_label.setText(f"{record.run_iteration} (loss {record.loss:.4g})")
        if not last and replay.store_raw:
            path = replay.path

            def with_raw(full: IterationRecord | None) -> None:
                if full is not None and self._slider.value() == index:
                    self.plots.pin(full)

            self._jobs.submit(lambda: read_raw(path, record.run_iteration), with_raw, self._failed)

    def _open_selected(self) -> None:
        path = self.selected_path()
        if path is not None:
            self.open_run(path)

    def _resume_selected(self) -> None:
        path = self.selected_path()
        if path is not None:
            self.resume_requested.emit(path)

    def _load_selected(self) -> None:
        path = self.selected_path()
        if path is None:
            return

        def read() -> str:
            with RunStore.open(path, read_only=True) as store:
                return store.config_text()

        self._jobs.submit(
            read,
            lambda text: self.load_config_requested.emit(text, path / "config.yaml"),
            self._failed,
        )

    def _failed(self, exc: BaseException) -> None:
        self._status.setText(f"error: {exc}")
        log.error("run browser: %s", exc)
