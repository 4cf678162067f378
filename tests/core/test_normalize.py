"""Every source is validated the same way: unknown names, wrong types, NaN, absurd times."""
import shutil
from pathlib import Path

import pytest

from gwanje.config import load_config
from gwanje.model import NS_PER_S, BadValue, Quality
from gwanje.normalize import FutureTimestamp, Normalizer, parse_ts

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_795_000_000 * NS_PER_S  # 2026-11-19


@pytest.fixture(scope="module")
def norm():
    return Normalizer(load_config(ROOT / "config", env={}))


def test_good_numeric_text_and_state(norm):
    s = norm.sample("changwon-1", "cnc-1", "cnc-101", "spindle_speed", 1200, 1_795_000_000_123, now=NOW)
    assert s.value == 1200.0 and s.ts == 1_795_000_000_123 * 1_000_000 and s.quality is Quality.GOOD
    lot = norm.sample("changwon-1", "cnc-1", "cnc-101", "lot", "L2611-0042", None, now=NOW)
    assert lot.value == "L2611-0042" and lot.ts == NOW
    assert norm.sample("changwon-1", "cnc-1", "cnc-101", "lot", 42, None, now=NOW).value == "42"
    assert norm.sample("changwon-1", "cnc-1", "cnc-101", "state", True, None, now=NOW).value == 1.0


@pytest.mark.parametrize("args, reason", [
    (("changwon-1", "cnc-1", "cnc-999", "spindle_speed", 1), "unknown_machine"),
    (("창원", "cnc-1", "cnc-101", "spindle_speed", 1), "unknown_machine"),
    (("changwon-1", "cnc-1", "cnc-101", "spindle_sped", 1), "unknown_signal"),
    (("changwon-1", "cnc-1", "cnc-101", "spindle_speed", float("nan")), "nan"),
    (("changwon-1", "cnc-1", "cnc-101", "spindle_speed", float("-inf")), "infinite"),
    (("changwon-1", "cnc-1", "cnc-101", "spindle_speed", "fast"), "text_for_numeric_signal"),
    (("changwon-1", "cnc-1", "cnc-101", "spindle_speed", [1]), "wrong_type:list"),
    (("changwon-1", "cnc-1", "cnc-101", "spindle_speed", 10**400), "number_out_of_range"),
    (("changwon-1", "cnc-1", "cnc-101", "lot", "x" * 1000), "text_too_long"),
    ((None, "cnc-1", "cnc-101", "lot", "x"), "unknown_machine"),
])
def test_rejections_have_reasons(norm, args, reason):
    with pytest.raises(BadValue) as e:
        norm.sample(*args, now=NOW)
    assert str(e.value) == reason


@pytest.mark.parametrize("raw, expected", [
    (1_795_000_000, 1_795_000_000 * NS_PER_S),
    (1_795_000_000.5, 1_795_000_000_500_000_000),
    (1_795_000_000_250, 1_795_000_000_250_000_000),
    (1_795_000_000_250_001, 1_795_000_000_250_001_000),
    (1_795_000_000_250_001_002, 1_795_000_000_250_001_002),
    ("2026-11-19T08:53:20Z", 1_795_078_400 * NS_PER_S),
    ("2026-11-19T17:53:20+09:00", 1_795_078_400 * NS_PER_S),
    ("2026-11-19T08:53:20.25", 1_795_078_400_250_000_000),
])
def test_timestamps(raw, expected):
    assert parse_ts(raw, now=NOW + 10**6 * NS_PER_S) == expected


@pytest.mark.parametrize("raw, reason", [
    ("yesterday", "bad_timestamp"), (True, "bad_timestamp"), (float("nan"), "bad_timestamp"),
    (12, "timestamp_out_of_range"), ((NOW + 2 * 86_400 * NS_PER_S), "timestamp_in_future"), ([1], "bad_timestamp"),
])
def test_bad_timestamps(raw, reason):
    with pytest.raises(BadValue, match=reason):
        parse_ts(raw, now=NOW)


# --------------------------------------------------------------- the clock tolerance
def test_a_source_time_ahead_of_the_clock_by_more_than_the_tolerance_is_rejected(norm):
    # shipped config: clock.future_tolerance_s 30; the collector's clock says NOW
    assert norm.config.system.clock.future_tolerance_s == 30.0
    ms = NOW // 1_000_000
    ok = norm.sample("changwon-1", "cnc-1", "cnc-101", "spindle_speed", 1, ms + 30_000, now=NOW)
    assert ok.ts == NOW + 30 * NS_PER_S  # exactly the tolerance: still accepted
    with pytest.raises(FutureTimestamp, match="^timestamp_in_future$") as e:
        norm.sample("changwon-1", "cnc-1", "cnc-101", "spindle_speed", 1, ms + 30_001, now=NOW)
    assert e.value.ts == NOW + 30_001_000_000 and e.value.now == NOW  # what the offset figure needs
    with pytest.raises(BadValue, match="^timestamp_in_future$"):  # 10 min ahead: the fast PLC clock
        norm.sample("changwon-1", "cnc-1", "cnc-101", "state", 3, ms + 600_000, now=NOW)
    # behind the clock is not limited (store-and-forward gateways send old data)
    assert norm.sample("changwon-1", "cnc-1", "cnc-101", "state", 3, ms - 3_600_000, now=NOW).ts == NOW - 3600 * NS_PER_S


def test_the_tolerance_comes_from_system_yaml(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    with (d / "system.yaml").open("a", encoding="utf-8") as f:
        f.write("\nclock:\n  future_tolerance_s: 5\n")
    n = Normalizer(load_config(d, env={}))
    assert n.sample("changwon-1", "cnc-1", "cnc-101", "state", 3, NOW + 5 * NS_PER_S, now=NOW).ts == NOW + 5 * NS_PER_S
    with pytest.raises(BadValue, match="^timestamp_in_future$"):
        n.sample("changwon-1", "cnc-1", "cnc-101", "state", 3, NOW + 6 * NS_PER_S, now=NOW)
