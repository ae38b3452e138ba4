"""The project database and its import: one package.

A project is one SQLite file per bulk sample: every imported specimen, its input files, QC,
embeddings, matches, machine calls, user reviews and the import runs that produced them.

- ``schema``: every table, the version and migrations (docs/project-database.md)
- ``database``: ``open_project``, transactions, the read API (``Project``, ``SpecimenFilter``)
- ``writer``: the importer's batch writes (``ProjectWriter``, ``ItemResult``)
- ``summary``: which call a specimen shows, fusion with photos, review state
- ``scan``: finding inputs in folders and pairing photos with specimens
- ``importer``: ``import_folders`` with one ``ImportSettings``: the CLI and the GUI call it alike

The importer's names are imported lazily: opening a project must stay cheap for the GUI.
"""
from engine.project.database import Project, ProjectError, SpecimenDetail, SpecimenFilter, TaxonNode, open_project
from engine.project.schema import CALL_RANKS, SCHEMA_VERSION, STATUSES, TAXON_TREE_RANKS, now_iso

__all__ = [
    "CALL_RANKS", "SCHEMA_VERSION", "STATUSES", "TAXON_TREE_RANKS", "Project", "ProjectError", "SpecimenDetail",
    "SpecimenFilter", "TaxonNode", "open_project", "now_iso", "ImportSettings", "ImportReport", "import_folders",
]


def __getattr__(name: str):
    if name in ("ImportSettings", "ImportReport", "import_folders"):
        import engine.project.importer as importer

        return getattr(importer, name)
    raise AttributeError(f"module 'engine.project' has no attribute {name!r}")
