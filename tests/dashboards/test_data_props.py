"""Properties of the overview's view model over arbitrary store contents."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards.data import build_snapshot
from gwanje.config import load_config
from gwanje.model import NS_PER_S, MachineState, Quality, Sample
from tests.dashboards.conftest import REPO

CFG = load_config(REPO / "config", env={})
KEYS = [m.key for m in CFG.machines()] + [("elsewhere", "x", "y")]
SIGNALS = ["state", "part_count_total", "lot", "spindle_speed", "tonnage", "nonsense"]
NOW = 1_700_000_000 * NS_PER_S

values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                   st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 11.0, 20.0, 30.0, 40.0, 50.0]))
samples = st.lists(st.builds(
    lambda key, sig, v, age_ms, q: Sample(*key, sig, v, NOW - age_ms * 1_000_000, q),
    st.sampled_from(KEYS), st.sampled_from(SIGNALS), values,
    st.integers(min_value=-5_000, max_value=3_600_000), st.sampled_from(list(Quality))), max_size=60)


@settings(max_examples=150, deadline=None)
@given(samples)
def test_snapshot_is_total_and_never_shows_a_state_for_silent_machines(batch):
    snap = build_snapshot(CFG, batch, NOW)
    assert len(snap.machines) == 36
    stale_after = CFG.plant.stale_after_s
    for v in snap.machines.values():
        mine = [s for s in batch if (s.site, s.line, s.machine) == (v.site, v.line, v.machine)]
        if not mine:
            assert v.stale and v.last_ts is None
            continue
        assert v.last_ts == max(s.ts for s in mine)
        assert v.stale == (v.age_s > stale_after)
        if v.stale:
            assert v.state is MachineState.UNKNOWN
    assert sum(lv.running for sv in snap.sites for lv in sv.lines) == sum(
        1 for v in snap.machines.values() if v.state is MachineState.RUNNING)
