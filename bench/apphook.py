"""Bench-only probe inside a real `python app.py collect` process (bench.ingest --collector app,
bench.soak): what cannot be seen from outside the process, without changing the product.

It is loaded by bench/_hook/sitecustomize.py when the bench starts app.py with
PYTHONPATH=bench/_hook:<repo> and GWANJE_BENCH_HOOK=<dir>; without that variable nothing
happens. It

  - wraps the store that Runtime.open_store returns: after each write_samples() returns it
    notes (now - ts) for every 10th sample (the LatencyStore of bench.ingest's own collector,
    the same definition of latency) and the first / last write time;
  - names threads: Linux shows every Python thread as "python", so it reports
    threading.enumerate() by native id (bench.procstat's per-thread CPU);
  - reports memory: RSS, glibc malloc's arena figures (mallinfo2), tracemalloc's growth since a
    baseline (GWANJE_BENCH_TRACEMALLOC=<frames> starts tracemalloc at start-up), Python object
    counts, and for the embedded store DuckDB's own view (duckdb_memory(), PRAGMA database_size,
    memory_limit) — to tell DuckDB's buffer pool from Python objects that grow;
  - with GWANJE_BENCH_DUCKDB_MEMORY_LIMIT (e.g. 256MB), sets DuckDB's memory_limit on the
    embedded store's connection: what bounding it would do, measured before changing storage/.

Commands travel as files: the bench writes <dir>/req.json {"seq": n, "cmd": ...} (atomically),
a daemon thread ("bench-hook", polling every 50 ms) answers in <dir>/resp.json with the same
seq. Commands: stats, reset (forget latencies and write times), lat (stats + the latencies in
ns), drain (lat, then forget the latencies: a long soak's), memory (stats + the memory report),
baseline (take tracemalloc's baseline snapshot).
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

LAT_STRIDE = 10


class _State:
    def __init__(self) -> None:
        self.lat_ns: list[int] = []
        self.first_write = 0.0
        self.last_write = 0.0
        self.samples = 0
        self.runtime: Any = None
        self.store: Any = None
        self.baseline: Any = None


STATE = _State()


def _wrap_store(store: Any) -> Any:
    inner = store.write_samples

    def write_samples(samples: Any) -> None:
        inner(samples)
        done = time.time_ns()
        ts = samples.ts if hasattr(samples, "sid") else [s.ts for s in samples]
        STATE.lat_ns.extend(done - t for t in ts[::LAT_STRIDE])
        STATE.samples += len(ts)
        STATE.last_write = time.monotonic()
        if not STATE.first_write:
            STATE.first_write = STATE.last_write

    store.write_samples = write_samples  # the instance attribute the pipeline calls
    STATE.store = store
    limit = os.environ.get("GWANJE_BENCH_DUCKDB_MEMORY_LIMIT")
    if limit and getattr(store, "_con", None) is not None:  # to try a bound before proposing one
        store._con.execute(f"SET memory_limit = '{limit}'")
    return store


def _patch_runtime() -> None:
    from runtime import process

    init, open_store = process.Runtime.__init__, process.Runtime.open_store

    def __init__(self, *a, **k) -> None:
        init(self, *a, **k)
        STATE.runtime = self

    def _open_store(self) -> Any:
        had = self.store is not None
        store = open_store(self)
        return store if had else _wrap_store(store)

    process.Runtime.__init__ = __init__
    process.Runtime.open_store = _open_store


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mallinfo() -> dict[str, int]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    # arena: bytes from sbrk heaps; hblkhd: bytes in mmapped blocks; uordblks: in use; fordblks: free
    return {"arena": m.arena, "mmap": m.hblkhd, "in_use": m.uordblks, "free": m.fordblks}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def duckdb_report(store: Any) -> Optional[dict]:
    con = getattr(store, "_con", None)
    if con is None:
        return None
    cur = con.cursor()
    try:
        mem = cur.execute("SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory()").fetchall()
        size = cur.execute("PRAGMA database_size").fetchall()
        cols = [d[0] for d in cur.description]
        limit = cur.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()
        rows = cur.execute("SELECT count(*) FROM samples").fetchone()[0]
    finally:
        cur.close()
    return {"memory": {t: u for t, u, _ in mem if u}, "temp": {t: s for t, _, s in mem if s},
            "database_size": [dict(zip(cols, r)) for r in size], "memory_limit": limit[0], "threads": limit[1],
            "rows": rows}


def smaps() -> dict[str, int]:
    """/proc/self/smaps_rollup in bytes: Rss split into anonymous memory and file pages."""
    out = {}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


def memory_report() -> dict:
    import sys

    sm = smaps()
    out: dict[str, Any] = {"rss": rss_bytes(), "malloc": mallinfo(), "gc_objects": len(gc.get_objects()),
                           "anon": sm.get("Anonymous", 0), "file": sm.get("Rss", 0) - sm.get("Anonymous", 0),
                           "pymalloc_blocks": sys.getallocatedblocks()}
    if "pyarrow" in sys.modules:
        out["arrow_pool"] = sys.modules["pyarrow"].default_memory_pool().bytes_allocated()
    import tracemalloc

    if tracemalloc.is_tracing():
        cur, peak = tracemalloc.get_traced_memory()
        out["traced"] = cur
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if STATE.baseline is not None:
            diff = snap.compare_to(STATE.baseline, "traceback")
            out["growth"] = [{"size_diff": d.size_diff, "count_diff": d.count_diff, "size": d.size,
                              "where": [f"{fr.filename}:{fr.lineno}" for fr in d.traceback][-6:]}
                             for d in diff[:15]]
        out["top"] = [{"size": s.size, "count": s.count, "where": f"{s.traceback[0].filename}:{s.traceback[0].lineno}"}
                      for s in snap.statistics("lineno")[:10]]
    if STATE.store is not None:
        try:
            out["duckdb"] = duckdb_report(STATE.store)
        except Exception as e:  # not an embedded store, or closing
            out["duckdb_error"] = repr(e)
    return out


def stats(cmd: str) -> dict:
    out: dict[str, Any] = {"pid": os.getpid(), "threads": {t.native_id: t.name for t in threading.enumerate()},
                           "first": STATE.first_write, "last": STATE.last_write, "samples": STATE.samples,
                           "lat_n": len(STATE.lat_ns), "rss": rss_bytes()}
    rt = STATE.runtime
    if rt is not None and rt.pipeline is not None:
        ps = rt.pipeline.stats()
        out["pipeline"] = {k: v for k, v in ps.items() if isinstance(v, (int, float, str, bool)) or v is None}
    if rt is not None:
        sts = [c.status() for c in rt.collectors]
        out["sources"] = [{"kind": st.kind, "connected": st.connected, "subscribed": st.subscribed,
                           "rejects": sum(st.rejects.values())} for st in sts]
        out["restore_pending"] = rt.restore_pending()
    if cmd == "lat":
        out["lat"] = STATE.lat_ns
    if cmd == "memory":
        out["memory"] = memory_report()
    return out


def _serve(d: Path) -> None:
    req, resp = d / "req.json", d / "resp.json"
    seen = -1
    while True:
        time.sleep(0.05)
        try:
            r = json.loads(req.read_text())
        except (OSError, ValueError):
            continue
        if r.get("seq") == seen:
            continue
        seen = r.get("seq")
        cmd = r.get("cmd", "stats")
        try:
            if cmd == "reset":
                STATE.lat_ns, STATE.first_write, STATE.last_write, STATE.samples = [], 0.0, 0.0, 0
            elif cmd == "drain":  # the latencies noted since the last drain, then forgotten
                lat, STATE.lat_ns = STATE.lat_ns, []
                body = {"seq": seen, **stats(cmd), "lat": lat}
                tmp = d / "resp.tmp"
                tmp.write_text(json.dumps(body))
                tmp.replace(resp)
                continue
            elif cmd == "baseline":
                import tracemalloc

                if tracemalloc.is_tracing():
                    STATE.baseline = tracemalloc.take_snapshot().filter_traces(
                        [tracemalloc.Filter(False, tracemalloc.__file__)])
            body = {"seq": seen, **stats(cmd)}
        except Exception as e:
            body = {"seq": seen, "error": repr(e)}
        tmp = d / "resp.tmp"
        tmp.write_text(json.dumps(body))
        tmp.replace(resp)


def install(directory: str) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get("GWANJE_BENCH_TRACEMALLOC", "0") or 0)
    if frames:
        import tracemalloc

        tracemalloc.start(frames)
    _patch_runtime()
    threading.Thread(target=_serve, args=(d,), name="bench-hook", daemon=True).start()


class HookClient:
    """The bench's side: ask(cmd) -> the process's answer (dict)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.seq = 0

    def ask(self, cmd: str = "stats", timeout: float = 30.0) -> dict:
        self.seq += 1
        tmp = self.dir / "req.tmp"
        tmp.write_text(json.dumps({"seq": self.seq, "cmd": cmd}))
        tmp.replace(self.dir / "req.json")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = json.loads((self.dir / "resp.json").read_text())
                if r.get("seq") == self.seq:
                    return r
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise TimeoutError(f"the collect process did not answer {cmd!r} (bench hook in {self.dir})")

    def threads(self) -> dict[int, str]:
        try:
            return {int(k): v for k, v in self.ask("stats", timeout=5)["threads"].items()}
        except (TimeoutError, KeyError):
            return {}


def hook_env(directory: Path, repo: Path) -> dict[str, str]:
    """The environment that loads this hook into a Python process started from `repo`."""
    pp = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(repo / "bench" / "_hook"), str(repo), pp) if p),
            "GWANJE_BENCH_HOOK": str(directory)}
