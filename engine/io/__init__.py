"""Readers for barcode files: FASTA and BIOSCAN-5M / BIOSCAN-1M / BOLD tables."""
from engine.io.barcodes import read_barcodes, detect_barcode_format, BARCODE_SUFFIXES
from engine.io.tables import read_table, Table

__all__ = ["read_barcodes", "detect_barcode_format", "read_table", "Table", "BARCODE_SUFFIXES"]
