"""Store-and-forward in the pipeline: a real EmbeddedStore behind a fault switch, a real spool
in a tmp dir. Nothing lost, replay in order, every batch seen by the listeners once."""
import threading
import time

import pytest

from gwanje.model import Sample
from runtime.pipeline import SPOOL_ALARM_KEY, Pipeline
from storage.spool import Spool
from tests.faults.flaky import FlakyStore
from tests.fixtures.common import wait_for

T0 = 1_732_400_000_000_000_000
END = T0 + 10**15


def samples(n: int, start: int = 0) -> list[Sample]:
    return [Sample("changwon", "cnc", "cnc-01", "spindle_speed", float(i), T0 + i * 1000)
            for i in range(start, start + n)]


class Seen:
    """A listener that counts how often it saw each sample."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, batch):
        with self.lock:
            self.ts.extend(s.ts for s in batch)
        return None


def make(tmp_path, store, max_bytes=50_000_000, policy="drop_oldest", **kw):
    seen = Seen()
    p = Pipeline(store, batch_size=kw.pop("batch_size", 100), flush_interval_s=0.05,
                 listeners=[seen], retry_interval_s=0.1,
                 spool=Spool(tmp_path / "spool", max_bytes, policy, fsync=False), **kw)
    return p, seen


def test_outage_goes_to_the_spool_and_drains_in_order(tmp_path):
    store = FlakyStore()
    p, seen = make(tmp_path, store)
    p.start()
    p.submit(samples(300, 0))
    assert wait_for(lambda: store.count_samples(T0, END) == 300)
    store.down = True
    for k in range(10):  # 1,000 samples while the store is down
        p.submit(samples(100, 300 + 100 * k))
    assert wait_for(lambda: p.stats()["spool_samples"] == 1000)
    assert store.count_samples(T0, END) == 300
    store.down = False
    assert wait_for(lambda: store.count_samples(T0, END) == 1300)
    assert wait_for(lambda: p.stats()["spool_samples"] == 0)
    p.stop()
    st = p.stats()
    assert st["samples_in"] == 1300 and st["samples_dropped"] == 0
    assert st["samples_replayed"] == 1000
    # the outage came back oldest first
    replayed = [t for t in store.written_ts if t >= T0 + 300 * 1000]
    assert replayed == sorted(replayed)
    assert sorted(seen.ts) == [s.ts for s in samples(1300)]  # each sample seen once


def test_a_spool_left_by_a_previous_run_is_replayed_on_start(tmp_path):
    down = FlakyStore()
    down.down = True
    p1, seen1 = make(tmp_path, down)
    p1.start()
    p1.submit(samples(500))
    p1.stop()
    assert p1.stats()["spool_samples"] == 500
    p1.spool.close()

    store = FlakyStore()
    p2, seen2 = make(tmp_path, store)
    assert p2.stats()["spool_samples"] == 500
    p2.start()
    assert wait_for(lambda: store.count_samples(T0, END) == 500)
    p2.stop()
    assert len(seen1.ts) == 500 and seen2.ts == []  # seen by the run that received them


def test_a_full_queue_spills_to_the_spool_instead_of_dropping(tmp_path):
    store = FlakyStore()
    store.gate.clear()  # the store hangs: the writer is stuck in a write
    p, seen = make(tmp_path, store, queue_size=200, batch_size=100)
    p.start()
    for k in range(20):
        p.submit(samples(50, 50 * k))  # returns although the writer cannot move
    st = p.stats()
    assert st["samples_spilled"] > 0 and st["samples_dropped"] == 0
    assert st["queue_depth"] <= 200
    store.gate.set()
    assert wait_for(lambda: store.count_samples(T0, END) == 1000)
    p.stop()
    assert sorted(seen.ts) == [s.ts for s in samples(1000)]


def test_backpressure_a_full_queue_waits_for_room_instead_of_spilling(tmp_path):
    """An MQTT QoS 1 message (submit wait=True) that finds the queue full waits up to
    backpressure_s for the writer to take a batch: nothing is spilled while the store keeps up
    within that time, and everything is stored once."""
    store = FlakyStore()
    store.gate.clear()
    p, seen = make(tmp_path, store, queue_size=200, batch_size=100, backpressure_s=5.0)
    p.start()
    threading.Timer(0.5, store.gate.set).start()  # the store is slow for half a second
    t0 = time.monotonic()
    for k in range(20):
        p.submit(samples(50, 50 * k), wait=True)
    assert time.monotonic() - t0 >= 0.4  # the submits waited for the slow store...
    st = p.stats()
    assert st["samples_spilled"] == 0 and st["samples_dropped"] == 0  # ... instead of spilling
    assert st["submit_waits"] > 0
    assert wait_for(lambda: store.count_samples(T0, END) == 1000)
    p.stop()
    assert sorted(seen.ts) == [s.ts for s in samples(1000)]


def test_backpressure_is_bounded_then_the_spool_takes_it(tmp_path):
    store = FlakyStore()
    store.gate.clear()  # the store hangs
    p, _ = make(tmp_path, store, queue_size=200, batch_size=100, backpressure_s=0.2)
    p.start()
    done = []
    # the queue (200) plus what the writer holds: one batch being written, one with the
    # listeners (overlap) — beyond that the waits time out and the spool takes the rest
    for k in range(12):
        p.submit(samples(50, 50 * k), on_done=lambda: done.append(1), wait=True)
    st = p.stats()
    assert st["samples_spilled"] > 0 and st["samples_dropped"] == 0 and st["queue_depth"] <= 200
    store.gate.set()
    assert wait_for(lambda: store.count_samples(T0, END) == 600 and len(done) == 12)
    p.stop()


def test_on_done_is_called_once_the_samples_are_stored_or_spooled(tmp_path):
    store = FlakyStore()
    store.down = True
    p, _ = make(tmp_path, store)
    done = threading.Event()
    p.start()
    p.submit(samples(10), on_done=done.set)
    assert done.wait(5)
    assert p.stats()["spool_samples"] == 10 and store.count_samples(T0, END) == 0
    p.stop()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_a_full_spool_applies_its_policy_and_raises_the_alarm(tmp_path, policy):
    store = FlakyStore()
    store.down = True
    p, _ = make(tmp_path, store, max_bytes=6000, policy=policy)
    p.spool.segment_bytes = 1500
    p.start()
    for k in range(60):
        p.submit(samples(100, 100 * k))
        time.sleep(0.002)
    assert wait_for(lambda: p.stats()["spool_alarm"])
    assert wait_for(lambda: p.queue_depth == 0)
    st = p.stats()
    assert st["spool_full"] and st["spool_dropped_samples"] > 0 and st["spool_bytes"] <= 6000
    store.down = False
    assert wait_for(lambda: p.stats()["spool_samples"] == 0 and p.stats()["events_pending"] == 0)
    p.stop()
    stored = store.count_samples(T0, END)
    # nothing vanishes unaccounted: stored + dropped by the policy = everything received
    assert stored + p.stats()["spool_dropped_samples"] == 6000
    newest = max(store.written_ts)
    oldest = min(store.written_ts)
    if policy == "drop_oldest":
        assert newest == T0 + 5999 * 1000 and oldest > T0
    else:
        assert oldest == T0 and newest < T0 + 5999 * 1000
    alarms = store.events("alarm", 0, 2**62, key=SPOOL_ALARM_KEY)
    assert alarms[0].data["event"] == "raised" and alarms[0].data["extra"]["policy"] == policy
    assert alarms[-1].data["event"] == "returned"  # drained below half: cleared


def test_without_a_spool_a_failed_batch_is_retried_from_memory(tmp_path):
    store = FlakyStore()
    store.down = True
    p = Pipeline(store, batch_size=100, flush_interval_s=0.05, retry_interval_s=0.05)
    done = threading.Event()
    p.start()
    p.submit(samples(50), on_done=done.set)
    assert wait_for(lambda: p.stats()["write_errors"] >= 2)
    assert not done.is_set()  # not acknowledged while only in memory
    store.down = False
    assert wait_for(lambda: store.count_samples(T0, END) == 50)
    assert done.wait(5)
    p.stop()


def test_the_spool_alarm_reads_back_as_an_alarm_the_alarm_list_understands(tmp_path):
    from alerts.lifecycle import Status, from_event

    store = FlakyStore()
    store.down = True
    p, _ = make(tmp_path, store, max_bytes=3000, policy="drop_newest")
    p.spool.segment_bytes = 1000
    p.start()
    for k in range(30):
        p.submit(samples(100, 100 * k))
    assert wait_for(lambda: p.stats()["spool_alarm"])
    store.down = False
    assert wait_for(lambda: p.stats()["events_pending"] == 0 and not p.stats()["spool_alarm"])
    p.stop()
    raised, returned = [from_event(e) for e in store.events("alarm", 0, 2**62, key=SPOOL_ALARM_KEY)]
    assert (raised.id, raised.status, raised.active, raised.priority) == (SPOOL_ALARM_KEY, Status.UNACK_ACTIVE,
                                                                         True, "high")
    assert raised.extra["policy"] == "drop_newest" and raised.extra["dropped_samples"] > 0
    assert (returned.status, returned.active) == (Status.RTN_UNACK, False)


def test_a_sample_the_spool_cannot_encode_is_dead_lettered_and_the_writer_lives_on(tmp_path):
    """While the store is down every batch goes to the spool; a sample it cannot encode (NaN
    from a caller that skipped validation) must not kill the writer thread and take the good
    samples with it: it is refused (counted) and the rest is spooled, then stored."""
    store = FlakyStore()
    store.down = True
    p, _ = make(tmp_path, store, queue_size=100)
    p.start()
    bad = Sample("changwon", "cnc", "cnc-01", "spindle_speed", float("nan"), T0 + 10**12)
    p.submit(samples(20) + [bad] + samples(20, 20))
    assert wait_for(lambda: p.stats()["spool_samples"] == 40)
    for k in range(3):  # the queue overflows: submit() spills on the caller's thread
        p.submit(samples(50, 100 + 50 * k) + [bad])
    assert wait_for(lambda: p.stats()["samples_refused"] == 4)
    store.down = False
    assert wait_for(lambda: store.count_samples(T0, END) == 190)
    assert p._thread.is_alive()
    st = p.stats()
    assert st["samples_spooled"] == 190 and st["samples_dropped"] == 0
    p.stop()


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_batch_meets_the_listeners_while_the_previous_one_is_written(tmp_path, overlap):
    """overlap: while the store answers batch N, the listeners already take batch N+1 (the
    store's time and ours no longer add up); N+1 is written after N, and no source is told
    "done" before its samples are stored. Without overlap (the runtime's choice during a warm
    start) the listeners see N+1 only once N is stored."""
    store = FlakyStore()
    store.gate.clear()  # the store holds the first write
    p, seen = make(tmp_path, store, batch_size=100)
    p.overlap = overlap
    done: list[int] = []
    p.start()
    p.submit(samples(100), on_done=lambda: done.append(1))
    assert wait_for(lambda: len(seen.ts) == 100)
    time.sleep(0.3)  # the writer is in the store's write now
    p.submit(samples(100, 100), on_done=lambda: done.append(2))
    if overlap:
        assert wait_for(lambda: len(seen.ts) == 200)
    else:
        time.sleep(0.5)
        assert len(seen.ts) == 100
    assert done == [] and store.count_samples(T0, END) == 0
    store.gate.set()
    assert wait_for(lambda: store.count_samples(T0, END) == 200 and len(done) == 2)
    assert store.written_ts == [s.ts for s in samples(200)] and done == [1, 2]
    p.stop()


def test_a_store_that_takes_concurrent_writes_gets_that_many_in_flight_and_no_more(tmp_path):
    """InfluxDB (write_concurrency 2) gets two batches at once while it holds them; a third
    waits; each source is told done only once its own batch is stored."""

    class Concurrent(FlakyStore):
        write_concurrency = 2

        def __init__(self) -> None:
            super().__init__()
            self.entered = 0
            self.lock = threading.Lock()

        def write_samples(self, samples):
            with self.lock:
                self.entered += 1
            super().write_samples(samples)

    store = Concurrent()
    store.gate.clear()
    p, seen = make(tmp_path, store, batch_size=100)
    done: list[int] = []
    p.start()
    for k in range(4):
        p.submit(samples(100, 100 * k), on_done=lambda k=k: done.append(k))
        time.sleep(0.3)
    assert wait_for(lambda: store.entered == 2)
    time.sleep(0.3)
    assert store.entered == 2 and done == [] and store.count_samples(T0, END) == 0
    store.gate.set()
    assert wait_for(lambda: store.count_samples(T0, END) == 400 and sorted(done) == [0, 1, 2, 3])
    assert sorted(store.written_ts) == [s.ts for s in samples(400)]
    p.stop()
