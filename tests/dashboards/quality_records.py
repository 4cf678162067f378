"""Hand-made quality records (docs/quality.md "Records") for the /quality tests.

NOW = 12:00 Seoul, 2026-09-21. Window: the last 8 h.

bore_dia (imr, spec 24.980 / 25.020), sigma 0.004, CL 25.000, UCL 25.012, LCL 24.988:
  cnc-102: x = 25.000 25.004 24.996 25.000 25.020 at 10:00, 10:10, ... 10:40; the last one rule 1.
    mean 25.004; Cp = 0.040 / (6·0.004) = 1.667; Cpk = min(0.016, 0.024) / 0.012 = 1.333
    overall σ = sqrt(352e-6 / 4) = 0.0093808; Pp = 0.711; Ppk = 0.016 / 0.0281425 = 0.569
  cnc-101: x = 25.000 25.002 at 11:00, 11:10 (newer, no violation): the default machine is
    still cnc-102 (the most recent violation).
part_weight (xbar_r n=5, spec 47.40 / 48.60), imm-101: x̄ = 48.0 48.1 47.9, sigma 0.2, the last
  with rule 9 (R 1.5 > R UCL 1.0): Cp = 1.2/1.2 = 1.00, Cpk = 0.6/0.6 = 1.00 (amber);
  overall σ = 0.1·√5 = 0.22361: Pp = Ppk = 0.894 (red).
burr_height: no points (empty state).

quality_window on cnc-102 at 11:20, 11:30, 11:40, 11:50: anomaly 0.4 0.6 1.3 1.6, risk 0.05 0.10
  0.30 0.42; 11:40's drivers vibration first, 11:50's spindle_load first.
Alarms: anomaly.cnc raised 11:40:30 (drivers of 11:40: vibration), risk.cnc raised 11:50:10
  (risk drivers of 11:50: bore_dia, vibration, spindle_load), spc.bore_dia.r1 raised at 10:40
  (returned at 11:00, acknowledged 11:00:01: state normal), a vib.h alarm (not a quality alarm).
quality_model: anomaly:cnc v3 (1440 windows), risk:cnc v2 AUC 0.87 precision 0.62."""
from __future__ import annotations

from gwanje.model import NS_PER_S, Event
from tests.engine.conftest import kst

M = 60 * NS_PER_S
NOW = kst(2026, 9, 21, 12)
CNC1 = ("changwon-1", "cnc-1", "cnc-101")
CNC2 = ("changwon-1", "cnc-1", "cnc-102")
IMM1 = ("changwon-2", "injection-1", "imm-101")
T_BORE = kst(2026, 9, 21, 10)
BORE_X = (25.000, 25.004, 24.996, 25.000, 25.020)
W_TS = [kst(2026, 9, 21, 11, 20 + 10 * i) for i in range(4)]
ANOMALY_ID = "anomaly.cnc:changwon-1/cnc-1/cnc-102/anomaly"
RISK_ID = "risk.cnc:changwon-1/cnc-1/cnc-102/reject_risk"
SPC_ID = "spc.bore_dia.r1:changwon-1/cnc-1/cnc-102/bore_dia"


def bore(where, ts, x, prev, rules=()):
    return Event("spc_point", ts, *where, "bore_dia", {
        "chart": "imr", "n": 1, "x": x, "r": abs(x - prev) if prev is not None else None, "cl": 25.0, "ucl": 25.012,
        "lcl": 24.988, "r_cl": 0.0045, "r_ucl": 0.0147, "sigma": 0.004, "rules": list(rules), "baseline": False,
        "lot": "SH-C2"})


def weight(ts, x, r, rules=()):
    return Event("spc_point", ts, *IMM1, "part_weight", {
        "chart": "xbar_r", "n": 5, "x": x, "r": r, "cl": 48.0, "ucl": 48.268, "lcl": 47.732, "r_cl": 0.47,
        "r_ucl": 1.0, "sigma": 0.2, "rules": list(rules), "baseline": False, "lot": "HS-I1"})


def window(where, ts, anomaly, drivers, risk, risk_drivers):
    return Event("quality_window", ts, *where, "", {
        "window_s": 60, "running_s": 60, "settled": True, "product": "shaft", "lot": "SH-C2",
        "values": {"vibration": 3.0}, "total": 2, "good": 2, "reject": 0, "anomaly": anomaly,
        "drivers": drivers, "risk": risk, "risk_drivers": risk_drivers, "anomaly_model": 3, "risk_model": 2})


def alarm(aid, where, ts, state, event, raised, priority="medium", msg="quality"):
    rule = aid.split(":", 1)[0]
    return Event("alarm", ts, where[0], where[1], where[2], aid, {
        "id": aid, "rule": rule, "site": where[0], "line": where[1], "machine": where[2], "priority": priority,
        "state": state, "status": state, "event": event, "active": state != "normal", "raised_ts": raised,
        "changed_ts": ts, "message_ko": msg, "message_en": msg})


def records() -> list[Event]:
    ev = []
    prev = None
    for i, x in enumerate(BORE_X):
        ev.append(bore(CNC2, T_BORE + i * 10 * M, x, prev, [1] if i == 4 else []))
        prev = x
    ev += [bore(CNC1, kst(2026, 9, 21, 11), 25.000, None), bore(CNC1, kst(2026, 9, 21, 11, 10), 25.002, 25.0)]
    ev += [weight(kst(2026, 9, 21, 9), 48.0, 0.5), weight(kst(2026, 9, 21, 9, 10), 48.1, 0.6),
           weight(kst(2026, 9, 21, 9, 20), 47.9, 1.5, [9])]
    d_old = [["vibration", 0.5], ["spindle_load", 0.3], ["feed_rate", 0.2]]
    d3 = [["vibration", 0.6], ["spindle_load", 0.3], ["feed_rate", 0.1]]
    d4 = [["spindle_load", 0.55], ["vibration", 0.35], ["feed_rate", 0.1]]
    r_old = [["vibration", 0.6], ["bore_dia", 0.4]]
    r4 = [["bore_dia", 0.5], ["vibration", 0.3], ["spindle_load", 0.15], ["feed_rate", 0.05]]
    for ts, a, d, r, rd in zip(W_TS, (0.4, 0.6, 1.3, 1.6), (d_old, d_old, d3, d4), (0.05, 0.10, 0.30, 0.42),
                               (r_old, r_old, r_old, r4)):
        ev.append(window(CNC2, ts, a, d, r, rd))
    ev += [window(CNC1, W_TS[2], 0.3, d_old, 0.02, r_old), window(CNC1, W_TS[3], 0.35, d_old, 0.03, r_old)]
    ev += [
        alarm(ANOMALY_ID, CNC2, W_TS[2] + 30 * NS_PER_S, "unack_active", "raised", W_TS[2] + 30 * NS_PER_S),
        alarm(RISK_ID, CNC2, W_TS[3] + 10 * NS_PER_S, "unack_active", "raised", W_TS[3] + 10 * NS_PER_S),
        alarm(SPC_ID, CNC2, T_BORE + 40 * M, "unack_active", "raised", T_BORE + 40 * M, priority="high"),
        alarm(SPC_ID, CNC2, kst(2026, 9, 21, 11), "rtn_unack", "returned", T_BORE + 40 * M, priority="high"),
        alarm(SPC_ID, CNC2, kst(2026, 9, 21, 11, 0, 1), "normal", "acknowledged", None, priority="high"),
        alarm("vib.h:changwon-1/cnc-1/cnc-102/vibration", CNC2, W_TS[1], "unack_active", "raised", W_TS[1],
              priority="high", msg="vibration high"),
        Event("quality_model", kst(2026, 9, 21, 6), "_plant", "", "", "anomaly:cnc", {
            "kind": "anomaly", "class": "cnc", "version": 3, "windows": 1440, "train_s": 2.0, "peak_rss_mb": 120,
            "threshold": 1.0, "auc": None, "precision_at_alarm": None, "features": [], "from_ns": 0, "to_ns": 0}),
        Event("quality_model", kst(2026, 9, 21, 5), "_plant", "", "", "risk:cnc", {
            "kind": "risk", "class": "cnc", "version": 1, "windows": 900, "auc": 0.80, "precision_at_alarm": 0.5}),
        Event("quality_model", kst(2026, 9, 21, 7), "_plant", "", "", "risk:cnc", {
            "kind": "risk", "class": "cnc", "version": 2, "windows": 1500, "train_s": 3.0, "peak_rss_mb": 130,
            "threshold": 0.25, "auc": 0.87, "precision_at_alarm": 0.62, "features": [], "from_ns": 0, "to_ns": 0}),
    ]
    return ev
