"""Smoke test of the built bundle: run it as a lab user would, with inputs made here.

    python packaging/smoke_test.py [dist/BIOSCAN-Desktop]

Runs the bundle's `bioscan --version --verbose`, `bioscan identify` on a FASTA (120 real
barcodes drawn from ../shared/data when present, else COI-like synthetic ones, and one protein
record that must come back as an error row) and a photo, `bioscan-desktop --screenshot` offscreen,
the GUI's cluster map of a project imported from the same folder (UMAP in a child process the
frozen app spawns) and that project's PDF report; checks the outputs; prints the bundle size, the GUI's cold start and the
identify time. Exits non-zero on the first failure.
"""
from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.cluster.core import MIN_ITEMS_FOR_UMAP  # noqa: E402


def run(cmd: list[str], **kw) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc, seconds


def barcodes(n: int) -> tuple[list[tuple[str, str]], bool]:
    """(id, sequence) pairs, and whether they are real insect barcodes (synthetic ones are random)."""
    data = Path(os.environ.get("BIOSCAN_DATA", ROOT.parent / "shared" / "data")) / "barcodes.tsv"
    if data.is_file():
        with data.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        return [(r["processid"], r["nucleotides"]) for r in random.Random(0).sample(rows, n)], True
    rng = random.Random(0)
    codons = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c not in ("TAA", "TAG")]
    return [(f"synthetic{i}", "".join(rng.choice(codons) for _ in range(219))) for i in range(n)], False


CLUSTER_MAP_FIRST_COLOUR = (31, 119, 180)  # matplotlib's tab20(0), the most common call on the map


def pixels_of(png: Path, rgb: tuple[int, int, int]) -> int:
    from PIL import Image

    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 24)
    return sum(n for n, c in colours if c == rgb)


def main() -> int:
    bundle = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "dist" / "BIOSCAN-Desktop")
    exe = ".exe" if sys.platform == "win32" else ""
    cli, gui = bundle / f"bioscan{exe}", bundle / f"bioscan-desktop{exe}"
    for f in (cli, gui):
        if not f.is_file():
            sys.exit(f"FAILED: {f} not found (build it with packaging/build.sh)")
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file() and not f.is_symlink())
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("BIOSCAN_RESOURCES", None)  # the bundle must find its own resources
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proc, _ = run([str(cli), "--version", "--verbose"], env=env)
        assert "bioscan-dna-cnn" in proc.stdout and "device:" in proc.stdout, proc.stdout
        print(proc.stdout.strip())
        sample = tmp / "sample"
        sample.mkdir()
        recs, real = barcodes(MIN_ITEMS_FOR_UMAP + 20)  # enough for the cluster map to run UMAP below
        protein = "MKVLAAGIVGLLLAQSPRWEEFFKKLLHHGGTTPPRRSSDDNNQQYYWW" * 10  # not DNA: must be an error row
        (sample / "plate.fasta").write_text("".join(f">{i}\n{s}\n" for i, s in recs) + f">not_dna\n{protein}\n")
        from PIL import Image  # the build venv has Pillow; the photo only has to be a real JPEG

        Image.new("RGB", (320, 240), (180, 140, 90)).save(sample / "specimen_photo.jpg")
        out = tmp / "results.csv"
        proc, t_identify = run([str(cli), "identify", str(sample), "--out", str(out)], env=env)
        with out.open() as fh:
            rows = list(csv.DictReader(fh))
        dna = [r for r in rows if r["modality"] == "dna" and r["specimen_id"] != "not_dna"]
        bad = [r for r in rows if r["specimen_id"] == "not_dna"]
        photos = [r for r in rows if r["modality"] == "image"]
        assert len(dna) == len(recs), f"{len(dna)} DNA rows for {len(recs)} barcodes"
        assert all(r["status"] in ("ok", "novel") for r in dna), "a barcode was not identified"
        # a real insect barcode gets at least an order; a random synthetic sequence need not
        assert not real or all(r["order"] for r in dna), "a real barcode got no order"
        assert len(bad) == 1 and bad[0]["status"] == "error" and bad[0]["error"], bad
        # the photo model runs in the bundle: a call (any order), not an error row
        assert len(photos) == 1 and photos[0]["status"] in ("ok", "novel") and photos[0]["order"], photos
        shot = tmp / "window.png"
        t = time.perf_counter()
        run([str(gui), "--screenshot", str(shot)], env=env)
        t_gui = time.perf_counter() - t
        assert shot.is_file() and shot.stat().st_size > 20_000, "screenshot missing or blank"
        # a project's cluster map: UMAP in a child process the frozen app spawns, drawn by matplotlib
        project = tmp / "plate.bioscan.db"
        run([str(cli), "import", str(sample), "--project", str(project), "-q"], env=env)
        # the PDF report (matplotlib's PDF backend and its fonts in the bundle)
        run([str(cli), "report", "--project", str(project), "--out", str(tmp / "report.pdf")], env=env)
        report = (tmp / "report.pdf").read_bytes()
        assert report.startswith(b"%PDF") and len(report) > 10_000, "PDF report missing or empty"
        cluster_shot = tmp / "cluster.png"
        _, t_cluster = run([str(gui), str(project), "--screenshot", str(cluster_shot), "--view", "cluster"], env=env)
        # drawn points and legend carry tab20's first colour; a failed map is only a message
        assert pixels_of(cluster_shot, CLUSTER_MAP_FIRST_COLOUR) > 20, "the cluster map was not drawn"
    print(f"bundle {bundle}: {size / 1e6:.0f} MB")
    print(f"identify {len(recs)} barcodes + 1 photo: {t_identify:.1f} s; GUI start to screenshot: {t_gui:.1f} s; "
          f"project cluster map screenshot: {t_cluster:.1f} s")
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
