"""DNA identification benchmark: `bioscan identify` vs BLAST and vsearch top hit.

Splits ../shared/data/barcodes.tsv with engine.train.split.benchmark_split (262 species held
out entirely; one record of every other species with >= 3 records held out), builds a
library from the rest with the bundled DNA model (trained on the same library part only),
and identifies the held-out records with each method in one run. The default install
(`bioscan identify` with the bundled model and library) is timed in the same rounds; its
library holds every query record, so its accuracy there is no test.

    .venv/bin/python benchmarks/dna_identify.py [--data ../shared/data] [--section]

Writes a Markdown table to stdout, and with --section into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.io import read_barcodes  # noqa: E402
from engine.qc import check_barcode  # noqa: E402
from engine.records import Barcode  # noqa: E402
from engine.train.split import benchmark_split  # noqa: E402

SPECIES_IDENTITY = 98.0  # the customary "98 % rule" for species calls from a top hit
THREADS = str(os.cpu_count() or 2)


def run(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t


def write_fasta(path: Path, recs: list[Barcode]) -> None:
    with path.open("w") as fh:
        for r in recs:
            fh.write(f">{r.specimen_id}\n{r.sequence}\n")


def top_hits_blast6(path: Path) -> dict[str, tuple[str, float]]:
    """query -> (subject, pident) of the best bitscore."""
    best: dict[str, tuple[str, float, float]] = {}
    with path.open() as fh:
        for line in fh:
            q, s, pident, *_rest = line.rstrip("\n").split("\t")
            bits = float(_rest[-1])
            if q not in best or bits > best[q][2]:
                best[q] = (s, float(pident), bits)
    return {q: (s, p) for q, (s, p, _) in best.items()}


def evaluate(pred: dict[str, dict], known: list[Barcode], novel: list[Barcode]) -> dict[str, float]:
    """pred: query id -> {"species", "genus", "novel"}; missing queries count as no call."""
    def get(q):
        return pred.get(q.specimen_id, {"species": "", "genus": "", "novel": True})
    return {
        "species_acc_known": sum(get(q)["species"] == q.taxonomy.species for q in known) / len(known),
        "genus_acc_novel": sum(get(q)["genus"] == q.taxonomy.genus for q in novel) / len(novel),
        "genus_precision_novel": sum(get(q)["genus"] == q.taxonomy.genus for q in novel)
        / max(1, sum(bool(get(q)["genus"]) for q in novel)),
        "novel_flagged": sum(bool(get(q)["novel"]) for q in novel) / len(novel),
        "false_novel": sum(bool(get(q)["novel"]) for q in known) / len(known),
    }


def top_hit_predictions(hits: dict[str, tuple[str, float]], tax: dict[str, object], rule: bool) -> dict[str, dict]:
    out = {}
    for q, (s, pident) in hits.items():
        t = tax[s]
        novel = rule and pident < SPECIES_IDENTITY
        out[q] = {"species": "" if novel else t.species, "genus": t.genus, "novel": novel}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("BIOSCAN_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--model", default=str(REPO / "resources" / "models" / "bioscan-dna-cnn"))
    ap.add_argument("--work", default="", help="keep intermediate files here (default: a temp dir)")
    ap.add_argument("--section", action="store_true", help="write the results into docs/benchmarks.md")
    ap.add_argument("--reuse-baselines", action="store_true",
                    help="with --work: reuse BLAST's hits and time from an earlier run on the same split")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each bioscan mode and of vsearch")
    ap.add_argument("--no-default", action="store_true", help="leave out the default install's row")
    args = ap.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bioscan-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    records = [r for r in read_barcodes(Path(args.data) / "barcodes.tsv") if isinstance(r, Barcode)]
    split = benchmark_split(records)
    # every method sees the same QC-cleaned sequences
    for r in records:
        r.sequence = check_barcode(r.sequence).sequence
    library = [r for r in split.library if r.sequence]
    queries = [r for r in split.known_queries + split.novel_queries if r.sequence]
    known = [r for r in split.known_queries if r.sequence]
    novel = [r for r in split.novel_queries if r.sequence]
    tax = {r.specimen_id: r.taxonomy for r in library}
    lib_tsv, lib_fa, q_fa = work / "library.tsv", work / "library.fasta", work / "queries.fasta"
    with lib_tsv.open("w") as fh:
        fh.write("processid\torder\tfamily\tgenus\tspecies\tbin_uri\tnucleotides\n")
        for r in library:
            t = r.taxonomy
            fh.write("\t".join([r.specimen_id, t.order, t.family, t.genus, t.species, t.bin_uri, r.sequence]) + "\n")
    write_fasta(lib_fa, library)
    write_fasta(q_fa, queries)
    print(f"library {len(library)} records; queries: {len(known)} known-species, {len(novel)} novel-species "
          f"({len({q.taxonomy.species for q in novel})} species)", file=sys.stderr)

    py = sys.executable
    rows = []
    # --- bioscan: library with sequences (alignment re-ranking) and embedding-only. Its runs and
    # vsearch's alternate, round by round, so that both see the same machine load.
    modes = (("bioscan identify (alignment re-rank)", []),
             ("bioscan identify (embeddings only: a library built --no-sequences)", ["--no-sequences"]))
    built = {}
    for n, (label, extra) in enumerate(modes):
        lib_db = work / f"lib{n}.db"
        if lib_db.exists():
            lib_db.unlink()
        built[label] = run([py, "-m", "engine.cli", "library", "build", "--barcodes", str(lib_tsv), "--out",
                            str(lib_db), "--model", args.model, "-q", *extra])
    has_vsearch = shutil.which("vsearch") is not None
    # the default install: `bioscan identify` with no --library or --model (the bundled ones, with sequences)
    default_label = "bioscan identify, default install (bundled library: holds these queries)"
    timings: dict[str, list[float]] = {label: [] for label, _ in modes}
    timings[default_label] = []
    timings["vsearch"] = []
    for _ in range(args.rounds):
        for n, (label, _) in enumerate(modes):
            timings[label].append(run([py, "-m", "engine.cli", "identify", str(q_fa), "--library",
                                       str(work / f"lib{n}.db"), "--model", args.model,
                                       "--out", str(work / f"bioscan{n}.csv"), "-q"]))
        if not args.no_default:
            timings[default_label].append(run([py, "-m", "engine.cli", "identify", str(q_fa),
                                               "--out", str(work / "bioscan_default.csv"), "-q"]))
        if has_vsearch:  # default heuristics: maxaccepts 1, maxrejects 32
            timings["vsearch"].append(run(["vsearch", "--usearch_global", str(q_fa), "--db", str(lib_fa), "--id",
                                           "0.7", "--blast6out", str(work / "vsearch.tsv"), "--threads", THREADS,
                                           "--quiet"]))
    def predictions(path: Path) -> dict[str, dict]:
        with path.open() as fh:
            return {row["specimen_id"]: {"species": row["species"], "genus": row["genus"],
                                         "novel": row["novel"] == "true"} for row in csv.DictReader(fh)}

    for n, (label, _) in enumerate(modes):
        rows.append((label, evaluate(predictions(work / f"bioscan{n}.csv"), known, novel), timings[label],
                     f"library build {built[label]:.0f} s"))
    if not args.no_default:
        rows.append((default_label, evaluate(predictions(work / "bioscan_default.csv"), known, novel),
                     timings[default_label], "accuracy not a test: the bundled library holds every query record "
                     "and species; the wall time is"))

    # --- BLAST top hit (7 minutes: --reuse-baselines keeps its hits and time from an earlier run)
    times_file = work / "baseline_times.json"
    times = json.loads(times_file.read_text()) if args.reuse_baselines and times_file.exists() else {}
    if shutil.which("blastn"):
        out = work / "blast.tsv"
        if "blastn" not in times:
            times["makeblastdb"] = run(["makeblastdb", "-in", str(lib_fa), "-dbtype", "nucl", "-out",
                                        str(work / "blastdb")], stdout=subprocess.DEVNULL)
            times["blastn"] = run(["blastn", "-query", str(q_fa), "-db", str(work / "blastdb"), "-outfmt", "6",
                                   "-max_target_seqs", "5", "-num_threads", THREADS, "-out", str(out)])
            times_file.write_text(json.dumps(times))
        t_db, t = times["makeblastdb"], [times["blastn"]]
        hits = top_hits_blast6(out)
        rows.append(("BLAST top hit", evaluate(top_hit_predictions(hits, tax, False), known, novel), t,
                     f"makeblastdb {t_db:.1f} s"))
        rows.append((f"BLAST top hit, {SPECIES_IDENTITY:.0f} % rule",
                     evaluate(top_hit_predictions(hits, tax, True), known, novel), t, ""))
    if has_vsearch:
        hits = top_hits_blast6(work / "vsearch.tsv")
        t = timings["vsearch"]
        rows.append(("vsearch top hit", evaluate(top_hit_predictions(hits, tax, False), known, novel), t, ""))
        rows.append((f"vsearch top hit, {SPECIES_IDENTITY:.0f} % rule",
                     evaluate(top_hit_predictions(hits, tax, True), known, novel), t, ""))

    table = [
        f"Library: {len(library):,} records; queries: {len(known):,} records of library species, "
        f"{len(novel):,} records of {len({q.taxonomy.species for q in novel})} held-out species "
        f"({os.cpu_count()} CPU cores, threads = {THREADS}).",
        "",
        "| method | species acc. (library species) | genus acc. (held-out species) | genus correct when named "
        "| held-out flagged novel | library species flagged novel | wall time (s): median (range) | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, m, t, note in rows:
        table.append(f"| {label} | {m['species_acc_known']:.2%} | {m['genus_acc_novel']:.2%} | "
                     f"{m['genus_precision_novel']:.2%} | "
                     f"{m['novel_flagged']:.2%} | {m['false_novel']:.2%} | {_seconds(t)} | {note} |")
    if has_vsearch:
        def ratios(label: str) -> str:
            return ", ".join(f"{a / b:.2f}x" for a, b in zip(timings[label], timings["vsearch"]))

        table += ["", f"Times: {args.rounds} rounds, each running every bioscan row and vsearch in turn. "
                      f"bioscan / vsearch, round by round: alignment {ratios(modes[0][0])}; embeddings only "
                      f"{ratios(modes[1][0])}" + ("" if args.no_default else
                                                  f"; default install {ratios(default_label)}") + "."]
    text = "\n".join(table)
    print(text)
    if args.section:
        write_section("DNA identification", text + "\n\nCommand: `.venv/bin/python benchmarks/dna_identify.py --section`"
                      " (the bundled model, trained on the split's library part only).")
    return 0


def _seconds(times: list[float]) -> str:
    ordered = sorted(times)
    median = ordered[len(ordered) // 2]
    return f"{median:.1f}" if len(ordered) == 1 else f"{median:.1f} ({ordered[0]:.1f}-{ordered[-1]:.1f})"


def write_section(title: str, body: str) -> None:
    """Replace (or append) the `## title` section of docs/benchmarks.md."""
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    head = f"## {title}\n"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + head + "\n" + body + "\n" + (text[nxt:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + head + "\n" + body + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
