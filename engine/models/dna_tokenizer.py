"""Overlapping k-mer tokens for DNA, shared by training and inference.

Token ids: 0 = padding, 1 = a k-mer containing an ambiguous base, 2 + base-4 index of the
k-mer otherwise. Sequences longer than ``max_len`` are cut at the end (COI-5P barcodes are
~658 bp; the 5' end carries the standard barcode region).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD, AMBIGUOUS = 0, 1
_CODE = np.full(256, 4, dtype=np.int64)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i


@dataclass(frozen=True)
class KmerTokenizer:
    k: int = 6
    max_len: int = 720

    @property
    def vocab_size(self) -> int:
        return 4**self.k + 2

    @classmethod
    def from_config(cls, config: dict) -> "KmerTokenizer":
        if config.get("kind") != "dna-kmer":
            raise ValueError(f"not a DNA k-mer tokenizer config: {config!r}")
        return cls(k=int(config["k"]), max_len=int(config["max_len"]))

    def config(self) -> dict:
        return {"kind": "dna-kmer", "k": self.k, "max_len": self.max_len}

    def encode_one(self, seq: str) -> np.ndarray:
        """Token ids of one cleaned sequence, length max(1, min(len, max_len) - k + 1)."""
        codes = _CODE[np.frombuffer(seq[: self.max_len].encode("ascii"), dtype=np.uint8)]
        n = len(codes) - self.k + 1
        if n <= 0:
            return np.array([AMBIGUOUS], dtype=np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(codes, self.k)
        ambiguous = (windows == 4).any(axis=1)
        ids = (windows * (4 ** np.arange(self.k - 1, -1, -1))).sum(axis=1) + 2
        ids[ambiguous] = AMBIGUOUS
        return ids

    def encode_batch(self, seqs: list[str]) -> np.ndarray:
        """A (batch, longest) int64 array padded with 0."""
        rows = [self.encode_one(s) for s in seqs]
        out = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out
