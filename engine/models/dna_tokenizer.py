"""k-mer tokens for DNA, shared by training and inference.

Two variants, chosen by the model pack's ``preprocessing["kind"]`` (``tokenizer_from_config``):

* ``dna-kmer`` (KmerTokenizer): overlapping k-mers, this project's DNA CNN;
* ``dna-kmer-bert`` (BertKmerTokenizer): non-overlapping k-mers (stride k) with a BERT
  vocabulary, as BarcodeBERT uses; for packs converted by ``bioscan models import``.

KmerTokenizer token ids: 0 = padding, 1 = a k-mer containing an ambiguous base, 2 + base-4 index of the
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
    def from_config(cls, config: dict) -> "KmerTokenizer | BertKmerTokenizer":
        if config.get("kind") == BertKmerTokenizer.KIND:  # DnaEncoder reads any pack's config here
            return BertKmerTokenizer.from_config(config)
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
        ids = np.full(n, 2, dtype=np.int64)  # base-4 index of each k-mer, first base most significant, + 2
        ambiguous = np.zeros(n, dtype=bool)
        for j in range(self.k):
            part = codes[j: j + n]
            ids += part << (2 * (self.k - 1 - j))
            ambiguous |= part == 4
        ids[ambiguous] = AMBIGUOUS
        return ids

    def encode_batch(self, seqs: list[str]) -> np.ndarray:
        """A (batch, longest) int64 array padded with 0: row i is ``encode_one(seqs[i])``."""
        rows, cols, ids = self.encode_flat(seqs)
        counts = np.bincount(rows, minlength=len(seqs))
        out = np.zeros((len(seqs), max(1, int(counts.max(initial=0)))), dtype=np.int64)
        out[counts == 0, 0] = AMBIGUOUS  # as encode_one: too short to hold a k-mer
        out[rows, cols] = ids
        return out

    def encode_flat(self, seqs: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sequence index, position, token id) of every k-mer of every sequence, computed over
        the sequences joined end to end (no Python loop per sequence); a sequence too short for
        a k-mer has none here."""
        texts = [s[: self.max_len] for s in seqs]
        lengths = np.array([len(t) for t in texts], dtype=np.int64)
        counts = np.maximum(lengths - self.k + 1, 0)
        rows = np.repeat(np.arange(len(texts)), counts)
        cols = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        codes = _CODE[np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8)]
        n_windows = len(codes) - self.k + 1
        if n_windows <= 0:
            return rows, cols, np.zeros(0, dtype=np.int64)
        ids = np.full(n_windows, 2, dtype=np.int64)
        for j in range(self.k):
            ids += (codes[j: j + n_windows] & 3) << (2 * (self.k - 1 - j))
        ambiguous = np.concatenate([[0], np.cumsum(codes == 4)])
        ids[ambiguous[self.k:] - ambiguous[:-self.k] > 0] = AMBIGUOUS
        starts = np.repeat(np.cumsum(lengths) - lengths, counts) + cols  # windows inside one sequence only
        return rows, cols, ids[starts]


@dataclass(frozen=True)
class BertKmerTokenizer:
    """Non-overlapping k-mers for BERT-style barcode models (BarcodeBERT).

    A k-mer of A/C/G/T gets ``kmer_offset`` + its base-4 index (A=0, C=1, G=2, T=3, first
    base most significant: the order of itertools.product("ACGT", repeat=k)); a k-mer with
    any other base, or a short tail, gets ``unk_id``. ``cls_id``/``sep_id`` (or -1 for none)
    frame the tokens; batches are padded with ``pad_id``. At most ``max_len`` bases are read.
    """

    KIND = "dna-kmer-bert"
    k: int = 4
    max_len: int = 660
    kmer_offset: int = 2
    unk_id: int = 1
    pad_id: int = 0
    cls_id: int = -1
    sep_id: int = -1

    @property
    def vocab_size(self) -> int:
        return 4**self.k + self.kmer_offset

    @classmethod
    def from_config(cls, config: dict) -> "BertKmerTokenizer":
        if config.get("kind") != cls.KIND:
            raise ValueError(f"not a BERT k-mer tokenizer config: {config!r}")
        return cls(**{f: int(config[f]) for f in ("k", "max_len", "kmer_offset", "unk_id", "pad_id", "cls_id", "sep_id")})

    def config(self) -> dict:
        return {"kind": self.KIND, "k": self.k, "max_len": self.max_len, "kmer_offset": self.kmer_offset,
                "unk_id": self.unk_id, "pad_id": self.pad_id, "cls_id": self.cls_id, "sep_id": self.sep_id}

    def encode_one(self, seq: str) -> np.ndarray:
        codes = _CODE[np.frombuffer(seq[: self.max_len].encode("ascii"), dtype=np.uint8)]
        n = (len(codes) + self.k - 1) // self.k
        padded = np.full(n * self.k, 4, dtype=np.int64)  # a short tail counts as ambiguous
        padded[: len(codes)] = codes
        kmers = padded.reshape(n, self.k)
        ids = (kmers * (4 ** np.arange(self.k - 1, -1, -1))).sum(axis=1) + self.kmer_offset
        ids[(kmers == 4).any(axis=1)] = self.unk_id
        parts = ([[self.cls_id]] if self.cls_id >= 0 else []) + [ids] + ([[self.sep_id]] if self.sep_id >= 0 else [])
        out = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
        return out if len(out) else np.array([self.unk_id], dtype=np.int64)

    def encode_batch(self, seqs: list[str]) -> np.ndarray:
        """A (batch, longest) int64 array padded with ``pad_id``."""
        rows = [self.encode_one(s) for s in seqs]
        out = np.full((len(rows), max(len(r) for r in rows)), self.pad_id, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out


def tokenizer_from_config(config: dict) -> "KmerTokenizer | BertKmerTokenizer":
    """The tokenizer a model pack's preprocessing config names."""
    return KmerTokenizer.from_config(config)
