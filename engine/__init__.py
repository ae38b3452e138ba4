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

__all__ = [
    "__version__", "RANKS", "Barcode", "BarcodeQC", "Call", "Match", "RankCall", "RecordError", "Taxonomy",
    "BioscanError", "InputFormatError", "LibraryError", "ModelPackError", "Cancelled", "ProgressCallback",
    "read_barcodes", "check_barcode", "load_pack", "DnaEncoder", "ReferenceLibrary", "DnaIdentifier",
    "Identification", "open_identifier", "describe_device",
]


def __getattr__(name: str):
    # lazy: importing engine must stay cheap for the GUI's start-up
    if name == "read_barcodes":
        from engine.io import read_barcodes
        return read_barcodes
    if name == "check_barcode":
        from engine.qc import check_barcode
        return check_barcode
    if name == "load_pack":
        from engine.models.pack import load_pack
        return load_pack
    if name == "DnaEncoder":
        from engine.models.dna_encoder import DnaEncoder
        return DnaEncoder
    if name == "describe_device":
        from engine.models.runtime import describe_device
        return describe_device
    if name == "ReferenceLibrary":
        from engine.library import ReferenceLibrary
        return ReferenceLibrary
    if name in ("DnaIdentifier", "Identification", "open_identifier"):
        import engine.identify as m
        return getattr(m, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
