"""Zero-shot clustering benchmark: species the library has never seen, clustered without labels.

Takes the species that engine.train.split.benchmark_split holds out of the library (every
record of ~262 species), embeds their QC-cleaned barcodes with the bundled DNA model (which
never saw them), clusters with the label-free choice of parameters, and measures AMI against
the species labels. In the same run `vsearch --cluster_fast --id 0.97` clusters the same
sequences, the usual OTU baseline. Optionally clusters real photos (ants vs bees) with an
image model pack, when resources/models has one.

    .venv/bin/python benchmarks/cluster_dna.py [--sweep] [--section]

Prints a Markdown report; with --section writes it into the `## Clustering` section of
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.dna_identify import write_fasta, write_section  # noqa: E402
from engine.cluster import ami, cluster_embeddings  # noqa: E402
from engine.cluster.identity import cluster_by_identity  # noqa: E402
from engine.io import read_barcodes  # noqa: E402
from engine.qc import check_barcode  # noqa: E402
from engine.records import Barcode  # noqa: E402
from engine.train.split import benchmark_split  # noqa: E402

VSEARCH_ID = 0.97
THREADS = str(os.cpu_count() or 2)
# the levers tried by --sweep: (method, umap_dims, umap_neighbors); umap_dims 0 = no UMAP
SWEEP = [
    ("agglomerative", 10, 15), ("agglomerative", 10, 5), ("agglomerative", 50, 15), ("agglomerative", 0, 0),
    ("hdbscan", 10, 15), ("hdbscan", 10, 5), ("hdbscan", 0, 0),
]


def novel_species_records(data: Path) -> list[Barcode]:
    """The split's novel-species queries with QC-cleaned sequences (failures dropped)."""
    records = [r for r in read_barcodes(data / "barcodes.tsv") if isinstance(r, Barcode)]
    out = []
    for r in benchmark_split(records).novel_queries:
        qc = check_barcode(r.sequence)
        if qc.ok:
            out.append(Barcode(r.specimen_id, qc.sequence, r.source_file, r.taxonomy))
    return out


def vsearch_clusters(recs: list[Barcode], work: Path) -> tuple[list[str], float]:
    """Cluster label (centroid id) per record from vsearch --cluster_fast, and the wall time."""
    fasta, uc = work / "novel.fasta", work / "novel.uc"
    write_fasta(fasta, recs)
    t = time.perf_counter()
    subprocess.run(["vsearch", "--cluster_fast", str(fasta), "--id", str(VSEARCH_ID), "--uc", str(uc),
                    "--threads", THREADS, "--quiet"], check=True)
    seconds = time.perf_counter() - t
    cluster_of: dict[str, str] = {}
    with uc.open() as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if f[0] in ("S", "H"):  # S: a centroid (new cluster), H: a hit joining cluster f[1]
                cluster_of[f[8]] = f[1]
    return [cluster_of[r.specimen_id] for r in recs], seconds


def run_clustering(emb: np.ndarray, truth: list[str], method: str, dims: int, neighbors: int) -> dict:
    t = time.perf_counter()
    res = cluster_embeddings(emb, method=method, umap_dims=dims, umap_neighbors=neighbors or 15, seed=0)
    seconds = time.perf_counter() - t
    chosen = res.params.get("n_clusters", res.params.get("min_cluster_size"))
    return {"method": method, "umap": f"{dims}-d, {neighbors} neighbours" if dims else "none",
            "chosen": f"{'k' if method == 'agglomerative' else 'min size'} = {chosen}",
            "clusters": res.n_clusters, "noise": res.n_noise, "silhouette": res.silhouette,
            "ami": ami(truth, res.labels), "seconds": seconds}


def run_identity(seqs: list[str], emb: np.ndarray, truth: list[str]) -> dict:
    t = time.perf_counter()
    res = cluster_by_identity(seqs, emb, seed=0)
    seconds = time.perf_counter() - t
    return {"method": "identity (neighbour graph)", "umap": "none",
            "chosen": f"{res.params['threshold']:.1%} ({res.params['chosen_by']})",
            "clusters": res.n_clusters, "noise": res.n_noise, "silhouette": res.silhouette,
            "ami": ami(truth, res.labels), "seconds": seconds}


def embedding_ceiling(emb: np.ndarray, truth: list[str]) -> str:
    """How well the embedding separates species at all: nearest neighbour's species, and Ward given the true k."""
    from sklearn.cluster import AgglomerativeClustering

    labels = np.asarray(truth)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    same = float(np.mean(labels[sims.argmax(axis=1)] == labels))
    ward = AgglomerativeClustering(n_clusters=len(set(truth)), linkage="ward").fit_predict(emb)
    return f"nearest neighbour of the same species {same:.1%}, Ward with the true k {ami(truth, ward):.4f} AMI"


def image_part(data: Path, pack_path: str = "") -> str:
    """Clustering real ant and bee photos with an image model pack (default: the bundled one, if any)."""
    from engine.models.pack import load_pack

    packs = [d for d in sorted((REPO / "resources" / "models").iterdir()) if (d / "manifest.json").is_file()]
    image_packs = [Path(pack_path)] if pack_path else [d for d in packs
                                                         if load_pack(d, verify=False).modality == "image"]
    if not image_packs:
        return ("Image clustering: skipped, resources/models has no image model pack yet "
                "(packs present: " + (", ".join(d.name for d in packs) or "none") + ").")
    try:
        from engine.models.image_encoder import ImageEncoder
    except ImportError as exc:
        return f"Image clustering: skipped, the image encoder is not importable ({exc})."
    from engine.io import read_table
    from engine.io.images import load_photo

    folder = data / "images" / "hymenoptera_ants_bees"
    rows = [row for _, row in read_table(folder / "labels.tsv").rows() if isinstance(row, dict)]
    photos = [load_photo(folder / row["file"]) for row in rows]
    truth = [row["label"] for row in rows]
    enc = ImageEncoder.from_path(image_packs[0])
    t = time.perf_counter()
    emb = enc.embed(photos)
    t_embed = time.perf_counter() - t
    lines = [f"Image clustering: {len(photos)} photos of ants and bees "
             f"(/work/shared/data/images/hymenoptera_ants_bees), model pack `{image_packs[0].name}`, "
             f"embedding {t_embed:.1f} s.", "",
             "| method | chosen | clusters (true 2) | silhouette | AMI (ants/bees) | AMI with k = 2 |",
             "|---|---|---|---|---|---|"]
    for method in ("agglomerative", "hdbscan"):
        free = cluster_embeddings(emb, method=method, seed=0)
        fixed = cluster_embeddings(emb, n_clusters=2, seed=0) if method == "agglomerative" else None
        chosen = free.params.get("n_clusters", free.params.get("min_cluster_size"))
        lines.append(f"| {method} | {chosen} | {free.n_clusters} | {free.silhouette:.3f} | "
                     f"{ami(truth, free.labels):.3f} | {ami(truth, fixed.labels):.3f} |" if fixed else
                     f"| {method} | {chosen} | {free.n_clusters} (+{free.n_noise} noise) | {free.silhouette:.3f} | "
                     f"{ami(truth, free.labels):.3f} | - |")
    return "\n".join(lines)


def scale_run(n: int, methods: list[str], min_cluster_size: int | None) -> None:
    """Time and peak memory at n synthetic specimens (500 groups of 128-d unit vectors)."""
    import resource

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(500, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = rng.integers(0, 500, n)
    x = centres[truth] + 0.48 / np.sqrt(128) * rng.normal(size=(n, 128))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    for method in methods:
        t = time.perf_counter()
        res = cluster_embeddings(x, method=method, seed=0,
                                 min_cluster_size=min_cluster_size if method == "hdbscan" else None)
        print(f"{n} items: {res.summary()}; AMI {ami(truth, res.labels):.4f}; {time.perf_counter() - t:.0f} s; "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("BIOSCAN_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--model", default=str(REPO / "resources" / "models" / "bioscan-dna-cnn"))
    ap.add_argument("--precision", choices=["int8", "fp32"], default="int8", help="DNA model precision")
    ap.add_argument("--image-model", default="", help="image model pack (default: the first in resources/models)")
    ap.add_argument("--sweep", action="store_true", help="also try the other UMAP/method levers")
    ap.add_argument("--section", action="store_true", help="write the report into docs/benchmarks.md")
    ap.add_argument("--scale", type=int, default=0, help="instead: time N synthetic specimens (e.g. 100000)")
    ap.add_argument("--scale-methods", default="agglomerative,hdbscan")
    ap.add_argument("--scale-min-cluster-size", type=int, default=None, help="with --scale: fix HDBSCAN's size")
    args = ap.parse_args()
    if args.scale:
        scale_run(args.scale, args.scale_methods.split(","), args.scale_min_cluster_size)
        return 0
    from engine.models.dna_encoder import DnaEncoder

    data = Path(args.data)
    recs = novel_species_records(data)
    truth = [r.taxonomy.species for r in recs]
    print(f"{len(recs)} records of {len(set(truth))} held-out species", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bioscan-cluster-") as tmp:
        vs_labels, vs_seconds = vsearch_clusters(recs, Path(tmp))
    n_species = len(set(truth))
    precisions = [args.precision] + (["fp32"] if args.sweep and args.precision == "int8" else [])
    results, ceilings, embed_seconds = [], [], {}
    for precision in precisions:
        enc = DnaEncoder.from_path(args.model, precision=precision, device="cpu")
        t = time.perf_counter()
        emb = enc.embed([r.sequence for r in recs])
        embed_seconds[precision] = time.perf_counter() - t
        ceilings.append(f"{precision}: {embedding_ceiling(emb, truth)}")
        results.append({"precision": precision, **run_identity([r.sequence for r in recs], emb, truth)})
        print(results[-1], file=sys.stderr)
        settings = SWEEP if args.sweep and precision == args.precision else [SWEEP[0], SWEEP[4]]
        for method, dims, neighbors in settings:
            results.append({"precision": precision, **run_clustering(emb, truth, method, dims, neighbors)})
            print(results[-1], file=sys.stderr)

    load = os.getloadavg()[0]
    lines = [
        f"Held-out species of `benchmark_split` (never seen by the model or the library): {len(recs)} QC-passed "
        f"records of {n_species} species from barcodes.tsv. Model `{enc.pack.ident}` ({Path(args.model).name}); "
        f"embedding took " + ", ".join(f"{s:.1f} s ({p})" for p, s in embed_seconds.items()) + ". Parameters "
        f"chosen without labels (identity: the barcode gap; UMAP methods: best silhouette in the clustering "
        f"space); seed 0. Times are wall seconds on "
        f"this 2-core machine (load average {load:.1f} during the run), clustering only (add the embedding "
        f"time for the end-to-end figure).", "",
        "| precision | method | UMAP | chosen | clusters (true species) | noise | silhouette | AMI | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['precision']} | {r['method']} | {r['umap']} | {r['chosen']} | {r['clusters']} "
                     f"({n_species}) | {r['noise']} | {r['silhouette']:.3f} | {r['ami']:.4f} | {r['seconds']:.1f} |")
    lines.append(f"| - | vsearch --cluster_fast --id {VSEARCH_ID} ({THREADS} threads) | - | - | {len(set(vs_labels))} "
                 f"({n_species}) | - | - | {ami(truth, vs_labels):.4f} | {vs_seconds:.1f} |")
    lines += ["", "What the embedding allows (diagnostics that use the labels, not a result): "
              + "; ".join(ceilings) + "."]
    lines += ["", image_part(data, args.image_model)]
    text = "\n".join(lines)
    print(text)
    if args.section:
        model = "" if Path(args.model) == REPO / "resources" / "models" / "bioscan-dna-cnn" else f" --model {args.model}"
        write_section("Clustering", text + "\n\nCommand: `.venv/bin/python benchmarks/cluster_dna.py" + model
                      + (" --sweep" if args.sweep else "") + (" --precision fp32" if args.precision == "fp32" else "")
                      + " --section`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
