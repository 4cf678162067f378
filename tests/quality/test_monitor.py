"""The quality monitor on hand-made samples: SPC baseline, limits and rule alarms through the
alarm service's lifecycle (a real DuckDB store), feature windows and their parts."""
import pytest

from alerts.service import AlarmService
from gwanje.config import load_config
from gwanje.model import NS_PER_S, Sample
from gwanje.quality import QualityMonitor, load_quality
from storage.embedded import EmbeddedStore

T0 = 1_764_000_000 * NS_PER_S - (1_764_000_000 * NS_PER_S) % (60 * NS_PER_S)  # a minute start
SITE, LINE, MC = "changwon-1", "cnc-1", "cnc-101"
RUN = 3.0  # the cnc class's running code


@pytest.fixture(scope="module")
def config():
    return load_config("config")


def imr_quality(config):
    """The demo's quality.yaml with bore_dia on an I-MR chart of 30 points, every rule's
    alarm on (priorities as the shipped file gives them, the others low)."""
    import copy

    from gwanje.quality import QualityDef

    raw = copy.deepcopy(config.raw_extra["quality"])
    c = next(c for c in raw["characteristics"] if c["id"] == "bore_dia")
    c.update(chart="imr", baseline=30)
    c.pop("subgroup", None)
    raw["spc"]["rules"] = {k: (p if p != "off" else "low") for k, p in raw["spc"]["rules"].items()}
    raw["spc"]["rules"][4] = raw["spc"]["rules"][7] = "off"  # the test's alternating baseline
    return QualityDef.model_validate(raw)


def s(sig, v, t):
    return Sample(SITE, LINE, MC, sig, v, t)


def feed_gauge(mon, values, t0, state=RUN):
    out = []
    for i, v in enumerate(values):
        t = t0 + i * NS_PER_S
        out += mon.on_samples([s("state", state, t), s("bore_dia", v, t)])
    return out


def test_spc_baseline_limits_rule_alarms_and_their_lifecycle(config, tmp_path):
    kept = {}
    mon = QualityMonitor(config, imr_quality(config), on_limits=lambda c, k, lim: kept.update({(c, k): lim}))
    # baseline (imr, 30 points): 25.000 and 25.002 alternating; a repeated reading is the
    # same part (not a point), a reading while not running is no point either
    base = [25.000, 25.002] * 15
    ev = feed_gauge(mon, base[:10], T0)
    ev += feed_gauge(mon, [25.002], T0 + 10 * NS_PER_S)  # repeats the 10th reading
    ev += feed_gauge(mon, [25.4], T0 + 11 * NS_PER_S, state=1.0)  # idle: not measured
    ev += feed_gauge(mon, base[10:], T0 + 12 * NS_PER_S)
    pts = [e for e in ev if e.kind == "spc_point"]
    assert len(pts) == 30 and all(p.data["baseline"] for p in pts)
    lim_ev = [e for e in ev if e.kind == "spc_limits"]
    assert len(lim_ev) == 1 and lim_ev[0].key == "bore_dia"
    # by hand: mean 25.001, MRbar 0.002 (the idle 25.4 reset the gauge's last value, not the
    # moving range: the next reading 25.000 differs from 25.002 by 0.002 as well)
    lim = kept[("bore_dia", (SITE, LINE, MC))]
    assert lim.cl == pytest.approx(25.001) and lim.r_cl == pytest.approx(0.002)
    sigma = 0.002 / 1.128
    assert lim.ucl == pytest.approx(25.001 + 3 * sigma)
    assert mon.take_calls() == []
    # a point beyond UCL (25.0063): rule 1 (high) and its moving range 0.008 > 3.267*0.002: rule 9 (low)
    t = T0 + 100 * NS_PER_S
    ev = feed_gauge(mon, [25.010], t)
    p = [e for e in ev if e.kind == "spc_point"][0]
    assert p.data["rules"] == [1, 9] and p.data["baseline"] is False and p.data["ucl"] == pytest.approx(lim.ucl)
    calls = mon.take_calls()
    assert [(c.rule, c.action, c.priority) for c in calls] == [("spc.bore_dia.r1", "activate", "high"),
                                                                 ("spc.bore_dia.r9", "activate", "low")]
    assert calls[0].alarm_id == f"spc.bore_dia.r1:{SITE}/{LINE}/{MC}/bore_dia"
    # through the alarm service: a real alarm the operator acknowledges
    store = EmbeddedStore(tmp_path / "q.duckdb")
    svc = AlarmService(config, store)
    events = svc.apply_calls(calls)
    store.write_events(events)
    a = svc.get(calls[0].alarm_id)
    assert a is not None and a.status.value == "unack_active" and a.priority == "high"
    assert "SPC" in a.message_en and "beyond 3σ" in a.message_en
    svc.acknowledge(calls[0].alarm_id, "kim")
    assert svc.get(calls[0].alarm_id).status.value == "ack_active"
    # ten normal points (clear_after 10) return rule 1; nine do not. The first of them has a
    # moving range of 0.010 from the spike (rule 9 again): rule 9 returns one point later
    ev = feed_gauge(mon, [25.000, 25.002] * 4 + [25.000], t + NS_PER_S)
    assert mon.take_calls() == []
    ev = feed_gauge(mon, [25.002], t + 20 * NS_PER_S)
    calls = mon.take_calls()
    assert [(c.rule, c.action) for c in calls] == [("spc.bore_dia.r1", "clear")]
    feed_gauge(mon, [25.000], t + 21 * NS_PER_S)
    assert [(c.rule, c.action) for c in mon.take_calls()] == [("spc.bore_dia.r9", "clear")]
    svc.apply_calls(calls)
    assert svc.get(calls[0].alarm_id) is None or svc.get(calls[0].alarm_id).is_normal


def test_kept_limits_are_used_after_a_restart(config):
    q = imr_quality(config)
    kept = {}
    mon = QualityMonitor(config, q, on_limits=lambda c, k, lim: kept.update({"/".join(k): lim.to_dict()}))
    feed_gauge(mon, [25.000, 25.002] * 15, T0)
    mon2 = QualityMonitor(config, q, limits={("bore_dia", p): d for p, d in kept.items()})
    ev = feed_gauge(mon2, [25.001, 25.010], T0)
    pts = [e for e in ev if e.kind == "spc_point"]
    assert [p.data["baseline"] for p in pts] == [False, False] and pts[1].data["rules"] == [1, 9]


def test_a_window_has_the_running_means_and_the_parts(config):
    mon = QualityMonitor(config, load_quality(config))
    ev = []
    for i in range(60):  # one minute: running, load 40..99 (mean 69.5), a part every 20 s
        t = T0 + i * NS_PER_S
        ev += mon.on_samples([s("state", RUN, t), s("spindle_load", 40.0 + i, t), s("vibration", 2.0, t),
                              s("part_count_total", float(100 + i // 20), t),
                              s("part_count_reject", float(i // 40), t), s("lot", "SH-1", t),
                              s("lot_product", "shaft", t), s("spindle_speed", "fast", t)])
    assert [e for e in ev if e.kind == "quality_window"] == []
    ev = mon.on_samples([s("state", RUN, T0 + 60 * NS_PER_S)])
    w = [e for e in ev if e.kind == "quality_window"]
    assert len(w) == 1 and w[0].ts == T0
    d = w[0].data
    assert d["values"]["spindle_load"] == pytest.approx(69.5) and d["values"]["vibration"] == 2.0
    assert "spindle_speed" not in d["values"]  # text for a number: rejected and counted
    assert mon.rejects.counts().get("not_a_number") == 60
    assert (d["total"], d["reject"]) == (2, 1) and d["lot"] == "SH-1" and d["product"] == "shaft"
    assert d["settled"] is False and d["anomaly"] is None and d["running_s"] == 60.0
