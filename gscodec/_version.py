"""The package version (its own module, so that every layer can read it without importing
the package facade)."""

__version__ = "0.1.0"
