"""EEMUA 191 figures over hand-built alarm event streams."""
from __future__ import annotations

from alerts.health import bad_actors, chattering, flood_now, floods, rate_per_10min, summary
from gwanje.model import Event

S = 10**9
T0 = 1_790_000_000 * S


def raised(t_s: float, aid: str = "a:changwon-1/cnc-1/cnc-101/x", line: str = "cnc-1", state="unack_active",
           event="raised") -> Event:
    return Event("alarm", T0 + int(t_s * S), "changwon-1", line, "cnc-101", aid, {"event": event, "state": state})


def test_rate_per_ten_minutes_per_area():
    evs = [raised(0), raised(599), raised(600), raised(1800, line="cnc-2"),
           raised(5, state="shelved"),  # raised while shelved: not annunciated, not counted
           raised(6, event="acknowledged", state="ack_active")]
    assert rate_per_10min(evs, T0, T0 + 1800 * S + 1) == {
        ("changwon-1", "cnc-1"): [2, 1, 0, 0],
        ("changwon-1", "cnc-2"): [0, 0, 0, 1],
    }


def test_flood_is_more_than_ten_in_ten_minutes():
    ten = [raised(i * 50, aid=f"a{i}") for i in range(10)]  # 10 within 450 s: not a flood
    assert floods(ten) == [] and flood_now(ten, T0 + 500 * S) == {}
    eleven = ten + [raised(500, aid="a10")]  # 11 within 500 s: a flood from t=0 to t=500
    f = floods(eleven)
    assert [(x.line, (x.start - T0) // S, (x.end - T0) // S, x.count) for x in f] == [("cnc-1", 0, 500, 11)]
    assert flood_now(eleven, T0 + 500 * S) == {("changwon-1", "cnc-1"): 11}
    # ten minutes after the first, the window holds only 10 again
    assert flood_now(eleven, T0 + 600 * S) == {}


def test_chattering_is_three_in_a_minute():
    evs = [raised(0, "x"), raised(30, "x"), raised(59, "x"),  # 3 within 59 s
           raised(0, "y"), raised(40, "y"), raised(80, "y")]  # never 3 within 60 s
    assert chattering(evs) == ["x"]


def test_bad_actors_of_the_day():
    evs = [raised(t, "x") for t in (0, 100, 200)] + [raised(t, "y") for t in (0, 50)] + [raised(10, "z")]
    assert bad_actors(evs, T0, T0 + 86_400 * S, top=2) == [("x", 3), ("y", 2)]
    assert summary(evs, T0 + 300 * S, T0)["bad_actors"][0] == ("x", 3)
