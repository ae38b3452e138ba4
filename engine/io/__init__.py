"""Readers for barcode files: FASTA, GenBank/EMBL, BIOSCAN-5M / BIOSCAN-1M / BOLD tables, zip archives."""
from engine.io.barcodes import read_barcodes, detect_barcode_format, ReadStats, BARCODE_SUFFIXES
from engine.io.fasta_headers import parse_fasta_header
from engine.io.filetypes import sniff
from engine.io.tables import read_table, Table

__all__ = ["read_barcodes", "detect_barcode_format", "ReadStats", "read_table", "Table", "BARCODE_SUFFIXES",
           "parse_fasta_header", "sniff"]
