"""Where the bundled model packs and default reference library live.

Looked up, in order: ``$BIOSCAN_RESOURCES``; a PyInstaller bundle's data folder; the
``resources/`` folder beside the ``engine`` package (a source checkout or editable
install). ``resources/defaults.json`` names the default library and model packs.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from engine.errors import BioscanError

DEFAULTS_FILE = "defaults.json"


def resources_dir() -> Path:
    candidates = []
    if os.environ.get("BIOSCAN_RESOURCES"):
        candidates.append(Path(os.environ["BIOSCAN_RESOURCES"]))
    if getattr(sys, "frozen", False) and hasattr(sys, "_MEIPASS"):
        candidates.append(Path(sys._MEIPASS) / "resources")
    candidates.append(Path(__file__).resolve().parent.parent / "resources")
    for c in candidates:
        if (c / DEFAULTS_FILE).is_file():
            return c
    raise BioscanError(
        "bundled resources not found (looked in " + ", ".join(str(c) for c in candidates) +
        "); set BIOSCAN_RESOURCES or pass --library / --model explicitly"
    )


def _defaults() -> dict:
    return json.loads((resources_dir() / DEFAULTS_FILE).read_text(encoding="utf-8"))


def default_library_path() -> Path:
    return resources_dir() / _defaults()["library"]


def default_model_path(modality: str) -> Path:
    models = _defaults()["models"]
    if modality not in models:
        raise BioscanError(f"no bundled {modality} model pack")
    return resources_dir() / models[modality]
