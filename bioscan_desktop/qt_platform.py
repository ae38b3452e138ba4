"""Before the first window: can Qt's X11 platform plugin load? If not, name the libraries really missing.

Qt itself, when its xcb plugin cannot be loaded, prints that ``xcb-cursor0`` is needed whatever
library is actually absent (on a fresh Debian it is usually ``libxcb-icccm4`` and
``libxcb-keysyms1``), then aborts. Loading the plugin with the dynamic linker first costs nothing
(Qt loads the same file a moment later) and its error, or ``ldd``, names the real ones.

Qt-free: it runs before QApplication exists.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# shared library -> the Debian/Ubuntu package that provides it, for what the xcb plugin links
DEBIAN_PACKAGES = {
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libGLX.so.0": "libglx0", "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6", "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0", "libX11.so.6": "libx11-6", "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1", "libxkbcommon.so.0": "libxkbcommon0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-glx.so.0": "libxcb-glx0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0", "libxcb-sync.so.1": "libxcb-sync1", "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)
_DLOPEN_ERROR = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


def uses_xcb(environ=os.environ, platform: str = sys.platform) -> bool:
    """Whether Qt will try its X11 (xcb) plugin first: Linux, not asked for another platform, not Wayland."""
    if not platform.startswith("linux"):
        return False
    asked = environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if asked:
        return asked == "xcb"
    return not (environ.get("WAYLAND_DISPLAY") or environ.get("XDG_SESSION_TYPE") == "wayland")


def xcb_plugin_path() -> Path | None:
    import PySide6

    path = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def missing_from_ldd(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` reports as 'not found', each once, in its order."""
    return list(dict.fromkeys(_NOT_FOUND.findall(ldd_output)))


def missing_libraries(plugin: Path) -> list[str]:
    """Shared libraries the plugin needs that the dynamic linker cannot find ([] when it loads)."""
    import ctypes

    try:
        ctypes.CDLL(str(plugin))
        return []
    except OSError as exc:
        first = _DLOPEN_ERROR.findall(str(exc))
    ldd = shutil.which("ldd")
    if ldd:  # the loader names only the first missing library; ldd lists them all
        try:
            out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
            return missing_from_ldd(out) or first
        except (OSError, subprocess.SubprocessError):
            pass
    return first or [f"a library {plugin.name} links (the loader did not say which)"]


def missing_libraries_message(missing: list[str]) -> str:
    """What to tell the user: the libraries, and one apt-get line for the packages that provide them."""
    packages = [DEBIAN_PACKAGES[m] for m in missing if m in DEBIAN_PACKAGES]
    lines = [f"bioscan-desktop cannot open a window: Qt's X11 platform plugin needs {', '.join(missing)}, "
             f"which {'is' if len(missing) == 1 else 'are'} not installed."]
    if packages:
        lines.append(f"On Debian or Ubuntu: sudo apt-get install {' '.join(packages)}")
    lines.append("(QT_QPA_PLATFORM=offscreen runs without a display, e.g. for --screenshot.)")
    return "\n".join(lines)


def check_qt_platform() -> str | None:
    """None when the window can open (or another platform than xcb will be used), else the message."""
    if not uses_xcb():
        return None
    plugin = xcb_plugin_path()
    if plugin is None:
        return None  # a build without the plugin: Qt's own message is all there is
    missing = missing_libraries(plugin)
    return missing_libraries_message(missing) if missing else None
