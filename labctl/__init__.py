"""labctl: in-materia training of dopant network processing units.

Training uses homodyne gradient extraction measured on the device itself.
"""

__version__ = "0.1.0"
