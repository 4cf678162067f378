"""A hand-built LOT history (docs/lots.md records), as the engine would have written it:

    forging  SH-P   forge-101  06:00-08:00  good 480 reject 20     -> split into SH-C1, SH-C2
    cnc      SH-C1  cnc-101    09:00-11:00  good 234 reject 6      done (route forging, cnc)
    cnc      SH-C2  cnc-102    09:30-open   good 100 reject 0      in process, ON HOLD (reject spike)
    forging  SH-P2  forge-102  04:00-05:30  good 240 reject 0      waiting for cnc since 05:30
    injection HS-I1 imm-101    06:00-08:00  good 390 reject 10  \\
    injection HS-I2 imm-102    07:00-09:00  good 200 reject 0   -> merged into HS-M
    assembly HS-M   asm-101    10:00-open   good 150 reject 5      in process
    injection HS-I3 imm-103    06:00-10:00  good 400 reject 0      waiting for assembly since 10:00
    injection HS-I4 imm-104    07:00-11:00  good 400 reject 0      waiting for assembly since 11:00

NOW = 12:00 (Seoul, 2026-09-21). An alarm on cnc-101 at 10:00 (during SH-C1's step), spindle
speed samples of cnc-101 during it.

Hand-computed: WIP cnc 1 in process (C2), 1 waiting (P2, 6 h 30 m); assembly 1 in process
(M), 2 waiting (I3 2 h, I4 1 h: mean 1 h 30 m, max 2 h 00 m); forging, injection, press 0/0.
SH-C1 yield 234/240 = 97.5 %, SH-P's 480/500 = 96.0 %."""
from __future__ import annotations

from gwanje.model import NS_PER_S, Event, Sample
from tests.engine.conftest import kst

H = 3600 * NS_PER_S
T0 = kst(2026, 9, 21, 6)
NOW = kst(2026, 9, 21, 12)
FORGE1 = ("changwon-1", "forge-1", "forge-101")
FORGE2 = ("changwon-1", "forge-1", "forge-102")
CNC1 = ("changwon-1", "cnc-1", "cnc-101")
CNC2 = ("changwon-1", "cnc-1", "cnc-102")
IMM = [("changwon-2", "injection-1", f"imm-10{i}") for i in range(1, 5)]
ASM1 = ("changwon-2", "assembly-1", "asm-101")
SHAFT = ["forging", "cnc"]
HOUSING = ["injection", "assembly"]


def step(lot, where, product, process, idx, start, end, good, reject, plan_s):
    return Event("lot_step", start, *where, lot, {
        "lot": lot, "product": product, "process": process, "step": idx, "end_ns": end, "total": good + reject,
        "good": good, "reject": reject, "planned_qty": good + reject, "plan_s": plan_s,
        "counted_ns": end or NOW, "ctr": {}})


def index(lot, where, product, status, process, machine, since, first, good, reject, parents=(), children=(),
          route=SHAFT, steps=1):
    return Event("lot_index", first, *where, lot, {
        "lot": lot, "product": product, "status": status, "process": process, "machine": "/".join(machine),
        "since_ns": since, "first_ns": first, "last_ns": since, "steps": steps, "good": good, "reject": reject,
        "planned_qty": 240, "parents": list(parents), "children": list(children), "route": list(route)})


def link(parent, child, where, ts, kind, pos=0):
    return Event("lot_link", ts + pos, *where, f"{parent}>{child}", {"parent": parent, "child": child, "kind": kind})


HOLD_TS = T0 + 4 * H


def records() -> tuple[list[Event], list[Sample]]:
    ev = [
        step("SH-P", FORGE1, "shaft", "forging", 0, T0, T0 + 2 * H, 480, 20, 6000.0),
        index("SH-P", FORGE1, "shaft", "consumed", "forging", FORGE1, T0 + 3 * H + H // 2, T0, 480, 20,
              children=("SH-C1", "SH-C2")),
        step("SH-C1", CNC1, "shaft", "cnc", 1, T0 + 3 * H, T0 + 5 * H, 234, 6, 10080.0),
        index("SH-C1", CNC1, "shaft", "done", "cnc", CNC1, T0 + 5 * H, T0 + 3 * H, 234, 6, parents=("SH-P",)),
        step("SH-C2", CNC2, "shaft", "cnc", 1, T0 + 3 * H + H // 2, None, 100, 0, 10080.0),
        index("SH-C2", CNC2, "shaft", "in_process", "cnc", CNC2, T0 + 3 * H + H // 2, T0 + 3 * H + H // 2, 100, 0,
              parents=("SH-P",)),
        link("SH-P", "SH-C1", CNC1, T0 + 3 * H, "split"),
        link("SH-P", "SH-C2", CNC2, T0 + 3 * H + H // 2, "split"),
        step("SH-P2", FORGE2, "shaft", "forging", 0, T0 - 2 * H, T0 - H // 2, 240, 0, 2880.0),
        index("SH-P2", FORGE2, "shaft", "waiting", "cnc", FORGE2, T0 - H // 2, T0 - 2 * H, 240, 0),
        step("HS-I1", IMM[0], "housing", "injection", 0, T0, T0 + 2 * H, 390, 10, 11200.0),
        index("HS-I1", IMM[0], "housing", "consumed", "injection", IMM[0], T0 + 4 * H, T0, 390, 10,
              children=("HS-M",), route=HOUSING),
        step("HS-I2", IMM[1], "housing", "injection", 0, T0 + H, T0 + 3 * H, 200, 0, 5600.0),
        index("HS-I2", IMM[1], "housing", "consumed", "injection", IMM[1], T0 + 4 * H, T0 + H, 200, 0,
              children=("HS-M",), route=HOUSING),
        step("HS-M", ASM1, "housing", "assembly", 1, T0 + 4 * H, None, 150, 5, 10000.0),
        index("HS-M", ASM1, "housing", "in_process", "assembly", ASM1, T0 + 4 * H, T0 + 4 * H, 150, 5,
              parents=("HS-I1", "HS-I2"), route=HOUSING),
        link("HS-I1", "HS-M", ASM1, T0 + 4 * H, "merge", 0),
        link("HS-I2", "HS-M", ASM1, T0 + 4 * H, "merge", 1),
        step("HS-I3", IMM[2], "housing", "injection", 0, T0, T0 + 4 * H, 400, 0, 11200.0),
        index("HS-I3", IMM[2], "housing", "waiting", "assembly", IMM[2], T0 + 4 * H, T0, 400, 0, route=HOUSING),
        step("HS-I4", IMM[3], "housing", "injection", 0, T0 + H, T0 + 5 * H, 400, 0, 11200.0),
        index("HS-I4", IMM[3], "housing", "waiting", "assembly", IMM[3], T0 + 5 * H, T0 + H, 400, 0, route=HOUSING),
        Event("lot_hold", HOLD_TS, *CNC2, "SH-C2", {
            "lot": "SH-C2", "reason": "reject_spike", "detail": "rejects 12/80 in 15 min", "step_ns": T0 + 3 * H + H // 2,
            "alarm": None, "priority": None, "total": 80, "reject": 12, "status": "held"}),
        Event("alarm", T0 + 4 * H, *CNC1, "vib.h:changwon-1/cnc-1/cnc-101/vibration", {
            "priority": "high", "state": "unack_active", "event": "raised", "active": True, "value": 7.5,
            "message_ko": "MC 1호기 진동 높음 7.5", "message_en": "Machining center 1 vibration high 7.5"}),
        # an alarm on the same machine after the step: not the step's
        Event("alarm", T0 + 5 * H + H // 2, *CNC1, "vib.h:changwon-1/cnc-1/cnc-101/vibration", {
            "priority": "high", "state": "unack_active", "event": "raised", "active": True, "value": 8.0,
            "message_ko": "나중 알람", "message_en": "later alarm"}),
    ]
    samples = [Sample(*CNC1, "spindle_speed", 8000.0 + i, T0 + 3 * H + i * 60 * NS_PER_S) for i in range(120)]
    samples += [Sample(*CNC1, "lot", "SH-C1", T0 + 3 * H), Sample(*CNC2, "lot", "SH-C2", NOW - 5 * NS_PER_S),
                Sample(*CNC2, "state", 1.0, NOW - 5 * NS_PER_S)]
    return ev, samples
