"""Exports of results: CSV (formula-safe)."""
from engine.export.csv_writer import write_csv, safe_cell

__all__ = ["write_csv", "safe_cell"]
