"""Paths: SQLite files opened by exactly the name given, files told apart by kind, model packs
that cannot name files outside themselves."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import BioscanError, LibraryError, ModelPackError
from engine.sqlite_paths import connect, is_project, is_reference_library, sqlite_kind, sqlite_uri


def _usable_name(name: str) -> bool:
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        return False
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name and len(encoded) <= 200


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=60).filter(_usable_name))
def test_any_file_name_opens_that_file_and_no_other(name):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        try:
            path.touch()
            path.unlink()
        except OSError:
            return  # a name this file system refuses
        conn = connect(path)
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", [name])
        conn.commit()
        conn.close()
        assert os.listdir(d) == [name]  # the file written is the one named, nothing beside it
        for readonly, immutable in ((False, False), (True, False), (True, True)):
            conn = connect(path, readonly=readonly, immutable=immutable)
            assert conn.execute("SELECT v FROM t").fetchall() == [(name,)]
            conn.close()
        assert os.listdir(d) == [name]


def test_escapes_that_sqlite_would_read_as_uri_syntax_name_their_own_files(tmp_path):
    names = ["%41.db", "A.db", "plate#42.db", "plate", "a?mode=ro.db", "a", "100%.db", "x%2Fy.db",
             "\udcff.db"]  # the last: a name that is not valid UTF-8 (byte 0xff), as Python sees it
    for n in names:
        conn = connect(tmp_path / n)
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", [n.encode("utf-8", "surrogateescape").hex()])
        conn.commit()
        conn.close()
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    for n in names:
        conn = connect(tmp_path / n, readonly=True)
        assert conn.execute("SELECT v FROM t").fetchone()[0] == n.encode("utf-8", "surrogateescape").hex()
        conn.close()
    assert sqlite_uri(tmp_path / "%41.db", readonly=True).endswith("/%2541.db?mode=ro")


def test_read_only_uri_cannot_write(tmp_path):
    conn = connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (v)")
    conn.commit()
    conn.close()
    ro = connect(tmp_path / "x.db", readonly=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.execute("INSERT INTO t VALUES (1)")


def _write_library(path: Path) -> None:
    from engine.library import ReferenceLibrary

    ReferenceLibrary.create(path).close()


def _write_project(path: Path) -> None:
    from engine.project import open_project

    open_project(path, create=True).close()


def test_kinds_are_told_apart_without_writing(tmp_path):
    lib, proj, other = tmp_path / "lib.db", tmp_path / "proj.db", tmp_path / "other.db"
    _write_library(lib)
    _write_project(proj)
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE meta (key, value)")
    conn.commit()
    conn.close()
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "text.db").write_text("hello, not a database\n")
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(lib.read_bytes()[:100] + b"\xff" * 3000)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    kinds = {p.name: sqlite_kind(p) for p in tmp_path.iterdir()}
    assert kinds == {"lib.db": "library", "proj.db": "project", "other.db": "other", "empty.db": "empty",
                     "text.db": "not-sqlite", "damaged.db": "corrupt"}
    assert sqlite_kind(tmp_path / "absent.db") == "missing"
    assert is_reference_library(lib) and not is_reference_library(proj)
    assert is_project(proj) and not is_project(lib)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before  # sniffing wrote nothing, not even a journal


def test_library_refuses_a_project_and_says_what_it_is(tmp_path):
    from engine.library import ReferenceLibrary

    proj = tmp_path / "plate.db"
    _write_project(proj)
    with pytest.raises(LibraryError, match=r"^plate.db is a BIOSCAN project, not a reference library"):
        ReferenceLibrary.open(proj)
    damaged = tmp_path / "lib.db"
    _write_library(damaged)
    damaged.write_bytes(damaged.read_bytes()[:100] + b"\xff" * 3000)
    with pytest.raises(LibraryError, match="is damaged"):
        ReferenceLibrary.open(damaged)


def test_project_commands_refuse_a_library_and_leave_it_unchanged(tmp_path, capsys):
    from engine.cli import main

    lib = tmp_path / "plate.db"
    _write_library(lib)
    digest = hashlib.sha256(lib.read_bytes()).hexdigest()
    for argv in (["export", "--project", str(lib), "--out", str(tmp_path / "o.csv")],
                 ["report", "--project", str(lib), "--out", str(tmp_path / "r.html")],
                 ["import", str(tmp_path), "--project", str(lib), "-q"]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "plate.db is a reference library, not a project" in err[0], err
    assert hashlib.sha256(lib.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plate.db"]


# ------------------------------------------------------------------ model packs
def _pack(tmp_path: Path, entry_path: str, content: bytes = b"onnx bytes") -> Path:
    pack = tmp_path / "pack"
    pack.mkdir(parents=True, exist_ok=True)
    target = Path(entry_path) if os.path.isabs(entry_path) else pack / entry_path
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    manifest = {"format_version": 1, "name": "p", "version": "1", "modality": "dna", "embedding_dim": 4,
                "files": [{"path": entry_path, "precision": "int8",
                           "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}],
                "preprocessing": {}, "input": {"name": "x"}, "output": {"name": "y"}}
    (pack / "manifest.json").write_text(json.dumps(manifest))
    return pack


@pytest.mark.parametrize("entry", ["../outside.onnx", "sub/../../outside.onnx", "..\\outside.onnx"])
def test_pack_entries_cannot_climb_out(tmp_path, entry):
    from engine.models.pack import load_pack

    (tmp_path / "outside.onnx").write_bytes(b"someone else's file")
    pack = _pack(tmp_path, entry)
    for verify in (True, False):
        with pytest.raises(ModelPackError, match="outside the model pack"):
            load_pack(pack, verify=verify)


def test_pack_entries_cannot_be_absolute_even_with_the_right_sha256(tmp_path):
    from engine.models.pack import load_pack

    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    pack = _pack(tmp_path, str(secret))  # the manifest carries the file's real sha256
    with pytest.raises(ModelPackError, match="outside the model pack"):
        load_pack(pack)
    pack = _pack(tmp_path / "w", "C:\\Windows\\win.ini")
    with pytest.raises(ModelPackError, match="outside the model pack"):
        load_pack(pack)


def test_pack_entries_cannot_be_symlinks_out(tmp_path):
    from engine.models.pack import load_pack

    (tmp_path / "elsewhere.onnx").write_bytes(b"model from elsewhere")
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "model.onnx").symlink_to(tmp_path / "elsewhere.onnx")
    pack = _pack(tmp_path, "model.onnx")
    with pytest.raises(ModelPackError, match="resolves outside the model pack"):
        load_pack(pack)
    inside = _pack(tmp_path / "ok", "sub/model.onnx")  # a sub-folder of the pack is fine
    assert load_pack(inside).model_path("int8") == inside / "sub" / "model.onnx"


@pytest.mark.parametrize("manifest", ["[1, 2]", '{"format_version": 1, "files": [7]}', "{not json",
                                      '{"format_version": 1, "name": "p", "version": "1", "modality": "dna", '
                                      '"embedding_dim": 4, "files": [{"path": "m.onnx"}], "preprocessing": {}, '
                                      '"input": {"name": "x"}, "output": {"name": "y"}}'])
def test_malformed_manifests_are_one_clear_error(tmp_path, manifest, capsys):
    from engine.cli import main

    (tmp_path / "manifest.json").write_text(manifest)
    assert main(["models", "verify", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest" in err[0] and str(tmp_path) in err[0]


def test_cli_models_verify_refuses_an_escaping_entry(tmp_path, capsys):
    from engine.cli import main

    (tmp_path / "passwd").write_text("root:x:0:0\n")
    pack = _pack(tmp_path, "../passwd")  # with the file's real sha256
    assert main(["models", "verify", str(pack)]) == 1
    assert "outside the model pack" in capsys.readouterr().err


def test_output_in_a_missing_folder_is_an_error_before_any_work(tmp_path, capsys):
    from engine.cli import main

    missing = tmp_path / "no" / "such"
    for argv in (["export", "--project", str(tmp_path / "p.db"), "--out", str(missing / "o.csv")],
                 ["report", "--project", str(tmp_path / "p.db"), "--out", str(missing / "r.pdf")],
                 ["library", "build", "--barcodes", str(tmp_path / "x.tsv"), "--out", str(missing / "l.db")],
                 ["identify", str(tmp_path), "--out", str(missing / "r.csv")],
                 ["cluster", str(tmp_path), "--out", str(missing / "c.csv")]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"bioscan: error: the folder {missing} does not exist: create it, or choose another "
                       "output path"], argv
    assert not (tmp_path / "no").exists()
    with pytest.raises(BioscanError, match="is a folder"):
        from engine.atomic import check_output_folder

        check_output_folder(tmp_path)


def test_an_output_never_replaces_a_database_or_an_input(tmp_path, capsys):
    from engine.cli import main

    project, lib, fasta = tmp_path / "p.db", tmp_path / "lib.db", tmp_path / "reads.fasta"
    _write_project(project)
    _write_library(lib)
    fasta.write_text(">a\nACGT\n")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    for argv, says in ((["export", "--project", str(project), "--out", str(project)], "p.db is a BIOSCAN project"),
                       (["export", "--project", str(project), "--out", str(lib)], "lib.db is a reference library"),
                       (["report", "--project", str(project), "--out", str(lib)], "lib.db is a reference library"),
                       (["identify", str(fasta), "--out", str(fasta)], "is one of the input files"),
                       (["cluster", str(fasta), "--out", str(fasta)], "is one of the input files")):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], (argv, err)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before


def test_temp_files_of_ended_writers_are_removed_and_no_others(tmp_path):
    import subprocess
    import sys
    import time

    from engine.atomic import _host_tag, atomic_output, remove_stale_temp_files, temp_path

    out = tmp_path / "results.csv"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(ended.stdout)
    dead = out.with_name(f".results.csv.{_host_tag()}-{dead_pid}-0a0a0a0a.partial")
    live = temp_path(out)  # this process's own
    elsewhere = out.with_name(".results.csv.ffffff-1-0b0b0b0b.partial")  # another machine's, recent
    old_elsewhere = out.with_name(".results.csv.ffffff-2-0c0c0c0c.partial")
    other_output = out.with_name(f".other.csv.{_host_tag()}-{dead_pid}-0d0d0d0d.partial")
    for p in (dead, dead.with_name(dead.name + "-journal"), live, elsewhere, old_elsewhere, other_output):
        p.write_bytes(b"partial")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old_elsewhere, (day_ago, day_ago))
    removed = {p.name for p in remove_stale_temp_files(out)}
    assert removed == {dead.name, dead.name + "-journal", old_elsewhere.name}
    with atomic_output(out) as tmp:
        tmp.write_text("a,b\n")
    assert out.read_text() == "a,b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live.name, elsewhere.name,
                                                                 other_output.name])
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert out.read_text() == "a,b\n" and len(list(tmp_path.iterdir())) == 4


def test_export_of_a_percent_named_project_exports_that_project(tmp_path):
    import zipfile
    from xml.etree import ElementTree as ET

    from engine.cli import main
    from engine.project import open_project

    ids = {}
    for name in ("A.db", "%41.db", "plate#42.db", "plate"):
        _write_project(tmp_path / name)
        with open_project(tmp_path / name, readonly=True) as p:
            ids[name] = p.meta["project_id"]
    for name, project_id in ids.items():
        out = tmp_path / f"{ids[name]}.zip"
        assert main(["export", "--project", str(tmp_path / name), "--format", "dwc", "--out", str(out)]) == 0
        with zipfile.ZipFile(out) as zf:
            assert ET.fromstring(zf.read("eml.xml")).get("packageId") == f"urn:bioscan-desktop:{project_id}"
