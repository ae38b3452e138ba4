"""Model packs: a folder with ONNX file(s) and a manifest, verified before use.

manifest.json (format_version 1)::

    {"format_version": 1, "name": "bioscan-dna-cnn", "version": "1.0.0",
     "modality": "dna" | "image", "embedding_dim": 256,
     "files": [{"path": "model.int8.onnx", "precision": "int8", "sha256": "..."},
               {"path": "model.fp32.onnx", "precision": "fp32", "sha256": "..."}],
     "input": {"name": "tokens", "dtype": "int64"}, "output": {"name": "embedding"},
     "preprocessing": {...},   # tokenizer / image transform config, read by the same code as training
     "training": {...}, "license": "..."}

A file entry's path names a file inside the pack folder: a relative path without ``..``
that resolves (symlinks followed) inside the folder. A manifest that names anything else is
refused at load, whatever its sha256 says: verifying it would vouch for a file the pack does
not own, and loading it would run a model from anywhere on the disk.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from engine.atomic import atomic_output
from engine.errors import ModelPackError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
PRECISIONS = ("int8", "fp32")


def pack_file(pack_dir: Path, entry_path: object, manifest_path: Path | None = None) -> Path:
    """The file a manifest entry names, checked to lie inside ``pack_dir`` (ModelPackError otherwise)."""
    where = manifest_path or pack_dir / MANIFEST
    if not isinstance(entry_path, str) or not entry_path.strip():
        raise ModelPackError(f"{where}: a file entry's path must be a file name, not {entry_path!r}")
    parts = PureWindowsPath(entry_path)  # splits at / and \ both: a pack made on any system is checked alike
    if PurePosixPath(entry_path).is_absolute() or parts.anchor or ".." in parts.parts or "\0" in entry_path:
        raise ModelPackError(f"{where}: file entry {entry_path!r} points outside the model pack; "
                             "a pack's files are named relative to its folder")
    target = pack_dir / entry_path
    try:
        inside = target.resolve().is_relative_to(pack_dir.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise ModelPackError(f"{where}: file entry {entry_path!r} resolves outside the model pack "
                             "(a symbolic link?); copy the file into the pack folder")
    return target


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelPack:
    path: Path
    name: str
    version: str
    modality: str
    embedding_dim: int
    files: list[dict[str, str]]
    preprocessing: dict[str, Any]
    input_name: str
    output_name: str
    manifest: dict[str, Any] = field(repr=False)

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"

    def model_file(self, precision: str = "int8") -> dict[str, str]:
        """The manifest entry of the ONNX file for a precision ("int8" or "fp32")."""
        for entry in self.files:
            if entry["precision"] == precision:
                return entry
        have = ", ".join(e["precision"] for e in self.files)
        raise ModelPackError(f"model pack {self.ident} has no {precision} model (it has: {have})")

    def model_path(self, precision: str = "int8") -> Path:
        return pack_file(self.path, self.model_file(precision)["path"])

    def verify(self) -> None:
        """Check every file against its sha256; raise ModelPackError naming the first bad one."""
        for entry in self.files:
            f = pack_file(self.path, entry["path"])
            if not f.is_file():
                raise ModelPackError(f"model pack {self.ident}: file {entry['path']} is missing")
            digest = sha256_file(f)
            if digest != entry["sha256"]:
                raise ModelPackError(
                    f"model pack {self.ident}: {entry['path']} is corrupt or was changed "
                    f"(sha256 {digest[:12]}…, manifest says {entry['sha256'][:12]}…)"
                )


def load_pack(path: str | Path, verify: bool = True) -> ModelPack:
    """Read a model pack's manifest (and check its files' sha256 unless verify=False)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelPackError(f"{path}: not a model pack (no {MANIFEST})")
    try:
        m = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    if not isinstance(m, dict):
        raise ModelPackError(f"{manifest_path}: a manifest is a JSON object, not {type(m).__name__}")
    if m.get("format_version") != FORMAT_VERSION:
        raise ModelPackError(
            f"{path}: manifest format {m.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
        )
    try:
        pack = ModelPack(
            path=path,
            name=m["name"],
            version=m["version"],
            modality=m["modality"],
            embedding_dim=int(m["embedding_dim"]),
            files=list(m["files"]),
            preprocessing=dict(m["preprocessing"]),
            input_name=m["input"]["name"],
            output_name=m["output"]["name"],
            manifest=m,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelPackError(f"{manifest_path}: manifest lacks a valid field {exc}") from exc
    for entry in pack.files:
        if not (isinstance(entry, dict) and isinstance(entry.get("precision"), str)
                and isinstance(entry.get("sha256"), str)):
            raise ModelPackError(f"{manifest_path}: a file entry needs a path, a precision and a sha256, "
                                 f"not {entry!r:.80}")
        pack_file(path, entry.get("path"), manifest_path)
    if verify:
        pack.verify()
    return pack


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> ModelPack:
    """Fill in the sha256 of each listed file, write manifest.json and return the loaded pack."""
    path = Path(path)
    manifest = dict(manifest, format_version=FORMAT_VERSION)
    for entry in manifest["files"]:
        entry["sha256"] = sha256_file(pack_file(path, entry["path"]))
    with atomic_output(path / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return load_pack(path)


def bundle_int8(pack_dir: str | Path, dest: str | Path) -> Path:
    """An int8-only copy of a pack: the bundled resources keep the int8 model only, for size.

    ``dest`` is replaced when it already holds a model pack (a rebuilt bundle leaves no stale files).
    """
    import json
    import shutil

    pack = load_pack(pack_dir)
    dest = Path(dest)
    if (dest / MANIFEST).is_file():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pack.model_path("int8"), dest / pack.model_file("int8")["path"])
    manifest = json.loads((pack.path / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"] = [dict(pack.model_file("int8"))]
    manifest["bundled"] = "int8 only; the training command writes the fp32 model beside it"
    return write_manifest(dest, manifest).path
