"""The labctl desktop application (PyQt5 + pyqtgraph).

The GUI never touches hardware in its own thread: the application owns a device session
between runs (:mod:`labctl.gui.device_session`, a :class:`~labctl.device.safety.SafeDevice`
opened and driven in a worker thread), training runs execute in a run worker
(:mod:`labctl.gui.run_manager`) and reach the views only as run events, queued onto the GUI
thread. Logic that needs no window lives in :mod:`labctl.gui.presenters` (enabled controls per
run state, status and ETA, browser rows), :mod:`labctl.gui.form_model` (the configuration form
model and issue-to-field mapping), :mod:`labctl.gui.plot_data` (ring buffers, run history,
spectra, plan markers) and :mod:`labctl.gui.manual_ops` (what the manual panel does on the
device, in the worker).

Modules: ``app`` (entry point), ``main_window``, ``setup_panel`` and ``fields`` (the
configuration form), ``plan_view`` (frequency plan), ``manual_panel``, ``run_panel`` (run and
park controls), ``plots`` (live plots), ``run_browser``, ``log_panel``, ``workers`` (threads
and the Qt bridges), ``device_session``, ``run_manager``, ``park``.
"""
