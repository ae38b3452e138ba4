"""Several reference libraries searched as one: a lab's own records beside a large BOLD snapshot,
neither rebuilt.

``CombinedReferences`` offers what identification reads of one library's references
(engine.library.LoadedReferences: taxonomy, record ids, sequences, embedding rows and a
search index) over the references of every library, positions running through the first
library's, then the second's. A search asks each library's own index and merges the best.
The libraries must have been embedded by the same model. The calls are calibrated on the
union (sampled, as a single library's: engine.assign.calibrate), once per set of library
states, and the calibration is kept in the user cache.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from engine.errors import LibraryError
from engine.library import LoadedReferences, ReferenceLibrary
from engine.progress import ProgressCallback
from engine.search import merge_top_k


class _Stacked(Sequence):
    """Items of several sequences by global position."""

    def __init__(self, parts: Sequence[Sequence], offsets: np.ndarray):
        self.parts = parts
        self.offsets = offsets  # start of each part, and the total at the end

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, pos: int) -> tuple[int, int]:
        if pos < 0:
            pos += len(self)
        part = int(np.searchsorted(self.offsets, pos, side="right")) - 1
        return part, pos - int(self.offsets[part])

    def __getitem__(self, pos):  # type: ignore[override]
        if isinstance(pos, slice):
            return [self[i] for i in range(*pos.indices(len(self)))]
        part, local = self.locate(int(pos))
        return self.parts[part][local]

    def __iter__(self) -> Iterator:
        for part in self.parts:
            yield from part


class _StackedRows:
    """Embedding rows of several matrices by global position (int, slice or integer array)."""

    def __init__(self, parts: Sequence[np.ndarray], offsets: np.ndarray):
        self.parts = parts
        self.offsets = offsets
        self.shape = (int(offsets[-1]), parts[0].shape[1])
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, pos) -> np.ndarray:
        if isinstance(pos, slice):
            pos = np.arange(*pos.indices(len(self)))
        idx = np.asarray(pos, dtype=np.int64)
        flat = np.atleast_1d(idx)
        out = np.empty((len(flat), self.shape[1]), dtype=np.float32)
        part = np.searchsorted(self.offsets, flat, side="right") - 1
        for p in np.unique(part):
            sel = part == p
            out[sel] = self.parts[p][flat[sel] - self.offsets[p]]
        return out[0] if idx.ndim == 0 else out


class _MergedIndex:
    """Each library's own index searched, the best of all kept (engine.search.VectorIndex)."""

    def __init__(self, parts: Sequence[LoadedReferences], offsets: np.ndarray):
        self.parts = parts
        self.offsets = offsets

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, pos = [], []
        for part, offset in zip(self.parts, self.offsets[:-1]):
            s, i = part.index.search(queries, min(k, len(part)))
            sims.append(s)
            pos.append(i.astype(np.int64) + int(offset))
        return merge_top_k(sims, pos, k)


class CombinedReferences:
    """The DNA references of several libraries as one (see the module doc)."""

    def __init__(self, libraries: Sequence[ReferenceLibrary], modality: str = "dna"):
        if len(libraries) < 2:
            raise ValueError("CombinedReferences joins two or more libraries")
        self.libraries = list(libraries)
        self.modality = modality
        self.parts = [lib.references(modality) for lib in self.libraries]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.taxonomy = _Stacked([p.taxonomy for p in self.parts], self.offsets)
        self.record_ids = _Stacked([p.record_ids for p in self.parts], self.offsets)
        self.matrix = _StackedRows([p.matrix for p in self.parts], self.offsets)
        self.index = _MergedIndex(self.parts, self.offsets)
        self._sequences: _Stacked | None = None
        self._genus_prototypes = None
        self._kmer_index = None
        self._kmer_index_tried = False

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def sequences(self) -> _Stacked:
        if self._sequences is None:
            self._sequences = _Stacked([p.sequences for p in self.parts], self.offsets)
        return self._sequences

    def library_of(self, pos: int) -> ReferenceLibrary:
        """The library a position's reference comes from."""
        return self.libraries[self.taxonomy.locate(int(pos))[0]]

    def genus_prototypes(self):
        if self._genus_prototypes is None:
            from engine.assign import GenusPrototypes

            self._genus_prototypes = GenusPrototypes(self.matrix, self.taxonomy)
        return self._genus_prototypes

    def kmer_index(self):
        """The shared-k-mer index over every library's sequences, when their total allows one."""
        from engine.kmer_index import MAX_REFERENCES, KmerIndex
        from engine.offline import app_cache_dir

        if not self._kmer_index_tried:
            self._kmer_index_tried = True
            if len(self) <= MAX_REFERENCES and all(p.sequences.any() for p in self.parts):
                key = self.state_key()
                self._kmer_index = KmerIndex.cached(self.sequences, app_cache_dir() / "kmer-index" / f"set-{key}",
                                                    {"library_set": key})
        return self._kmer_index

    # -- calibration --------------------------------------------------------------------
    def state_key(self) -> str:
        """What identifies this set of library states (their ids and generations, in order)."""
        stamps = [lib.index_stamp(self.modality) for lib in self.libraries]
        return hashlib.sha256(json.dumps(stamps, sort_keys=True).encode()).hexdigest()[:32]

    def calibration(self, progress: ProgressCallback = None) -> dict:
        """The union's calibration: read from the user cache, or fitted on the union and cached."""
        from engine.assign import calibrate
        from engine.atomic import atomic_output
        from engine.offline import app_cache_dir

        path = app_cache_dir() / "library-sets" / f"{self.state_key()}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
        with_sequences = all(lib.has_sequences for lib in self.libraries)
        cal = calibrate(self.matrix, self.taxonomy, self.sequences if with_sequences else None, progress=progress,
                        kmer_index=self.kmer_index() if with_sequences else None)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(cal))
        return cal


def check_same_model(libraries: Sequence[ReferenceLibrary], modality: str = "dna") -> None:
    """LibraryError unless every library's references of ``modality`` come from one model."""
    models = [(lib, lib.model_for(modality)) for lib in libraries]
    first_lib, first = models[0]
    for lib, model in models[1:]:
        if model is None or first is None:
            raise LibraryError(f"{(lib if model is None else first_lib).path.name} has no {modality} references")
        if model["sha256"] != first["sha256"]:
            raise LibraryError(f"{lib.path.name} was embedded by {model['name']}@{model['version']}, "
                               f"{first_lib.path.name} by {first['name']}@{first['version']}: libraries searched "
                               "together must come from the same model")


def library_paths(paths: Sequence[str | Path] | str | Path | None) -> list[Path]:
    """One or several library paths as a list (none: the bundled library)."""
    from engine.resources import default_library_path

    if paths is None or (not isinstance(paths, (str, Path)) and not paths):
        return [default_library_path()]
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]
