"""Start-up on a machine without Qt's X11 libraries: the message names the libraries really missing."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bioscan_desktop import qt_platform

# ldd's output for PySide6 6.12's libqxcb.so on a fresh Debian 12 (trimmed)
LDD_FRESH_DEBIAN = """\
\tlinux-vdso.so.1 (0x00007ffd6b3f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f1c)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f1c)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1b)
"""


def test_ldd_output_gives_each_missing_library_once():
    assert qt_platform.missing_from_ldd(LDD_FRESH_DEBIAN) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


def test_message_names_the_libraries_and_one_apt_get_line():
    text = qt_platform.missing_libraries_message(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in text
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in text
    assert "xcb-cursor" not in text  # what Qt's own message wrongly names
    unknown = qt_platform.missing_libraries_message(["libfoo.so.3"])
    assert "libfoo.so.3" in unknown and "apt-get" not in unknown


@pytest.mark.parametrize("env, platform, expected", [
    ({}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
    ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
    ({"XDG_SESSION_TYPE": "wayland", "QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({}, "darwin", False),
    ({}, "win32", False),
])
def test_only_an_x11_start_is_checked(env, platform, expected):
    assert qt_platform.uses_xcb(env, platform) is expected


@pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("cc"), reason="needs Linux and a C compiler")
def test_a_plugin_with_missing_libraries_is_reported_by_name(tmp_path):
    """A real shared object linked against two libraries that are then removed, as on a fresh machine."""
    for name in ("bioscantesticccm", "bioscantestkeysyms"):
        src = tmp_path / f"{name}.c"
        src.write_text(f"int {name}_fn(void) {{ return 1; }}\n")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / f"lib{name}.so.4"), str(src),
                        f"-Wl,-soname,lib{name}.so.4"], check=True)
    plugin_src = tmp_path / "plugin.c"
    plugin_src.write_text("int bioscantesticccm_fn(void); int bioscantestkeysyms_fn(void);\n"
                          "int plugin(void) { return bioscantesticccm_fn() + bioscantestkeysyms_fn(); }\n")
    plugin = tmp_path / "libqfake.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(plugin), str(plugin_src), f"-L{tmp_path}",
                    "-l:libbioscantesticccm.so.4", "-l:libbioscantestkeysyms.so.4"], check=True)
    for name in ("bioscantesticccm", "bioscantestkeysyms"):
        (tmp_path / f"lib{name}.so.4").unlink()
    assert qt_platform.missing_libraries(plugin) == ["libbioscantesticccm.so.4", "libbioscantestkeysyms.so.4"]


def test_the_real_plugin_loads_where_the_window_tests_run():
    plugin = qt_platform.xcb_plugin_path()
    if plugin is None:
        pytest.skip("this PySide6 has no xcb plugin")
    missing = qt_platform.missing_libraries(plugin)
    if missing:
        pytest.skip(qt_platform.missing_libraries_message(missing))  # say what to install, do not fail CI
    assert missing == []


def test_desktop_start_prints_the_message_and_exits_1(monkeypatch, capsys):
    from bioscan_desktop import app

    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(qt_platform, "missing_libraries", lambda plugin: ["libxcb-keysyms.so.1"])
    monkeypatch.setattr(qt_platform, "xcb_plugin_path", lambda: qt_platform.Path("/fake/libqxcb.so"))
    assert app.main([]) == 1
    err = capsys.readouterr().err
    assert "libxcb-keysyms.so.1" in err and "apt-get install libxcb-keysyms1" in err
