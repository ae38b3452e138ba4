"""Moved to engine.project.scan (kept for one session while branches land)."""
from engine.project.scan import *  # noqa: F401,F403
from engine.project.scan import ScannedFile, ScanResult, classify, photo_key, scan_folders  # noqa: F401
