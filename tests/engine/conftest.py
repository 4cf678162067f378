"""A small test plant (one site, one CNC line, one press) and a scenario builder that turns
a script of (minutes, state code, parts) segments into 1 Hz samples, as a PLC would send them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from gwanje.config import Config, load_config
from gwanje.model import NS_PER_S, Sample

PLANT = {
    "name": {"ko": "시험공장", "en": "Test plant"},
    "timezone": "Asia/Seoul",
    "machine_classes": {
        "cnc": {
            "name": {"ko": "CNC", "en": "CNC"},
            "state_codes": {"running": [3], "idle": [1, 2], "down": [4], "setup": [5], "planned_stop": [0]},
            "signals": [
                {"id": "state", "name": {"ko": "상태", "en": "State"}, "kind": "state"},
                {"id": "part_count_total", "name": {"ko": "총", "en": "Total"}, "kind": "counter"},
                {"id": "part_count_good", "name": {"ko": "양품", "en": "Good"}, "kind": "counter"},
                {"id": "part_count_reject", "name": {"ko": "불량", "en": "Reject"}, "kind": "counter"},
                {"id": "lot", "name": {"ko": "LOT", "en": "LOT"}, "kind": "text"},
            ],
        },
    },
    "sites": [{
        "id": "s1", "name": {"ko": "1공장", "en": "Site 1"},
        "lines": [
            {"id": "l1", "name": {"ko": "1라인", "en": "Line 1"}, "process": "cnc", "output_machine": "m2",
             "machines": [
                 {"id": "m1", "name": {"ko": "1호기", "en": "M1"}, "class": "cnc", "source": "mqtt", "ideal_cycle_s": 30},
                 {"id": "m2", "name": {"ko": "2호기", "en": "M2"}, "class": "cnc", "source": "mqtt", "ideal_cycle_s": 30},
             ]},
            {"id": "p1", "name": {"ko": "프레스", "en": "Press"}, "process": "press",
             "machines": [
                 {"id": "press", "name": {"ko": "프레스", "en": "Press"}, "class": "cnc", "source": "mqtt",
                  "ideal_cycle_s": 3, "counter_bits": 16},
             ]},
        ],
    }],
}

# one 8 h shift 06:00-14:00 with one 30 min break, every day worked
SHIFTS_8H = {
    "shifts": [{"id": "day", "name": {"ko": "주간", "en": "Day"}, "start": "06:00", "end": "14:00"}],
    "breaks": [{"start": "10:00", "end": "10:30"}],
    "comm_timeout_s": 30,
    "small_stop_s": 300,
    "startup_window_s": 600,
}

SEOUL = ZoneInfo("Asia/Seoul")


def kst(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=SEOUL).timestamp()) * NS_PER_S


def make_config(tmp: Path, shifts: dict | None = SHIFTS_8H, plant: dict = PLANT) -> Config:
    (tmp / "plant.yaml").write_text(yaml.safe_dump(plant, allow_unicode=True), encoding="utf-8")
    if shifts is not None:
        (tmp / "shifts.yaml").write_text(yaml.safe_dump(shifts, allow_unicode=True), encoding="utf-8")
    return load_config(tmp, env={})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@dataclass
class Segment:
    seconds: int
    code: float
    parts: int = 0  # parts made in this segment, spread evenly
    rejects: int = 0  # of which rejects
    silent: bool = False  # no samples at all (communication loss)


@dataclass
class Counters:
    total: int = 0
    good: int = 0
    reject: int = 0


def scenario(machine: tuple[str, str, str], start_ns: int, segments: list[Segment],
             counters: Counters | None = None, bits: int = 32,
             resets_at: frozenset[int] = frozenset()) -> list[Sample]:
    """1 Hz samples (state + three counters) following the script. Counters are cumulative
    PLC registers that wrap at 2**bits; at a second listed in resets_at (seconds since start)
    they restart from zero before counting that second's parts."""
    c = counters or Counters()
    site, line, mach = machine
    out: list[Sample] = []
    t = 0
    mod = 2**bits
    for seg in segments:
        made = rej = 0
        for i in range(seg.seconds):
            if t in resets_at:
                c.total = c.good = c.reject = 0
            # the n-th part of the segment completes at the end of second n*seconds/parts
            want = (i + 1) * seg.parts // seg.seconds if seg.seconds else 0
            while made < want:
                made += 1
                c.total += 1
                # rejects evenly among the segment's parts
                if seg.rejects and made * seg.rejects // seg.parts > rej:
                    rej += 1
                    c.reject += 1
                else:
                    c.good += 1
            ts = start_ns + t * NS_PER_S
            if not seg.silent:
                out.append(Sample(site, line, mach, "state", float(seg.code), ts))
                out.append(Sample(site, line, mach, "part_count_total", float(c.total % mod), ts))
                out.append(Sample(site, line, mach, "part_count_good", float(c.good % mod), ts))
                out.append(Sample(site, line, mach, "part_count_reject", float(c.reject % mod), ts))
            t += 1
    return out


RUN, IDLE, DOWN, SETUP, PLANNED = 3.0, 1.0, 4.0, 5.0, 0.0
MIN = 60


def issue_example() -> list[Segment]:
    """The issue's shift, from 06:00: 8 h with a 30 min break (10:00-10:30), one 45 min
    breakdown, twelve 2 min stops, 720 parts of which 18 rejects."""
    segs = [Segment(60 * MIN, RUN, 120), Segment(45 * MIN, DOWN), Segment(15 * MIN, RUN, 30)]
    for _ in range(12):  # 08:00-10:00: 2 min stop + 8 min running, twelve times
        segs += [Segment(2 * MIN, IDLE), Segment(8 * MIN, RUN, 20)]
    segs += [Segment(30 * MIN, PLANNED), Segment(210 * MIN, RUN, 330, 18)]
    assert sum(s.parts for s in segs) == 720 and sum(s.seconds for s in segs) == 8 * 3600
    return segs
