"""The warm start's swap through the runtime (Runtime.start_collect, a real mosquitto, the real
store): the store already holds the first hours of the running shift (raw samples and the
records the previous collect wrote), collect starts and the devices keep publishing their
counter readings over MQTT at QoS 1 while Engine.rebuild reads that history in its own thread;
Engine.adopt then swaps the rebuilt state in. Afterwards the shift so far, as the engine holds
it (Engine.snapshot: the OEE alarm rules, alerts.service.engine_oee) and as the control room
computes it from the stored records (dashboards.components.oee: Engine.from_records over the
state and counts records), equals the hand-computed figures: every part once, the running
time since the shift start. Twice: the devices publish on after the swap, and they fall
silent before the rebuild is done (the ticker must swap then, within a bounded time).

The rebuild overlaps the live data because the history is big (three machines, 4 h of state
and counters at 1 Hz and a spindle load at 10 Hz), not through a hook; each test checks that
the overlap really happened."""
from __future__ import annotations

import copy
import json
import logging
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gwanje.config import Secrets, load_config
from gwanje.engine import Engine
from gwanje.model import NS_PER_S, Sample
from gwanje.oee import MINUTE_NS
from tests.engine.conftest import PLANT
from tests.fixtures.common import free_port, wait_for

pytestmark = pytest.mark.services

S = NS_PER_S
MACHINES = [("s1", "l1", "m1"), ("s1", "l1", "m2"), ("s1", "p1", "press")]
CYCLE_S, REJECT_EVERY_S = 3, 90  # a part every 3 s, a reject every 90 s of running
HISTORY_H = 4.0  # of the shift, before the restart
DOWN_AFTER_S, DOWN_S = 1800, 600  # m2 breaks down 30 min into the shift, for 10 min
IDLE_AFTER_S, IDLE_S = 20, 20  # m1 stops shortly 20 s after the restart
BACKLOG_S = 90  # the gateway buffered this long while collect was down: it sends it first
COMM_TIMEOUT_S = 30
TZ = "Asia/Seoul"


def plant() -> dict:
    p = copy.deepcopy(PLANT)
    p["machine_classes"]["cnc"]["signals"].append(
        {"id": "spindle_load", "name": {"ko": "주축 부하", "en": "Spindle load"}, "unit": "%"})
    for site in p["sites"]:
        for ln in site["lines"]:
            for m in ln["machines"]:
                m["ideal_cycle_s"] = 2.5
    return p


class Plant:
    """The devices' truth: state and cumulative counters as functions of (whole-second) time.
    Every machine runs since before the shift; m2 broke down 30 min into it for 10 min, m1 has
    a short stop (idle) 20 s after the restart, while the rebuild still reads."""

    def __init__(self, shift_start: int, restart: int) -> None:
        self.shift_start = shift_start
        self.base = shift_start - 15 * 60 * S
        self.stops = {"m2": (shift_start + DOWN_AFTER_S * S, DOWN_S * S, 4.0),
                      "m1": (restart + IDLE_AFTER_S * S, IDLE_S * S, 1.0)}

    def code(self, machine: str, ts: int) -> float:
        a, n, code = self.stops.get(machine, (0, 0, 3.0))
        return code if a <= ts < a + n else 3.0

    def running_s(self, machine: str, ts: int) -> int:
        """Seconds of running in [base, ts]."""
        run = (ts - self.base) // S + 1
        if machine in self.stops:
            a, n, _ = self.stops[machine]
            run -= max(0, min(ts + S, a + n) - a) // S if ts >= a else 0
        return run

    def counters(self, machine: str, ts: int) -> tuple[int, int, int]:
        r = self.running_s(machine, ts)
        total, reject = r // CYCLE_S, r // REJECT_EVERY_S
        return total, total - reject, reject

    def reading(self, machine: tuple[str, str, str], ts: int) -> list[Sample]:
        total, good, reject = self.counters(machine[2], ts)
        return [Sample(*machine, "state", self.code(machine[2], ts), ts),
                Sample(*machine, "part_count_total", float(total), ts),
                Sample(*machine, "part_count_good", float(good), ts),
                Sample(*machine, "part_count_reject", float(reject), ts)]

    def history(self, machine: tuple[str, str, str], until: int) -> list[Sample]:
        out = []
        for ts in range(self.base, until + 1, S):
            out += self.reading(machine, ts)
            out += [Sample(*machine, "spindle_load", 40.0 + k, ts + k * S // 10) for k in range(10)]
        return out

    def shift_parts(self, machine: str, upto: int) -> tuple[int, int]:
        """(total, good) of the readings in [shift start, upto]: the deltas from the reading
        just before the shift."""
        t1, g1, _ = self.counters(machine, upto)
        t0, g0, _ = self.counters(machine, self.shift_start - S)
        return t1 - t0, g1 - g0

    def shift_times(self, machine: str, until: int) -> tuple[float, float, float]:
        """(running, small stop, breakdown) seconds in [shift start, until)."""
        stopped = 0
        if machine in self.stops:
            a, n, _ = self.stops[machine]
            stopped = max(0, min(until, a + n) - max(a, self.shift_start)) // S
        running = (until - self.shift_start) // S - stopped
        small = stopped if machine == "m1" else 0
        return float(running), float(small), float(stopped - small)


def shift_around_now() -> tuple[dict, int]:
    """A 9 h shift that began HISTORY_H + 30 min ago (local time, whole minutes)."""
    tz = ZoneInfo(TZ)
    start = (datetime.now(tz) - timedelta(hours=HISTORY_H, minutes=30)).replace(second=0, microsecond=0)
    end = start + timedelta(hours=9)
    shifts = {"shifts": [{"id": "day", "name": {"ko": "주간", "en": "Day"},
                          "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}],
              "comm_timeout_s": COMM_TIMEOUT_S, "small_stop_s": 300, "startup_window_s": 600}
    return shifts, int(start.timestamp()) * S


def write_config(tmp: Path, mqtt_url: str, storage: dict) -> tuple[Path, int]:
    d = tmp / "config"
    d.mkdir()
    shifts, start = shift_around_now()
    (d / "plant.yaml").write_text(yaml.safe_dump(plant(), allow_unicode=True), encoding="utf-8")
    (d / "shifts.yaml").write_text(yaml.safe_dump(shifts, allow_unicode=True), encoding="utf-8")
    (d / "system.yaml").write_text(yaml.safe_dump({
        "mqtt": {"url": mqtt_url, "client_id": f"gwanje-swap-{free_port()}"},
        "storage": storage, "opcua": {"endpoints": []}}), encoding="utf-8")
    return d, start


def prefill(store, config, pl: Plant, until: int) -> None:
    """What the previous collect left: the raw samples, and the records its engine wrote."""
    prev = Engine(config, clock=lambda: until)
    for m in MACHINES:
        samples = sorted(pl.history(m, until), key=lambda s: s.ts)
        for i in range(0, len(samples), 20_000):
            batch = samples[i:i + 20_000]
            store.write_samples(batch)
            store.write_events(prev.on_samples(batch))


class Device:
    """The three machines' gateway: one JSON message per machine and second at QoS 1, from
    the second after the restart on (what it buffered first, at once, then live), until stopped."""

    def __init__(self, port: int, pl: Plant, first: int) -> None:
        self.pl, self.next_ts, self.last_ts = pl, first, None
        self.sent = self.acked = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"device-swap-{port}-{free_port()}")
        c.max_queued_messages_set(0)
        c.on_publish = self._on_publish
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        self._thread = threading.Thread(target=self._run, name="device", daemon=True)

    def _on_publish(self, *a) -> None:
        with self._lock:
            self.acked += 1

    def start(self) -> "Device":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            while self.next_ts <= time.time_ns() and not self._stop.is_set():
                ts = self.next_ts
                for m in MACHINES:
                    payload = [{"signal": s.signal, "value": s.value, "ts": s.ts} for s in self.pl.reading(m, ts)]
                    self.client.publish(f"gwanje/{'/'.join(m)}", json.dumps(payload), qos=1)
                    self.sent += 1
                self.last_ts, self.next_ts = ts, ts + S
            self._stop.wait(0.05)

    def stop(self) -> int:
        """Stop publishing once every message was acknowledged; the last reading's time."""
        self._stop.set()
        self._thread.join(5)
        assert wait_for(lambda: self.acked >= self.sent, 15), (self.acked, self.sent)
        self.client.disconnect()
        self.client.loop_stop()
        return self.last_ts


class RebuildWatch(logging.Handler):
    """When the rebuild ended (its log line, in the rebuild thread) and how many samples the
    pipeline had taken in by then: proof that live data flowed during the rebuild."""

    def __init__(self, rt) -> None:
        super().__init__()
        self.rt, self.done_at, self.samples_in = rt, None, None

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("engine warm start: the running shift read"):
            self.samples_in = self.rt.pipeline.stats()["samples_in"]
            self.done_at = time.monotonic()


def ui_figures(rt, start: int, now: int, last_seen: dict) -> dict:
    """The running shift as the OEE page loads it (dashboards.components.oee._load)."""
    store, eng = rt.store, rt.engine
    end = start + 9 * 3600 * S
    states = store.events("state", start - 12 * 3600 * S, end, "s1", None, limit=200_000)
    counts = store.events("counts", start, end, "s1", None, limit=200_000)
    snap = eng.from_records(states, counts, start, end, now, last_seen)
    return figures(snap)


def figures(snap) -> dict:
    return {k[2]: (r.total, r.good, r.running_s, r.small_stop_s, r.breakdown_s) for k, r in snap.machines.items()}


def expected(pl: Plant, upto: int, until: int) -> dict:
    return {m[2]: (*pl.shift_parts(m[2], upto), *pl.shift_times(m[2], until)) for m in MACHINES}


def run_swap(tmp_path: Path, mqtt, storage: dict, open_store, silent_before_swap: bool) -> None:
    from runtime.process import Runtime

    cfg_dir, start = write_config(tmp_path, mqtt.url, storage)
    config = load_config(cfg_dir, env={})
    # collect went down BACKLOG_S ago (the gateway kept what it could not deliver meanwhile)
    restart = time.time_ns() // S * S - BACKLOG_S * S
    pl = Plant(start, restart)
    assert restart - start > HISTORY_H * 3600 * S
    store = open_store(config)
    prefill(store, config, pl, restart)
    store.close()

    rt = Runtime(config, tmp_path / "data", Secrets.from_env({}))
    watch = RebuildWatch(rt)
    glog = logging.getLogger("gwanje")
    level = glog.level
    glog.setLevel(logging.INFO)
    glog.addHandler(watch)
    dev = None
    try:
        rt.start_collect()
        # each batch is stored before the engine sees the next until the warm start is in
        # place (what it rebuilds from the store is all the engine saw); then writes overlap
        assert rt.pipeline.overlap is False
        assert wait_for(lambda: all(c.status().subscribed for c in rt.collectors), 20), rt.status()["sources"]
        dev = Device(mqtt.port, pl, restart + S).start()
        if silent_before_swap:
            # the backlog and a few seconds of live data, then silence while the rebuild still reads
            assert wait_for(lambda: rt.pipeline.stats()["samples_written"] >= 3 * 4 * (BACKLOG_S + 3), 20)
            last = dev.stop()
            silent_at = time.monotonic()
            assert wait_for(lambda: rt.pipeline.stats()["samples_written"] == dev.sent * 4, 10)
            assert watch.done_at is None or watch.done_at > silent_at, \
                "the rebuild ended before the devices fell silent: make the history bigger"
            # the swap happens although nothing comes any more (bounded: the ticker's quiet time)
            assert wait_for(lambda: rt.restore_pending() == [], 60), (rt.restore_pending(), rt.status())
        else:
            assert wait_for(lambda: rt.restore_pending() == [], 120), rt.status()
            # live samples were stored before the rebuild ended: it overlapped the live flow
            assert watch.samples_in and watch.samples_in >= 3 * 4 * BACKLOG_S, watch.samples_in
            n = dev.sent
            assert wait_for(lambda: dev.sent >= n + 3 * 5, 20)  # and on after the swap
            last = dev.stop()
        published = dev.sent * 4
        assert wait_for(lambda: rt.pipeline.stats()["samples_written"] == published, 20), rt.pipeline.stats()
        assert rt.pipeline.overlap is True

        # the engine's shift so far, just after the last reading (what the OEE rules read)
        now = last + S
        snap = rt.engine.snapshot(now)
        assert snap.shift is not None and snap.start_ns == start
        got = figures(snap)
        assert got == expected(pl, last, now), (got, expected(pl, last, now), restart, last)

        # the control room's figures from the stored records, up to the last complete minute
        minute = last - last % MINUTE_NS
        want = expected(pl, minute - S, minute)
        seen = {k: last for k in MACHINES}
        ui = wait_for(lambda: (lambda g: g if g == want else None)(ui_figures(rt, start, minute, seen)), 20)
        assert ui == want, (ui_figures(rt, start, minute, seen), want, restart, last)
    finally:
        glog.removeHandler(watch)
        glog.setLevel(level)
        if dev is not None and not dev._stop.is_set():
            dev.stop()
        rt.stop()


def _embedded(tmp_path: Path):
    from storage.embedded import EmbeddedStore

    return lambda config: EmbeddedStore(tmp_path / "data" / config.system.storage.embedded_file)


def test_embedded_swap_while_the_devices_publish_counts_every_part_once(mosquitto, tmp_path):
    (tmp_path / "data").mkdir()
    run_swap(tmp_path, mosquitto, {"kind": "embedded"}, _embedded(tmp_path), silent_before_swap=False)


def test_embedded_swap_when_the_devices_fall_silent_during_the_rebuild(mosquitto, tmp_path):
    (tmp_path / "data").mkdir()
    run_swap(tmp_path, mosquitto, {"kind": "embedded"}, _embedded(tmp_path), silent_before_swap=True)


def test_influxdb_swap_while_the_devices_publish_counts_every_part_once(mosquitto, influxd, tmp_path):
    from storage.influx import InfluxStore

    db = f"warm_swap_{free_port()}"
    run_swap(tmp_path, mosquitto, {"kind": "influxdb", "influxdb": {"url": influxd.url, "database": db}},
             lambda config: InfluxStore(influxd.url, db), silent_before_swap=False)


def test_a_first_start_on_an_empty_store_records_the_state_each_machine_is_in(mosquitto, tmp_path):
    """Nothing stored yet (a new plant, a new data dir): the warm start finds no history, and
    the state each machine is in since its first sample must still be recorded — else the
    control room (which reads the records) shows no OEE until the machine changes state."""
    from runtime.process import Runtime

    (tmp_path / "data").mkdir()
    cfg_dir, start = write_config(tmp_path, mosquitto.url, {"kind": "embedded"})
    config = load_config(cfg_dir, env={})
    first = time.time_ns() // S * S
    pl = Plant(start, first)
    rt = Runtime(config, tmp_path / "data", Secrets.from_env({}))
    dev = None
    try:
        rt.start_collect()
        assert wait_for(lambda: all(c.status().subscribed for c in rt.collectors), 20), rt.status()["sources"]
        dev = Device(mosquitto.port, pl, first).start()
        assert wait_for(lambda: rt.restore_pending() == [], 60), rt.status()
        assert wait_for(lambda: dev.sent >= 3 * 5, 20)
        last = dev.stop()
        assert wait_for(lambda: rt.pipeline.stats()["samples_written"] == dev.sent * 4, 20)

        def open_records():
            recs = rt.store.events("state", first - 3600 * S, last + S, "s1", None, limit=10_000)
            return {(e.line, e.machine): e for e in recs if e.data.get("end_ns") is None}
        recs = wait_for(lambda: (lambda r: r if len(r) == len(MACHINES) else None)(open_records()), 20)
        assert recs, open_records()
        for (line, machine), e in recs.items():
            # the interval the machine is in, known from its first sample on
            assert first <= e.ts <= last, (machine, e.ts, first, last)
            assert e.data["state"] == {3.0: "running", 1.0: "idle", 4.0: "down"}[pl.code(machine, last)], e
        ui = ui_figures(rt, start, last + S, {k: last for k in MACHINES})
        running = [m for m in MACHINES if ui[m[2]][2] > 0]
        assert running, ui  # the control room sees running time, not "–"
    finally:
        if dev is not None and not dev._stop.is_set():
            dev.stop()
        rt.stop()
