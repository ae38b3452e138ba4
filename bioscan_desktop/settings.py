"""Per-user settings, stored as JSON in the platform's config folder (platformdirs).

``$BIOSCAN_DESKTOP_CONFIG`` overrides the folder (tests and portable installs use it).
Qt-free so the CLI, tests and benchmarks can read the same file.
"""
from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

APP_NAME = "bioscan-desktop"
MAX_RECENT = 8


def config_dir() -> Path:
    if os.environ.get("BIOSCAN_DESKTOP_CONFIG"):
        return Path(os.environ["BIOSCAN_DESKTOP_CONFIG"])
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def default_projects_dir() -> Path:
    """Where a project is created when the user imports a folder with no project open."""
    import platformdirs

    return Path(platformdirs.user_documents_dir()) / "BIOSCAN projects"


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (some containers): ask in Settings instead
        return ""


@dataclass
class Settings:
    user_name: str = field(default_factory=_default_user)  # recorded with every review
    device: str = "auto"  # auto | cpu | cuda (engine.models.runtime.DEVICES)
    library_path: str = ""  # "" = the bundled default library
    dna_model_path: str = ""  # "" = the bundled DNA model pack
    image_model_path: str = ""  # reserved for the image model pack (photos stay "pending" without one)
    min_confidence: float = 0.5  # below this a rank is left uncalled at import
    recent_projects: list[str] = field(default_factory=list)
    last_folder: str = ""
    table_columns: str = ""  # the results table's column order, widths and hidden columns (base64 Qt header state)

    @classmethod
    def load(cls) -> "Settings":
        path = config_dir() / "settings.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()  # first start, or a damaged file: defaults (the file is rewritten on save)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known} if isinstance(raw, dict) else {}
        try:
            return cls(**values)
        except TypeError:
            return cls()

    def save(self) -> None:
        folder = config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".settings.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, folder / "settings.json")

    def add_recent(self, project: str | Path) -> None:
        p = str(Path(project).resolve())
        self.recent_projects = [p] + [r for r in self.recent_projects if r != p][: MAX_RECENT - 1]
