"""PyInstaller entry point of the `bioscan-desktop` app."""
import multiprocessing
import sys

from bioscan_desktop.app import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # the GUI runs UMAP and clustering in child processes
    sys.exit(main())
