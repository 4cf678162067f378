"""The pipeline between collectors and the store: a bounded in-memory queue, one writer thread
that batches samples, hands each batch to the listeners (engine, alarms) and writes it, and —
when a Spool is given — store-and-forward through the disk spool while the store is away.

Collectors call submit() from their network threads; it never blocks. The writer batches up
to batch_size samples or flush_interval, whichever comes first (never one write per message).

Refused data (storage.base.Refused: the store will never accept those records) is not an
outage: the refused records are isolated — the store names them (an InfluxDB partial write),
else the batch is split in halves until they are found (writes are idempotent, rewriting is
harmless; at most MAX_SPLITS writes per batch, what is still undecided then is dead-lettered
whole) — written to the dead-letter file (storage.deadletter) with their reason, counted per
reason, and the rest is written. The first refusal raises the alarm
Event(kind="alarm", key="system:data_refused"); it returns after refused_quiet_s without one.
The same holds for events (write_events, the listeners' events) and for spool replays, so
neither the pending events nor the replay ever stick on a bad record. When the store knows its
retention (Store.retention_ns, read at start and every retention_refresh_s), samples and events
older than it (plus RETENTION_MARGIN_NS) are dead-lettered as timestamp_too_old before the
write: a PLC whose clock reset to 2001 never even costs a refused request.

Store-and-forward (spool given):
- a batch the store cannot take (StoreUnavailable or any error but Refused) goes to the spool; for
  retry_interval_s after a failure fresh batches go straight to the spool instead of waiting
  on a dead store, then the next batch probes it again;
- a full in-memory queue (store slower than the sources) spills the submitted samples to the
  spool instead of dropping them; submit() still returns at once (one buffered file write,
  no fsync, on the caller's thread);
- order: the spool replays strictly oldest first; fresh batches are written ahead of the
  backlog, so the live view recovers at once while the outage is drained in the gaps
  (every point is keyed by series + source time, so the order of the writes does not change
  what is stored);
- a spool left by a previous run is replayed after start();
- when the spool is full, its policy applies (drop_oldest | drop_newest), the loss is counted
  and an alarm Event(kind="alarm", key="system:spool_full") is written as soon as the store
  takes it (and logged at once); stats()["spool_full"] shows it throughout.

Listeners see every batch exactly once per process: fresh batches when they are taken from the
queue, spilled batches when they are replayed from the spool. A batch is a
gwanje.batch.SampleBatch (columns; also a Sequence[Sample]) for listeners and stores alike:
collectors may submit either columns or lists of Samples, the writer joins them into one.
Without a spool, a failed batch is held in memory and retried, and a full queue drops
(counted) — the behaviour for tests and tools that do not need durability.
"""
from __future__ import annotations

import bisect
import collections
import logging
import operator
import threading
import time
from typing import Any, Callable, Optional, Sequence

from gwanje.batch import SERIES, SampleBatch
from gwanje.model import Event, Sample, now_ns
from gwanje.rejects import Rejects
from storage.base import Refused, Store, StoreUnavailable

log = logging.getLogger("gwanje.pipeline")

Listener = Callable[[Sequence[Sample]], Optional[Sequence[Event]]]
OnDone = Callable[[], None]

# write latency histogram bounds (seconds), Prometheus-style cumulative buckets
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SPOOL_ALARM_KEY = "system:spool_full"
REFUSED_ALARM_KEY = "system:data_refused"
MAX_PENDING_EVENTS = 50_000
# isolating refused records: bisection costs ~2 log2(n) writes per refused record, so this
# finds a handful exactly in a 5,000-sample batch; beyond it the undecided parts go whole
MAX_SPLITS = 256
# samples older than the store's retention by more than this are dead-lettered unwritten
# (InfluxDB 1.x still accepts points of a shard group it has not deleted yet: inside the
# margin the store decides)
RETENTION_MARGIN_NS = 3600 * 10**9
_site = operator.attrgetter("site")
_ts = operator.attrgetter("ts")


class Pipeline:
    def __init__(self, store: Store, batch_size: int = 5000, flush_interval_s: float = 0.2,
                 queue_size: int = 200_000, listeners: Sequence[Listener] = (),
                 retry_interval_s: float = 1.0, spool: Any = None, deadletter: Any = None,
                 retention_refresh_s: float = 300.0, refused_quiet_s: float = 600.0,
                 backpressure_s: float = 0.0) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_interval_s = retry_interval_s
        self.listeners = list(listeners)
        self.spool = spool  # storage.spool.Spool or None
        self.deadletter = deadletter  # storage.deadletter.DeadLetter or None (refusals only counted)
        self.retention_refresh_s = retention_refresh_s
        self.refused_quiet_s = refused_quiet_s
        self.queue_size = queue_size
        self.backpressure_s = backpressure_s
        self._room = threading.Condition()  # notified when the writer takes from a full queue
        self._waiters = 0
        self.submit_waits = 0  # submits that waited for room (backpressure), and the time it took
        self.submit_wait_s = 0.0
        # the queue holds (samples, on_done) per submit, to keep per-message overhead low;
        # its bound is in samples (queue_size), checked in submit()
        # the queue: (samples, on_done) per submit, under self._lock; the writer sleeps until a
        # batch is full or the flush interval is over (never woken per message: a wake-up per
        # message was a thread switch and a GIL hand-over per message)
        self._parts: collections.deque[tuple[Sequence[Sample], Optional[OnDone]]] = collections.deque()
        self._queued = 0  # samples in the queue
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._full = threading.Condition(self._lock)  # a batch is waiting (notified once per batch)
        self._taking = False  # the writer sleeps in _take_batch
        # overlap (with a spool): a batch's store write runs on a sender thread while the writer
        # hands the next batch to the listeners, so the store's answer time and our Python
        # work add up no more (acknowledgements still only after store or spool). False: each batch is written before the next is taken — the
        # runtime's choice while a warm start must know every batch the engine saw is stored.
        self.overlap = True
        # a store that takes concurrent writes (InfluxDB: write_concurrency 2 — the server parses
        # two requests on two cores) gets that many in flight; others one, in batch order.
        # Order does not change what is stored: every point is keyed by series + source time
        self._sender = _Sender(int(getattr(store, "write_concurrency", 1) or 1))
        self.samples_in = 0
        self.samples_written = 0
        self.samples_dropped = 0
        self.samples_spooled = 0  # written to the spool (store down/slow, or queue full)
        self.samples_spilled = 0  # of those: spilled by submit() because the queue was full
        self.samples_replayed = 0  # written to the store from the spool
        self.events_written = 0
        self.events_pending = 0
        self.write_errors = 0
        self.batches_written = 0
        self.last_write_latency_s = 0.0
        self._lat_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._lat_sum = 0.0
        self._written_by_site: collections.Counter[str] = collections.Counter()
        self._pending: list[Sample] = []  # no spool: a batch that failed to write, retried first
        self._pending_callbacks: list[OnDone] = []
        self._pending_events: collections.deque[Event] = collections.deque(maxlen=MAX_PENDING_EVENTS)
        self._retry_at = 0.0  # monotonic time before which the store is presumed down
        self.store_up = True
        self._spool_alarm = False
        self._notified_tokens: set[tuple[int, int, int]] = set()  # replayed, seen, not yet stored
        self.samples_refused = 0  # dead-lettered: refused by the store or older than its retention
        self.events_refused = 0
        self._refused = {"sample": Rejects("store (samples)"), "event": Rejects("store (events)")}
        self._last_refusal = 0.0  # monotonic time of the newest refusal
        self._refused_seen = 0  # refusals the alarm has accounted for
        self._refused_alarm = False
        self._retention: Optional[int] = None  # the store's, ns; None: forever or unknown
        self._retention_at = 0.0  # monotonic time of the next retention read
        self.last_write_error = ""

    # ----------------------------------------------------------- collector side
    def submit(self, samples: Sequence[Sample], on_done: Optional[OnDone] = None, wait: bool = False) -> None:
        """Hand over samples (a SampleBatch or a list of Samples); never blocks, except with
        wait=True when the queue is full: then for at most backpressure_s, for a source that
        holds the rest meanwhile (an MQTT broker: QoS 1, ack after store). on_done (optional)
        is called once the pipeline is done with them: in the store or the spool, or dropped
        and counted (a full spool with drop_newest). A collector acknowledges its source then,
        so samples a crash takes out of memory are redelivered; it is never left uncalled, or
        the source's flow control stalls."""
        if not samples:
            return
        n = len(samples)
        with self._lock:
            self.samples_in += n
            fits = self._queued + n <= self.queue_size
            if fits:
                self._enqueue(samples, on_done, n)
        if not fits and wait and self.backpressure_s > 0 and not self._stop.is_set():
            fits = self._wait_for_room(samples, on_done, n)
        if fits:
            return
        k = self._spool_append(samples, notified=False, sync=False) if self.spool is not None else -1
        if k >= 0:
            with self._lock:
                self.samples_spooled += k
                self.samples_spilled += k
            if on_done is not None:
                _call(on_done)
            return
        with self._lock:
            self.samples_dropped += n
        log.error("pipeline queue full%s: dropped %d samples",
                  " and the spool refused them" if self.spool is not None else "", n)
        if on_done is not None:
            _call(on_done)

    def _enqueue(self, samples: Sequence[Sample], on_done: Optional[OnDone], n: int) -> None:
        """(self._lock held) Queue them; wake the writer once a whole batch waits."""
        self._queued += n
        self._parts.append((samples, on_done))
        if self._taking and self._queued >= self.batch_size:
            self._taking = False
            self._full.notify()

    def _spool_append(self, samples: Sequence[Sample], notified: bool, sync: Optional[bool] = None) -> int:
        """How many samples went to the spool (-1: it refused them, the loss counted there):
        spool.append, except that samples the spool cannot encode (NaN, garbage from a
        caller that skipped validation: the store refuses them for good as well) are
        dead-lettered with their reason and the others are spooled — never an exception that
        ends the writer thread or a collector's loop and takes the good samples with it."""
        try:
            return len(samples) if self.spool.append(samples, notified=notified, sync=sync) else -1
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            from storage.checks import sample_problem, series_problem

            rows = list(samples)
            bad: dict[str, list[Sample]] = {}
            good: list[Sample] = []
            for smp in rows:
                try:
                    why = series_problem((smp.site, smp.line, smp.machine, smp.signal)) or sample_problem(smp)
                except Exception:
                    why = "bad_sample"
                if why:
                    bad.setdefault(why, []).append(smp)
                else:
                    good.append(smp)
            if not bad:  # nothing the checks name: the whole batch cannot be spooled
                bad = {"spool_cannot_encode": rows}
                good = []
            for why, recs in bad.items():
                self._dead_letter("sample", recs, why, f"not spooled: {type(e).__name__}: {e}"[:200])
            if not good:
                return 0  # all of it is accounted for (dead-lettered)
            try:
                return len(good) if self.spool.append(good, notified=notified, sync=sync) else -1
            except Exception as e2:
                self._dead_letter("sample", good, "spool_cannot_encode", f"{type(e2).__name__}: {e2}"[:200])
                return 0

    def _wait_for_room(self, samples: Sequence[Sample], on_done: Optional[OnDone], n: int) -> bool:
        """Backpressure: wait (at most backpressure_s) until n samples fit; True once they are
        queued."""
        t0 = time.monotonic()
        deadline = t0 + self.backpressure_s
        with self._room:
            self._waiters += 1
            try:
                while True:
                    with self._lock:
                        if self._queued + n <= self.queue_size:
                            self._enqueue(samples, on_done, n)
                            fits = True
                            break
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop.is_set():
                        fits = False
                        break
                    self._room.wait(min(left, 0.05))
            finally:
                self._waiters -= 1
        with self._lock:
            self.submit_waits += 1
            self.submit_wait_s += time.monotonic() - t0
        return fits

    def write_events(self, events: Sequence[Event]) -> None:
        """Derived records from the engine or operators; written synchronously (raises when
        the store is down: an operator action must know it was not recorded). Events the
        store refuses go to the dead-letter file; the others are written."""
        if events:
            rest, err, refused = self._put("event", events)
            if err is not None:
                raise err
            with self._lock:
                self.events_written += len(events) - len(refused)

    @property
    def queue_depth(self) -> int:
        """Samples waiting in memory."""
        with self._lock:
            return self._queued

    # ----------------------------------------------------------- writer side
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gwanje-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write (or spool) what is queued, then stop; a spool backlog stays for the next run.
        Returns after timeout even when the writer is still waiting on the store (a hung
        server holds a request until its HTTP timeout): nothing it holds was acknowledged
        (on_done is called only once samples are stored or spooled), so the sources deliver
        it again, and the process may exit."""
        self._stop.set()
        with self._lock:
            self._full.notify_all()
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("writer still waiting on the store after %.1f s: leaving %d unacknowledged "
                            "samples to be redelivered", timeout, self.queue_depth)
        if self.spool is not None and not (self._thread and self._thread.is_alive()):
            self.spool.close()  # file handles only; it reopens them if started again

    def _take_batch(self, wait: bool) -> tuple[SampleBatch, list[OnDone]]:
        parts: list[Sequence[Sample]] = []
        n = 0
        callbacks: list[OnDone] = []
        deadline = time.monotonic() + (self.flush_interval_s if wait else 0.0)
        with self._lock:
            while self._queued < self.batch_size and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._taking = True
                self._full.wait(remaining)
                self._taking = False
            q = self._parts
            while q and n < self.batch_size:
                items, cb = q.popleft()
                parts.append(items)
                n += len(items)
                if cb is not None:
                    callbacks.append(cb)
            self._queued -= n
        if n:
            if self._waiters:
                with self._room:
                    self._room.notify_all()
        return SampleBatch.concat(parts) if parts else SampleBatch.empty(), callbacks

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self._refresh_retention()
            if self.spool is None:
                if self._run_once_memory(stopping):
                    return
                continue
            backlog = self.spool.batches > 0
            # wait for fresh data unless there is a backlog the store can take right now
            batch, callbacks = self._take_batch(
                wait=not stopping and (not backlog or self._store_presumed_down()))
            if batch:
                # the listeners take this batch while the previous one may still be on its
                # way to the store (overlap)
                self._notify(batch)
                # stopping: a store that just failed is not probed again (a hung one would
                # hold each batch for its timeout); the spool keeps the rest
                down = self._store_presumed_down() or (stopping and not self.store_up)
                if self.overlap and not down and not stopping:
                    # at most store.write_concurrency writes in flight (submit waits for room)
                    self._sender.submit(self._store_batch, batch, callbacks, False)
                else:
                    self._sender.wait()
                    self._store_batch(batch, callbacks, self._store_presumed_down() or
                                      (stopping and not self.store_up))
            self._watch_spool()
            self._watch_refusals()
            self._flush_pending_events()
            if stopping:
                if not self._parts:
                    self._sender.wait()
                    if self.spool.batches:
                        log.warning("stopping with %d samples in the spool; they are replayed on the next start",
                                    self.spool.samples)
                    return
                continue
            if backlog and not self._store_presumed_down():
                self._drain(self.flush_interval_s)

    def _store_batch(self, batch: SampleBatch, callbacks: list[OnDone], down: bool) -> None:
        """Write a batch (or spool it: the store is down or fails), then tell its sources.
        Runs on the writer thread, or — overlap — on the sender thread while the writer
        hands the next batch to the listeners."""
        try:
            rest = batch if down else self._write(batch)
            if not rest:
                pass
            elif (k := self._spool_append(rest, notified=True)) >= 0:
                with self._lock:
                    self.samples_spooled += k
            else:
                with self._lock:
                    self.samples_dropped += len(rest)
        except Exception:  # a bug: log it; the sources redeliver what was not acknowledged...
            log.exception("writing a batch of %d samples failed", len(batch))
        finally:
            for cb in callbacks:  # ... but never left uncalled, or their flow control stalls
                _call(cb)

    def _run_once_memory(self, stopping: bool) -> bool:
        """The writer step without a spool; True when the writer should end."""
        if self._pending:
            batch, callbacks = self._pending, self._pending_callbacks
        else:
            batch, callbacks = self._take_batch(wait=not stopping)
        fresh = not self._pending
        self._pending, self._pending_callbacks = [], []
        if batch:
            if fresh:
                self._notify(batch)
            rest = self._write(batch)
            if rest:
                self._pending, self._pending_callbacks = rest, callbacks
                if stopping:
                    log.error("stopping with %d unwritten samples", len(batch))
                    return True
                self._stop.wait(self.retry_interval_s)
                return False
            for cb in callbacks:
                _call(cb)
            self._flush_pending_events()
        self._watch_refusals()
        return stopping and not self._parts

    def _drain(self, budget_s: float) -> None:
        """Replay spooled batches, oldest first, until the budget is spent, fresh data is
        waiting or the store fails again."""
        self._sender.wait()
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.queue_depth >= self.batch_size:
                return  # fresh data first
            group = self.spool.peek_many(self.batch_size)
            if not group:
                return
            for b in group:
                if not b.notified and b.token not in self._notified_tokens:
                    self._notify(b.samples)
                    self._notified_tokens.add(b.token)
            samples = SampleBatch.concat([b.samples for b in group])
            if self._write(samples):  # the store failed: the group stays, refusals found so far
                return  # are found again on the next try
            for b in group:
                self.spool.ack(b.token, len(b.samples))
                self._notified_tokens.discard(b.token)
            with self._lock:
                self.samples_replayed += len(samples)

    def _store_presumed_down(self) -> bool:
        return time.monotonic() < self._retry_at

    def _notify(self, batch: Sequence[Sample]) -> None:
        for fn in self.listeners:
            try:
                events = fn(batch)
            except Exception:  # a listener bug must not stop ingest
                log.exception("pipeline listener %r failed", fn)
                continue
            if events:
                self._emit(events)

    def _emit(self, events: Sequence[Event]) -> None:
        """Write derived events now, or keep them (bounded) until the store is back."""
        if not self._store_presumed_down():
            try:
                self.write_events(events)
                return
            except Exception as e:
                self._store_failed(e, "events")
        self._pending_events.extend(events)
        with self._lock:
            self.events_pending = len(self._pending_events)

    def _flush_pending_events(self) -> None:
        if not self._pending_events or self._store_presumed_down():
            return
        events = list(self._pending_events)
        try:
            self.write_events(events)  # refused events are dead-lettered: they never block the rest
        except Exception as e:
            self._store_failed(e, "events")
            return
        for _ in events:
            self._pending_events.popleft()
        with self._lock:
            self.events_pending = len(self._pending_events)

    def _watch_spool(self) -> None:
        """Raise / clear the spool-full alarm on the spool's full flag (logged at once, stored
        when the store takes it)."""
        full = bool(self.spool.full)
        if full == self._spool_alarm:
            return
        self._spool_alarm = full
        st = self.spool.stats()
        if full:
            msg = (f"disk spool full ({st['spool_bytes']} of {st['spool_max_bytes']} bytes): policy "
                   f"{st['spool_policy']} applies, {st['spool_dropped_samples']} samples dropped so far")
            log.error("ALARM %s: %s", SPOOL_ALARM_KEY, msg)
        else:
            msg = "disk spool below half of its limit again"
            log.warning("ALARM %s cleared: %s", SPOOL_ALARM_KEY, msg)
        self._system_alarm(SPOOL_ALARM_KEY, full, "high", msg,
                           "디스크 스풀 가득 참: 데이터 손실 중" if full else "디스크 스풀 정상 복귀",
                           {"policy": st["spool_policy"], "dropped_samples": st["spool_dropped_samples"],
                            "dropped_batches": st["spool_dropped_batches"], "spool_bytes": st["spool_bytes"]})

    def _system_alarm(self, key: str, active: bool, priority: str, msg_en: str, msg_ko: str,
                      extra: dict[str, Any]) -> None:
        """A system alarm raised or returned, in the shape of alerts.lifecycle's events (full
        state per event), so the alarm list shows it and operators can acknowledge it like any
        other alarm; written now, or as soon as the store takes it."""
        status = "unack_active" if active else "rtn_unack"
        self._emit([Event(kind="alarm", ts=now_ns(), site="", key=key, data={
            "id": key, "rule": "system", "event": "raised" if active else "returned",
            "status": status, "state": status, "active": active, "priority": priority,
            "message_en": msg_en, "message_ko": msg_ko, "extra": extra,
        })])

    def _store_failed(self, e: Exception, what: str) -> None:
        with self._lock:
            self.write_errors += 1
            self.last_write_error = f"{type(e).__name__}: {e}"[:300]
        was_up, self.store_up = self.store_up, False
        self._retry_at = time.monotonic() + self.retry_interval_s
        if was_up:
            if isinstance(e, StoreUnavailable):
                log.warning("store unavailable (%s) writing %s; %s", e, what,
                            "spooling" if self.spool is not None else "holding for retry")
            else:
                log.error("store write of %s failed: %r", what, e)

    def _write(self, batch: Sequence[Sample]) -> list[Sample]:
        """Write the batch (refused samples to the dead-letter file); what is returned is
        still unwritten because the store failed — [] when everything is done."""
        t0 = time.perf_counter()
        rest, err, refused = self._put("sample", batch)
        if err is not None:  # StoreUnavailable or a store bug: keep the data, retry later
            self._store_failed(err, f"{len(rest)} samples")
            return rest
        dt = time.perf_counter() - t0
        if refused:
            out = {id(s) for s in refused}
            written = [s for s in batch if id(s) not in out] if not isinstance(batch, SampleBatch) else None
            if written is None:  # _put isolated them in a list of the batch's samples: count by key
                gone = collections.Counter((s.site, s.line, s.machine, s.signal, s.ts) for s in refused)
                written = []
                for s in batch:
                    k = (s.site, s.line, s.machine, s.signal, s.ts)
                    if gone.get(k):
                        gone[k] -= 1
                    else:
                        written.append(s)
            by_site = collections.Counter(map(_site, written))
            n_written = len(written)
        elif isinstance(batch, SampleBatch):
            sites = SERIES.site
            by_site = collections.Counter()
            for sid, n in collections.Counter(batch.sid).items():  # C-level count per series
                by_site[sites[sid]] += n
            n_written = len(batch)
        else:
            by_site = collections.Counter(map(_site, batch))  # C-level: this runs per sample
            n_written = len(batch)
        with self._lock:
            self.samples_written += n_written
            self.batches_written += 1
            self.last_write_latency_s = dt
            self._lat_counts[bisect.bisect_left(LATENCY_BUCKETS, dt)] += 1
            self._lat_sum += dt
            self._written_by_site.update(by_site)
        if not self.store_up:
            self.store_up = True
            log.warning("store answers again%s", "; replaying the spool" if self.spool is not None and
                        self.spool.batches else "")
        return []

    # ----------------------------------------------------------- refused data
    def _put(self, kind: str, records: Sequence[Any]) -> tuple[list[Any], Optional[Exception], list[Any]]:
        """Write samples or events, isolating what the store refuses (module docstring).
        (still unwritten, the store's failure or None, dead-lettered): on an outage the first
        two say what is left and why; refused records found before it stay dead-lettered."""
        write = self.store.write_samples if kind == "sample" else self.store.write_events
        refused: list[Any] = []
        records = self._too_old(kind, records, refused)
        todo = [records] if records else []
        splits = 0
        while todo:
            part = todo.pop()
            try:
                write(part)
            except Refused as e:
                if isinstance(part, SampleBatch):
                    # refusals are rare: isolate them among Sample objects (matched by id), the
                    # batch written again as a list (writes are idempotent)
                    todo.append(list(part))
                    continue
                if e.records:
                    named = {id(r) for r in e.records}
                    hit = [r for r in part if id(r) in named]
                    if hit:
                        self._dead_letter(kind, hit, e.reason, e.detail)
                        refused += hit
                        rest = [r for r in part if id(r) not in named]
                        splits += 1
                        # written again: InfluxDB names one reason only (a point beyond the
                        # retention in the same request is dropped silently)
                        if rest and splits < MAX_SPLITS:
                            todo.append(rest)
                        continue
                if len(part) == 1 or splits >= MAX_SPLITS:
                    self._dead_letter(kind, part, e.reason, e.detail)
                    refused += part
                    continue
                splits += 1
                mid = len(part) // 2
                todo += [part[mid:], part[:mid]]  # the first half is written first
            except Exception as e:
                return list(part) + [r for p in reversed(todo) for r in p], e, refused
        return [], None, refused

    def _too_old(self, kind: str, records: Sequence[Any], refused: list[Any]) -> Sequence[Any]:
        """records without those older than the store's retention (dead-lettered)."""
        keep = self._retention
        if keep is None or not records:
            return records
        horizon = time.time_ns() - keep - RETENTION_MARGIN_NS
        try:
            if min(records.ts if isinstance(records, SampleBatch) else map(_ts, records)) >= horizon:
                return records  # C-level: the common case costs one pass
            records = list(records)
            old = [r for r in records if r.ts < horizon]
        except TypeError:  # a garbage time: the store refuses that record itself
            return records
        self._dead_letter(kind, old, "timestamp_too_old",
                          f"older than the store's retention ({keep / 3.6e12:g} h) by more than "
                          f"{RETENTION_MARGIN_NS / 3.6e12:g} h")
        refused += old
        out = {id(r) for r in old}
        return [r for r in records if id(r) not in out]

    def _dead_letter(self, kind: str, records: Sequence[Any], reason: str, detail: str) -> None:
        n = len(records)
        with self._lock:
            if kind == "sample":
                self.samples_refused += n
            else:
                self.events_refused += n
            self._last_refusal = time.monotonic()
        self._refused[kind].reject(reason, detail, n)
        if self.deadletter is not None:
            self.deadletter.write(kind, records, reason, detail)

    def _refresh_retention(self) -> None:
        if time.monotonic() < self._retention_at or self._store_presumed_down():
            return
        try:
            keep = self.store.retention_ns()
        except Exception as e:  # down, or no right to read it: the store decides meanwhile
            self._retention_at = time.monotonic() + min(30.0, self.retention_refresh_s)
            log.debug("store retention not readable: %r", e)
            return
        self._retention_at = time.monotonic() + self.retention_refresh_s
        if keep != self._retention:
            log.info("store retention: %s", f"{keep / 3.6e12:g} h" if keep else "forever (or unknown)")
            self._retention = keep

    def _watch_refusals(self) -> None:
        """Raise the data-refused alarm on the first refusal (not per record); return it after
        refused_quiet_s without one."""
        with self._lock:
            total = self.samples_refused + self.events_refused
            last = self._last_refusal
        if not self._refused_alarm and total > self._refused_seen:
            self._refused_alarm = True
            counts = self._refused_counts()
            where = f" in {self.deadletter.path}" if self.deadletter is not None else ""
            msg = (f"the store refused data for good ({', '.join(f'{k} {r}: {n}' for k, c in counts.items() for r, n in c.items())}); "
                   f"kept{where}")
            log.error("ALARM %s: %s", REFUSED_ALARM_KEY, msg)
            self._refused_event(True, msg, counts)
        elif self._refused_alarm and time.monotonic() - last > self.refused_quiet_s:
            self._refused_alarm = False
            msg = f"no refused data for {self.refused_quiet_s:g} s"
            log.warning("ALARM %s cleared: %s", REFUSED_ALARM_KEY, msg)
            self._refused_event(False, msg, self._refused_counts())
        self._refused_seen = total

    def _refused_event(self, active: bool, msg: str, counts: dict[str, dict[str, int]]) -> None:
        self._system_alarm(REFUSED_ALARM_KEY, active, "medium", msg,
                           "저장소가 데이터를 거부함: 거부된 데이터는 데드레터 파일에 보관" if active else "거부된 데이터 없음",
                           {"refused": counts,
                            "deadletter": str(self.deadletter.path) if self.deadletter is not None else ""})

    def _refused_counts(self) -> dict[str, dict[str, int]]:
        return {k: c for k, r in self._refused.items() if (c := r.counts())}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            cum, acc = {}, 0
            for le, c in zip(LATENCY_BUCKETS, self._lat_counts):
                acc += c
                cum[le] = acc
            out: dict[str, Any] = {
                "samples_in": self.samples_in,
                "samples_written": self.samples_written,
                "samples_dropped": self.samples_dropped,
                "samples_spooled": self.samples_spooled,
                "samples_spilled": self.samples_spilled,
                "samples_replayed": self.samples_replayed,
                "samples_written_by_site": dict(self._written_by_site),
                "events_written": self.events_written,
                "events_pending": self.events_pending,
                "samples_refused": self.samples_refused,
                "events_refused": self.events_refused,
                "write_errors": self.write_errors,
                "last_write_error": self.last_write_error,
                "batches_written": self.batches_written,
                "queue_depth": self._queued,
                "queue_capacity": self.queue_size,
                "submit_waits": self.submit_waits,
                "submit_wait_s": self.submit_wait_s,
                "store_up": self.store_up,
                "last_write_latency_s": self.last_write_latency_s,
                "write_latency_buckets": cum,
                "write_latency_count": sum(self._lat_counts),
                "write_latency_sum": self._lat_sum,
            }
        if self.spool is not None:
            out.update(self.spool.stats())
        out["spool_alarm"] = self._spool_alarm
        out["refused"] = self._refused_counts()
        out["refused_alarm"] = self._refused_alarm
        out["retention_s"] = self._retention / 1e9 if self._retention else None
        if self.deadletter is not None:
            out.update(self.deadletter.stats())
        return out


class _Sender:
    """Daemon threads running the store writes: submit() hands a job over once fewer than
    `workers` run, wait() returns once none runs. Daemons, so a store that hangs does not
    keep the process from exiting (Pipeline.stop's timeout)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._cv = threading.Condition()
        self._jobs: collections.deque[tuple[Callable[..., None], tuple]] = collections.deque()
        self._busy = 0  # jobs handed over and not finished
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._cv:
            while self._busy >= self.workers:
                self._cv.wait()
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._threads) < self.workers:
                t = threading.Thread(target=self._loop, name="gwanje-store-writer", daemon=True)
                self._threads.append(t)
                t.start()
            self._jobs.append((fn, args))
            self._busy += 1
            self._cv.notify_all()

    def wait(self) -> None:
        with self._cv:
            while self._busy:
                self._cv.wait()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._jobs:
                    self._cv.wait()
                fn, args = self._jobs.popleft()
            try:
                fn(*args)
            except Exception:  # _store_batch catches its own; never let the thread die
                log.exception("store writer job failed")
            finally:
                with self._cv:
                    self._busy -= 1
                    self._cv.notify_all()


def _call(cb: OnDone) -> None:
    try:
        cb()
    except Exception:  # the collector's acknowledgement failing must not stop the writer
        log.exception("on_done callback failed")
