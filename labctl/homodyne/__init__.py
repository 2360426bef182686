"""Homodyne gradient extraction (HGE): measure dI/dV of every control from one record.

- :mod:`~labctl.homodyne.plan`: coherent, intermodulation-free frequency plans.
- :mod:`~labctl.homodyne.drive`: DC operating points plus faded tones, slew-limited.
- :mod:`~labctl.homodyne.demod`: joint least-squares demodulation (Cramér–Rao bound).
- :mod:`~labctl.homodyne.lockin`: a streaming software lock-in.
- :mod:`~labctl.homodyne.calibration`, :mod:`~labctl.homodyne.calibrate`: chain response and
  phase projection.
- :mod:`~labctl.homodyne.engine`: gradients (and curvature) on a safe device, in parallel,
  sequential or finite-difference mode; :mod:`~labctl.homodyne.adaptive`: tone amplitudes.
"""
