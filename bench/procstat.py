"""Who uses the two cores during a benchmark measurement: CPU of each process of the bench
(collector process(es), mosquitto, influxd, the publisher) and of every thread of the
collector, sampled from /proc through psutil, plus the whole machine (/proc/stat), so that
the rest of the machine's load (other helpers' test suites) shows next to ours.

    watch = Watch()
    watch.add("collector", pid, threads=lambda: {native_id: "gwanje-writer", ...})
    watch.add("mosquitto", broker_pid)
    watch.start()
    a = watch.mark(); ...measurement...; b = watch.mark()
    print(watch.report(a, b))

CPU % is "of one core" (a process that keeps one core busy is 100 %; this machine's two cores
are 200 %), averaged over the window between the two marks. A process or thread that ended
inside the window counts with its last sampled CPU time (sampled every `period` s). Thread
names: Linux shows every Python thread as "python" (comm); the collector reports its
threading names by native id (bench.ingest's collector process over its pipe, `app.py
collect` through bench/apphook), and paho's network threads are told apart by client id.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import psutil


def short_thread_name(name: str) -> str:
    """paho's thread is paho-mqtt-client-<client id>: the collector's client vs the control bus's."""
    if name.startswith("paho-mqtt-client-"):
        cid = name[len("paho-mqtt-client-"):]
        return "paho-bus" if "-sys-" in cid or cid.startswith("gwanje-sys") else "paho-net"
    return name


@dataclass
class _Proc:
    label: str
    pid: int
    names: Optional[Callable[[], dict[int, str]]]
    proc: Optional[psutil.Process] = None
    cpu: float = 0.0
    rss: int = 0
    threads: dict[int, float] = field(default_factory=dict)
    alive: bool = True


@dataclass
class Mark:
    t: float
    machine_busy: float
    cpu: dict[str, float]
    rss: dict[str, int]
    threads: dict[str, dict[int, float]]
    names: dict[str, dict[int, str]]


class Watch:
    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self._procs: list[_Proc] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, label: str, pid: int, threads: Optional[Callable[[], dict[int, str]]] = None) -> None:
        """Watch a process; `threads` (the collector): per-thread CPU with these names."""
        p = _Proc(label, pid, threads)
        try:
            p.proc = psutil.Process(pid)
        except psutil.Error:
            p.alive = False
        with self._lock:
            self._procs = [q for q in self._procs if q.label != label] + [p]
        self._sample_one(p)

    def remove(self, label: str) -> None:
        with self._lock:
            self._procs = [q for q in self._procs if q.label != label]

    def start(self) -> "Watch":
        self._thread = threading.Thread(target=self._loop, name="procstat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def _sample_one(self, p: _Proc) -> None:
        if not p.alive or p.proc is None:
            return
        try:
            with p.proc.oneshot():
                t = p.proc.cpu_times()
                cpu = t.user + t.system
                rss = p.proc.memory_info().rss
                threads = {th.id: th.user_time + th.system_time for th in p.proc.threads()} if p.names else {}
        except psutil.Error:
            p.alive = False
            return
        p.cpu, p.rss = cpu, rss
        # a thread that ended keeps its last time (it was spent inside the window)
        p.threads.update(threads)

    def sample(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            self._sample_one(p)

    def mark(self) -> Mark:
        self.sample()
        ct = psutil.cpu_times()
        busy = sum(ct) - ct.idle - getattr(ct, "iowait", 0.0)
        with self._lock:
            procs = list(self._procs)
        names = {}
        for p in procs:
            if p.names:
                try:
                    names[p.label] = {int(k): v for k, v in p.names().items()}
                except Exception:
                    names[p.label] = {}
        return Mark(time.monotonic(), busy, {p.label: p.cpu for p in procs}, {p.label: p.rss for p in procs},
                    {p.label: dict(p.threads) for p in procs if p.names}, names)

    def figures(self, a: Mark, b: Mark) -> dict:
        """{"window_s", "procs": {label: % of one core}, "threads": {label: {name: %}},
        "ours": %, "machine": %, "rss_mb": {label: MB at b}}."""
        dt = max(b.t - a.t, 1e-9)
        procs = {k: (v - a.cpu.get(k, v)) / dt * 100 for k, v in b.cpu.items()}
        threads: dict[str, dict[str, float]] = {}
        for label, tb in b.threads.items():
            ta = a.threads.get(label, {})
            names = {**a.names.get(label, {}), **b.names.get(label, {})}
            out: dict[str, float] = {}
            for tid, v in tb.items():
                name = short_thread_name(names.get(tid, "native"))  # no Python thread: DuckDB, libs
                out[name] = out.get(name, 0.0) + (v - ta.get(tid, 0.0)) / dt * 100
            threads[label] = dict(sorted(out.items(), key=lambda kv: -kv[1]))
        ours = sum(procs.values())
        return {"window_s": dt, "procs": procs, "threads": threads, "ours": ours,
                "machine": (b.machine_busy - a.machine_busy) / dt * 100,
                "rss_mb": {k: v / 1e6 for k, v in b.rss.items()}}

    def report(self, a: Mark, b: Mark, indent: str = "  ") -> str:
        f = self.figures(a, b)
        ncpu = psutil.cpu_count() or 1
        parts = []
        for label, pct in f["procs"].items():
            s = f"{label} {pct:.0f} %"
            th = f["threads"].get(label)
            if th:
                shown = [(n, v) for n, v in th.items() if v >= 1.0]
                rest = sum(v for n, v in th.items() if v < 1.0)
                tail = f", rest {rest:.0f}" if rest >= 0.5 else ""
                s += " [" + ", ".join(f"{n} {v:.0f}" for n, v in shown) + tail + "]"
            parts.append(s)
        return (f"{indent}CPU over {f['window_s']:.1f} s, % of one core ({ncpu} cores = {ncpu * 100} %): "
                + ", ".join(parts)
                + f"; these together {f['ours']:.0f} %; whole machine {f['machine']:.0f} % "
                  f"(everything else {max(f['machine'] - f['ours'], 0):.0f} %)")
