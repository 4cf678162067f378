"""Alarm-system health per EEMUA 191, as pure functions over stored alarm events.

Only annunciations count: an event "raised" (or "unshelved"/"unsuppressed"/"returned to
service" that brings an alarm back as unacknowledged-active) that left the alarm in state
unack_active. Activations while shelved or suppressed are what those masks are for, so they do
not load the operator. An area is a (site, line).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from gwanje.model import NS_PER_S, Event

TEN_MIN = 600 * NS_PER_S
FLOOD_THRESHOLD = 10  # EEMUA 191: more than 10 alarms in 10 minutes is a flood
CHATTER_WINDOW = 60 * NS_PER_S
CHATTER_COUNT = 3  # 3 or more annunciations of one alarm within a minute


def day_start_ns(now_ns: int, timezone: str) -> int:
    """Local midnight of the plant's day containing now (the "day" of bad actors)."""
    d = datetime.fromtimestamp(now_ns / NS_PER_S, ZoneInfo(timezone)).replace(hour=0, minute=0, second=0,
                                                                              microsecond=0)
    return int(d.timestamp()) * NS_PER_S


def search(events: Sequence[Event], text: str) -> list[Event]:
    """Events whose alarm id, message, user, comment or event name contain text (any case)."""
    q = (text or "").strip().lower()
    if not q:
        return list(events)
    return [e for e in events if q in " ".join([e.key, *(str(e.data.get(k, "")) for k in
                                                        ("message_ko", "message_en", "user", "comment", "event"))]).lower()]


def day_summary(events_of_day: Sequence[Event], now_ns: int, timezone: str) -> dict:
    return summary(events_of_day, now_ns, day_start_ns(now_ns, timezone))


_ANNUNCIATING = ("raised", "unshelved", "shelve_expired", "unsuppressed", "returned_to_service")


def annunciations(events: Iterable[Event]) -> list[Event]:
    out = [e for e in events if e.kind == "alarm" and e.data.get("state") == "unack_active"
           and e.data.get("event") in _ANNUNCIATING]
    out.sort(key=lambda e: e.ts)
    return out


def rate_per_10min(events: Iterable[Event], start_ns: int, end_ns: int) -> dict[tuple[str, str], list[int]]:
    """Annunciations per area in consecutive 10-minute buckets from start_ns (EEMUA 191's
    target: about 1 per 10 minutes per operator in steady operation)."""
    n = max(1, -(-(end_ns - start_ns) // TEN_MIN))
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * n)
    for e in annunciations(events):
        if start_ns <= e.ts < end_ns:
            out[(e.site, e.line)][(e.ts - start_ns) // TEN_MIN] += 1
    return dict(out)


@dataclass(frozen=True)
class Flood:
    site: str
    line: str
    start: int  # first annunciation of the flood
    end: int  # last annunciation of the flood
    count: int


def floods(events: Iterable[Event], window_ns: int = TEN_MIN, threshold: int = FLOOD_THRESHOLD) -> list[Flood]:
    """Periods where an area had more than `threshold` annunciations within any `window_ns`.
    Overlapping windows merge into one flood."""
    by_area: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e in annunciations(events):
        by_area[(e.site, e.line)].append(e.ts)
    out = []
    for (site, line), ts in sorted(by_area.items()):
        cur = None
        lo = 0
        for hi, t in enumerate(ts):
            while t - ts[lo] >= window_ns:
                lo += 1
            if hi - lo + 1 > threshold:
                first = ts[lo]
                if cur is not None and first <= cur[1]:
                    cur = (cur[0], t, cur[2] + 1)
                else:
                    if cur is not None:
                        out.append(Flood(site, line, *cur))
                    cur = (first, t, hi - lo + 1)
        if cur is not None:
            out.append(Flood(site, line, *cur))
    return out


def flood_now(events: Iterable[Event], now_ns: int, window_ns: int = TEN_MIN,
              threshold: int = FLOOD_THRESHOLD) -> dict[tuple[str, str], int]:
    """Areas in flood right now: annunciations in the last window, where above threshold."""
    c = Counter((e.site, e.line) for e in annunciations(events) if now_ns - window_ns < e.ts <= now_ns)
    return {k: v for k, v in c.items() if v > threshold}


def chattering(events: Iterable[Event], window_ns: int = CHATTER_WINDOW, count: int = CHATTER_COUNT) -> list[str]:
    """Alarm ids annunciated `count` or more times within any `window_ns`."""
    by_id: dict[str, list[int]] = defaultdict(list)
    for e in annunciations(events):
        by_id[e.key].append(e.ts)
    out = []
    for aid, ts in by_id.items():
        if any(ts[i + count - 1] - ts[i] < window_ns for i in range(len(ts) - count + 1)):
            out.append(aid)
    return sorted(out)


def bad_actors(events: Iterable[Event], start_ns: int, end_ns: int, top: int = 10) -> list[tuple[str, int]]:
    """The alarms annunciated most often in [start_ns, end_ns), most first (ties by id)."""
    c = Counter(e.key for e in annunciations(events) if start_ns <= e.ts < end_ns)
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def summary(events: Sequence[Event], now_ns: int, day_start_ns: int) -> dict:
    """The figures the alarms page shows, in one JSON-friendly dict."""
    evs = [e for e in events if e.ts < now_ns + 1]
    return {
        "rate_start_ns": day_start_ns,  # buckets of rate are 10 minutes each from here
        "rate": {f"{s}/{ln}": v for (s, ln), v in rate_per_10min(evs, day_start_ns, now_ns).items()},
        "flood_now": {f"{s}/{ln}": v for (s, ln), v in flood_now(evs, now_ns).items()},
        "floods": [f.__dict__ for f in floods(evs)],
        "chattering": chattering([e for e in evs if e.ts >= day_start_ns]),
        "bad_actors": bad_actors(evs, day_start_ns, now_ns + 1),
    }
