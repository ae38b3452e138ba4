"""PyInstaller entry point of the `bioscan` command."""
import sys

from user_caches import use_user_cache_dirs

if __name__ == "__main__":
    use_user_cache_dirs()
    from engine.cli import main

    sys.exit(main())
