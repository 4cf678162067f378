"""The pipeline between collectors and the store: a bounded in-memory queue and one writer
thread that batches samples, hands each batch to the listeners (engine, alarms) and writes it.

Collectors call submit() from their network threads; it never blocks. The writer batches up
to batch_size samples or flush_interval, whichever comes first (never one write per message).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Optional, Sequence

from gwanje.model import Event, Sample
from storage.base import Store, StoreUnavailable

log = logging.getLogger("gwanje.pipeline")

Listener = Callable[[Sequence[Sample]], Optional[Sequence[Event]]]


class Pipeline:
    def __init__(self, store: Store, batch_size: int = 5000, flush_interval_s: float = 0.2,
                 queue_size: int = 200_000, listeners: Sequence[Listener] = (),
                 retry_interval_s: float = 1.0) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_interval_s = retry_interval_s
        self.listeners = list(listeners)
        # the queue holds lists of samples (one per submit) to keep per-message overhead low
        self._q: queue.Queue[Sequence[Sample]] = queue.Queue(maxsize=max(1, queue_size // 10))
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.samples_in = 0
        self.samples_written = 0
        self.samples_dropped = 0
        self.events_written = 0
        self.write_errors = 0
        self.batches_written = 0
        self.last_write_latency_s = 0.0
        self._pending: list[Sample] = []  # a batch that failed to write, retried first

    # ----------------------------------------------------------- collector side
    def submit(self, samples: Sequence[Sample]) -> None:
        if not samples:
            return
        try:
            self._q.put_nowait(samples)
        except queue.Full:
            with self._lock:
                self.samples_dropped += len(samples)
            log.error("pipeline queue full: dropped %d samples", len(samples))
            return
        with self._lock:
            self.samples_in += len(samples)

    def write_events(self, events: Sequence[Event]) -> None:
        """Derived records from the engine or operators; written synchronously."""
        if events:
            self.store.write_events(events)
            with self._lock:
                self.events_written += len(events)

    @property
    def queue_depth(self) -> int:
        return self._q.qsize()

    # ----------------------------------------------------------- writer side
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gwanje-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _take_batch(self) -> list[Sample]:
        batch: list[Sample] = []
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._q.get(timeout=max(0.0, remaining)) if remaining > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            batch.extend(item)
        return batch

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            batch = self._pending or self._take_batch()
            fresh = not self._pending
            self._pending = []
            if batch:
                if fresh:
                    self._notify(batch)
                if not self._write(batch):
                    self._pending = batch
                    if stopping:
                        log.error("stopping with %d unwritten samples", len(batch))
                        return
                    self._stop.wait(self.retry_interval_s)
                    continue
            elif stopping and self._q.empty():
                return

    def _notify(self, batch: Sequence[Sample]) -> None:
        for fn in self.listeners:
            try:
                events = fn(batch)
                if events:
                    self.write_events(events)
            except Exception:  # a listener bug must not stop ingest
                log.exception("pipeline listener %r failed", fn)

    def _write(self, batch: Sequence[Sample]) -> bool:
        t0 = time.perf_counter()
        try:
            self.store.write_samples(batch)
        except StoreUnavailable as e:
            with self._lock:
                self.write_errors += 1
            log.warning("store unavailable (%s); %d samples held for retry", e, len(batch))
            return False
        except Exception:
            with self._lock:
                self.write_errors += 1
            log.exception("store write failed; %d samples held for retry", len(batch))
            return False
        with self._lock:
            self.samples_written += len(batch)
            self.batches_written += 1
            self.last_write_latency_s = time.perf_counter() - t0
        return True

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {
                "samples_in": self.samples_in,
                "samples_written": self.samples_written,
                "samples_dropped": self.samples_dropped,
                "events_written": self.events_written,
                "write_errors": self.write_errors,
                "batches_written": self.batches_written,
                "queue_depth": self.queue_depth,
                "last_write_latency_s": self.last_write_latency_s,
            }
