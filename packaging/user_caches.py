"""Runtime hook: numba (used by umap-learn) caches compiled code beside its sources, which in a
frozen bundle are missing or read-only; give it a per-user cache folder instead."""
import os

if "NUMBA_CACHE_DIR" not in os.environ:
    from platformdirs import user_cache_dir

    os.environ["NUMBA_CACHE_DIR"] = os.path.join(user_cache_dir("bioscan-desktop"), "numba")
