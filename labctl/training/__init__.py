"""Training: tasks, losses, metrics, optimisers, stopping rules, the methods and the loop.

The pieces (tasks, losses, metrics, optimisers) are device-independent; the training methods
(:mod:`labctl.training.methods`) and the loop (:mod:`labctl.training.trainer`) drive the
electrodes only through :class:`labctl.device.safety.SafeDevice`. Tasks are given in
normalised task units and mapped onto input-electrode voltages (V) by
:class:`labctl.training.tasks.InputMapping`; losses and metrics take the output current per
input case (A); optimisers update control voltages (V).
"""
