"""Resumable library builds (issue 16): a build stopped after some committed batches (Ctrl-C,
kill -9) resumes with the same command, embeds only what was not committed, and ends with the
library an uninterrupted build makes; changed inputs or settings are refused; --restart discards
the work; --add keeps the old library intact until the end. Inputs are BOLD v5 data packages
(BCDM columns, one gzipped) with rows the build skips."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.build import SKIPPED_KEPT, BuildInterrupted, BuildReport, build_library
from engine.build_work import work_path
from engine.errors import BioscanError, LibraryError
from engine.library import ReferenceLibrary
from tests.conftest import REPO, stable_meta
from tests.engine.test_formats import write_bcdm
from tests.synthetic import make_barcodes

BATCH = 8  # QC-passed records a batch: a few dozen records make several batches per file
COMMON = dict(kingdom="Animalia", phylum="Arthropoda", **{"class": "Insecta"}, marker_code="COI-5P",
              identification_rank="species", country="Canada")


def _rows(records, bad_every: int = 0) -> list[dict[str, str]]:
    rows = []
    for n, r in enumerate(records):
        t = r.taxonomy
        rows.append(dict(COMMON, processid=r.specimen_id, order=t.order, family=t.family, genus=t.genus,
                         species=t.species, bin_uri=t.bin_uri, nucraw=r.sequence))
        if bad_every and n % bad_every == 0:  # rows the build skips, and one the reader skips
            rows.append(dict(COMMON, processid=f"SHORT{n}", order=t.order, family=t.family, nucraw=r.sequence[:60]))
            rows.append(dict(COMMON, processid=f"NONAME{n}", order="None", nucraw=r.sequence))
            rows.append(dict(COMMON, processid=f"COI3P{n}", order=t.order, marker_code="COI-3P", nucraw=r.sequence))
    return rows


@pytest.fixture(scope="module")
def packages(tmp_path_factory, synthetic_split):
    """Two BOLD data packages (the second gzipped) and the records of a third, for --add."""
    library, known, _ = synthetic_split
    d = tmp_path_factory.mktemp("packages")
    first = write_bcdm(d / "BOLD_Public.18-Dec-2023.tsv", _rows(library[:40], bad_every=7))
    second = write_bcdm(d / "BOLD_Public.21-Jun-2024.tsv.gz", _rows(library[40:], bad_every=5))
    more = write_bcdm(d / "more.tsv", _rows(known + make_barcodes(genera=2, species_per_genus=2, seed=9),
                                            bad_every=6))
    return first, second, more


class CountingEncoder:
    """The real encoder, counting the sequences it embeds."""

    def __init__(self, pack: Path):
        from engine.models.dna_encoder import DnaEncoder

        self.inner = DnaEncoder.from_path(pack, device="cpu")
        self.embedded = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, sequences, *args, **kwargs):
        self.embedded += len(sequences)
        return self.inner.embed(sequences, *args, **kwargs)


def _stop_after(commits: int):
    """A progress callback raising KeyboardInterrupt once ``commits`` batches are committed
    (its first call is the build's start)."""
    calls = []

    def progress(done, total, message):
        if message.startswith(("reading and embedding", "resuming")):
            calls.append(done)
            if len(calls) > commits:
                raise KeyboardInterrupt
    return progress


def _content(path: Path) -> tuple:
    """What a library holds, without its ids and creation time (every build makes new ones)."""
    lib = ReferenceLibrary.open(path)
    try:
        refs = lib.db.execute('SELECT id, record_id, modality, "order", family, genus, species, bin_uri, source, '
                              "embedding, seq_block, seq_index FROM refs ORDER BY id").fetchall()
        blocks = lib.db.execute("SELECT id, data FROM seq_blocks ORDER BY id").fetchall()
        meta = stable_meta(lib.meta)
    finally:
        lib.close()
    return refs, blocks, meta


def _calls(path: Path, pack: Path, queries) -> list:
    from engine.identify import open_identifier

    ident = open_identifier(path, pack, device="cpu")
    return [(r.specimen_id, r.status, r.call.novel_rank if r.call else "",
             [(rank, c.name, round(c.confidence, 6)) for rank, c in sorted(r.call.ranks.items())] if r.call else [])
            for r in ident.identify(queries)]


def _report(rep: BuildReport) -> tuple:
    return (rep.added, rep.n_skipped, rep.skipped, dict(rep.skipped_by_reason),
            [(Path(f).name, s.summary()) for f, s in rep.read])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_dna_pack, packages):
    """The library, report and encoder count of a build nothing stops."""
    out = tmp_path_factory.mktemp("whole") / "lib.db"
    encoder = CountingEncoder(tiny_dna_pack)
    lib, rep = build_library(packages[:2], out, encoder, batch_size=BATCH)
    lib.close()
    return out, rep, encoder.embedded


# the first package has 5 batches; the 6th commit records it read to its end (no batch left)
@pytest.mark.parametrize("commits", [0, 2, 5, 6, 8])
def test_interrupted_build_resumes_to_the_uninterrupted_library(tmp_path, tiny_dna_pack, packages, uninterrupted,
                                                                 synthetic_split, commits):
    whole, whole_report, whole_embedded = uninterrupted
    out = tmp_path / "lib.db"
    with pytest.raises(BuildInterrupted) as stopped:
        build_library(packages[:2], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH,
                      progress=_stop_after(commits))
    assert not out.exists() and work_path(out).is_file()
    committed = ReferenceLibrary.open(work_path(out)).count("dna")
    assert committed == {0: 0, 2: 16, 5: 40, 6: 40, 8: 56}[commits]
    assert "run the same command again to resume" in str(stopped.value)
    assert str(stopped.value).startswith("interrupted: ") and " records committed" in str(stopped.value)

    encoder = CountingEncoder(tiny_dna_pack)
    lib, rep = build_library(packages[:2], out, encoder, batch_size=BATCH)
    lib.close()
    assert encoder.embedded == whole_embedded - committed  # the committed records were not embedded again
    assert rep.resumed == committed
    assert _content(out) == _content(whole)
    assert _report(rep) == _report(whole_report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.db"]
    queries = synthetic_split[1] + synthetic_split[2]
    assert _calls(out, tiny_dna_pack, queries) == _calls(whole, tiny_dna_pack, queries)


def test_interrupted_message_counts_committed_rows_of_all(tmp_path, tiny_dna_pack, packages):
    out = tmp_path / "lib.db"
    with pytest.raises(BuildInterrupted) as stopped:
        build_library(packages[:2], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH, progress=_stop_after(1))
    progress = json.loads(ReferenceLibrary.open(work_path(out)).meta["build.progress"])
    committed_rows = sum(rows for _, rows, _ in progress["inputs"])
    # the estimate counts each package's data lines: every row, the reader's skipped COI-3P ones too
    lines = [packages[0].read_bytes(), gzip.decompress(packages[1].read_bytes())]
    assert progress["estimates"] == [len(text.splitlines()) - 1 for text in lines]
    assert str(stopped.value).startswith(
        f"interrupted: {committed_rows:,} of {sum(progress['estimates']):,} records committed")
    assert committed_rows > BATCH  # the batch's QC-passed records, and the rows skipped among them


def test_killed_build_resumes(tmp_path, tiny_dna_pack, packages, uninterrupted):
    """kill -9 (nothing of the build's own cleanup runs) right after a batch's commit is reported,
    while the next is under way: the same command resumes after the last committed batch."""
    whole, _, whole_embedded = uninterrupted
    out = tmp_path / "lib.db"
    script = (
        "import sys\n"
        "from engine.build import build_library\n"
        "from engine.models.dna_encoder import DnaEncoder\n"
        "enc = DnaEncoder.from_path(sys.argv[1], device='cpu')\n"
        "def progress(done, total, message):\n"
        "    print(message, done, flush=True)\n"
        f"build_library(sys.argv[3:], sys.argv[2], enc, batch_size={BATCH}, progress=progress)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script, str(tiny_dna_pack), str(out), *map(str, packages[:2])],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    commits = 0
    for line in p.stdout:
        commits += line.startswith("reading and embedding") and not line.endswith(" 0\n")
        if commits == 3:
            p.send_signal(signal.SIGKILL)
            break
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL and not out.exists()
    committed = ReferenceLibrary.open(work_path(out)).count("dna")
    assert committed >= 3 * BATCH
    encoder = CountingEncoder(tiny_dna_pack)
    build_library(packages[:2], out, encoder, batch_size=BATCH)[0].close()
    assert encoder.embedded == whole_embedded - committed
    assert _content(out) == _content(whole)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.db"]


def test_changed_input_or_setting_is_refused_and_restart_starts_again(tmp_path, tiny_dna_pack, packages,
                                                                       uninterrupted):
    import shutil

    whole, _, whole_embedded = uninterrupted
    first, second = tmp_path / packages[0].name, tmp_path / packages[1].name
    shutil.copy(packages[0], first)
    shutil.copy(packages[1], second)
    out = tmp_path / "lib.db"
    with pytest.raises(BuildInterrupted):
        build_library([first, second], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH,
                      progress=_stop_after(2))
    with pytest.raises(LibraryError, match="--no-sequences was off, now on"):
        build_library([first, second], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH, store_sequences=False)
    with pytest.raises(LibraryError, match="the batch size was 8, now 16"):
        build_library([first, second], out, CountingEncoder(tiny_dna_pack), batch_size=16)
    with pytest.raises(LibraryError, match="the input files were"):
        build_library([first], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH)
    st = first.stat()
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the same bytes, touched
    with pytest.raises(LibraryError) as changed:
        build_library([first, second], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH)
    message = str(changed.value)
    assert f"{first.resolve()} changed (modified " in message and "--restart" in message, message
    assert ReferenceLibrary.open(work_path(out)).count("dna") == 2 * BATCH  # refusing kept the work

    encoder = CountingEncoder(tiny_dna_pack)
    build_library([first, second], out, encoder, batch_size=BATCH, restart=True)[0].close()
    assert encoder.embedded == whole_embedded  # from the start
    assert _content(out) == _content(whole)
    assert not work_path(out).exists()


def test_add_resumed_keeps_the_old_library_until_done(tmp_path, tiny_dna_pack, packages):
    import shutil

    base = tmp_path / "base.db"
    build_library(packages[:1], base, CountingEncoder(tiny_dna_pack), batch_size=BATCH)[0].close()
    whole, out = tmp_path / "whole.db", tmp_path / "lib.db"
    shutil.copy(base, whole)
    shutil.copy(base, out)
    full = CountingEncoder(tiny_dna_pack)
    build_library(packages[1:], whole, full, add=True, batch_size=BATCH)[0].close()
    old = out.read_bytes()

    with pytest.raises(BuildInterrupted):
        build_library(packages[1:], out, CountingEncoder(tiny_dna_pack), add=True, batch_size=BATCH,
                      progress=_stop_after(3))
    assert out.read_bytes() == old  # the old library, as it was
    in_base = ReferenceLibrary.open(base).count("dna")
    assert ReferenceLibrary.open(work_path(out)).count("dna") - in_base == 20  # the second package: 8, 8 and 4
    with pytest.raises(BuildInterrupted):  # interrupted again, further on
        build_library(packages[1:], out, CountingEncoder(tiny_dna_pack), add=True, batch_size=BATCH,
                      progress=_stop_after(1))
    assert out.read_bytes() == old
    committed = ReferenceLibrary.open(work_path(out)).count("dna") - in_base
    assert committed == 20 + BATCH
    encoder = CountingEncoder(tiny_dna_pack)
    build_library(packages[1:], out, encoder, add=True, batch_size=BATCH)[0].close()
    assert encoder.embedded == full.embedded - committed
    assert _content(out) == _content(whole)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.db", "lib.db", "whole.db"]


def test_add_refuses_a_library_changed_since_its_build_started(tmp_path, tiny_dna_pack, packages):
    out = tmp_path / "lib.db"
    build_library(packages[:1], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH)[0].close()
    with pytest.raises(BuildInterrupted):
        build_library(packages[1:], out, CountingEncoder(tiny_dna_pack), add=True, batch_size=BATCH,
                      progress=_stop_after(1))
    lib = ReferenceLibrary.open_writable(out)
    lib.set_meta({"name": "renamed by someone else"})
    lib.close()
    with pytest.raises(LibraryError, match="changed by another process since the build started.*--restart"):
        build_library(packages[1:], out, CountingEncoder(tiny_dna_pack), add=True, batch_size=BATCH)
    build_library(packages[1:], out, CountingEncoder(tiny_dna_pack), add=True, batch_size=BATCH,
                  restart=True)[0].close()
    assert ReferenceLibrary.open(out).meta["name"] == "renamed by someone else"  # built on its new state


def test_a_second_build_of_the_same_library_is_refused_while_one_runs(tmp_path, tiny_dna_pack, packages):
    out = tmp_path / "lib.db"
    seen = []

    def progress(done, total, message):
        if message.startswith("reading and embedding") and done and not seen:
            with pytest.raises(LibraryError, match="another process meanwhile started building") as second:
                build_library(packages[:2], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH)
            seen.append(str(second.value))
            with pytest.raises(LibraryError, match="another process meanwhile"):
                build_library(packages[:2], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH, restart=True)

    build_library(packages[:2], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH, progress=progress)[0].close()
    assert seen and sorted(p.name for p in tmp_path.iterdir()) == ["lib.db"]


def test_skipped_records_are_kept_bounded():
    rep = BuildReport()
    for n in range(20_000):
        rep.skip(f"R{n}", f"too short: {n % 300} unambiguous bases (minimum 100)" if n % 2 else
                 f"duplicate id 'R{n}' (line {n}); ids must be unique")
    for n in range(200):  # kinds of reason without numbers to fold: counted apart up to a limit
        rep.skip(f"K{n}", f"reason kind {chr(65 + n % 26)}{chr(65 + n // 26)}")
    assert len(rep.skipped) == SKIPPED_KEPT and rep.skipped[0] == ("R0", "duplicate id 'R0' (line 0); ids must be unique")
    assert rep.n_skipped == 20_200
    assert rep.skipped_by_reason["too short: … unambiguous bases (minimum …)"] == 10_000
    assert rep.skipped_by_reason["duplicate id '…' (line …); ids must be unique"] == 10_000
    assert len(rep.skipped_by_reason) <= 51 and rep.skipped_by_reason["other reasons"] == 200 - 48
    assert len(json.dumps(rep.state())) < 20_000


def test_progress_line_has_rate_and_eta():
    import io

    from engine.cli_progress import ProgressPrinter

    p = ProgressPrinter(stream=io.StringIO())
    assert p.line(1_000, 11_000, "added 1000 references", now=100.0) == "added 1000 references: 1,000/11,000   9.1%"
    # the same step (its numbers differ): 5,000 more in 10 s
    assert p.line(6_000, 11_000, "added 6000 references", now=110.0) == (
        "added 6000 references: 6,000/11,000  54.5% 500/s ETA 10 s")
    assert p.line(6_000, 0, "reading", now=110.0) == "reading: 6,000"  # no total: no ETA
    assert p.line(9_000, 0, "reading", now=112.0) == "reading: 9,000 1,500/s"
    assert p.line(7_000, 1_200_000, "added 7000 references", now=120.0).endswith("300/s ETA 1 h 06 min")


def test_cli_interrupted_then_resumed(tmp_path, tiny_dna_pack):
    """Ctrl-C (SIGINT) during `bioscan library build`: exit 130 and one line saying what was
    committed; the same command resumes, and says how much it did not embed again."""
    package = write_bcdm(tmp_path / "BOLD_Public.tsv", _rows(make_barcodes(genera=8, species_per_genus=8,
                                                                          records_per_species=16, seed=5)))
    out = tmp_path / "lib.db"
    argv = [sys.executable, "-m", "engine.cli", "library", "build", "--barcodes", str(package), "--out", str(out),
            "--model", str(tiny_dna_pack), "--device", "cpu", "--batch-size", str(BATCH)]
    p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in p.stderr:
        lines.append(line)
        if line.startswith("reading and embedding barcodes: ") and not line.startswith("reading and embedding "
                                                                                          "barcodes: 0/"):
            p.send_signal(signal.SIGINT)
            break
    rest = p.communicate(timeout=60)[1]
    assert p.returncode == 130, lines + [rest]
    assert "Traceback" not in rest
    said = [ln for ln in rest.splitlines() if ln.startswith("bioscan:")]
    assert len(said) == 1 and said[0].startswith("bioscan: interrupted: ") and said[0].endswith(
        " of 1,024 records committed (in lib.db.building); run the same command again to resume"), rest
    assert any(" ETA " in ln and "/s" in ln for ln in lines), lines  # rate and time left, once measured
    committed = ReferenceLibrary.open(work_path(out)).count("dna")
    done = subprocess.run(argv + ["-q"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"1024 records added ({committed} of them committed by the interrupted run, not embedded again)" \
        in done.stderr, done.stderr
    assert ReferenceLibrary.open(out).count("dna") == 1024 and not work_path(out).exists()


def test_batch_size_must_be_positive(tmp_path, tiny_dna_pack, packages):
    with pytest.raises(BioscanError, match="batch size of 0"):
        build_library(packages[:1], tmp_path / "lib.db", CountingEncoder(tiny_dna_pack), batch_size=0)


def test_a_damaged_input_says_what_was_committed_and_kept(tmp_path, tiny_dna_pack, packages):
    from engine.errors import InputFormatError

    damaged = tmp_path / "damaged.tsv.gz"
    data = bytearray(packages[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the deflate data: none of its records can be trusted
    damaged.write_bytes(bytes(data))
    out = tmp_path / "lib.db"
    with pytest.raises(InputFormatError) as failed:
        build_library([packages[0], damaged], out, CountingEncoder(tiny_dna_pack), batch_size=BATCH)
    assert "records committed so far are kept in lib.db.building" in str(failed.value), failed.value
    assert not out.exists() and ReferenceLibrary.open(work_path(out)).count("dna") == 40
