"""Every label the control room shows, in Korean and English.

Pages never hard-code a label: they call `t(key, lang)`. Names of sites, lines, machines and
signals come from the config (`Names.get(lang)`), not from here. A page another engineer adds
registers its own strings with `add_strings({...})` at import, so this file does not become
everyone's merge conflict.
"""
from __future__ import annotations

from typing import Mapping

LANGS = ("ko", "en")

STRINGS: dict[str, dict[str, str]] = {
    "app_title": {"ko": "관제", "en": "Gwanje"},
    "simulated_plant": {"ko": "모의 데이터", "en": "SIMULATED"},
    "app_subtitle": {"ko": "통합 관제 시스템", "en": "Plant control room"},
    "plant": {"ko": "공장 전체", "en": "Plant"},
    "site": {"ko": "사업장", "en": "Site"},
    "line": {"ko": "라인", "en": "Line"},
    "machine": {"ko": "설비", "en": "Machine"},
    "signal": {"ko": "신호", "en": "Signal"},
    "overview": {"ko": "전체 현황", "en": "Overview"},
    "language": {"ko": "언어", "en": "Language"},
    "kiosk": {"ko": "상황판", "en": "Wall display"},
    "clock": {"ko": "현재 시각", "en": "Time"},
    "last_update": {"ko": "최종 수신", "en": "Last data"},
    "ago_s": {"ko": "{n}초 전", "en": "{n} s ago"},
    "no_data": {"ko": "데이터 없음", "en": "NO DATA"},
    "stale": {"ko": "통신 끊김", "en": "STALE"},
    "age": {"ko": "{n}초", "en": "{n} s"},
    "over_min": {"ko": "{n}분 이상", "en": "> {n} min"},
    "state.running": {"ko": "가동", "en": "Running"},
    "state.idle": {"ko": "대기", "en": "Idle"},
    "state.down": {"ko": "비가동", "en": "Down"},
    "state.setup": {"ko": "준비 교체", "en": "Setup"},
    "state.planned_stop": {"ko": "계획 정지", "en": "Planned stop"},
    "state.unknown": {"ko": "알 수 없음", "en": "Unknown"},
    "unknown_code": {"ko": "미등록 코드 {code}", "en": "unmapped code {code}"},
    "running_of": {"ko": "가동 {running}/{total}대", "en": "{running}/{total} running"},
    "count_total": {"ko": "총", "en": "Total"},
    "count_good": {"ko": "양품", "en": "Good"},
    "count_reject": {"ko": "불량", "en": "Reject"},
    "lot": {"ko": "LOT", "en": "LOT"},
    "state": {"ko": "상태", "en": "State"},
    "data_age": {"ko": "데이터 경과", "en": "Data age"},
    "trends": {"ko": "실시간 추이", "en": "Live trends"},
    "window": {"ko": "조회 구간", "en": "Window"},
    "window.15m": {"ko": "15분", "en": "15 min"},
    "window.1h": {"ko": "1시간", "en": "1 h"},
    "window.8h": {"ko": "8시간", "en": "8 h"},
    "window.24h": {"ko": "24시간", "en": "24 h"},
    "no_samples": {"ko": "이 구간에 데이터가 없습니다", "en": "No data in this window"},
    "not_found": {"ko": "찾을 수 없습니다: {what}", "en": "Not found: {what}"},
    "back_to_plant": {"ko": "공장 전체로", "en": "Back to the plant"},
    "machines": {"ko": "설비", "en": "Machines"},
    "lines": {"ko": "라인", "en": "Lines"},
    "login": {"ko": "로그인", "en": "Sign in"},
    "logout": {"ko": "로그아웃", "en": "Sign out"},
    "username": {"ko": "사용자", "en": "User"},
    "password": {"ko": "비밀번호", "en": "Password"},
    "login_failed": {"ko": "사용자 또는 비밀번호가 틀립니다", "en": "Wrong user or password"},
    "login_throttled": {"ko": "로그인 실패가 너무 많습니다. 잠시 후 다시 시도하세요",
                        "en": "Too many failed attempts: try again in a few minutes"},
    "login_sso": {"ko": "통합 로그인(SSO)", "en": "Sign in with single sign-on"},
    "oidc_failed": {"ko": "통합 로그인이 거부되었습니다", "en": "Single sign-on refused"},
    "not_allowed": {"ko": "권한이 없습니다", "en": "Not allowed for your role"},
    "store_error": {"ko": "저장소 응답 없음", "en": "Storage not answering"},
}


def add_strings(strings: Mapping[str, Mapping[str, str]]) -> None:
    """Register labels of a page added later; every label needs both languages."""
    for key, texts in strings.items():
        missing = [lang for lang in LANGS if not texts.get(lang)]
        if missing:
            raise ValueError(f"i18n string {key!r} lacks {missing}")
        STRINGS[key] = dict(texts)


def normalize_lang(value: object, default: str = "ko") -> str:
    """The language of a request: a URL parameter may hold anything, so only ko|en pass."""
    return value if value in LANGS else (default if default in LANGS else "ko")


def t(key: str, lang: str, **fmt: object) -> str:
    """The label in the language; a missing key shows the key (visible, never a crash)."""
    texts = STRINGS.get(key)
    if texts is None:
        return key
    text = texts.get(lang) or texts["en"]
    return text.format(**fmt) if fmt else text
