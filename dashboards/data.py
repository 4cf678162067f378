"""The one data-access layer of the control room: every page and callback reads through here.

Two halves:
- pure view models (`build_snapshot`, `state_of`): from config + newest samples + a clock to
  what a tile shows (state, stale flag, data age, counts, LOT). No I/O; tested with
  hand-picked timestamps.
  Data age runs on this process's clock: a machine was last heard at its newest sample's
  source time, or at the moment this process first saw that sample if that was earlier (a
  source clock running ahead), so a machine stamping the future still goes stale when it goes
  silent. A newest sample stamped more than clock.future_tolerance_s ahead is "clock ahead":
  stale too, never shown as the machine's state.
- `DataLayer`: the Store behind a short-TTL cache shared by every callback of the process
  (dashboards/cache.py TTLCache), or by every process and gunicorn worker when Redis is
  configured (RedisCache), so ten wall displays refreshing every 2 s cost the store one query
  per TTL, not ten. Concurrent misses for the same key wait for one query (single flight)
  instead of racing. `local` is always this process's own cache: for what is per-process
  state rather than a store query (a live AlarmService's flood view), never shared.

Store errors never reach a page as a traceback: a failed query raises `DataUnavailable`,
which pages show as "storage not answering" while the last good view stays on screen.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import polars as pl

from gwanje.config import ClockConfig, Config, MachineSpec
from gwanje.model import NS_PER_S, MachineState, Quality, Sample
from gwanje.rejects import Rejects
from storage.base import Store

from dashboards.cache import Cache, TTLCache

__all__ = ["DataLayer", "DataUnavailable", "TTLCache", "build_snapshot", "trend_from_frame"]

# ----------------------------------------------------------------------------- view models

Series = tuple[str, str, str, str]  # (site, line, machine, signal)


@dataclass(frozen=True)
class MachineView:
    site: str
    line: str
    machine: str
    state: MachineState  # UNKNOWN when stale, without data, or the code is not mapped
    code: Optional[float | str]  # the raw PLC state code last seen (None: none seen)
    stale: bool  # silent, or its clock too far ahead: its last values may not be its state now
    age_s: Optional[float]  # now - when the machine was last heard (heard_ts); None: no sample ever
    total: Optional[float]
    good: Optional[float]
    reject: Optional[float]
    lot: Optional[str]
    last_ts: Optional[int]
    # no sample within the horizon the data was read over: silent at least this long
    silent_over_s: Optional[float] = None
    silent: bool = False  # not heard for longer than stale_after_s, or no data at all
    # the newest source time is this far ahead of now, beyond clock.future_tolerance_s: the
    # source's clock is fast (None: it is not)
    ahead_s: Optional[float] = None
    # when the machine was last heard: its newest source time, or when this process first saw
    # that sample if that was earlier (never later than now)
    heard_ts: Optional[int] = None

    @property
    def key(self) -> str:
        return f"{self.site}/{self.line}/{self.machine}"

    @property
    def clock_ahead(self) -> bool:
        return self.ahead_s is not None

    @property
    def unmapped(self) -> bool:
        """Fresh data whose state code the config does not know."""
        return not self.stale and self.code is not None and self.state is MachineState.UNKNOWN


@dataclass(frozen=True)
class LineView:
    site: str
    line: str
    machines: tuple[MachineView, ...]

    @property
    def running(self) -> int:
        return sum(1 for m in self.machines if m.state is MachineState.RUNNING)

    @property
    def total(self) -> int:
        return len(self.machines)


@dataclass(frozen=True)
class SiteView:
    site: str
    lines: tuple[LineView, ...]


@dataclass(frozen=True)
class PlantSnapshot:
    now_ns: int
    sites: tuple[SiteView, ...]
    newest_ts: Optional[int]  # when the plant was last heard: the newest heard_ts of its machines
    machines: dict[str, MachineView] = field(default_factory=dict)  # by "site/line/machine"

    @property
    def age_s(self) -> Optional[float]:
        return None if self.newest_ts is None else max(0.0, (self.now_ns - self.newest_ts) / NS_PER_S)

    def machine(self, site: str, line: str, machine: str) -> Optional[MachineView]:
        return self.machines.get(f"{site}/{line}/{machine}")

    def line(self, site: str, line: str) -> Optional[LineView]:
        for s in self.sites:
            if s.site == site:
                return next((ln for ln in s.lines if ln.line == line), None)
        return None

    def site(self, site: str) -> Optional[SiteView]:
        return next((s for s in self.sites if s.site == site), None)


def state_of(spec: MachineSpec, sample: Optional[Sample]) -> MachineState:
    """The state a state sample means for this machine's class; never a guess."""
    if sample is None:
        return MachineState.UNKNOWN
    return spec.klass.state_codes.mapping().state(sample.value, sample.quality is Quality.BAD)


def lot_signal(spec: MachineSpec) -> Optional[str]:
    """The LOT signal: the one named `lot`, else the class's first text signal."""
    ids = [s.id for s in spec.signals]
    if "lot" in ids:
        return "lot"
    return next((s.id for s in spec.signals if s.kind == "text"), None)


def _num(sample: Optional[Sample]) -> Optional[float]:
    return sample.value if sample is not None and isinstance(sample.value, float) else None


def machine_view(spec: MachineSpec, latest: dict[str, Sample], now_ns: int, stale_after_s: float,
                 horizon_s: Optional[float] = None, seen_ns: Optional[Mapping[Series, int]] = None,
                 future_tolerance_s: float = ClockConfig().future_tolerance_s) -> MachineView:
    """One tile's content from the newest sample of each of the machine's signals.
    seen_ns: when this process first saw each series' newest sample (its clock); a sample not
    in it was seen now."""
    k = spec.klass
    seen = seen_ns or {}
    last_ts = max((s.ts for s in latest.values()), default=None)
    heard = max((min(s.ts, seen.get(s.series, now_ns), now_ns) for s in latest.values()), default=None)
    age_s = None if heard is None else (now_ns - heard) / NS_PER_S
    silent = age_s is None or age_s > stale_after_s
    ahead = last_ts - now_ns if last_ts is not None else 0
    ahead_s = ahead / NS_PER_S if ahead > future_tolerance_s * NS_PER_S else None
    stale = silent or ahead_s is not None
    state_sample = latest.get(k.state_signal)
    # a stale machine may have changed state since: showing the last state would be a lie
    state = MachineState.UNKNOWN if stale else state_of(spec, state_sample)
    lot_id = lot_signal(spec)
    lot_sample = latest.get(lot_id) if lot_id else None
    return MachineView(
        site=spec.site, line=spec.line, machine=spec.machine, state=state,
        code=state_sample.value if state_sample is not None else None,
        stale=stale, age_s=age_s,
        total=_num(latest.get(k.total_signal)) if k.total_signal else None,
        good=_num(latest.get(k.good_signal)) if k.good_signal else None,
        reject=_num(latest.get(k.reject_signal)) if k.reject_signal else None,
        lot=lot_sample.value if lot_sample is not None and isinstance(lot_sample.value, str) else None,
        last_ts=last_ts,
        silent_over_s=horizon_s if last_ts is None else None,
        silent=silent, ahead_s=ahead_s, heard_ts=heard,
    )


def build_snapshot(config: Config, samples: Iterable[Sample], now_ns: int,
                   horizon_s: Optional[float] = None, seen_ns: Optional[Mapping[Series, int]] = None) -> PlantSnapshot:
    """The whole plant as the overview shows it. Samples of machines the config does not know
    are ignored here (the collectors count those); machines without samples are stale.
    horizon_s: how far back `samples` reach; a machine without any was silent at least that long.
    seen_ns: when this process first saw each series' newest sample (see machine_view)."""
    by_machine: dict[tuple[str, str, str], dict[str, Sample]] = {}
    for s in samples:
        sigs = by_machine.setdefault((s.site, s.line, s.machine), {})
        old = sigs.get(s.signal)
        if old is None or s.ts > old.ts:
            sigs[s.signal] = s
    stale_after = config.plant.stale_after_s
    tolerance = config.system.clock.future_tolerance_s
    index: dict[str, MachineView] = {}
    sites = []
    for site in config.plant.sites:
        lines = []
        for ln in site.lines:
            views = []
            for m in ln.machines:
                spec = config.machine(site.id, ln.id, m.id)
                assert spec is not None
                v = machine_view(spec, by_machine.get(spec.key, {}), now_ns, stale_after, horizon_s, seen_ns,
                                 tolerance)
                index[v.key] = v
                views.append(v)
            lines.append(LineView(site.id, ln.id, tuple(views)))
        sites.append(SiteView(site.id, tuple(lines)))
    newest = max((v.heard_ts for v in index.values() if v.heard_ts is not None), default=None)
    return PlantSnapshot(now_ns=now_ns, sites=tuple(sites), newest_ts=newest, machines=index)


@dataclass(frozen=True)
class Trend:
    """One downsampled series, ready for a plotly dict figure (x: plant-local time strings)."""

    signal: str
    x: list[str]
    y: list[Optional[float]]  # None: a break where the source was silent


WINDOWS_S = {"15m": 15 * 60, "1h": 3600, "8h": 8 * 3600, "24h": 24 * 3600}


GAP_FACTOR = 5  # a silence longer than this many usual steps is drawn as a break


def trend_from_frame(signal: str, frame: pl.DataFrame, timezone: str) -> Trend:
    """Store frame (ts ns, value) -> plant-local time strings plotly reads as dates.

    Where the source was silent (a step over GAP_FACTOR times the median step) a None is put
    in, so the chart shows a break instead of a straight line inventing values nobody sent."""
    if frame.height == 0:
        return Trend(signal, [], [])
    frame = frame.sort("ts")
    if frame.height > 2:
        step = frame["ts"].diff().drop_nulls()
        gap = step.median() * GAP_FACTOR
        if gap and bool((step > gap).any()):
            breaks = frame.filter(pl.col("ts").diff() > gap).select(
                (pl.col("ts") - 1).alias("ts"), pl.lit(None, dtype=pl.Float64).alias("value"))
            frame = pl.concat([frame.select("ts", pl.col("value").cast(pl.Float64)), breaks]).sort("ts")
    x = (
        frame.select(
            pl.from_epoch(pl.col("ts"), time_unit="ns")
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(timezone)
            .dt.strftime("%Y-%m-%d %H:%M:%S%.3f")
        )
        .to_series()
        .to_list()
    )
    return Trend(signal, x, frame["value"].cast(pl.Float64).to_list())


# the LOT's own signals (docs/lots.md): what the MES says of the LOT, not a process value
LOT_SIGNAL_IDS = ("lot", "lot_product", "lot_qty", "lot_parents")


def numeric_signals(spec: MachineSpec) -> list[str]:
    """Signals a trend makes sense for (not state codes, not text, not the LOT's planned
    quantity `lot_qty`, an analog signal of every class that only changes with the LOT)."""
    return [s.id for s in spec.signals if s.kind in ("analog", "counter") and s.id not in LOT_SIGNAL_IDS]


# ----------------------------------------------------------------------------- cache + store


class DataUnavailable(Exception):
    """The store failed; the page keeps its last view and says so."""


class DataLayer:
    """What pages call. `clock` returns ns since epoch (tests pin it)."""

    def __init__(self, config: Config, store: Store, ttl_s: float = 1.0,
                 clock: Callable[[], int] = time.time_ns, recent_s: float = 900.0,
                 cache: Optional[Cache] = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        # store queries: through `cache` (shared when it is a RedisCache); per-process state: `local`
        self.cache: Cache = cache if cache is not None else TTLCache(ttl_s)
        self.local = TTLCache(self.cache.ttl_s)
        self.recent_s = max(recent_s, config.plant.stale_after_s * 2)
        self._known = {m.key for m in config.machines()}
        self._seen: dict[Series, Sample] = {}
        # when this process first saw each series' newest sample, on its own clock: the data
        # age of a source whose clock runs ahead (machine_view)
        self._seen_at: dict[Series, int] = {}
        self._seen_lock = threading.Lock()
        self.failures = Rejects("dashboard-store")

    def _query(self, key: Any, load: Callable[[], Any]) -> Any:
        try:
            return self.cache.get(key, load)
        except DataUnavailable:
            raise
        except Exception as e:  # any store failure: the page shows it, the server lives on
            # counted and logged at most once per interval: a wall of displays polling a dead
            # store must not flood the log
            self.failures.reject(type(e).__name__, str(e))
            raise DataUnavailable(f"{type(e).__name__}: {e}") from e

    def latest(self, now_ns: Optional[int] = None) -> list[Sample]:
        """Newest sample of every series seen within recent_s (the store call the overview
        makes). Asking for the newest over all time scans the whole history: ~0.3 s per
        million samples in DuckDB here, seconds after a shift; the recent window stays ~ms."""
        now = self.clock() if now_ns is None else now_ns
        since = now - int(self.recent_s * NS_PER_S)
        return self._query(("latest", self.recent_s), lambda: self.store.latest(since_ns=since))

    def _remember(self, samples: Sequence[Sample], now: int) -> tuple[list[Sample], dict[Series, int]]:
        """Merge into the newest sample seen per series of a configured machine (bounded by
        the config: names the config does not know are not kept); return them all, with when
        each was first seen."""
        with self._seen_lock:
            for smp in samples:
                key = smp.series
                if key[:3] not in self._known:
                    continue
                old = self._seen.get(key)
                if old is None or smp.ts >= old.ts:
                    if old is None or smp.ts > old.ts:
                        self._seen_at[key] = now
                    self._seen[key] = smp
            return list(self._seen.values()), dict(self._seen_at)

    def plant_snapshot(self, now_ns: Optional[int] = None) -> PlantSnapshot:
        """The plant now. A machine silent for longer than recent_s keeps the last values this
        process saw (state hidden: stale); one never seen since start shows "silent > recent_s"."""
        now = self.clock() if now_ns is None else now_ns
        merged, seen = self._remember(self.latest(now), now)
        return build_snapshot(self.config, merged, now, horizon_s=self.recent_s, seen_ns=seen)

    def signal_trend(self, site: str, line: str, machine: str, signal: str, window_s: float,
                     max_points: Optional[int] = None, now_ns: Optional[int] = None) -> Trend:
        points = max_points or self.config.system.ui.trend_points
        end = self.clock() if now_ns is None else now_ns
        # the window end is rounded to the TTL so displays asking within it share one query
        ttl_ns = max(1, int(self.cache.ttl_s * NS_PER_S))
        end_q = (end // ttl_ns + 1) * ttl_ns
        start_q = end_q - int(window_s * NS_PER_S)

        def load() -> Trend:
            frame = self.store.series(site, line, machine, signal, start_q, end_q, points)
            return trend_from_frame(signal, frame, self.config.plant.timezone)

        return self._query(("series", site, line, machine, signal, window_s, points, end_q), load)

    def machine_trends(self, site: str, line: str, machine: str, window_s: Optional[float] = None,
                       signals: Optional[Sequence[str]] = None, max_points: Optional[int] = None,
                       now_ns: Optional[int] = None) -> dict[str, Trend]:
        """Downsampled series of every numeric signal of the machine (or the ones asked)."""
        spec = self.config.machine(site, line, machine)
        if spec is None:
            return {}
        window = window_s or self.config.system.ui.trend_window_s
        wanted = list(signals) if signals is not None else numeric_signals(spec)
        return {sig: self.signal_trend(site, line, machine, sig, window, max_points, now_ns) for sig in wanted}
