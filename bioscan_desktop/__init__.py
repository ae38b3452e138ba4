"""BIOSCAN Desktop: the PySide6 GUI over the ``engine`` package's public API."""
