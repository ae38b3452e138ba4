"""What keeps the tool on the workstation (docs/promises.md), put in the environment by
``keep_offline`` when the engine package is imported (engine/__init__), so before anything in
the CLI, the desktop app or their child processes can load ONNX Runtime or matplotlib.

- ONNX Runtime's PyPI builds since 1.29 start Microsoft's 1DS telemetry when the library loads:
  DNS look-ups of its collector every ~10 s, a device id and an event queue under
  ~/.cache/Microsoft. ``disable_telemetry_events()`` does not stop it; ``ORT_DISABLE_TELEMETRY=1``
  does, but only when it is in the environment before the first ``import onnxruntime``. Set
  unconditionally: no network request, whatever the user's environment says.
- matplotlib (reports, the cluster map) would keep its font cache in ~/.cache/matplotlib:
  ``MPLCONFIGDIR`` points it at the app's own cache folder instead (unless the user set it),
  as the bundle's launchers do (packaging/user_caches.py).

tests/test_offline.py checks both under strace.
"""
from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "bioscan-desktop"  # the same name as bioscan_desktop.settings.APP_NAME (config folder)


def app_cache_dir() -> Path:
    """The app's own per-user cache folder (platformdirs' user cache for "bioscan-desktop")."""
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def keep_offline() -> None:
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    if not os.environ.get("MPLCONFIGDIR"):
        os.environ["MPLCONFIGDIR"] = str(app_cache_dir() / "matplotlib")
