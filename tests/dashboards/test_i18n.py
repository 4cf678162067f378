"""Every label exists in Korean and English; the language of a URL is ko or en, nothing else."""
from __future__ import annotations

import pytest

from dashboards.i18n import LANGS, STRINGS, add_strings, normalize_lang, t


def test_every_label_has_both_languages_and_they_differ_where_korean_is_written():
    for key, texts in STRINGS.items():
        assert set(texts) == set(LANGS), key
        assert all(texts[lang].strip() for lang in LANGS), key
    assert t("state.running", "ko") == "가동" and t("state.running", "en") == "Running"
    assert t("stale", "ko") + " " + t("age", "ko", n=12) == "통신 끊김 12초"
    assert t("stale", "en") + " " + t("age", "en", n=12) == "STALE 12 s"


def test_language_from_the_url_is_validated():
    assert normalize_lang("en") == "en"
    assert normalize_lang("EN") == "ko"  # exact values only; anything else is the default
    assert normalize_lang(["en", "ko"], "en") == "en"
    assert normalize_lang(None, "ko") == "ko"
    assert normalize_lang("'><script>", "en") == "en"


def test_a_missing_key_shows_the_key_and_pages_can_add_labels():
    assert t("no.such.key", "ko") == "no.such.key"
    with pytest.raises(ValueError, match="lacks"):
        add_strings({"test.half": {"ko": "반쪽"}})
    add_strings({"test.alarms": {"ko": "알람", "en": "Alarms"}})
    try:
        assert t("test.alarms", "en") == "Alarms"
    finally:
        del STRINGS["test.alarms"]
