"""Nothing leaves the workstation (docs/promises.md): a long `bioscan import` and a desktop session
under strace make no network request, and write nothing outside the project, the config folder
and the app's own cache.

Each session runs for more than 30 s because ONNX Runtime's telemetry (PyPI builds since 1.29)
resolves its collector about every 10 s once the library is loaded; a short run would miss it.
HOME and the XDG folders point into a temporary folder, and every file left there is checked.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import shared_data_dir
from tests.synthetic import make_barcodes, write_tsv

pytestmark = [
    pytest.mark.offline,
    pytest.mark.skipif(shutil.which("strace") is None,
                       reason="strace is not installed (apt-get install strace; .ci/run installs it)"),
]

SESSION_SECONDS = 35  # each session: past three of the telemetry's ~10 s rounds
GUI_BARCODES = 300
LOCAL_FAMILIES = {"AF_UNIX", "AF_LOCAL", "AF_NETLINK"}  # IPC and the kernel's routing queries
STRACE = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=%network"]

_SOCKET = re.compile(r"\bsocket\((AF_\w+)")
_ADDRESSED = re.compile(r"\b(connect|bind|sendto|sendmsg|sendmmsg)\(.*?sa_family=(AF_\w+)")

# The desktop session: the real entry point (bioscan_desktop.app.main) imports a folder into a new
# project, draws the cluster map when that is done (matplotlib, and UMAP in a child process), and
# the window sits with its event loop running until it is closed after SESSION_SECONDS.
GUI_SESSION = '''
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from bioscan_desktop import app as desktop_app
from bioscan_desktop.main_window import MainWindow


def main() -> int:
    folder, seconds = sys.argv[1], float(sys.argv[2])
    qt_app = QApplication([sys.argv[0]])

    def attach() -> None:
        window = next(w for w in qt_app.topLevelWidgets() if isinstance(w, MainWindow))
        window.quiet_errors = True  # no modal box waits for a click

        def imported(report) -> None:
            print("import:", report.summary() if report is not None else "failed", flush=True)
            window.compute_cluster_map()

        def close() -> None:
            print("project:", window.project_path, flush=True)
            print("status bar:", window.device_label.text(), flush=True)
            if window.import_task is not None or window.cluster_task is not None:
                print("still busy when the session ended", flush=True)
                qt_app.exit(3)
                return
            window.close()
            qt_app.quit()

        window.importFinished.connect(imported)
        window.clusterMapReady.connect(
            lambda: print("cluster map:", "drawn" if window.cluster_view.map is not None else "none", flush=True))
        QTimer.singleShot(int(seconds * 1000), close)

    QTimer.singleShot(0, attach)
    return desktop_app.main(["--import", folder])


if __name__ == "__main__":
    sys.exit(main())
'''


def network_calls(strace_log: str) -> list[str]:
    """strace lines that open a non-local socket or address anything but local IPC."""
    found = []
    for line in strace_log.splitlines():
        m = _SOCKET.search(line)
        if m and m.group(1) not in LOCAL_FAMILIES:
            found.append(line)
            continue
        m = _ADDRESSED.search(line)
        if m and m.group(2) not in LOCAL_FAMILIES:
            found.append(line)
    return found


def files_outside(home: Path, allowed: list[Path]) -> list[str]:
    """Every file under ``home`` that is not inside one of the ``allowed`` folders."""
    out = []
    for path in sorted(home.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        if not any(path.is_relative_to(folder) for folder in allowed):
            out.append(str(path.relative_to(home)))
    return out


class Workstation:
    """A user's folders in a temporary HOME, and the environment a session runs with there."""

    def __init__(self, root: Path, monkeypatch):
        self.home = root / "home"
        self.config = self.home / ".config" / "bioscan-desktop-test"
        run_dir = self.home / ".run"
        run_dir.mkdir(parents=True, mode=0o700)
        (root / "tmp").mkdir()
        folders = {"HOME": self.home, "XDG_CONFIG_HOME": self.home / ".config",
                   "XDG_CACHE_HOME": self.home / ".cache", "XDG_DATA_HOME": self.home / ".local" / "share",
                   "XDG_STATE_HOME": self.home / ".local" / "state", "XDG_RUNTIME_DIR": run_dir,
                   "BIOSCAN_DESKTOP_CONFIG": self.config, "TMPDIR": root / "tmp"}
        # Nothing of this process's environment that could switch telemetry off or move a cache for
        # the sessions (engine sets ORT_DISABLE_TELEMETRY and MPLCONFIGDIR in this process too):
        # the sessions must do that themselves.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("XDG_", "BIOSCAN_", "ORT_", "MPL", "QT_", "PYTEST"))}
        self.env.update({k: str(v) for k, v in folders.items()}, QT_QPA_PLATFORM="offscreen")
        # Where the app says its folders are, asked with the sessions' environment.
        with monkeypatch.context() as m:
            for k in ("XDG_DOCUMENTS_DIR", "MPLCONFIGDIR"):
                m.delenv(k, raising=False)
            for k, v in folders.items():
                m.setenv(k, str(v))
            from bioscan_desktop.settings import default_projects_dir
            from engine.offline import app_cache_dir

            self.cache = app_cache_dir()
            self.projects = default_projects_dir()

    def run(self, args: list[str], log: Path, interrupt_after: float | None = None, timeout: float = 180):
        """Run ``args`` under strace; with ``interrupt_after``, Ctrl-C it after that many seconds.

        Returns (return code, stdout, stderr, seconds, whether it was interrupted)."""
        start = time.monotonic()
        proc = subprocess.Popen(STRACE + ["-o", str(log)] + args, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        interrupted = False
        try:
            out, err = proc.communicate(timeout=interrupt_after or timeout)
        except subprocess.TimeoutExpired:
            if interrupt_after is None:
                proc.kill()
                raise
            interrupted = True
            for child in _children(proc.pid):  # the traced program, not strace
                os.kill(child, signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        return proc.returncode, out, err, time.monotonic() - start, interrupted


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _barcode_folder(folder: Path, rows: int | None) -> bool:
    """A folder with one barcode table: the first ``rows`` (None: all) of the shared data's
    barcodes.tsv when present, else synthetic ones (40,000 for all). Returns whether real."""
    folder.mkdir(parents=True)
    data = shared_data_dir()
    if data is not None:
        with open(data / "barcodes.tsv", encoding="utf-8") as src, \
                open(folder / "barcodes.tsv", "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if rows is not None and i > rows:
                    break
                dst.write(line)
        return True
    records = make_barcodes(genera=20, species_per_genus=20, records_per_species=100 if rows is None else 1)
    write_tsv(folder / "barcodes.tsv", records[:rows])
    return False


def _assert_offline(ws: Workstation, log: Path, allowed: list[Path], what: str) -> None:
    calls = network_calls(log.read_text(encoding="utf-8", errors="replace"))
    assert not calls, f"{what} used the network ({len(calls)} calls):\n" + "\n".join(calls[:20])
    stray = files_outside(ws.home, allowed)
    assert not stray, f"{what} wrote outside the project, config and cache folders: {stray}"


def test_the_checker_sees_a_network_socket_and_a_stray_file(tmp_path, monkeypatch):
    """The strace and file checks below can fail: an AF_INET socket (made, never used) and a file
    in ~/.cache/other are caught, local IPC is not."""
    ws = Workstation(tmp_path, monkeypatch)
    log = tmp_path / "probe.strace"
    probe = ("import socket; socket.socketpair(); "
             "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close(); "
             "import os; os.makedirs(os.path.expanduser('~/.cache/other')); "
             "open(os.path.expanduser('~/.cache/other/x'), 'w').close()")
    rc, _, err, _, _ = ws.run([sys.executable, "-c", probe], log, timeout=60)
    assert rc == 0, err
    calls = network_calls(log.read_text())
    assert len(calls) == 1 and "AF_INET" in calls[0], calls
    assert files_outside(ws.home, [ws.cache, ws.config]) == [".cache/other/x"]
    recorded = ('123 connect(9, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.53")}, 16) = 0\n'
                '124 connect(8, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT\n'
                '125 sendto(4, {nlmsg_len=20, nlmsg_type=RTM_GETADDR}, 20, 0, {sa_family=AF_NETLINK, nl_pid=0}, 12) = 20')
    assert network_calls(recorded) == [recorded.splitlines()[0]]


def test_a_long_import_and_a_desktop_session_stay_on_the_workstation(tmp_path, monkeypatch):
    ws = Workstation(tmp_path, monkeypatch)
    bioscan = Path(sys.executable).with_name("bioscan")
    assert bioscan.exists(), f"{bioscan}: the package is not installed in this venv"

    # (a) `bioscan import` of more barcodes than it can identify in SESSION_SECONDS, then Ctrl-C
    # (what a user does; the committed batches are kept): the process lives the whole time.
    _barcode_folder(tmp_path / "plate", rows=None)
    project = ws.home / "projects" / "plate.bioscan.db"
    log = tmp_path / "import.strace"
    rc, _, err, seconds, interrupted = ws.run(
        [str(bioscan), "import", str(tmp_path / "plate"), "--project", str(project)],
        log, interrupt_after=SESSION_SECONDS)
    assert seconds > 30, f"the import ended after {seconds:.0f} s: give it more barcodes\n{err[-2000:]}"
    assert (rc == 130 and "interrupted" in err) if interrupted else rc == 0, f"exit {rc}\n{err[-2000:]}"
    from engine.project import open_project

    with open_project(project, readonly=True) as p:
        assert p.count_specimens() > 0, "the import identified nothing in its time"
    _assert_offline(ws, log, [project.parent, ws.config, ws.cache], "bioscan import")

    # (b) the desktop app: a new project for a folder, the cluster map, then an idle window.
    real = _barcode_folder(tmp_path / "tray", rows=GUI_BARCODES)
    script = tmp_path / "gui_session.py"
    script.write_text(GUI_SESSION, encoding="utf-8")
    log = tmp_path / "gui.strace"
    rc, out, err, seconds, _ = ws.run([sys.executable, str(script), str(tmp_path / "tray"), str(SESSION_SECONDS)],
                                      log, timeout=SESSION_SECONDS + 120)
    assert rc == 0, f"the desktop session failed (exit {rc})\n{out}\n{err[-3000:]}"
    assert seconds > 30
    assert f"import: {GUI_BARCODES} specimens" in out, out
    assert re.search(r"status bar: Device: (CPU|GPU)", out), out  # ONNX Runtime loaded in the window's process
    assert ("cluster map: drawn" in out) if real else ("cluster map:" in out), out
    assert f"project: {ws.projects}" in out, out
    _assert_offline(ws, log, [project.parent, ws.projects, ws.config, ws.cache], "the desktop session")
