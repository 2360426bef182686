"""labctl: in-materia training of dopant network processing units by homodyne gradient extraction."""

__version__ = "0.1.0"
