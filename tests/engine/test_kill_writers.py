"""Every writer killed at random points (SIGKILL: nothing of the writer's own cleanup runs).

For each of export csv, export dwc, report, library build, library build --add and the
cluster cache (`bioscan cluster --project`), the real CLI runs in a subprocess and is killed
at seeded random points: at any time, just as its temp output appears, and at a random time
after that. After each kill the output must be the complete old one, the complete new one, or
(for a new library) absent, never partial; then one more run must succeed, leave no temp file
behind, and give what an uninterrupted run gives. A library build killed mid-way leaves its work
file (OUT.building, engine.build_work) beside the old output, which the next run resumes: the
builds here commit a few records a batch, so kills land between and within batches.
"""
from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, stable_meta
from tests.engine.test_export import imported  # noqa: F401 - the module fixture: an imported project
from tests.synthetic import write_tsv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

SEED = 20261201
MODES = ("any time", "as the temp file appears", "while writing")
OLD = b"the complete old output\n"


def _cli(argv: list[str], **kwargs):
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _run(argv: list[str]) -> float:
    """Run to the end; the seconds it took."""
    start = time.monotonic()
    p = _cli(argv)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    return time.monotonic() - start


def _temp_files(folder: Path) -> list[str]:
    """Temp outputs, and a library build's work file (with its journal and index folder)."""
    return sorted(n.name for n in folder.iterdir() if ".partial" in n.name or ".building" in n.name)


def _kill(argv: list[str], folder: Path, mode: str, t_full: float, rng: random.Random) -> bool:
    """Run and SIGKILL at a point chosen by ``mode``; True if it was killed before it finished."""
    p = _cli(argv)
    start = time.monotonic()
    deadline = start + rng.uniform(0.05, 0.6) * t_full  # within the first 60 %: a kill that lands, under any load
    if mode != "any time":
        while p.poll() is None and not _temp_files(folder) and time.monotonic() < start + 3 * t_full:
            time.sleep(0.002)
        now = time.monotonic()
        deadline = now + (rng.uniform(0, 0.01) if mode == "as the temp file appears"
                          else rng.uniform(0, max(0.01, t_full - (now - start))))
    while p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    return killed


def _zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _library_content(path: Path) -> tuple:
    """What a library holds, without its id and creation time (each build makes new ones)."""
    from engine.library import ReferenceLibrary

    lib = ReferenceLibrary.open(path)
    try:
        refs = lib.db.execute("SELECT record_id, modality, \"order\", family, genus, species, bin_uri, sequence, "
                              "embedding FROM refs ORDER BY modality, record_id").fetchall()
        meta = stable_meta(lib.meta)
    finally:
        lib.close()
    return refs, json.dumps(meta, sort_keys=True)


def _content(path: Path):
    if not path.exists():
        return None
    if path.suffix == ".zip" and zipfile.is_zipfile(path):
        return _zip_members(path)
    if path.suffix == ".db":
        return _library_content(path)
    return path.read_bytes()


def _check_writer(argv_for, name: str, tmp_path: Path, old: bytes | Path | None, rng: random.Random,
                  extra_check=None) -> None:
    """Reference run, kills, then a re-run; ``argv_for(folder)`` is the command writing ``folder/name``."""
    ref_dir, kill_dir = tmp_path / "reference", tmp_path / "killed"
    for d in (ref_dir, kill_dir):
        d.mkdir()
        if isinstance(old, Path):
            shutil.copy(old, d / name)
        elif old is not None:
            (d / name).write_bytes(old)
    old_content = _content(kill_dir / name)
    t_full = _run(argv_for(ref_dir))
    expected = _content(ref_dir / name)
    assert expected is not None and expected != old_content
    outcomes = []
    for mode in MODES:
        killed = _kill(argv_for(kill_dir), kill_dir, mode, t_full, rng)
        now = _content(kill_dir / name)
        assert now == old_content or now == expected, f"{name}: partial output after a kill ({mode})"
        outcomes.append((mode, killed, "old" if now == old_content else "new"))
        left = {p.name for p in kill_dir.iterdir()} - {name} - set(_temp_files(kill_dir))
        assert not left, f"{name}: unexpected files after a kill: {left}"
        if extra_check:
            extra_check()
    assert any(killed for _, killed, _ in outcomes), (name, outcomes)  # at least one kill landed mid-run
    _run(argv_for(kill_dir))
    assert _content(kill_dir / name) == expected, f"{name}: the re-run after kills differs from an uninterrupted run"
    assert sorted(p.name for p in kill_dir.iterdir()) == [name]  # the killed runs' temp files are gone


@pytest.fixture(scope="module")
def barcode_tables(tmp_path_factory, synthetic_split):
    library, known, _ = synthetic_split
    d = tmp_path_factory.mktemp("kill_tables")
    write_tsv(d / "base.tsv", library[:36])
    write_tsv(d / "more.tsv", library[36:] + known)
    return d / "base.tsv", d / "more.tsv"


@pytest.mark.parametrize("fmt,name", [("csv", "out.csv"), ("dwc", "out.zip")])
def test_export_survives_kills(imported, tmp_path, fmt, name):  # noqa: F811 - the fixture
    project = imported[0]
    _check_writer(lambda d: ["export", "--project", str(project), "--format", fmt, "--out", str(d / name)],
                  name, tmp_path, OLD, random.Random(f"{SEED}{fmt}"))


def test_report_survives_kills(imported, tmp_path):  # noqa: F811
    project = imported[0]
    _check_writer(lambda d: ["report", "--project", str(project), "--out", str(d / "report.html")],
                  "report.html", tmp_path, OLD, random.Random(f"{SEED}report"))


def test_library_build_survives_kills(tmp_path, tiny_dna_pack, barcode_tables):
    base, _ = barcode_tables
    _check_writer(lambda d: ["library", "build", "--barcodes", str(base), "--out", str(d / "lib.db"),
                             "--model", str(tiny_dna_pack), "--device", "cpu", "-q", "--batch-size", "8"],
                  "lib.db", tmp_path, None, random.Random(f"{SEED}build"))


def test_library_build_add_survives_kills(tmp_path, tiny_dna_pack, barcode_tables):
    base, more = barcode_tables
    old = tmp_path / "old.db"
    assert subprocess.run([sys.executable, "-m", "engine.cli", "library", "build", "--barcodes", str(base),
                           "--out", str(old), "--model", str(tiny_dna_pack), "--device", "cpu", "-q"],
                          cwd=REPO, capture_output=True).returncode == 0
    _check_writer(lambda d: ["library", "build", "--add", "--barcodes", str(more), "--out", str(d / "lib.db"),
                             "--model", str(tiny_dna_pack), "--device", "cpu", "-q", "--batch-size", "8"],
                  "lib.db", tmp_path, old, random.Random(f"{SEED}add"))


def test_cluster_cache_survives_kills(imported, tmp_path):  # noqa: F811
    """The cluster cache lives in the project (engine.cluster.project): after each kill the project
    must open and the CSV be old, new or absent; the re-run must match an uninterrupted run."""
    from engine.project import open_project

    copies = {}

    def argv_for(d: Path) -> list[str]:
        if d not in copies:
            copies[d] = d.parent / f"{d.name}-project.db"
            shutil.copy(imported[0], copies[d])
        return ["cluster", "--project", str(copies[d]), "--all", "--out", str(d / "clusters.csv"), "-q"]

    def project_opens() -> None:
        for copy in copies.values():
            with open_project(copy, readonly=True) as p:
                assert p.count_specimens() > 0

    _check_writer(argv_for, "clusters.csv", tmp_path, None, random.Random(f"{SEED}cluster"), project_opens)
