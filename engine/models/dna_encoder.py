"""DNA barcode embeddings with ONNX Runtime."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from engine.errors import ModelPackError
from engine.models.dna_tokenizer import KmerTokenizer
from engine.models.pack import ModelPack, load_pack
from engine.models.runtime import create_session
from engine.progress import ProgressCallback, report


class DnaEncoder:
    """Embeds cleaned barcodes (see engine.qc) into L2-normalised vectors."""

    modality = "dna"

    def __init__(self, pack: ModelPack, precision: str = "int8", device: str = "auto", threads: int = 0):
        """``threads``: CPU cores to use (0: all of them)."""
        if pack.modality != "dna":
            raise ModelPackError(f"model pack {pack.ident} is a {pack.modality} model, not a DNA model")
        self.pack = pack
        self.precision = precision
        self.model_sha256 = pack.model_file(precision)["sha256"]
        self.tokenizer = KmerTokenizer.from_config(pack.preprocessing)
        # on the CPU, one single-threaded run per core, side by side: a batch of 64 is too small
        # for ONNX Runtime's threads to share well (docs/benchmarks.md, library at scale), and the
        # embeddings are the same bits either way (tests/engine/test_runtime.py)
        self.session = create_session(pack.model_path(precision), device=device, threads=1)
        self.provider = self.session.get_providers()[0]
        self.parallel_runs = (threads or os.cpu_count() or 1) if self.provider == "CPUExecutionProvider" else 1

    @classmethod
    def from_path(cls, path: str | Path, precision: str = "int8", device: str = "auto") -> "DnaEncoder":
        return cls(load_pack(path), precision=precision, device=device)

    @property
    def dim(self) -> int:
        return self.pack.embedding_dim

    def batches(self, sequences: Sequence[str], batch_size: int = 64) -> list[np.ndarray]:
        """The positions of ``sequences`` embedded together, batch by batch. Batches of 64 keep the
        CNN's activations in cache (docs/benchmarks.md), and similar lengths in a batch waste less
        work on padding. A batch's padding is part of the arithmetic, so whoever embeds these
        sequences (engine.distributed too) forms exactly these batches to get the same embeddings."""
        order = np.argsort([len(s) for s in sequences], kind="stable")
        return [order[start: start + batch_size] for start in range(0, len(order), batch_size)]

    def embed_batch(self, sequences: Sequence[str]) -> np.ndarray:
        """(len(sequences), dim) float32 embeddings of one batch, as given."""
        tokens = self.tokenizer.encode_batch(list(sequences))
        (emb,) = self.session.run([self.pack.output_name], {self.pack.input_name: tokens})
        return emb

    def embed(self, sequences: Sequence[str], batch_size: int = 64,
              progress: ProgressCallback = None) -> np.ndarray:
        """(n, dim) float32 embeddings; sequences must be QC-cleaned (A/C/G/T/N only)."""
        out = np.zeros((len(sequences), self.dim), dtype=np.float32)
        batches = self.batches(sequences, batch_size)
        done = 0
        for idx, emb in zip(batches, self._runs(batches, sequences)):
            out[idx] = emb
            done += len(idx)
            report(progress, done, len(sequences), "embedding barcodes")
        return out

    def _runs(self, batches: list[np.ndarray], sequences: Sequence[str]) -> Iterator[np.ndarray]:
        """Each batch's embeddings, in order: ``parallel_runs`` at a time (session.run releases the GIL)."""
        if self.parallel_runs == 1 or len(batches) == 1:
            yield from (self.embed_batch([sequences[i] for i in idx]) for idx in batches)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.parallel_runs, thread_name_prefix="bioscan-onnx") as pool:
            window = 4 * self.parallel_runs  # batches in flight: bounded memory however many there are
            futures = [pool.submit(self.embed_batch, [sequences[i] for i in idx]) for idx in batches[:window]]
            for n in range(len(batches)):
                if n + window < len(batches):
                    futures.append(pool.submit(self.embed_batch, [sequences[i] for i in batches[n + window]]))
                yield futures[n].result()
                futures[n] = None  # its embeddings are the caller's now
