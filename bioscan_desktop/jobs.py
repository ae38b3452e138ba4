"""Work the GUI runs in background tasks (bioscan_desktop.workers.Task): engine calls only.

Qt-free. Each job opens its own connection to the project (read-only unless it writes),
so no SQLite connection is shared between threads.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from engine.progress import ProgressCallback, report
from engine.project import SpecimenFilter, TaxonNode, open_project

from bioscan_desktop.settings import Settings

# ------------------------------------------------------------------------------ set-up facts
@dataclass
class SetupInfo:
    """What the status bar and About dialog show about the engine set-up."""

    device: str = ""
    dna_model: str = ""  # ident, e.g. bioscan-dna-cnn@1.0.0 (int8)
    dna_model_sha256: str = ""
    dna_model_path: str = ""
    library: str = ""  # name and size
    library_id: str = ""
    library_path: str = ""
    problems: list[str] = field(default_factory=list)  # one line each, for the user


def describe_setup(settings: Settings) -> SetupInfo:
    """Device, model pack and library in use (manifests and metadata only: nothing big is loaded)."""
    from engine import BioscanError, ReferenceLibrary, default_library_path, default_model_path, describe_device, load_pack

    info = SetupInfo()
    try:
        info.device = describe_device(settings.device)
    except BioscanError as exc:
        info.device, info.problems = "CPU", [str(exc)]
    precision = "int8"
    try:
        lib_path = Path(settings.library_path) if settings.library_path else default_library_path()
        info.library_path = str(lib_path)
        lib = ReferenceLibrary.open(lib_path)
        meta = lib.meta
        info.library_id = meta.get("library_id", "")
        # a library the user chose is named by its file: a copy made by Learn photos keeps its base's name
        name = lib_path.name if settings.library_path else meta.get("name", lib_path.stem)
        photos = lib.count("image")
        info.library = f"{name} ({lib.count('dna'):,} barcodes" + (f", {photos:,} photos" if photos else "") + ")"
        built = lib.model_for("dna") or {}
        precision = built.get("precision", precision)
        problem = lib.search_index_problem("dna")
        if problem:
            info.problems.append(f"reference library: {problem}")
    except BioscanError as exc:
        info.library = "none"
        info.problems.append(f"reference library: {exc}")
    try:
        pack_path = Path(settings.dna_model_path) if settings.dna_model_path else default_model_path("dna")
        info.dna_model_path = str(pack_path)
        pack = load_pack(pack_path, verify=False)  # verified when an import opens it
        info.dna_model = f"{pack.ident} ({precision})"
        info.dna_model_sha256 = pack.model_file(precision)["sha256"]
    except BioscanError as exc:
        info.dna_model = "none"
        info.problems.append(f"DNA model: {exc}")
    return info


# ------------------------------------------------------------------------------ import
def import_settings(settings: Settings):
    """The user's settings as the engine's ImportSettings: the one object every front end imports with."""
    from engine.project import ImportSettings

    return ImportSettings(library=settings.library_path, dna_model=settings.dna_model_path,
                          image_model=settings.image_model_path, min_confidence=settings.min_confidence,
                          device=settings.device)


def run_import(folders: Sequence[str], project_path: str, settings: Settings, progress: ProgressCallback = None):
    """engine.project.import_folders with the user's settings; returns its ImportReport."""
    from engine.project import import_folders

    return import_folders(list(folders), project_path, import_settings(settings), progress=progress)


def resumable_run(project) -> dict[str, Any] | None:
    """The newest import of folders if it stopped before finishing (cancelled, interrupted, failed).

    Runs of another operation (a re-match of photos) are passed over: they import no folders."""
    runs = [r for r in project.import_runs() if not r["settings"].get("operation")]
    if runs and runs[0]["status"] in ("cancelled", "interrupted", "failed") and runs[0]["inputs"]:
        return runs[0]
    return None


# ------------------------------------------------------------------------------ learning from barcoded specimens
def learn_photos(project_path: str, library_path: str, settings: Settings, min_confidence: float,
                 progress: ProgressCallback = None):
    """engine.learn_barcoded_photos (as `bioscan library add-photos`) with the user's image model and
    device; a new library is a copy of the library the user's imports use. Returns BarcodedPhotos."""
    from engine import learn_barcoded_photos

    return learn_barcoded_photos(project_path, library_path, base_library=settings.library_path or None,
                                 image_model=settings.image_model_path or None, min_confidence=min_confidence,
                                 device=settings.device, progress=progress)


def rematch_photos(project_path: str, settings: Settings, all_photos: bool = False,
                   progress: ProgressCallback = None):
    """engine.rematch_photos (as `bioscan rematch`) against the library, image model and device of the
    user's settings; ``all_photos`` re-matches every photo, not only those without a barcode call.
    Returns RematchReport."""
    from engine import rematch_photos as rematch

    return rematch(project_path, import_settings(settings), scope="all-photos" if all_photos else "photo-only",
                   progress=progress)


def photos_to_rematch(project) -> tuple[int, int]:
    """(photos without a barcode call, all photos) that a re-match would match again."""
    from engine import photos_to_rematch as count

    return count(project, "photo-only"), count(project, "all-photos")


# ------------------------------------------------------------------------------ photos
def load_specimen_photo(project_path: str, specimen_id: int, max_side: int):
    """(specimen id, 8-bit RGB PIL image no larger than max_side, or None) for the specimen's first good photo."""
    from engine import BioscanError, load_photo

    with open_project(project_path, readonly=True) as p:
        items = p.specimen(specimen_id).items
    for item in items:
        if item["modality"] != "photo" or item["status"] == "error":
            continue
        try:
            image = load_photo(item["path"])
        except (BioscanError, OSError):
            continue  # moved or changed since the import: try the next view
        image.thumbnail((max_side, max_side))
        return specimen_id, image
    return specimen_id, None


# ------------------------------------------------------------------------------ taxonomy trees
def count_taxonomy(taxa: Sequence[Any], ranks: Sequence[str]) -> TaxonNode:
    """A TaxonNode tree (as Project.taxonomy_tree returns) counting Taxonomy records."""
    counts = Counter(tuple(t.get(r) or "" for r in ranks) for t in taxa)
    root = TaxonNode("root", "", 0)
    index: dict[tuple[str, ...], TaxonNode] = {(): root}
    for names in sorted(counts):
        n = counts[names]
        root.count += n
        path: tuple[str, ...] = ()
        for rank, name in zip(ranks, names):
            parent = index[path]
            path += (name,)
            if path not in index:
                index[path] = TaxonNode(rank, name, 0)
                parent.children.append(index[path])
            index[path].count += n
    return root


def library_tree(library_path: str, ranks: Sequence[str], progress: ProgressCallback = None) -> TaxonNode:
    from engine import ReferenceLibrary, default_library_path

    report(progress, 0, 1, "loading the reference library")
    lib = ReferenceLibrary.open(library_path or default_library_path())
    tree = count_taxonomy(lib.references("dna").taxonomy, ranks)
    report(progress, 1, 1, "loading the reference library")
    return tree


def project_trees(project_path: str, ranks: Sequence[str], progress: ProgressCallback = None
                  ) -> tuple[TaxonNode, TaxonNode]:
    """(all specimens, novel specimens) trees of the effective calls, for counts and novel shares."""
    with open_project(project_path, readonly=True) as p:
        return p.taxonomy_tree(ranks=ranks), p.taxonomy_tree(SpecimenFilter(novel=True), ranks=ranks)


# ------------------------------------------------------------------------------ cluster map
def compute_cluster_map(project_path: str, progress: ProgressCallback = None, cached_only: bool = False):
    """The project's putative species (engine.cluster.project.map_project_species, a SpeciesMap): read
    from the project's cache when the specimens are unchanged, else computed and cached. With
    ``cached_only`` nothing is computed (None unless cached, and quick): for
    showing the map as soon as a project is opened."""
    from engine import map_project_species

    return map_project_species(project_path, cached_only=cached_only, progress=progress)


# ------------------------------------------------------------------------------ checking override names
def library_taxonomy(settings: Settings):
    """The names the user's reference library holds per rank (engine.LibraryTaxonomy): what an
    override's names are checked against. Raises BioscanError when the library cannot be read."""
    from engine import LibraryTaxonomy, ReferenceLibrary, default_library_path

    lib = ReferenceLibrary.open(Path(settings.library_path) if settings.library_path else default_library_path())
    try:
        return LibraryTaxonomy.of(lib)
    finally:
        lib.close()


# ------------------------------------------------------------------------------ export (engine/export, engine/report)
def export_csv(project_path: str, flt: SpecimenFilter | None, out_path: str, progress: ProgressCallback = None) -> int:
    """The specimens a filter shows, in the CSV format of `bioscan export` (engine.export.project_csv)."""
    from engine import write_project_csv

    with open_project(project_path, readonly=True) as p:
        return write_project_csv(p, out_path, flt)


def export_dwca(project_path: str, out_path: str, progress: ProgressCallback = None) -> int:
    """A Darwin Core Archive of the whole project (as `bioscan export --format dwc`)."""
    from engine import write_dwca

    with open_project(project_path, readonly=True) as p:
        return write_dwca(p, out_path)


def export_report(project_path: str, out_path: str, progress: ProgressCallback = None) -> str:
    """The project report (PDF, HTML or PNG by suffix), as `bioscan report`."""
    from engine import write_report

    with open_project(project_path, readonly=True) as p:
        return str(write_report(p, out_path))
