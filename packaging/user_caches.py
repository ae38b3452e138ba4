"""matplotlib's font cache in a per-user folder for the frozen bundle, set by both entry points
before anything imports matplotlib.

PyInstaller's matplotlib runtime hook points MPLCONFIGDIR at a fresh temporary folder, so every
report and every cluster map would rebuild the font cache (seconds on a workstation with many
fonts). It runs after custom runtime hooks, hence this is done in the entry points.
"""
import os


def use_user_cache_dirs() -> None:
    from platformdirs import user_cache_dir

    os.environ["MPLCONFIGDIR"] = os.path.join(user_cache_dir("bioscan-desktop"), "matplotlib")
