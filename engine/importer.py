"""Moved to engine.project.importer (kept for one session while branches land)."""
from engine.project.importer import *  # noqa: F401,F403
from engine.project.importer import ImportReport, ImportSettings, import_folders, open_photo_identifier  # noqa: F401
