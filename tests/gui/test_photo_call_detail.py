"""The specimen detail says what a photo's call rests on, in the engine's words (engine.photo_labels)."""
from __future__ import annotations

from engine.photo_labels import DNA_FALLBACK_WHY, OUTSIDE_DOMAIN
from tests.engine.test_photo_call_words import _photo_calls, _write_project


def test_the_detail_shows_the_dna_fallback_and_the_outside_domain_reason_in_plain_words(qtbot, tmp_path):
    from bioscan_desktop.views.specimen_detail import SpecimenDetailView

    view = SpecimenDetailView()
    qtbot.addWidget(view)
    view.show()
    shown = {}
    with _write_project(tmp_path / "p.bioscan.db", _photo_calls()) as project:
        for key in ("outside", "fallback", "coarse"):
            view.show_detail(project.specimen(key))
            shown[key] = view.status.text()
    assert f"Photo matched against DNA references ({DNA_FALLBACK_WHY})" in shown["fallback"]
    assert OUTSIDE_DOMAIN.replace("'", "&#x27;") not in shown["fallback"] and "uncalled" not in shown["fallback"]
    for key in ("outside", "coarse"):  # the reason, escaped as the label's rich text shows it
        assert f"ranks left uncalled: {OUTSIDE_DOMAIN.replace(chr(39), '&#x27;')}" in shown[key]
    assert "DNA references" in shown["outside"] and "Photo matched against photo references" in shown["coarse"]
