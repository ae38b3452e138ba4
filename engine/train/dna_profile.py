"""Add a k-mer profile branch to a DNA model pack (``bioscan train dna-profile``).

The CNN is trained to tell the library's species apart; for a species the library lacks,
where it lands says less about its relatives than the plain k-mer composition of its
barcode does. On the DNA benchmark's held-out species the nearest library record has the
query's genus for 62.9 % of records in the CNN's space, 77.8 % by cosine of 6-mer frequency
profiles projected on their 256 principal components; both are as good for library species
(1-NN species 99.50 %). So the pack's embedding becomes both, each unit-normalised, side by
side, projected back to the pack's dimension (the top right singular vectors of a sample of
such pairs, 97 % of their energy), and normalised:

    e = unit([unit(cnn(tokens)) ; unit(mean_kmer(P)[tokens] - mean_profile @ P)] @ V)

The branch is a linear function of the tokens the CNN reads, so it goes into the same ONNX
graph (k-mer counts by ScatterElements, a MatMul with a float16 table, the projection): inference stays one ONNX
Runtime session, and the embedding keeps its dimension (library size unchanged). Everything
is fitted without labels on the sequences given (the library part of the benchmark split).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.models.dna_tokenizer import AMBIGUOUS, KmerTokenizer
from engine.models.pack import MANIFEST, load_pack, write_manifest

PROFILE_DIMS = 256
FIT_SAMPLE = 8000


def kmer_frequencies(tokenizer: KmerTokenizer, sequences: Sequence[str]) -> np.ndarray:
    """(n, 4**k) float32 frequencies of each sequence's k-mers (as the tokenizer reads them)."""
    n_kmers = 4 ** tokenizer.k
    rows, _, ids = tokenizer.encode_flat(list(sequences))
    valid = ids > AMBIGUOUS
    counts = np.bincount(rows[valid] * n_kmers + ids[valid] - 2, minlength=len(sequences) * n_kmers)
    counts = counts.reshape(len(sequences), n_kmers).astype(np.float32)
    return counts / counts.sum(axis=1, keepdims=True).clip(1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def fit_profile(base_embed: Callable[[list[str]], np.ndarray], tokenizer: KmerTokenizer, sequences: Sequence[str],
                dims: int = PROFILE_DIMS, sample: int = FIT_SAMPLE, seed: int = 0) -> dict[str, np.ndarray]:
    """The branch's parameters: ``table`` (vocabulary x dims: token -> principal-component
    coordinates, zero for padding and ambiguous k-mers), ``offset`` (the mean profile's
    coordinates) and ``projection`` (2 x out_dim -> out_dim)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(sequences), size=min(sample, len(sequences)), replace=False)
    seqs = [sequences[i] for i in pick]
    freqs = kmer_frequencies(tokenizer, seqs)
    mean = freqs.mean(axis=0)
    components = np.zeros((freqs.shape[1], dims), np.float32)  # (4**k, dims); zero columns past the data's rank
    top = np.linalg.svd(freqs - mean, full_matrices=False)[2][:dims].T
    components[:, :top.shape[1]] = top
    table = np.zeros((tokenizer.vocab_size, dims), np.float32)
    table[2:] = components
    offset = (mean @ components).astype(np.float32)
    cnn = _unit(base_embed(seqs).astype(np.float32))
    profile = _unit(freqs @ components - offset)
    pairs = np.hstack([cnn, profile])
    # top eigenvectors of the pairs' second-moment matrix: always as many as the CNN's dimension
    values, vectors = np.linalg.eigh(pairs.T.astype(np.float64) @ pairs)
    projection = vectors[:, np.argsort(-values)[:cnn.shape[1]]].astype(np.float32)
    kept = float(np.linalg.norm(pairs @ projection) ** 2 / np.linalg.norm(pairs) ** 2)
    return {"table": table, "offset": offset, "projection": projection, "energy_kept": np.float32(kept)}


def embed_with_profile(cnn: np.ndarray, tokens: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """The combined embedding in numpy: the definition the ONNX graph is tested against."""
    table = params["table"].astype(np.float16).astype(np.float32)
    valid = (tokens > AMBIGUOUS).sum(axis=1, keepdims=True).clip(1)
    profile = _unit(table[tokens].sum(axis=1) / valid - params["offset"])
    return _unit(np.hstack([_unit(cnn), profile]) @ params["projection"])


def add_branch_to_onnx(model_path: Path, out_path: Path, params: dict[str, np.ndarray],
                       input_name: str, output_name: str) -> None:
    """Rewrite one ONNX model: its output becomes the combined embedding (same name)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    old = output_name + "_cnn"
    for node in graph.node:
        node.output[:] = [old if o == output_name else o for o in node.output]
        node.input[:] = [old if i == output_name else i for i in node.input]
    graph.initializer.extend([
        numpy_helper.from_array(params["table"].astype(np.float16), "kmer_profile_table"),
        numpy_helper.from_array(params["offset"], "kmer_profile_offset"),
        numpy_helper.from_array(params["projection"], "kmer_profile_projection"),
        numpy_helper.from_array(np.array([1], np.int64), "kmer_profile_axis1"),
        numpy_helper.from_array(np.array(AMBIGUOUS, np.int64), "kmer_profile_ambiguous"),
        numpy_helper.from_array(np.array(1.0, np.float32), "kmer_profile_one"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "kmer_profile_eps"),
        numpy_helper.from_array(np.array([0], np.int64), "kmer_profile_axis0"),
        numpy_helper.from_array(np.array([len(params["table"])], np.int64), "kmer_profile_vocab"),
    ])

    def unit(x: str, name: str) -> list:
        return [helper.make_node("ReduceL2", [x, "kmer_profile_axis1"], [f"{name}_norm"], keepdims=1),
                helper.make_node("Max", [f"{name}_norm", "kmer_profile_eps"], [f"{name}_safe"]),
                helper.make_node("Div", [x, f"{name}_safe"], [name])]

    # k-mer counts per sequence (ScatterElements, add), then one MatMul with the table: a
    # Gather of a table row per token and a sum over them cost ~5x more (8.6 vs ~1.5 ms for 64 barcodes)
    nodes = [
        helper.make_node("Greater", [input_name, "kmer_profile_ambiguous"], ["kmer_valid_b"]),
        helper.make_node("Cast", ["kmer_valid_b"], ["kmer_valid"], to=TensorProto.FLOAT),
        helper.make_node("Shape", [input_name], ["kmer_tokens_shape"]),
        helper.make_node("Slice", ["kmer_tokens_shape", "kmer_profile_axis0", "kmer_profile_axis1"], ["kmer_batch"]),
        helper.make_node("Concat", ["kmer_batch", "kmer_profile_vocab"], ["kmer_counts_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["kmer_counts_shape"], ["kmer_zeros"],
                         value=numpy_helper.from_array(np.array([0.0], np.float32))),
        helper.make_node("ScatterElements", ["kmer_zeros", input_name, "kmer_valid"], ["kmer_counts"],
                         axis=1, reduction="add"),
        helper.make_node("Cast", ["kmer_profile_table"], ["kmer_table"], to=TensorProto.FLOAT),  # folded at load
        helper.make_node("MatMul", ["kmer_counts", "kmer_table"], ["kmer_sum"]),
        helper.make_node("ReduceSum", ["kmer_valid", "kmer_profile_axis1"], ["kmer_count0"], keepdims=1),
        helper.make_node("Max", ["kmer_count0", "kmer_profile_one"], ["kmer_count"]),
        helper.make_node("Div", ["kmer_sum", "kmer_count"], ["kmer_mean"]),
        helper.make_node("Sub", ["kmer_mean", "kmer_profile_offset"], ["kmer_centred"]),
        *unit("kmer_centred", "kmer_profile"),
        *unit(old, "cnn_unit"),
        helper.make_node("Concat", ["cnn_unit", "kmer_profile"], ["both"], axis=1),
        helper.make_node("MatMul", ["both", "kmer_profile_projection"], ["projected"]),
        *unit("projected", output_name),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))


def add_kmer_profile(pack_dir: str | Path, sequences: Sequence[str], out_dir: str | Path, version: str,
                     dims: int = PROFILE_DIMS, log: Callable[[str], None] = print) -> Path:
    """Write a copy of a DNA pack (every precision it has) with the k-mer profile branch."""
    from engine.models.dna_encoder import DnaEncoder

    pack = load_pack(pack_dir)
    if pack.manifest.get("architecture", {}).get("kmer_profile"):
        raise ValueError(f"model pack {pack.ident} has a k-mer profile branch already")
    tokenizer = KmerTokenizer.from_config(pack.preprocessing)
    if not isinstance(tokenizer, KmerTokenizer):
        raise ValueError(f"model pack {pack.ident} does not read overlapping k-mers")
    precision = "fp32" if any(f["precision"] == "fp32" for f in pack.files) else "int8"
    base = DnaEncoder(pack, precision=precision, device="cpu")
    params = fit_profile(base.embed, tokenizer, sequences, dims)
    log(f"k-mer profile: {dims} principal components of {tokenizer.k}-mer frequencies; projection keeps "
        f"{float(params['energy_kept']):.1%} of the pairs' energy")
    out = Path(out_dir)
    if (out / MANIFEST).is_file():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for entry in pack.files:
        add_branch_to_onnx(pack.path / entry["path"], out / entry["path"], params, pack.input_name, pack.output_name)
    manifest = json.loads((pack.path / MANIFEST).read_text(encoding="utf-8"))
    manifest["version"] = version
    manifest["architecture"] = dict(manifest.get("architecture", {}), kmer_profile={
        "k": tokenizer.k, "dims": dims, "fitted_on": min(FIT_SAMPLE, len(sequences)),
        "projection_energy_kept": round(float(params["energy_kept"]), 4),
        "combined": "unit([unit(cnn) ; unit(profile PCA)] @ projection)",
        "from": pack.ident,
    })
    manifest["files"] = [{"path": e["path"], "precision": e["precision"]} for e in pack.files]
    return write_manifest(out, manifest).path
