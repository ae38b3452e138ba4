"""PyInstaller entry point of the `bioscan-desktop` app."""
import multiprocessing
import sys

from user_caches import use_user_cache_dirs

if __name__ == "__main__":
    multiprocessing.freeze_support()  # the GUI runs UMAP and clustering in child processes
    use_user_cache_dirs()
    from bioscan_desktop.app import main

    sys.exit(main())
