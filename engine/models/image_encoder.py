"""Specimen photo embeddings with ONNX Runtime (same interface as DnaEncoder)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from engine.errors import ModelPackError
from engine.models.image_preprocess import ImagePreprocess
from engine.models.pack import ModelPack, load_pack
from engine.models.runtime import create_session
from engine.progress import ProgressCallback, report


class ImageEncoder:
    """Embeds 8-bit RGB PIL images (see engine.io.images.load_photo) into L2-normalised vectors."""

    modality = "image"

    def __init__(self, pack: ModelPack, precision: str = "int8", device: str = "auto", threads: int = 0):
        if pack.modality != "image":
            raise ModelPackError(f"model pack {pack.ident} is a {pack.modality} model, not an image model")
        self.pack = pack
        self.precision = precision
        self.model_sha256 = pack.model_file(precision)["sha256"]
        try:
            self.preprocess = ImagePreprocess.from_config(pack.preprocessing)
        except (TypeError, ValueError) as exc:
            raise ModelPackError(f"model pack {pack.ident}: {exc}") from exc
        self.session = create_session(pack.model_path(precision), device=device, threads=threads)
        self.provider = self.session.get_providers()[0]

    @classmethod
    def from_path(cls, path: str | Path, precision: str = "int8", device: str = "auto") -> "ImageEncoder":
        return cls(load_pack(path), precision=precision, device=device)

    @property
    def dim(self) -> int:
        return self.pack.embedding_dim

    @property
    def space(self) -> str:
        """The embedding space the pack was aligned to ("" if none), e.g. a DNA pack's name."""
        return str(self.pack.manifest.get("aligned_to", {}).get("name", ""))

    def embed_arrays(self, x: np.ndarray) -> np.ndarray:
        (emb,) = self.session.run([self.pack.output_name], {self.pack.input_name: x})
        return emb

    def embed(self, images: Sequence, batch_size: int = 32, progress: ProgressCallback = None,
              failures: dict[int, Exception] | None = None) -> np.ndarray:
        """(n, dim) float32 embeddings of PIL images.

        Without ``failures`` an error in any photo raises. With it, a batch that fails (Pillow,
        numpy, onnxruntime: a damaged image, an allocation failure) is embedded again photo by
        photo; a photo that fails alone, or whose embedding is not finite, gets a NaN row and
        its exception in ``failures[index]``, and its neighbours are embedded.
        """
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start: start + batch_size]
            if failures is None:
                out[start: start + len(chunk)] = self.embed_arrays(self.preprocess.batch(chunk))
            else:
                self._embed_or_record(chunk, start, out, failures)
            report(progress, start + len(chunk), len(images), "embedding photos")
        return out

    def _embed_or_record(self, chunk: Sequence, start: int, out: np.ndarray, failures: dict[int, Exception]) -> None:
        """One batch into ``out[start:]``; if it fails, each of its photos alone, failures recorded."""
        try:
            out[start: start + len(chunk)] = self._finite_embeddings(chunk)
            return
        except Exception as exc:  # noqa: BLE001 - retried photo by photo below
            if len(chunk) == 1:
                out[start], failures[start] = np.nan, exc
                return
        for i, image in enumerate(chunk):
            try:
                out[start + i] = self._finite_embeddings([image])[0]
            except Exception as exc:  # noqa: BLE001 - this photo's own failure, handed to the caller
                out[start + i], failures[start + i] = np.nan, exc

    def _finite_embeddings(self, images: Sequence) -> np.ndarray:
        emb = self.embed_arrays(self.preprocess.batch(images))
        if not np.isfinite(emb).all():
            raise ValueError("the image model gave a non-finite embedding")
        return emb
