"""The package's version, in a module that imports nothing (`presets` writes it into a
preset's metadata without importing the package above it)."""

__version__ = "0.1.0"
