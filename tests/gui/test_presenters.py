"""The Qt-free rules behind the views: which rows need review, how scores are written, the shortcut list."""
from __future__ import annotations

from bioscan_desktop.actions import ACTIONS, VIEW_KEYS, shortcut_rows
from bioscan_desktop.presenters import (
    identity_text, match_scores_note, needs_review, next_row_to_review, similarity_text,
)


def test_needs_review_is_an_unreviewed_or_changed_call():
    assert needs_review({"status": "ok", "review": ""})
    assert needs_review({"status": "novel", "review": "stale"})  # accepted, then a new import changed it
    assert not needs_review({"status": "ok", "review": "accepted"})
    assert not needs_review({"status": "ok", "review": "overridden"})
    assert not needs_review({"status": "error", "review": ""})  # nothing to accept
    assert not needs_review({"status": "pending", "review": None})


def test_next_row_to_review_scans_forward_from_the_start_row():
    rows = [{"status": "ok", "review": ""}, {"status": "error", "review": ""},
            {"status": "ok", "review": "accepted"}, {"status": "novel", "review": ""}, None]
    row_at = lambda i: rows[i]  # noqa: E731
    assert next_row_to_review(row_at, 0, len(rows)) == 0
    assert next_row_to_review(row_at, 1, len(rows)) == 3
    assert next_row_to_review(row_at, 4, len(rows)) is None
    assert next_row_to_review(row_at, -5, len(rows)) == 0


def test_identity_reads_as_percent_and_similarity_never_does():
    assert identity_text(0.9873) == "98.7%" and identity_text(None) == ""
    assert similarity_text(0.8012) == "0.80" and "%" not in similarity_text(0.8)
    assert "keeps no sequences" in match_scores_note(False) and "not a percent" in match_scores_note(False)
    assert "identity" in match_scores_note(True)


def test_shortcut_help_lists_every_action_shortcut_then_the_view_keys():
    rows = shortcut_rows()
    assert rows[:len(rows) - len(VIEW_KEYS)] == [(a.label, a.shortcut) for a in ACTIONS if a.shortcut]
    assert all("&" not in what and "…" not in what for what, _ in rows)
