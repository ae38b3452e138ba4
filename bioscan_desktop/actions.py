"""Every command of the main window, declared as data: id, text, shortcut, handler, where it appears.

The main window turns each ``ActionSpec`` into one QAction and places it in the menus, the
toolbar and the table's row menu listed here, so a test can trigger every command, and the
shortcut list (F1) and docs/gui.md are checked against this one table. Qt-free.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    id: str
    text: str  # menu text; "&" marks the mnemonic
    handler: str  # MainWindow method, called with ``args`` (never with QAction's ``checked`` flag)
    args: tuple = ()
    shortcut: str = ""  # portable text (QKeySequence): "Ctrl" is Cmd on macOS
    tip: str = ""
    enabled_when: str = "always"  # a key of MainWindow.action_conditions()
    short: str = ""  # toolbar text, if the menu text is too long for it

    @property
    def label(self) -> str:
        return self.text.replace("&", "").replace("…", "")


ACTIONS = (
    ActionSpec("new_project", "&New project…", "choose_new_project", shortcut="Ctrl+N",
               tip="Create an empty project (one .bioscan.db file per bulk sample)", enabled_when="idle"),
    ActionSpec("open_project", "&Open project…", "choose_open_project", shortcut="Ctrl+O",
               tip="Open a project database", enabled_when="idle", short="Open"),
    ActionSpec("import", "&Import folder…", "choose_import_folder", shortcut="Ctrl+I",
               tip="Identify the barcodes and photos in a folder", enabled_when="idle", short="Import"),
    ActionSpec("resume_import", "&Resume import", "resume_import",
               tip="Continue an import that was cancelled or interrupted", enabled_when="resumable"),
    ActionSpec("cancel_import", "&Cancel import", "cancel_import",
               tip="Stop after the current batch; everything imported so far is kept", enabled_when="importing"),
    ActionSpec("export_csv", "&Export results as CSV…", "choose_export", ("csv",), shortcut="Ctrl+Shift+E",
               tip="Save the specimens shown in the table (with its filters) as a CSV file",
               enabled_when="project", short="Export CSV"),
    ActionSpec("export_dwca", "Export &Darwin Core Archive…", "choose_export", ("dwca",),
               tip="All identified specimens as a Darwin Core Archive (GBIF)", enabled_when="project"),
    ActionSpec("export_report", "Export &report…", "choose_export", ("report",), shortcut="Ctrl+Shift+R",
               tip="A summary report (PDF or HTML): counts, novel specimens, QC failures", enabled_when="project"),
    ActionSpec("close_project", "&Close project", "close_project", shortcut="Ctrl+W", enabled_when="project_idle"),
    ActionSpec("quit", "&Quit", "close", shortcut="Ctrl+Q"),
    ActionSpec("show_table", "&Specimens table", "show_table", shortcut="Ctrl+1"),
    ActionSpec("show_map", "&Cluster map", "show_map", shortcut="Ctrl+2"),
    ActionSpec("search", "Searc&h the table", "focus_search", shortcut="Ctrl+F",
               tip="Search by specimen id, processid, sample id, species or genus"),
    ActionSpec("clear_filters", "Show &all specimens", "clear_filters", shortcut="Ctrl+Shift+A",
               tip="Clear the search, the filters and the taxon or map selection", enabled_when="project"),
    ActionSpec("columns", "C&olumns…", "choose_columns", tip="Choose the table's columns (also: right-click a header)"),
    ActionSpec("refresh", "&Refresh", "refresh_all", shortcut="F5", enabled_when="project"),
    ActionSpec("accept", "&Accept call", "review_current", ("accept",), shortcut="Ctrl+Return",
               tip="Confirm the machine call and go to the next specimen needing review",
               enabled_when="acceptable", short="Accept"),
    ActionSpec("override", "&Override call…", "review_current", ("override",), shortcut="Ctrl+E",
               tip="Enter your own names; the machine call is kept", enabled_when="specimen", short="Override"),
    ActionSpec("note", "Add &note…", "review_current", ("annotate",), shortcut="Ctrl+M",
               tip="Attach a note without changing the call", enabled_when="specimen", short="Note"),
    ActionSpec("next_to_review", "Next specimen to &review", "select_next_to_review", shortcut="Ctrl+J",
               tip="The next specimen in the table that is not reviewed yet (or whose call changed)",
               enabled_when="project"),
    ActionSpec("copy_key", "&Copy specimen id", "copy_current_key", shortcut="Ctrl+Shift+C",
               enabled_when="specimen"),
    ActionSpec("filter_taxon", "Show only its &taxon", "filter_to_current_taxon",
               tip="Filter the table to the current specimen's called taxon", enabled_when="specimen"),
    ActionSpec("compute_map", "Compute cluster &map", "compute_cluster_map", shortcut="Ctrl+K",
               tip="Map and cluster the imported barcodes", enabled_when="project", short="Cluster map"),
    ActionSpec("learn_photos", "&Learn photos from barcoded specimens…", "choose_learn_photos",
               tip="Add the photos of specimens whose barcode was identified to your library as photo references",
               enabled_when="learnable"),
    ActionSpec("rematch_photos", "&Re-match photos against the library…", "choose_rematch_photos",
               tip="Match the photos of specimens without a barcode call again against the reference library "
                   "(after Learn photos added the lab's own photo references to it)",
               enabled_when="rematchable"),
    ActionSpec("settings", "&Settings…", "open_settings", shortcut="Ctrl+,", short="Settings"),
    ActionSpec("shortcuts", "&Keyboard shortcuts", "show_shortcuts", shortcut="F1"),
    ActionSpec("about", "&About BIOSCAN Desktop", "show_about"),
)
ACTIONS_BY_ID = {a.id: a for a in ACTIONS}

# Menus in order; "-" is a separator, "@recent" the recent-projects submenu, "@docks" the panels' toggles.
MENUS = (
    ("&File", ("new_project", "open_project", "@recent", "-", "import", "resume_import", "cancel_import", "-",
               "export_csv", "export_dwca", "export_report", "-", "close_project", "quit")),
    ("&View", ("show_table", "show_map", "-", "search", "clear_filters", "columns", "refresh", "-", "@docks")),
    ("&Review", ("accept", "override", "note", "-", "next_to_review", "copy_key", "filter_taxon")),
    ("&Tools", ("compute_map", "learn_photos", "rematch_photos", "settings")),
    ("&Help", ("shortcuts", "about")),
)
TOOLBAR = ("import", "open_project", "export_csv", "-", "accept", "override", "note", "-", "compute_map", "settings")
ROW_MENU = ("accept", "override", "note", "-", "copy_key", "filter_taxon")  # right-click on a table row

# Keys handled by the views rather than by an action (listed in the shortcut help too)
VIEW_KEYS = (
    ("Move between specimens (the detail follows)", "↑ ↓, Page Up/Down, Home/End"),
    ("Save a dialog / cancel it", "Enter / Esc (Shift+Enter: new line in a note)"),
    ("Zoom the photo / fit it", "wheel or + −, 0 or double-click"),
)

SPECIMEN_ACTIONS = frozenset(a.id for a in ACTIONS if a.enabled_when in ("specimen", "acceptable"))


def shortcut_rows() -> list[tuple[str, str]]:
    """(what, keys) for the shortcut help: every action with a shortcut, then the views' keys."""
    return [(a.label, a.shortcut) for a in ACTIONS if a.shortcut] + list(VIEW_KEYS)
