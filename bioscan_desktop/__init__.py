"""BIOSCAN Desktop: the PySide6 GUI over the ``engine`` package's public API."""

__version__ = "0.1.0"
