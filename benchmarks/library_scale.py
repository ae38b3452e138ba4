"""Library at scale: build, open and identify against synthetic libraries of millions of references.

Makes (or takes) a synthetic BOLD data package with benchmarks/synthetic_library.py, then in
child processes, each measured with /usr/bin/time (wall time, peak RSS):
  1. ``bioscan library build`` of it (skip with --library to measure an existing one);
  2. opening the library and its index as `identify` does, twice (the first open after a
     build finds the index the build left; a cold open writes it when missing), and, where
     the page cache can be dropped (root), once more from a cold cache, then 1,000 queries cold;
  3. ``bioscan identify`` of 1,000 and 10,000 queries of the library's pseudo-species;
  4. vsearch ``--usearch_global`` of the same 1,000 queries against the same references
     (its default heuristics, 2 threads), the baseline;
  5. recall@10 of the library's search index against exact search, on the 1,000 queries.
Work files go to --work (never the repository).

    .venv/bin/python benchmarks/library_scale.py --records 1000000 --work /work/scale [--section]
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dna_identify import write_section  # noqa: E402

BIOSCAN = str(REPO / ".venv" / "bin" / "bioscan")
PYTHON = str(REPO / ".venv" / "bin" / "python")
THREADS = "2"

_OPEN_PROBE = """
import sys, time, resource
t = time.perf_counter()
from engine.library import ReferenceLibrary
lib = ReferenceLibrary.open(sys.argv[1])
refs = lib.references("dna")
refs.index, refs.sequences, refs.taxonomy[len(refs) - 1], refs.record_ids[len(refs) - 1]
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

_RECALL_PROBE = """
import sys, json, time
import numpy as np
from engine.io import read_barcodes
from engine.library import ReferenceLibrary
from engine.models.dna_encoder import DnaEncoder
from engine.qc import check_barcode
from engine.resources import default_model_path
from engine.search import ExactIndex
lib = ReferenceLibrary.open(sys.argv[1])
refs = lib.references("dna")
seqs = [check_barcode(b.sequence).sequence for b in read_barcodes(sys.argv[2])][: int(sys.argv[3])]
q = DnaEncoder.from_path(default_model_path("dna")).embed(seqs)
t = time.perf_counter()
_, got = refs.index.search(q, 10)
index_s = time.perf_counter() - t
t = time.perf_counter()
exact_s, exact = ExactIndex(refs.matrix).search(q, 10)
exact_time = time.perf_counter() - t
recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), exact.tolist())])
# a result as good as exact search's counts too: identical barcodes tie, and which of them the top 10 holds is arbitrary
found = np.unique(got)
got_s = np.einsum("qd,qkd->qk", q, np.asarray(refs.matrix[found], np.float32)[np.searchsorted(found, got)])
ties = np.mean(got_s >= exact_s[:, -1:] - 1e-5)
by_effort = {}
if hasattr(refs.index, "expansion"):  # the graph's search effort: recall and time at each
    for effort in (64, 128, 256, 512, 1024):
        refs.index.expansion = effort
        t = time.perf_counter()
        _, at = refs.index.search(q, 10)
        by_effort[effort] = {"seconds": time.perf_counter() - t,
                             "recall_at_10": float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(at.tolist(), exact.tolist())]))}
print(json.dumps({"index": type(refs.index).__name__, "note": refs.index_note, "recall_at_10": float(recall),
                  "recall_at_10_ties": float(ties), "index_s": index_s, "exact_s": exact_time,
                  "by_effort": by_effort}))
"""


def _memory_kb(pid: int) -> tuple[int, int]:
    """RssAnon and RssFile (+ RssShmem) of ``pid`` and its descendants, in kB (0, 0 once gone)."""
    anon = file = 0
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0, 0
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "RssAnon":
            anon += int(value.split()[0])
        elif key in ("RssFile", "RssShmem"):
            file += int(value.split()[0])
    for child in children:
        a, f = _memory_kb(int(child))
        anon += a
        file += f
    return anon, file


def _last_line(log: Path) -> str:
    """The last progress line the child wrote to ``log`` (its stderr), "" before the first."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 300))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [s for s in re.split(r"[\r\n]", tail) if s.strip()]
    return lines[-1].strip().replace("\t", " ") if lines else ""


def timed(cmd: list[str], log: Path, poll_s: float = 0.5) -> dict:
    """Run under /usr/bin/time -v; wall seconds and peak RSS (MB) of the child, and the peaks of
    its own memory (anonymous) and of the file pages it maps (memory-mapped library files: page
    cache, given back under pressure), sampled every ``poll_s``: peak RSS counts both."""
    start = time.perf_counter()
    peak_anon = peak_file = 0
    with log.open("w") as fh:
        proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=fh, text=True)
        out_lines: list[str] = []
        reader = threading.Thread(target=lambda: out_lines.extend(proc.stdout), daemon=True)
        reader.start()
        with log.with_suffix(".memory.tsv").open("w") as timeline:  # when memory peaked: which step
            timeline.write("seconds\tanon_mb\tfile_mb\tstep\n")
            while proc.poll() is None:
                anon, file = _memory_kb(proc.pid)
                peak_anon, peak_file = max(peak_anon, anon), max(peak_file, file)
                timeline.write(f"{time.perf_counter() - start:.1f}\t{anon / 1024:.0f}\t{file / 1024:.0f}\t"
                               f"{_last_line(log)}\n")
                time.sleep(poll_s)
        reader.join()
    wall = time.perf_counter() - start
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    return {"seconds": wall, "rss_mb": rss, "anon_peak_mb": peak_anon / 1024, "file_peak_mb": peak_file / 1024,
            "stdout": "".join(out_lines)}


def drop_page_cache() -> bool:
    """Empty the system's page cache (needs root; False where it cannot)."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def subset(queries: Path, n: int, out: Path) -> Path:
    with queries.open() as src, out.open("w") as dst:
        for i, line in enumerate(src):
            if i > n:
                break
            dst.write(line)
    return out


def fasta_of_package(package: Path, out: Path, limit: int | None = None) -> Path:
    import gzip

    opener = gzip.open if package.suffix == ".gz" else open
    with opener(package, "rt", newline="") as src, out.open("w") as dst:
        for i, row in enumerate(csv.DictReader(src, delimiter="\t")):
            if limit is not None and i >= limit:
                break
            dst.write(f">{row['processid']}\n{row['nucraw']}\n")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bioscan-scale"))
    ap.add_argument("--library", type=Path, help="an existing library of the package (skips the build)")
    ap.add_argument("--no-vsearch", action="store_true")
    ap.add_argument("--section", action="store_true", help="write the results to docs/benchmarks.md")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    label = f"{args.records // 1_000_000}M" if args.records >= 1_000_000 else f"{args.records // 1000}k"
    package = work / f"synth_{label}.tsv.gz"
    queries = work / "queries_10k.tsv"
    if not package.exists():
        subprocess.run([PYTHON, str(REPO / "benchmarks" / "synthetic_library.py"), "--records", str(args.records),
                        "--out", str(package)], check=True)
    if not queries.exists():
        subprocess.run([PYTHON, str(REPO / "benchmarks" / "synthetic_library.py"), "--records", str(args.records),
                        "--queries", "10000", "--out", str(queries)], check=True)
    results: dict = {"references": args.records, "arguments": " ".join(sys.argv[1:])}
    library = args.library or work / f"lib_{label}.db"
    if args.library is None:
        for stale in work.glob(f"lib_{label}.db*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        results["build"] = timed([BIOSCAN, "library", "build", "--barcodes", str(package), "--out", str(library)],
                                 work / "build.log")  # its progress lines name the steps of build.memory.tsv
    results["library_mb"] = library.stat().st_size / 2**20
    index = library.with_name(library.name + ".index")
    results["index_mb"] = sum(f.stat().st_size for f in index.rglob("*") if f.is_file()) / 2**20 if index.exists() else 0
    opens = []
    for _ in range(2):
        out = subprocess.run([PYTHON, "-c", _OPEN_PROBE, str(library)], capture_output=True, text=True, check=True,
                             cwd=REPO)
        seconds, rss = map(float, out.stdout.split())
        opens.append({"seconds": seconds, "rss_mb": rss})
    results["open"] = opens
    if drop_page_cache():  # as after a reboot: nothing of the library in memory
        out = subprocess.run([PYTHON, "-c", _OPEN_PROBE, str(library)], capture_output=True, text=True, check=True,
                             cwd=REPO)
        seconds, rss = map(float, out.stdout.split())
        results["open_cold"] = {"seconds": seconds, "rss_mb": rss}
        drop_page_cache()
        results["identify_1000_cold"] = timed([BIOSCAN, "identify", str(subset(queries, 1000, work / "queries_1000.tsv")),
                                               "--library", str(library), "--out", str(work / "calls_1000.csv"), "-q"],
                                              work / "identify_1000_cold.log")
    for n in (1000, 10000):
        q = subset(queries, n, work / f"queries_{n}.tsv")
        results[f"identify_{n}"] = timed([BIOSCAN, "identify", str(q), "--library", str(library), "--out",
                                          str(work / f"calls_{n}.csv"), "-q"], work / f"identify_{n}.log")
    recall = subprocess.run([PYTHON, "-c", _RECALL_PROBE, str(library), str(work / "queries_1000.tsv"), "1000"],
                            capture_output=True, text=True, check=True, cwd=REPO)
    results["recall"] = json.loads(recall.stdout.strip().splitlines()[-1])
    if not args.no_vsearch and shutil.which("vsearch"):
        refs_fa = work / f"refs_{label}.fasta"
        if not refs_fa.exists():
            fasta_of_package(package, refs_fa)
        q_fa = fasta_of_package(work / "queries_1000.tsv", work / "queries_1000.fasta")
        results["vsearch_1000"] = timed(["vsearch", "--usearch_global", str(q_fa), "--db", str(refs_fa), "--id", "0.7",
                                         "--blast6out", str(work / "vsearch.tsv"), "--threads", THREADS,
                                         "--quiet"], work / "vsearch.log")
    for v in results.values():
        if isinstance(v, dict):
            v.pop("stdout", None)
    (work / f"results_{label}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    if args.section:
        write_section(f"Library at scale: {label} references", table(results, label))
    return 0


def table(r: dict, label: str) -> str:
    def t(key):
        if key not in r:
            return "not run"
        split = (f" (own {r[key]['anon_peak_mb'] / 1024:.2f} GB, mapped file pages {r[key]['file_peak_mb'] / 1024:.2f} GB)"
                 if "anon_peak_mb" in r[key] else "")
        return f"{r[key]['seconds']:.1f} s, {r[key]['rss_mb'] / 1024:.2f} GB{split}"

    rows = [
        "| step | time, peak RSS (peaks of the process's own memory and of mapped file pages, sampled every 0.5 s) |",
        "|---|---|",
        f"| `library build` of {r['references']:,} references | {t('build')} |",
        f"| library file / index folder | {r['library_mb']:,.0f} MB / {r['index_mb']:,.0f} MB |",
        f"| open (library, index, sequences), first / second | {r['open'][0]['seconds']:.2f} s / "
        f"{r['open'][1]['seconds']:.2f} s, {r['open'][1]['rss_mb'] / 1024:.2f} GB |",
        f"| open with a cold page cache (as after a reboot) | "
        + (f"{r['open_cold']['seconds']:.2f} s |" if "open_cold" in r else "not run |"),
        f"| `identify` 1,000 queries, whole run | {t('identify_1000')} |",
        f"| `identify` 1,000 queries, cold page cache | {t('identify_1000_cold')} |",
        f"| `identify` 10,000 queries, whole run | {t('identify_10000')} |",
        f"| vsearch `--usearch_global`, same 1,000 queries, 2 threads | {t('vsearch_1000')} |",
        f"| search index: {r['recall']['index']}, recall@10 against exact (ties counted) | "
        f"{r['recall']['recall_at_10']:.4f} ({r['recall'].get('recall_at_10_ties', float('nan')):.4f}) |",
    ]
    for effort, e in r["recall"].get("by_effort", {}).items():
        rows.append(f"| search effort {effort}: recall@10, 1,000 queries' search | {e['recall_at_10']:.4f}, "
                    f"{e['seconds']:.2f} s |")
    if "vsearch_1000" in r:
        rows.append(f"| vsearch / identify, 1,000 queries | "
                    f"{r['vsearch_1000']['seconds'] / r['identify_1000']['seconds']:.1f}x |")
    return "\n".join(rows) + (f"\n\nSynthetic references from `benchmarks/synthetic_library.py` (pseudo-species 2-6 % "
                              f"from real barcodes, 1-20 records each); queries are other records of the same "
                              f"pseudo-species. Command: `.venv/bin/python benchmarks/library_scale.py "
                              f"{r.get('arguments', '--records ' + str(r['references']))}`.")


if __name__ == "__main__":
    sys.exit(main())
