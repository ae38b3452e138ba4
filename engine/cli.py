"""The `bioscan` command line: one small function per subcommand over the public API."""
from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import sys
from pathlib import Path

from engine import __version__
from engine.errors import BioscanError


def _check_out(path: str, inputs: list[str] = ()) -> None:
    """Refuse, before any work starts, an output that cannot be written (engine.atomic) or would
    replace one of the command's input files."""
    from engine.atomic import check_output_folder

    out = check_output_folder(path)
    for given in inputs:
        if out.exists() and Path(given).is_file() and os.path.samefile(given, out):
            raise BioscanError(f"--out {path} is one of the input files; choose another output file")


CLUSTER_HELP = ("run the embedding (build) or identification (identify) on a Dask cluster: a scheduler address "
                "(tcp://host:8786), or local:N for N worker processes here; needs the [cluster] extra")


def _exit_stack(args):
    """What a command opened for its whole run (a cluster client), closed when it returns (main)."""
    from contextlib import ExitStack

    if not hasattr(args, "_exit_stack"):
        args._exit_stack = ExitStack()
    return args._exit_stack


def _warn_if_too_small(library) -> None:
    from engine.assign import small_library_warning

    warning = small_library_warning(library.calibration, library.path.name)
    if warning:
        print(f"bioscan: warning: {warning}", file=sys.stderr)


def _warn_if_searched_exactly(library) -> None:
    problem = library.search_index_problem("dna")
    if problem:
        print(f"bioscan: warning: {problem}", file=sys.stderr)


def _progress(args) -> object:
    if getattr(args, "quiet", False):
        return None
    from engine.cli_progress import ProgressPrinter

    return ProgressPrinter()


def _scan_inputs(inputs: list[str]) -> tuple[list[Path], list[Path], dict[Path, str]]:
    """(barcode files, photos, {file: why it cannot be read}) of the files and folders named, found
    by the same rules as `bioscan import` (engine.project.scan): what is not a regular file (a
    FIFO, a device) is skipped with a note; a file named on the command line is always read."""
    from engine.project.scan import NOT_AN_INPUT, scan_folders

    scan = scan_folders(inputs)
    named = {Path(os.path.abspath(i)) for i in inputs}
    barcode_files = [f.path for f in scan.barcodes]
    unreadable = {f.path: f.error for f in scan.barcodes if f.error}
    for path, why in scan.ignored:
        if why == NOT_AN_INPUT and path in named:
            barcode_files.append(path)  # the reader says what the file is
        elif why != NOT_AN_INPUT:
            print(f"bioscan: {path}: {why}", file=sys.stderr)
    return barcode_files, [f.path for f in scan.photos], unreadable


def _read_barcode_inputs(inputs: list[str], allow_none: bool = False, files: list[Path] | None = None,
                         unreadable: dict[Path, str] | None = None) -> list:
    """Barcode records of the files and folders named; a file that cannot be read becomes an error
    record, and so does a record longer than any barcode (its sequence is not kept)."""
    from engine.io import ReadStats, read_barcodes
    from engine.qc import overlong_as_errors
    from engine.records import RecordError

    if files is None:
        files, _, unreadable = _scan_inputs(inputs)
    if not files and not allow_none:
        raise BioscanError("no input files found (looked for FASTA/TSV/CSV in: " + ", ".join(inputs) + ")")
    records = []
    for f in files:
        if unreadable and f in unreadable:
            records.append(RecordError(f.name, str(f), unreadable[f]))
            continue
        try:
            stats = ReadStats()
            records.extend(overlong_as_errors(read_barcodes(f, stats)))
            print(f"{f.name}: {stats.summary()}", file=sys.stderr)
        except BioscanError as exc:
            records.append(RecordError(f.name, str(f), str(exc)))
        except OSError as exc:
            records.append(RecordError(f.name, str(f), f"cannot read file: {exc.strerror or exc}"))
    return records


# ---------------------------------------------------------------------------- identify
def cmd_identify(args) -> int:
    from engine.export import write_csv
    from engine.identify import RESULT_COLUMNS, open_identifier

    if args.out:
        _check_out(args.out, args.inputs)
    barcode_files, photos, unreadable = _scan_inputs(args.inputs)  # photos get modality "image" rows
    records = _read_barcode_inputs(args.inputs, allow_none=bool(photos), files=barcode_files, unreadable=unreadable)
    ident = None
    results = []
    if records:
        ident = open_identifier(args.library, args.model, device=args.device,
                                min_confidence=args.min_confidence, use_sequences=not args.no_alignment,
                                progress=_progress(args))
        if len(ident.libraries) == 1:
            _warn_if_too_small(ident.library)
        for lib in ident.libraries:
            _warn_if_searched_exactly(lib)
        if args.cluster:
            from engine.distributed import connect, identify_on_cluster

            results = identify_on_cluster(_exit_stack(args).enter_context(connect(args.cluster)), records,
                                          args.library, args.model,
                                          args.min_confidence, not args.no_alignment, progress=_progress(args))
        else:
            results = ident.identify(records, progress=_progress(args))
    if photos:
        from engine.identify_image import fuse_identifications, open_image_identifier

        image_ident = open_image_identifier(args.library[0] if args.library else None, args.image_model,
                                            device=args.device,
                                            min_confidence=args.min_confidence)
        photo_results = image_ident.identify(photos, progress=_progress(args))
        results = results + photo_results + fuse_identifications(results, photo_results)
        ident = ident or image_ident
    rows = [r.as_row() for r in results]
    if args.out:
        write_csv(args.out, RESULT_COLUMNS, rows)
    else:
        import csv
        from engine.export import safe_cell
        w = csv.writer(sys.stdout)
        w.writerow(RESULT_COLUMNS)
        for row in rows:
            w.writerow([safe_cell(row[c]) for c in RESULT_COLUMNS])
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "novel", "error")}
    print(f"identified {len(rows)} records: {counts['ok']} ok, {counts['novel']} novel, {counts['error']} error"
          + (f" -> {args.out}" if args.out else "") + f" [{ident.encoder.provider.replace('ExecutionProvider', '')}]",
          file=sys.stderr)
    if counts["error"] == len(rows):
        print("no record could be identified", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args) -> int:
    from engine.demo import draw_demo_sample, find_shared_data, write_fasta
    from engine.export import write_csv
    from engine.identify import RESULT_COLUMNS, open_identifier

    _check_out(args.out)
    ident = open_identifier(device=args.device)  # loads and verifies the bundled model and library
    data = find_shared_data()
    if data is None:
        # a fresh machine: no specimens ship with the app, so say it is ready for the user's own
        print(f"bundled library {ident.library.path.name} ({len(ident.refs.record_ids):,} references) and model "
              f"{ident.encoder.pack.ident} verified, running on {ident.encoder.provider.replace('ExecutionProvider', '')}."
              "\nThe demo sample comes from the project's shared data, which is not on this machine (set "
              "BIOSCAN_DATA); identify your own files with `bioscan identify FOLDER --out results.csv` "
              "or open `bioscan-desktop`.", file=sys.stderr)
        return 0
    sample = draw_demo_sample(data, n=args.n, seed=args.seed)
    fasta = Path(args.out).with_suffix(".fasta")
    write_fasta(fasta, sample)
    results = ident.identify(sample, progress=_progress(args))
    write_csv(args.out, RESULT_COLUMNS, [r.as_row() for r in results])
    agree = sum(r.call is not None and r.call.name("species") == s.taxonomy.species for r, s in zip(results, sample))
    genus = sum(r.call is not None and r.call.name("genus") == s.taxonomy.genus for r, s in zip(results, sample))
    novel = sum(r.status == "novel" for r in results)
    print(f"demo: {len(sample)} BOLD records not in the bundled library ({fasta}) -> {args.out}\n"
          f"  species call agrees with BOLD's identification: {agree}/{len(sample)}; genus: {genus}/{len(sample)}; "
          f"flagged novel: {novel}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- cluster
def cmd_cluster(args) -> int:
    from engine.cluster import CLUSTER_COLUMNS, cluster_barcodes
    from engine.export import write_csv
    from engine.identify import open_identifier

    _check_out(args.out, args.inputs)
    if args.project:
        if args.inputs:
            raise BioscanError("give barcode INPUT files or --project, not both")
        if (args.method or "identity") == "identity":  # the cluster map's putative species, cached in the project
            from engine.cluster.project import map_project_species

            species = map_project_species(args.project, threshold=args.identity_threshold, seed=args.seed,
                                          progress=_progress(args))
            rows, result = species.cluster_rows(), species.result
            print(f"{'cached' if species.cached else 'new'} putative species in {args.project}: {species.summary}; "
                  f"{len(species.no_close_match())} of {species.n_clusters} with no close library match",
                  file=sys.stderr)
        else:
            from engine.cluster.project import cluster_project

            got = cluster_project(args.project, modality=args.modality, selection="all" if args.all else "novel",
                                  seed=args.seed, progress=_progress(args), method=args.method,
                                  n_clusters=args.n_clusters, min_cluster_size=args.min_cluster_size,
                                  umap_dims=args.umap_dims)
            rows, result = got.rows, got.result
            print(f"{'cached' if got.map_cached else 'new'} 2-D map, {'cached' if got.clusters_cached else 'new'} "
                  f"clusters in {args.project}", file=sys.stderr)
    elif not args.inputs:
        raise BioscanError("nothing to cluster: give barcode files or folders, or --project P.db")
    else:
        records = _read_barcode_inputs(args.inputs)
        ident = open_identifier(args.library, args.model, device=args.device)
        method = args.method or "identity"
        options = (dict(threshold=args.identity_threshold) if method == "identity" else
                   dict(n_clusters=args.n_clusters, min_cluster_size=args.min_cluster_size, umap_dims=args.umap_dims))
        rows, result = cluster_barcodes(records, ident, novel_only=args.novel_only, progress=_progress(args),
                                        seed=args.seed, method=method, **options)
    write_csv(args.out, CLUSTER_COLUMNS, rows)
    errors = sum(r["status"] == "error" for r in rows)
    if result is None:
        print(f"fewer than 2 specimens to cluster ({errors} of {len(rows)} records had errors)", file=sys.stderr)
        return 1
    print(f"clustered {len(result.labels)} of {len(rows)} records ({errors} errors) -> {args.out}", file=sys.stderr)
    print(result.summary(), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- import / export / report
def cmd_import(args) -> int:
    from engine.project import ImportSettings, import_folders

    settings = ImportSettings(library=args.library or "", dna_model=args.model or "", image_model=args.image_model or "",
                              identify_photos=not args.no_photo_id, batch_size=args.batch_size, device=args.device)
    try:
        rep = import_folders(args.folders, args.project, settings, progress=_progress(args))
    except KeyboardInterrupt:
        print(f"bioscan: import interrupted; committed batches are kept in {args.project}: "
              f"run the same command again to resume", file=sys.stderr)
        return 130
    for note in rep.notes:
        print(f"bioscan: {note}", file=sys.stderr)
    print(f"imported into {args.project} (run {rep.run_id}): {rep.summary()}", file=sys.stderr)
    return 0


def cmd_rematch(args) -> int:
    """`rematch`: a project's photos matched again against a library (after `library add-photos`)."""
    from engine.project import ImportSettings
    from engine.project.rematch import rematch_photos

    settings = ImportSettings(library=args.library, image_model=args.image_model or "", device=args.device,
                              min_confidence=args.min_confidence)
    try:
        rep = rematch_photos(args.project, settings, scope="all-photos" if args.all_photos else "photo-only",
                             progress=_progress(args))
    except KeyboardInterrupt:
        print(f"bioscan: re-match interrupted; the photos re-matched so far are kept in {args.project}",
              file=sys.stderr)
        return 130
    for key, why in rep.errors[:10]:
        print(f"  error {key}: {why}", file=sys.stderr)
    print(f"{args.project} (run {rep.run_id}): {rep.summary()}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from engine.project import open_project

    _check_out(args.out)
    with open_project(args.project, readonly=True) as project:
        if args.format == "dwc":
            from engine.export.dwc import write_dwca
            n = write_dwca(project, args.out)
        else:
            from engine.export.project_csv import write_project_csv
            n = write_project_csv(project, args.out)
    print(f"exported {n} specimens -> {args.out}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from engine.project import open_project
    from engine.report import write_report

    _check_out(args.out)
    with open_project(args.project, readonly=True) as project:
        write_report(project, args.out)
    print(f"report -> {args.out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- library
def _add_photo_references(lib, args) -> None:
    """`library build --images`: labelled photos (labels.tsv/csv) become "image" references."""
    from engine.identify_image import add_photos
    from engine.io.images import read_photo_labels
    from engine.models.image_encoder import ImageEncoder
    from engine.resources import default_model_path

    encoder = ImageEncoder.from_path(args.image_model or default_model_path("image"), precision=args.precision,
                                     device=args.device)
    photos, twice = {}, []
    for p in sorted((p for src in args.images for p in read_photo_labels(src)), key=lambda p: p.path.name):
        if p.specimen_id in photos:  # one reference per specimen: the first photo by file name
            twice.append((p.specimen_id, f"{p.path.name}: a second photo of this specimen "
                                         f"({photos[p.specimen_id].path.name} is used)"))
        else:
            photos[p.specimen_id] = p
    chosen, calibration = list(photos.values()), []
    if args.photo_split == "training":  # the image model's own split: benchmark photos never become references
        from engine.train.image import split_photos

        chosen, calibration, held = split_photos(chosen)
        print(f"photo split: {len(chosen)} training photos added; calls calibrated on {len(calibration)} others; "
              f"{len(held)} held out", file=sys.stderr)
    added, skipped = add_photos(lib, chosen, encoder, progress=_progress(args), calibration_photos=calibration)
    skipped = twice + skipped
    print(f"{args.out}: {added} photo references added, {len(skipped)} skipped, "
          f"{lib.count('image')} photo references in all", file=sys.stderr)
    for rid, why in skipped[:10]:
        print(f"  skipped {rid}: {why}", file=sys.stderr)


def cmd_library_add_photos(args) -> int:
    """`library add-photos`: photos of a project's barcode-identified specimens become photo references."""
    from engine.identify_image import learn_barcoded_photos

    result = learn_barcoded_photos(args.project, args.library, base_library=args.base, image_model=args.image_model,
                                   min_confidence=args.min_confidence, device=args.device, progress=_progress(args))
    print(f"{result.library}: {result.summary()} (barcode calls at {args.min_confidence} or more"
          + ("; a new library, copied from the base library" if result.created else "") + ")", file=sys.stderr)
    for rid, why in result.skipped[:10]:
        print(f"  skipped {rid}: {why}", file=sys.stderr)
    return 0


def cmd_library_build(args) -> int:
    from engine.build import BATCH, BuildInterrupted, build_library, check_library_output, library_output
    from engine.models.dna_encoder import DnaEncoder
    from engine.resources import default_model_path

    check_library_output(args.out, add=args.add)
    if not args.barcodes:
        if not args.images:
            raise BioscanError("give --barcodes and/or --images")
        with library_output(args.out, add=args.add, name=args.name) as lib:
            _add_photo_references(lib, args)
        return 0
    if args.cluster:  # embedding on the cluster's workers; reading and writing here
        from engine.distributed import DistributedEncoder, connect

        client = _exit_stack(args).enter_context(connect(args.cluster))
        encoder = DistributedEncoder(client, args.model or default_model_path("dna"), args.precision)
    else:
        encoder = DnaEncoder.from_path(args.model or default_model_path("dna"), precision=args.precision,
                                       device=args.device)
    try:
        lib, rep = build_library(args.barcodes, args.out, encoder, store_sequences=not args.no_sequences,
                                 add=args.add, name=args.name, progress=_progress(args), restart=args.restart,
                                 batch_size=BATCH if args.batch_size is None else args.batch_size,
                                 also=(lambda lib: _add_photo_references(lib, args)) if args.images else None)
    except BuildInterrupted as exc:
        print(f"bioscan: {exc}", file=sys.stderr)
        return 130
    resumed = f" ({rep.resumed} of them committed by the interrupted run, not embedded again)" if rep.resumed else ""
    print(f"{'extended' if args.add else 'built'} {lib.path}: {rep.added} records added{resumed}, "
          f"{rep.n_skipped} skipped, {lib.count('dna')} DNA references in all", file=sys.stderr)
    for f, stats in rep.read:
        print(f"  {Path(f).name}: {stats.summary()}", file=sys.stderr)
    for rid, why in rep.skipped[:10]:
        print(f"  skipped {rid}: {why}", file=sys.stderr)
    if rep.n_skipped > 10:
        print(f"  ... and {rep.n_skipped - 10} more; skipped by reason: "
              + "; ".join(f"{n} {why}" for why, n in rep.skipped_by_reason.most_common(5)), file=sys.stderr)
    _warn_if_too_small(lib)
    return 0


def cmd_library_info(args) -> int:
    import json

    from engine.library import ReferenceLibrary
    from engine.resources import default_library_path

    lib = ReferenceLibrary.open(args.library or default_library_path())
    _warn_if_too_small(lib)
    _warn_if_searched_exactly(lib)
    info = lib.summary()
    for key, value in info.items():  # the model records and the calibration are stored as JSON text
        if isinstance(value, str) and value.startswith("{"):
            try:
                info[key] = json.loads(value)
            except ValueError:
                pass
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_library_index(args) -> int:
    import time

    from engine.library import ReferenceLibrary

    lib = ReferenceLibrary.open(args.library)  # the index lives beside the library (or in the user cache): read-only is enough
    n = lib.count("dna")
    start = time.perf_counter()
    if lib.build_search_index("dna", progress=_progress(args)):
        print(f"built the approximate index of {lib.path.name} ({n:,} DNA references) in "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    else:
        print(f"{lib.path.name}: nothing to build ({n:,} DNA references; "
              + ("its approximate index is up to date)" if lib.uses_approximate_index("dna")
                 else "searched exactly, as a library of this size is)"), file=sys.stderr)
    return 0


def cmd_library_calibrate(args) -> int:
    from engine.build import calibrate_library
    from engine.library import ReferenceLibrary

    lib = ReferenceLibrary.open_writable(args.library)
    cal = calibrate_library(lib, progress=_progress(args))
    for kind in ("similarity", "identity"):
        if kind in cal:
            print(f"{kind} thresholds: " + ", ".join(f"{r} {t:.4f}" for r, t in cal[kind]["threshold"].items()))
            if "novelty" in cal[kind]:
                nov = cal[kind]["novelty"]
                print(f"{kind} novelty: {nov['weights'][0]:.2f} x top + {nov['weights'][1]:.2f} x species gap "
                      f"< {nov['threshold']:.4f} (simulated: {nov['false_novel']:.1%} false, "
                      f"{nov['missed_novel']:.1%} missed)")
    return 0


# ---------------------------------------------------------------------------- train / models
def _training_barcodes(args) -> tuple[list, dict]:
    """QC-cleaned labelled barcodes of --barcodes, minus the benchmark's queries unless --holdout none."""
    from engine.io import read_barcodes
    from engine.qc import check_barcode
    from engine.records import Barcode
    from engine.train.split import benchmark_split

    records = [r for r in read_barcodes(args.barcodes) if isinstance(r, Barcode) and r.taxonomy and r.taxonomy.species]
    summary = {"source": Path(args.barcodes).name, "holdout": args.holdout}
    if args.holdout == "benchmark":
        split = benchmark_split(records)
        summary["held_out_records"] = len(split.known_queries) + len(split.novel_queries)
        records = split.library
    clean = []
    for r in records:
        qc = check_barcode(r.sequence)
        if qc.ok:
            clean.append(Barcode(r.specimen_id, qc.sequence, r.source_file, r.taxonomy))
    return clean, summary


def _written(pack: Path, bundle: str | None) -> int:
    """Say where a trained pack went, and copy its int8 model to ``bundle`` (resources/) if asked."""
    print(f"model pack written to {pack}", file=sys.stderr)
    if bundle:
        from engine.models.pack import bundle_int8

        print(f"int8-only copy written to {bundle_int8(pack, bundle)}", file=sys.stderr)
    return 0


def cmd_train_dna(args) -> int:
    try:
        from engine.train.dna import train_dna
    except ImportError as exc:
        raise BioscanError(f"training needs the [train] extra: pip install -e '.[train]' ({exc})") from exc
    clean, summary = _training_barcodes(args)
    print(f"training on {len(clean)} barcodes", file=sys.stderr)
    pack = train_dna(clean, args.out, epochs=args.epochs, seed=args.seed, threads=args.threads,
                     version=args.pack_version, data_summary=summary, log=lambda m: print(m, file=sys.stderr))
    return _written(pack, args.bundle)


def cmd_train_dna_profile(args) -> int:
    try:
        from engine.train.dna_profile import add_kmer_profile
    except ImportError as exc:
        raise BioscanError(f"this needs the [train] extra: pip install -e '.[train]' ({exc})") from exc
    clean, _ = _training_barcodes(args)
    print(f"fitting the k-mer profile on {len(clean)} barcodes", file=sys.stderr)
    pack = add_kmer_profile(args.pack, [r.sequence for r in clean], args.out, version=args.pack_version,
                            log=lambda m: print(m, file=sys.stderr))
    return _written(pack, args.bundle)


def cmd_train_image(args) -> int:
    try:
        from engine.train.image import train_image_from_folders
    except ImportError as exc:
        raise BioscanError(f"training needs the [train] extra: pip install -e '.[train]' ({exc})") from exc
    from engine.resources import default_library_path

    pack = train_image_from_folders(args.images, args.library or default_library_path(), args.out,
                                    epochs=args.epochs, views=args.views, size=args.size, seed=args.seed,
                                    threads=args.threads, version=args.pack_version, feature_cache=args.feature_cache,
                                    log=lambda m: print(m, file=sys.stderr))
    return _written(pack, args.bundle)


def cmd_models_import(args) -> int:
    try:
        from engine.train.convert import convert_checkpoint
    except ImportError as exc:
        raise BioscanError(f"checkpoint import needs the [train] extra: pip install -e '.[train]' ({exc})") from exc
    pack = convert_checkpoint(args.kind, args.checkpoint, args.out, name=args.name,
                              log=lambda m: print(m, file=sys.stderr))
    print(f"model pack written to {pack}", file=sys.stderr)
    return 0


def cmd_models_quantize(args) -> int:
    from engine.io.images import find_photos
    from engine.train.convert import quantize_pack

    pack = quantize_pack(args.pack, photos=find_photos(args.photos or []), log=lambda m: print(m, file=sys.stderr))
    print(f"int8 model added to {pack}", file=sys.stderr)
    return 0


def cmd_models_list(args) -> int:
    from engine.models.pack import load_pack
    from engine.resources import resources_dir

    root = Path(args.dir) if args.dir else resources_dir() / "models"
    for d in sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()):
        pack = load_pack(d, verify=False)
        files = ", ".join(f"{e['precision']}" for e in pack.files)
        print(f"{pack.ident}\t{pack.modality}\tdim {pack.embedding_dim}\t{files}\t{d}")
    return 0


def cmd_models_verify(args) -> int:
    from engine.models.pack import load_pack

    for p in args.packs:
        pack = load_pack(p)
        print(f"{pack.ident}: ok ({len(pack.files)} files match their sha256)")
    return 0


def cmd_version(args) -> int:
    print(f"bioscan {__version__}")
    if args.verbose:
        import json

        from engine.library import ReferenceLibrary
        from engine.models.pack import load_pack
        from engine.models.runtime import describe_device
        from engine.resources import default_library_path, default_model_path

        lib = ReferenceLibrary.open(default_library_path())
        print(f"device: {describe_device()}")
        for modality in ("dna", "image"):
            try:
                pack = load_pack(default_model_path(modality))
            except BioscanError as exc:  # e.g. a bundle without a photo model: say so, go on
                print(f"{modality} model: none ({exc})")
                continue
            print(f"{modality} model: {pack.ident} " + json.dumps({e["precision"]: e["sha256"] for e in pack.files}))
        print(f"library: {lib.path.name} id {lib.library_id}, {lib.count('dna')} DNA references, "
              f"sha256 {_sha(lib.path)}")
    return 0


def _sha(path: Path) -> str:
    from engine.models.pack import sha256_file

    return sha256_file(path)


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from engine.photo_labels import BARCODED_MIN_CONFIDENCE

    p = argparse.ArgumentParser(prog="bioscan", description="Offline identification of insect specimens.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--verbose", action="store_true", help="with --version: models, library and device")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an unexpected error (also BIOSCAN_DEBUG=1; anywhere on the line)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp, device: bool = True):
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
        if device:
            sp.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                            help="where ONNX Runtime runs the encoders (default: GPU if present)")

    s = sub.add_parser("identify", help="identify barcodes (FASTA, BIOSCAN/BOLD tables) and photos in files or folders")
    s.add_argument("inputs", nargs="+", metavar="INPUT")
    s.add_argument("--library", action="append",
                   help="reference library (default: the bundled one); give it again to search several as one, "
                        "e.g. the lab's own records beside a BOLD snapshot (photos: the first one's)")
    s.add_argument("--model", help="DNA model pack (default: the bundled one)")
    s.add_argument("--image-model", help="image model pack (default: the bundled one)")
    s.add_argument("--out", "-o", help="results CSV (default: stdout)")
    s.add_argument("--min-confidence", type=float, default=0.5, help="leave a rank empty below this (0.5)")
    s.add_argument("--cluster", metavar="ADDRESS", help=CLUSTER_HELP)
    s.add_argument("--no-alignment", action="store_true",
                   help="rank by embedding similarity only, even when the library keeps sequences")
    common(s)
    s.set_defaults(func=cmd_identify)

    s = sub.add_parser("demo", help="identify a real sample drawn from the shared data (not in the library)")
    s.add_argument("--out", "-o", default="demo-results.csv")
    s.add_argument("-n", type=int, default=200, help="records to draw (200)")
    s.add_argument("--seed", type=int, default=1)
    common(s)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("cluster", help="group specimens into putative species (zero-shot, no labels needed)")
    s.add_argument("inputs", nargs="*", metavar="INPUT", help="barcode files or folders")
    s.add_argument("--project", help="cluster a project's specimens instead (map and clusters cached in it)")
    s.add_argument("--modality", choices=["dna", "image", "fused"], default="dna",
                   help="with --project and agglomerative/hdbscan: which embeddings (fused: DNA and photo together)")
    s.add_argument("--all", action="store_true", help="with --project and agglomerative/hdbscan: all specimens, "
                   "not only the novel ones (identity clusters every specimen, as the cluster map shows them)")
    s.add_argument("--library", help="reference library for the members' calls (default: the bundled one)")
    s.add_argument("--model", help="DNA model pack (default: the bundled one)")
    s.add_argument("--method", choices=["identity", "agglomerative", "hdbscan"],
                   help="identity (default): alignment identity on the embedding's neighbour graph, threshold "
                        "from the barcode gap (with --project: photo-only specimens by their photo embeddings); "
                        "agglomerative or hdbscan: embeddings reduced with UMAP, parameters by silhouette")
    s.add_argument("--identity-threshold", type=float, help="identity: join barcodes at least this identical "
                   "(0-1; default: the barcode gap of the data)")
    s.add_argument("--n-clusters", type=int, help="agglomerative: this many clusters (default: best silhouette)")
    s.add_argument("--min-cluster-size", type=int, help="hdbscan: smallest cluster (default: best silhouette)")
    s.add_argument("--umap-dims", type=int, default=10, help="UMAP dimensions clustered in (0: no UMAP)")
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed, same clusters)")
    s.add_argument("--novel-only", action="store_true", help="cluster only specimens called novel")
    s.add_argument("--out", "-o", required=True, help="clusters CSV, one row per specimen")
    common(s)
    s.set_defaults(func=cmd_cluster)

    s = sub.add_parser("import", help="import folders of photos, barcode files and metadata into a project")
    s.add_argument("folders", nargs="+", metavar="FOLDER")
    s.add_argument("--project", required=True, help="project database (created if missing; re-run to resume)")
    s.add_argument("--library", help="reference library (default: the bundled one)")
    s.add_argument("--model", help="DNA model pack (default: the bundled one)")
    s.add_argument("--image-model", help="image model pack for photos (default: the bundled one, if any)")
    s.add_argument("--no-photo-id", action="store_true", help="check and store photos without identifying them")
    s.add_argument("--batch-size", type=int, default=256, help="barcode records per committed batch (256)")
    common(s)
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("rematch", help="match a project's photos again against a library (after library add-photos)")
    s.add_argument("--project", required=True, help="project database (.db)")
    s.add_argument("--library", required=True, help="library to match against (its photo references)")
    s.add_argument("--all-photos", action="store_true",
                   help="every photo (default: those of specimens without a usable barcode call)")
    s.add_argument("--image-model", help="image model pack (default: the bundled one)")
    s.add_argument("--min-confidence", type=float, default=0.5, help="leave a rank empty below this (0.5)")
    common(s)
    s.set_defaults(func=cmd_rematch)

    s = sub.add_parser("export", help="export a project's specimens as CSV or a Darwin Core Archive")
    s.add_argument("--project", required=True)
    s.add_argument("--format", choices=["csv", "dwc"], default="csv")
    s.add_argument("--out", "-o", required=True, help="CSV file, or .zip for a Darwin Core Archive")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("report", help="summary report of a project (PDF, PNG or HTML) with charts")
    s.add_argument("--project", required=True)
    s.add_argument("--out", "-o", required=True, help="report.pdf, report.png or report.html")
    s.set_defaults(func=cmd_report)

    lib = sub.add_parser("library", help="build or inspect reference libraries").add_subparsers(
        dest="library_command", metavar="ACTION", required=True)
    s = lib.add_parser("build", help="embed labelled barcodes into a reference library")
    s.add_argument("--barcodes", nargs="+", help="FASTA/TSV/CSV with taxonomy columns")
    s.add_argument("--images", nargs="+", metavar="DIR",
                   help="photo folders (or tables) with a labels.tsv: file, order, family, ... columns")
    s.add_argument("--image-model", help="image model pack for --images (default: the bundled one)")
    s.add_argument("--photo-split", choices=["all", "training"], default="all",
                   help="training: add only the photos the image model's split trains on (never its calibration or "
                        "held-out benchmark photos) and calibrate the calls on its calibration photos")
    s.add_argument("--out", required=True, help="library file to create (or extend, with --add)")
    s.add_argument("--add", action="store_true", help="add records to an existing library")
    s.add_argument("--restart", action="store_true",
                   help="discard what an interrupted build of OUT committed (OUT.building) and start again; "
                        "without it, the same command resumes an interrupted build")
    s.add_argument("--batch-size", type=int, help="QC-passed records embedded and committed at a time (default "
                                                  "4096; an interrupted build resumes after the last batch committed)")
    s.add_argument("--cluster", metavar="ADDRESS", help=CLUSTER_HELP)
    s.add_argument("--model", help="DNA model pack (default: the bundled one)")
    s.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    s.add_argument("--no-sequences", action="store_true", help="keep embeddings and taxonomy only")
    s.add_argument("--name", default="", help="a name for the library")
    common(s)
    s.set_defaults(func=cmd_library_build)
    s = lib.add_parser("add-photos", help="add the photos of a project's barcode-identified specimens to a library "
                                          "as photo references (learn from this sample)")
    s.add_argument("--project", required=True, help="project database (.db) with barcodes and photos")
    s.add_argument("--library", required=True, help="library to extend (created as a copy of --base if absent)")
    s.add_argument("--base", help="library a new --library starts from (default: the bundled one)")
    s.add_argument("--min-confidence", type=float, default=BARCODED_MIN_CONFIDENCE,
                   help="a photo is named down to the finest rank its specimen's barcode call reaches this at")
    s.add_argument("--image-model", help="image model pack (default: the bundled one)")
    common(s)
    s.set_defaults(func=cmd_library_add_photos)
    s = lib.add_parser("info", help="summarise a library")
    s.add_argument("library", nargs="?", help="default: the bundled one")
    s.set_defaults(func=cmd_library_info)
    s = lib.add_parser("index", help="build a large library's approximate search index again (when "
                                     "identify warns that it searches exactly)")
    s.add_argument("library", help="the library file (.db); its index folder is beside it or in the user cache")
    common(s, device=False)
    s.set_defaults(func=cmd_library_index)
    s = lib.add_parser("calibrate", help="recalibrate thresholds and confidences")
    s.add_argument("library")
    common(s, device=False)
    s.set_defaults(func=cmd_library_calibrate)

    train = sub.add_parser("train", help="train encoders (needs the [train] extra)").add_subparsers(
        dest="train_command", metavar="MODALITY", required=True)
    s = train.add_parser("dna", help="train the DNA encoder and write a model pack")
    s.add_argument("--barcodes", required=True)
    s.add_argument("--out", required=True, help="model pack folder")
    s.add_argument("--epochs", type=int, default=12)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=0)
    s.add_argument("--pack-version", default="1.0.0", help="version written into the manifest")
    s.add_argument("--bundle", help="also write an int8-only copy of the pack here (for resources/)")
    s.add_argument("--holdout", choices=["benchmark", "none"], default="benchmark",
                   help="leave out the benchmark's query records (default) so the benchmark stays honest")
    s.set_defaults(func=cmd_train_dna)
    s = train.add_parser("dna-profile", help="add the k-mer profile branch to a DNA model pack (engine.train.dna_profile)")
    s.add_argument("--pack", required=True, help="the DNA model pack (as `train dna` wrote it)")
    s.add_argument("--barcodes", required=True, help="barcodes to fit the profile on (no labels used)")
    s.add_argument("--out", required=True, help="model pack folder to write")
    s.add_argument("--pack-version", required=True, help="version written into the manifest")
    s.add_argument("--bundle", help="also write an int8-only copy of the pack here (may be --pack itself)")
    s.add_argument("--holdout", choices=["benchmark", "none"], default="benchmark",
                   help="leave out the benchmark's query records (default), as `train dna` does")
    s.set_defaults(func=cmd_train_dna_profile)
    s = train.add_parser("image", help="fine-tune the photo encoder into the DNA model's space")
    s.add_argument("--images", nargs="+", required=True, metavar="DIR", help="photo folders with a labels.tsv")
    s.add_argument("--library", help="library whose DNA embeddings give the taxon prototypes (default: bundled)")
    s.add_argument("--out", required=True, help="model pack folder (fp32 + int8)")
    s.add_argument("--bundle", help="also write an int8-only copy of the pack here (for resources/)")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--views", type=int, default=3, help="augmented views cached per photo")
    s.add_argument("--feature-cache", help="folder to keep the frozen backbone's features in between runs")
    s.add_argument("--size", type=int, default=224, help="input size in pixels")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=0)
    s.add_argument("--pack-version", default="1.0.0", help="version written into the manifest")
    s.set_defaults(func=cmd_train_image)

    models = sub.add_parser("models", help="list or verify model packs").add_subparsers(
        dest="models_command", metavar="ACTION", required=True)
    s = models.add_parser("list")
    s.add_argument("--dir", help="folder of model packs (default: the bundled ones)")
    s.set_defaults(func=cmd_models_list)
    s = models.add_parser("verify")
    s.add_argument("packs", nargs="+")
    s.set_defaults(func=cmd_models_verify)
    s = models.add_parser("import", help="convert a checkpoint folder into a model pack (needs [train])")
    s.add_argument("--kind", required=True, choices=["barcodebert", "hf-vit", "open-clip"])
    s.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    s.add_argument("--out", required=True, help="model pack folder to write")
    s.add_argument("--name", default="", help="pack name (default: KIND-FOLDER)")
    s.set_defaults(func=cmd_models_import)
    s = models.add_parser("quantize", help="add an int8 model to an fp32-only pack")
    s.add_argument("pack")
    s.add_argument("--photos", nargs="+", metavar="DIR", help="image packs: calibrate static int8 on these photos")
    s.set_defaults(func=cmd_models_quantize)
    return p


# ---------------------------------------------------------------------------- errors
def _database_args(args) -> list[Path]:
    """The database files a command was given (or uses by default), to name the one that failed."""
    from engine.sqlite_paths import sqlite_kind

    library = getattr(args, "library", None)
    paths = [getattr(args, "project", None), *(library if isinstance(library, list) else [library])]
    if hasattr(args, "library") and not args.library:
        from engine.resources import default_library_path

        paths.append(default_library_path())
    out = getattr(args, "out", None)  # a library being extended; a CSV or report is no database
    if out and sqlite_kind(out) in ("library", "project", "other", "corrupt"):
        paths.append(out)
    return [Path(p) for p in paths if p and Path(p).is_file()]


def _failing_database(args) -> Path | None:
    """Which of the command's database files is damaged (or, failing that, the only one given)."""
    from engine.sqlite_paths import connect, sqlite_kind

    candidates = _database_args(args)
    for path in candidates:
        kind = sqlite_kind(path)
        if kind in ("corrupt", "not-sqlite", "empty"):
            return path
        try:
            conn = connect(path, readonly=True, immutable=True, timeout=1.0)
            try:
                if conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
                    return path
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            return path
    return candidates[0] if len(candidates) == 1 else None


def error_line(exc: BaseException, args) -> str:
    """One line for an error the engine did not turn into a BioscanError: what happened, to which
    file, and what to do."""
    if isinstance(exc, MemoryError):
        return ("out of memory: close other programs, or give fewer files at once "
                "(import: a smaller --batch-size)")
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc)
        db = _failing_database(args)
        name = str(db) if db else "a database file"
        if "locked" in text or "busy" in text:
            return f"{name} is in use by another process ({text}): wait until it has finished, then run again"
        if "full" in text:
            return f"no space left on the disk for {name}: free some space, then run again"
        if "readonly" in text or "read-only" in text:
            return f"{name} cannot be written here ({text}): copy it to a folder you can write to"
        return (f"{name} is damaged or not a BIOSCAN file ({text}): restore it from a backup, or make it again "
                "(a library: bioscan library build; a project: bioscan import into a new project)")
    if isinstance(exc, OSError):
        name = exc.filename or "a file"
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return f"no space left on the disk for {name}: free some space, then run again"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"{name}: {exc.strerror or 'permission denied'}: choose a file or folder you can read and write"
        return f"{name}: {exc.strerror or exc}"
    if isinstance(exc, UnicodeError):
        return f"text that is not valid UTF-8 ({exc}): save the input files as UTF-8"
    return f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the details, and please report it)"


def _debug_wanted(argv: list[str]) -> tuple[bool, list[str]]:
    """--debug anywhere on the command line (or BIOSCAN_DEBUG=1): show tracebacks."""
    rest = [a for a in argv if a != "--debug"]
    return len(rest) != len(argv) or os.environ.get("BIOSCAN_DEBUG", "") not in ("", "0"), rest


def main(argv: list[str] | None = None) -> int:
    """Run a command. Exit codes: 0 done; 1 a BioscanError (or nothing could be identified); 2 any
    other failure (one line naming the file and what to do; the traceback with --debug); 130 interrupted."""
    parser = build_parser()
    debug, argv = _debug_wanted(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    func = cmd_version if args.version else getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        with _exit_stack(args):
            return func(args)
    except BioscanError as exc:
        print(f"bioscan: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bioscan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bioscan identify reads.fasta | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except Exception as exc:  # noqa: BLE001 - the boundary: one line instead of a traceback
        if debug:
            raise
        try:
            line = error_line(exc, args)
        except Exception:  # noqa: BLE001 - naming the file failed too: still one line
            line = f"{type(exc).__name__}: {exc}"
        print(f"bioscan: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
