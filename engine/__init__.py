"""BIOSCAN Desktop's headless engine: read, QC, embed, match and assign taxonomy.

The public API, used by the ``bioscan`` CLI and the desktop GUI. Heavy dependencies
(ONNX Runtime, scikit-learn, torch for training) are imported only when used.
"""
from engine.errors import BioscanError, InputFormatError, LibraryError, ModelPackError
from engine.offline import keep_offline
from engine.progress import Cancelled, ProgressCallback
from engine.records import RANKS, Barcode, BarcodeQC, Call, Match, RankCall, RecordError, Taxonomy

__version__ = "0.1.0"

keep_offline()  # before anything can load ONNX Runtime or matplotlib: no telemetry, caches in the app's folder

# name -> module it lives in: the curated public API the CLI and the GUI use (the GUI imports only
# this and engine.project; .importlinter enforces it). Imported on first use: start-up stays cheap.
_LAZY = {
    "read_barcodes": "engine.io", "ReadStats": "engine.io",
    "check_barcode": "engine.qc",
    "load_photo": "engine.io.images", "check_photo": "engine.io.images",
    "load_pack": "engine.models.pack",
    "DnaEncoder": "engine.models.dna_encoder",
    "describe_device": "engine.models.runtime",
    "default_library_path": "engine.resources", "default_model_path": "engine.resources",
    "ReferenceLibrary": "engine.library",
    "DnaIdentifier": "engine.identify", "Identification": "engine.identify", "open_identifier": "engine.identify",
    "learn_barcoded_photos": "engine.identify_image", "BarcodedPhotos": "engine.identify_image",
    **dict.fromkeys(("rematch_photos", "RematchReport", "photos_to_rematch"), "engine.project.rematch"),
    "photo_call_sentence": "engine.photo_labels", "BARCODED_MIN_CONFIDENCE": "engine.photo_labels",
    "map_project_species": "engine.cluster.project",
    "write_project_csv": "engine.export.project_csv", "write_dwca": "engine.export.dwc",
    "write_report": "engine.report",
    "LibraryTaxonomy": "engine.taxonomy_check", "unknown_names": "engine.taxonomy_check",
}

__all__ = [
    "__version__", "RANKS", "Barcode", "BarcodeQC", "Call", "Match", "RankCall", "RecordError", "Taxonomy",
    "BioscanError", "InputFormatError", "LibraryError", "ModelPackError", "Cancelled", "ProgressCallback",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
