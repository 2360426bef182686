"""Device-independent training pieces: tasks, losses, metrics, optimisers and stopping rules.

Nothing in this package talks to hardware. Tasks are given in normalised task units and mapped onto
input-electrode voltages (V) by :class:`labctl.training.tasks.InputMapping`; losses and metrics
take the output current per input case (A); optimisers update control voltages (V).
"""
