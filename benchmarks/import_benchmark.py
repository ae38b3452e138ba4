"""Import benchmark: `bioscan import` of 10,000 real barcode records plus a few hundred real photos.

Draws records from ../shared/data/barcodes.tsv (seeded) into barcode tables in a temporary
folder (never the repository), copies photos from ../shared/data/images there, runs the CLI
import in a child process and measures wall time, throughput and the child's peak resident
memory; then re-runs it (everything unchanged: the idempotence path) and times list queries
on a synthetic 100,000-specimen project.

Uses the bundled library and DNA model when resources/ has them; otherwise (or with
--temp-library) trains a 1-epoch model on a few thousand records and builds a library from
records not drawn as queries, in the temporary folder.

    .venv/bin/python benchmarks/import_benchmark.py [--n 10000] [--photos 300] [--section]
"""
from __future__ import annotations

import argparse
import os
import csv
import random
from collections import Counter
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dna_identify import write_section  # noqa: E402

COLUMNS = ["processid", "bin_uri", "order", "family", "subfamily", "genus", "species", "nucleotides"]


def draw_records(data: Path, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    with open(data / "barcodes.tsv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    random.Random(seed).shuffle(rows)
    return rows[:n], rows[n:]


def write_plates(rows: list[dict], folder: Path, per_plate: int = 2500) -> None:
    folder.mkdir(parents=True)
    for i in range(0, len(rows), per_plate):
        with open(folder / f"plate{i // per_plate + 1:02d}.tsv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter="\t", lineterminator="\n")
            w.writerow(COLUMNS)
            for r in rows[i:i + per_plate]:
                w.writerow([r[c] for c in COLUMNS])


def copy_photos(data: Path, folder: Path, n: int) -> int:
    photos = sorted((data / "images").rglob("*.jpg"))[:n]
    folder.mkdir(parents=True)
    for i, p in enumerate(photos):
        shutil.copy(p, folder / f"{i:04d}_{p.name}" if (folder / p.name).exists() else folder / p.name)
    return len(photos)


def temp_library(rest: list[dict], work: Path, n_train: int, n_lib: int) -> tuple[Path, Path]:
    """A 1-epoch model and a calibrated library from records that are not queries."""
    from engine.build import add_barcodes, calibrate_library
    from engine.library import ReferenceLibrary
    from engine.models.dna_encoder import DnaEncoder
    from engine.qc import check_barcode
    from engine.records import Barcode, Taxonomy
    from engine.train.dna import train_dna

    recs = []
    for r in rest[:max(n_train, n_lib)]:
        qc = check_barcode(r["nucleotides"])
        if qc.ok:
            tax = Taxonomy(r["order"], r["family"], r["subfamily"], r["genus"], r["species"], r["bin_uri"])
            recs.append(Barcode(r["processid"], qc.sequence, "barcodes.tsv", tax))
    pack = train_dna(recs[:n_train], work / "model", epochs=1, log=lambda m: None)
    lib = ReferenceLibrary.create(work / "library.db")
    add_barcodes(lib, recs[:n_lib], DnaEncoder.from_path(pack))
    calibrate_library(lib)
    return work / "library.db", pack


# Runs the CLI and prints the process's own peak RSS (VmHWM) at exit. The child's ru_maxrss
# would not do: on Linux it includes the parent's memory when the child was vfork'ed.
_LAUNCHER = ("import atexit, sys\n"
             "def hwm():\n"
             "    for line in open('/proc/self/status'):\n"
             "        if line.startswith('VmHWM:'): print('PEAK_RSS_KB', line.split()[1], file=sys.stderr)\n"
             "atexit.register(hwm)\n"
             "from engine.cli import main\n"
             "sys.exit(main(sys.argv[1:]))\n")


def run_import(folder: Path, project: Path, library: Path | None, model: Path | None) -> tuple[float, str, float]:
    """(seconds, the CLI's summary line, peak resident memory in MB)."""
    cmd = [sys.executable, "-c", _LAUNCHER, "import", str(folder), "--project", str(project), "-q"]
    if library:
        cmd += ["--library", str(library), "--model", str(model)]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t
    lines = done.stderr.strip().splitlines()
    peak_kb = next(int(x.split()[1]) for x in lines if x.startswith("PEAK_RSS_KB"))
    summary = next(x for x in reversed(lines) if x.startswith("imported into"))
    return seconds, summary, peak_kb / 1024


def error_kinds(project: Path) -> Counter:
    from engine.project import open_project
    from engine.report import error_kind

    with open_project(project, readonly=True) as p:
        return Counter(error_kind(e["error"] or "") for e in p.item_errors())


def list_timings(work: Path, n: int) -> dict[str, float]:
    """Build an n-specimen project (calls only) and time the GUI's list queries on it."""
    import numpy as np

    from engine.project import SpecimenFilter, open_project
    from engine.project.writer import ItemResult, ProjectWriter
    from engine.records import RANKS, Call, RankCall

    p = open_project(work / "list.db", create=True)
    w = ProjectWriter(p)
    run = w.begin_run({})
    fid = w.register_file(str(work / "synthetic.tsv"), "barcodes", 1, 1, "", run)
    rng = np.random.default_rng(0)
    for start in range(0, n, 5000):
        items = []
        for i in range(start, min(n, start + 5000)):
            # a bulk-sample-like spread: 20 orders, 200 families, 1,500 genera, up to 6,000 species
            g = int(rng.zipf(1.3)) % 1500
            f = g % 200
            names = {"order": f"Order{f % 20}", "family": f"Family{f}", "genus": f"Genus{g}",
                     "species": f"Genus{g} sp{rng.integers(0, 4)}", "bin_uri": f"BOLD:{i:07d}"}
            call = Call({r: RankCall(r, names[r], float(rng.random())) for r in RANKS})
            items.append(ItemResult(fid, f"R{i}", f"R{i}", "dna", "ok", call=call, call_modality="dna"))
        w.write_batch(run, items, [])
    out = {"distinct species": p.conn.execute("SELECT count(DISTINCT species) FROM specimens").fetchone()[0]}
    queries = {
        "count, all": lambda: p.count_specimens(),
        "page 1, sort by family": lambda: p.list_specimens(sort="family", limit=200),
        "page 200, sort by confidence desc": lambda: p.list_specimens(sort="confidence", descending=True,
                                                                      offset=40_000, limit=200),
        "filter order + sort species": lambda: p.list_specimens(SpecimenFilter(taxon={"order": "Order3"}),
                                                                sort="species", limit=200),
        "search substring": lambda: p.list_specimens(SpecimenFilter(search="sp3"), limit=200),
        "taxonomy tree": lambda: p.taxonomy_tree(),
    }
    for name, q in queries.items():
        t = time.perf_counter()
        q()
        out[name] = (time.perf_counter() - t) * 1000
    p.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temp-library", action="store_true", help="build a library in the temp folder")
    ap.add_argument("--list-rows", type=int, default=100_000)
    ap.add_argument("--section", action="store_true", help="write the results into docs/benchmarks.md")
    args = ap.parse_args()
    data = Path(args.data)
    from engine.resources import default_library_path, default_model_path

    bundled = not args.temp_library
    try:
        bundled = bundled and default_library_path().is_file() and default_model_path("dna").is_dir()
    except Exception:  # noqa: BLE001 - no resources: fall back to a temp library
        bundled = False
    with tempfile.TemporaryDirectory(prefix="bioscan-import-bench-") as tmp:
        work = Path(tmp)
        queries, rest = draw_records(data, args.n, args.seed)
        write_plates(queries, work / "bulk" / "barcodes")
        n_photos = copy_photos(data, work / "bulk" / "photos", args.photos)
        library = model = None
        lib_note = "the bundled library and DNA model"
        if not bundled:
            t = time.perf_counter()
            library, model = temp_library(rest, work, n_train=3000, n_lib=8000)
            lib_note = (f"a temporary library (8,000 records not among the queries; 1-epoch model trained on "
                        f"3,000 of them, built in {time.perf_counter() - t:.0f} s) because resources/ has no "
                        f"bundled library yet")
        project = work / "project.db"
        load_before = os.getloadavg()[0]
        seconds, summary, peak_mb = run_import(work / "bulk", project, library, model)
        load = max(load_before, os.getloadavg()[0])  # other jobs on the machine slow the import down
        rerun_s, rerun_summary, _ = run_import(work / "bulk", project, library, model)
        db_mb = project.stat().st_size / 1e6
        errors = error_kinds(project)
        if sum(errors.values()) > 0.05 * args.n:  # a broken engine must not produce benchmark numbers
            print(f"too many errors, not a valid benchmark run: {errors.most_common(5)}", file=sys.stderr)
            return 1
        lists = list_timings(work, args.list_rows) if args.list_rows else {}
    items = args.n + n_photos
    lines = [
        f"Import of {args.n:,} barcode records (random draw from barcodes.tsv, seed {args.seed}, 4 tables) and "
        f"{n_photos} photos (shared images) in one `bioscan import` run with {lib_note}; 2 CPU cores, nice 10.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| wall time, first import | {seconds:.1f} s (machine load average {load:.1f} on {os.cpu_count()} cores) |",
        f"| throughput | {items / seconds:.0f} items/s ({args.n / seconds:.0f} barcodes/s incl. photos) |",
        f"| peak resident memory of the import process | {peak_mb:.0f} MB (target < 1 GB) |",
        f"| re-import, nothing changed | {rerun_s:.1f} s |",
        f"| project database size | {db_mb:.1f} MB |",
        f"| result | {summary.split(': ', 1)[-1]} |",
        f"| error items by kind | {', '.join(f'{k}: {n}' for k, n in errors.most_common(4)) or 'none'} |",
    ]
    if lists:
        species = lists.pop("distinct species")
        lines += ["", f"GUI list queries on a synthetic {args.list_rows:,}-specimen project ({species:,} species), "
                  "in ms:", "", "| query | ms |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in lists.items()]
    lines += ["", "Command: `nice -n 10 .venv/bin/python benchmarks/import_benchmark.py --section"
                  + (" --temp-library" if not bundled else "") + "`"]
    text = "\n".join(lines)
    print(text)
    print(f"(rerun: {rerun_summary})", file=sys.stderr)
    if args.section:
        write_section("Import", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
