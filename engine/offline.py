"""The app's own per-user cache folder (platformdirs' user cache for "bioscan-desktop").

The tool writes nothing outside a project, its config folder and this folder
(docs/promises.md). matplotlib (reports, the cluster map) would keep its font cache in
~/.cache/matplotlib; ``use_for_matplotlib`` points it here instead. engine/__init__ calls it, so
it is in the environment before anything in the CLI or the desktop app imports matplotlib.
"""
from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "bioscan-desktop"  # the same name as bioscan_desktop.settings.APP_NAME (config folder)


def app_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def use_for_matplotlib() -> None:
    """matplotlib's config and font cache folder in the app's cache, unless MPLCONFIGDIR is set."""
    if not os.environ.get("MPLCONFIGDIR"):
        os.environ["MPLCONFIGDIR"] = str(app_cache_dir() / "matplotlib")
