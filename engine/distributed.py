"""Library builds and batch identification on a Dask cluster (the ``[cluster]`` extra).

Dask (``distributed``) rather than Ray: it is pure Python, starts a local cluster of worker
processes in about a second (the tests start one), sends no usage statistics (Ray's usage
stats are on unless disabled), and runs on the schedulers barcoding centres have (SLURM, PBS,
SGE through dask-jobqueue; Kubernetes) as well as on plain ``dask scheduler`` /
``dask worker`` processes. See docs/cluster.md.

Each worker process keeps one ONNX Runtime session per model (and one identifier per set of
libraries) for its lifetime. The driver reads, QC-checks and writes; workers embed and
identify. Results equal the local path's exactly: the driver forms the very batches the local
path would (``DnaEncoder.batches``; ``IDENTIFY_BATCH`` QC-passed records per identify batch),
since a batch's padding takes part in the arithmetic.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine.errors import BioscanError
from engine.progress import ProgressCallback, report

TASK_BATCHES = 8  # encoder batches (64 sequences each) per embedding task: a task is ~0.1 s of work
_WORKER_ENCODERS: dict = {}  # in each worker process: (pack path, precision) -> DnaEncoder
_WORKER_IDENTIFIERS: dict = {}  # (library paths, model, min_confidence, use_sequences) -> DnaIdentifier


@contextmanager
def connect(address: str) -> Iterator:
    """A Dask client, closed (and a local cluster stopped) on leaving: ``local:N`` starts a
    cluster of N single-threaded worker processes on this machine, listening on 127.0.0.1 only
    and serving no dashboard; anything else is a scheduler address (``tcp://host:8786``)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise BioscanError("--cluster needs the cluster extra: pip install 'bioscan-desktop[cluster]'") from exc
    cluster = None
    if address.startswith("local:"):
        try:
            workers = int(address.split(":", 1)[1])
        except ValueError:
            raise BioscanError(f"--cluster {address}: give local:N with N the number of worker processes") from None
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               worker_dashboard_address=None, host="127.0.0.1")
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise BioscanError(f"could not reach the Dask scheduler at {address}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _worker_threads() -> int:
    """ONNX Runtime threads in a worker: its share of the cores, so workers do not oversubscribe."""
    return int(os.environ.get("BIOSCAN_WORKER_THREADS", "1"))


def _encoder(pack_path: str, precision: str):
    from engine.models.dna_encoder import DnaEncoder
    from engine.models.pack import load_pack

    key = (pack_path, precision)
    if key not in _WORKER_ENCODERS:
        _WORKER_ENCODERS[key] = DnaEncoder(load_pack(pack_path), precision=precision, device="auto",
                                           threads=_worker_threads())
    return _WORKER_ENCODERS[key]


def _embed_batches(pack_path: str, precision: str, batches: list[list[str]]) -> list[np.ndarray]:
    encoder = _encoder(pack_path, precision)
    return [encoder.embed_batch(b) for b in batches]


class DistributedEncoder:
    """A DnaEncoder whose ``embed`` runs on a cluster's workers (same identity, same embeddings);
    a library build takes it in place of the local encoder."""

    modality = "dna"

    def __init__(self, client, pack_path: str | Path, precision: str = "int8"):
        from engine.models.dna_encoder import DnaEncoder

        self.client = client
        self.pack_path = str(Path(pack_path).resolve())
        self.local = DnaEncoder.from_path(self.pack_path, precision=precision)  # identity and batching only
        self.pack, self.precision = self.local.pack, precision
        self.model_sha256, self.provider = self.local.model_sha256, "Dask cluster"

    @property
    def dim(self) -> int:
        return self.local.dim

    def embed(self, sequences: Sequence[str], batch_size: int = 64, progress: ProgressCallback = None) -> np.ndarray:
        out = np.zeros((len(sequences), self.dim), dtype=np.float32)
        batches = self.local.batches(sequences, batch_size)
        tasks = [batches[s: s + TASK_BATCHES] for s in range(0, len(batches), TASK_BATCHES)]
        futures = [self.client.submit(_embed_batches, self.pack_path, self.precision,
                                      [[sequences[i] for i in idx] for idx in task], pure=False) for task in tasks]
        done = 0
        for task, future in zip(tasks, futures):
            for idx, emb in zip(task, future.result()):
                out[idx] = emb
                done += len(idx)
            report(progress, done, len(sequences), "embedding barcodes on the cluster")
        return out


def _identify_chunk(libraries: tuple[str, ...], model: str | None, min_confidence: float, use_sequences: bool,
                    records: list) -> list:
    from engine.identify import open_identifier

    key = (libraries, model, min_confidence, use_sequences)
    if key not in _WORKER_IDENTIFIERS:
        _WORKER_IDENTIFIERS[key] = open_identifier(list(libraries), model, min_confidence=min_confidence,
                                                   use_sequences=use_sequences)
    return _WORKER_IDENTIFIERS[key].identify(records)


def _chunks_as_local(records: Iterable) -> list[list]:
    """Records cut where the local identify starts a new batch: every IDENTIFY_BATCH QC-passed records."""
    from engine.identify import IDENTIFY_BATCH
    from engine.qc import check_barcode
    from engine.records import RecordError

    chunks, chunk, ok = [], [], 0
    for rec in records:
        passes = not isinstance(rec, RecordError) and check_barcode(rec.sequence).ok
        if passes and ok == IDENTIFY_BATCH:
            chunks.append(chunk)
            chunk, ok = [], 0
        chunk.append(rec)
        ok += passes
    if chunk:
        chunks.append(chunk)
    return chunks


def identify_on_cluster(client, records: Iterable, library_paths: Sequence[str | Path] | None,
                        model_path: str | Path | None = None, min_confidence: float | None = None,
                        use_sequences: bool = True, progress: ProgressCallback = None) -> list:
    """``DnaIdentifier.identify`` of ``records`` with its batches spread over the cluster's
    workers (each opens the libraries itself: they must be on a filesystem every worker sees)."""
    from engine.assign import DEFAULT_MIN_CONFIDENCE
    from engine.library_set import library_paths as as_paths

    libraries = tuple(str(p.resolve()) for p in as_paths(library_paths))
    model = str(Path(model_path).resolve()) if model_path else None
    conf = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
    chunks = _chunks_as_local(records)
    futures = [client.submit(_identify_chunk, libraries, model, conf, use_sequences, c, pure=False) for c in chunks]
    out, done = [], 0
    for chunk, future in zip(chunks, futures):
        out.extend(future.result())
        done += len(chunk)
        report(progress, done, sum(map(len, chunks)), "identifying on the cluster")
    return out
