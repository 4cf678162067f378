"""One process of Gwanje, assembled from roles.

  demo      = embedded broker (unless mqtt.url is set) + simulator + collect + serve, one process
  simulate  = the simulated machines only (MQTT publisher + OPC UA servers); real devices are
              never simulated, and simulator.enabled false leaves the demo without it
  collect   = collectors -> pipeline -> store, with engine and alarm listeners; /healthz /readyz /metrics
  serve     = the Dash control room over the store

The embedded store (DuckDB) is one file that one process owns: with it, collect and serve run
in the same process (the demo). Split deployments use InfluxDB.

A store that is unreachable at start is no reason not to collect: samples go to the spool,
and what needs the stored past — the engine's warm start (the running shift) and the alarm
service's restore — is retried by the ticker until the store answers. Until then status()
says which restores are pending (/readyz is not ready: the store is down). The engine's warm
start waits until the spool and the pipeline's pending events are drained, so that the store
holds every sample the engine has already seen; it then replaces the engine's live state by
the one rebuilt from the whole shift (the newest counter reading becomes the baseline, so no
production is lost or counted twice).

The warm start never delays the start: reading a shift of stored samples takes seconds to a
minute, so the collectors subscribe at once and the engine counts live meanwhile. The heavy
read (Engine.rebuild) begins once every source is subscribed (WARM_START_AFTER_S at the
latest: it is CPU-bound and would slow the connects) and runs in its own thread without the engine's lock; the swap
(Engine.adopt: the samples stored since that read, then the rebuilt state in place) runs in
the pipeline's writer thread just before it hands the engine a batch — the one point where
every batch the engine has seen is written (or spooled, and then it waits for the spool). A
plant that sends nothing for ADOPT_QUIET_S lets the ticker do the swap instead, once the
pipeline's counters show the writer is done with the engine's last batch. Until the swap the
engine writes no state record of the interval a machine's first live sample opened (Engine.warming);
the swap writes the running shift's state and counts records again from the rebuilt runs, so the
stored records the UI reads are those of an engine that never stopped.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Optional

from gwanje.config import Config, Secrets
from gwanje.model import now_ns

log = logging.getLogger("gwanje")

MAX_ENGINE_UNWRITTEN = 100_000  # engine records held while the store is down (~a day of minutes)
# SIGTERM to exit, whatever the state (store hung, spool replaying, broker down): inside the
# usual 5 s a supervisor grants before SIGKILL
STOP_GRACE_S = 3.0
# no batch for the engine for this long, and the last one's write is done: the ticker may
# finish the warm start itself
ADOPT_QUIET_S = 1.0
# the rebuild (CPU-bound, it holds the GIL for long stretches) begins once every source is
# subscribed, so it does not slow the connects down; at the latest this long after the start
WARM_START_AFTER_S = 10.0
# the pipeline counters one of which moves when the writer is done with a batch
_WRITE_MARKS = ("batches_written", "write_errors", "samples_spooled", "samples_dropped", "samples_refused")


class Runtime:
    """Starts and stops the pieces of one process; status() feeds /readyz, /metrics and the UI."""

    def __init__(self, config: Config, data_dir: Path, secrets: Optional[Secrets] = None,
                 mqtt_url: Optional[str] = None, instance_name: Optional[str] = None) -> None:
        self.config = config
        # which collect this is (bus status topics, /metrics): the partition's instance
        # (`collect --instance NAME` or GWANJE_INSTANCE, gwanje.partition), else control.instance
        # (GWANJE_INSTANCE overrides it in gwanje.config), default "collect"
        self.instance_name = instance_name or config.instance or config.system.control.instance
        self.data_dir = Path(data_dir)
        self.secrets = secrets or Secrets.from_env()
        self.mqtt_url = mqtt_url or config.system.mqtt.url
        self.started_ns = now_ns()
        self.broker = None
        self.simulator = None
        self.store = None
        self.pipeline = None
        self.collectors: list[Any] = []
        self.engine = None
        self.alarms = None
        self.lots = None  # gwanje.lots.LotTracker in collect
        self.quality = None  # quality.service.QualityService in collect
        # the control bus (runtime/control.py): its command server (collect); in a serve
        # without a local alarm service, the remote alarm source
        self.control = None
        self.remote_alarms = None
        self._ticker: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self.warm_start_pending = False
        self._warm_failures = 0
        self._warm_lock = threading.Lock()  # the swap of the warm start vs. the engine's batches
        self._warm_thread: Optional[threading.Thread] = None
        self._rebuilt: Any = None  # Engine.rebuild's result, waiting for the swap
        self._last_engine_batch = time.monotonic()
        self._engine_batch_mark: Optional[tuple] = None  # _write_marks() when the engine got its last batch
        self._engine_unwritten: list[Any] = []  # engine records the store refused; retried
        self._meta_unwritten: list[Any] = []  # signal_meta records not stored yet; retried

    # ------------------------------------------------------------------ roles
    def start_broker_if_needed(self) -> None:
        if not self.mqtt_url:
            from runtime.broker import EmbeddedBroker

            self.broker = EmbeddedBroker().start()
            self.mqtt_url = self.broker.url

    def start_simulator(self) -> None:
        """The simulated machines (plant.yaml `simulated`), unless there are none or
        simulator.enabled is false: then the process runs on real devices only (said once)."""
        from simulator.runner import Simulator, nothing_to_simulate

        idle = nothing_to_simulate(self.config)
        if idle:
            log.info("running without the simulator: %s; every machine's data comes from a real device", idle)
            return
        if not self.mqtt_url:
            raise SystemExit("simulate needs an MQTT broker: set mqtt.url in system.yaml or GWANJE_MQTT_URL")
        sim = self.config.system.simulator
        self.simulator = Simulator(self.config, self.mqtt_url, seed=sim.seed, period_s=sim.period_s,
                                   data_dir=self.data_dir, secrets=self.secrets)
        self.simulator.start()
        log.info("simulated sites running (seed %d)", sim.seed)

    def open_store(self) -> Any:
        if self.store is None:
            from storage import StoreUnavailable, open_store

            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                self.store = open_store(self.config, self.data_dir, self.secrets)
            except StoreUnavailable as e:
                # start anyway: the pipeline spools until the store answers (storage.spool)
                from storage.spool import DeferredStore

                log.warning("store not reachable at start (%s); spooling until it is", e)
                self.store = DeferredStore(lambda: open_store(self.config, self.data_dir, self.secrets),
                                           name=self.config.system.storage.kind)
        return self.store

    def start_collect(self) -> None:
        from alerts.service import AlarmService, engine_oee
        from collectors import build_collectors
        from gwanje.engine import Engine
        from runtime.pipeline import Pipeline
        from storage.deadletter import open_deadletter
        from storage.spool import open_spool

        store = self.open_store()
        self.engine = Engine(self.config)
        # the engine counts live from now on, but writes no record of an interval it only
        # saw begin because we did: the warm start writes the running shift's true records
        self.engine.warming = True
        self.warm_start_pending = True  # begun once the collectors are started
        store_ok = self._store_ok()
        if not store_ok:  # the ticker begins it once the store answers
            log.warning("store unreachable at start: engine warm start and alarm restore wait for it")
        self.alarms = AlarmService.from_config(self.config, store, oee=engine_oee(self.engine))
        from gwanje.lots import LotTracker

        # LOT steps, genealogy, index and holds (docs/lots.md): after the alarms, so an alarm a
        # batch raises finds the LOT the same batch started
        self.lots = LotTracker(self.config)
        self._lot_restore_at = 0.0
        self._batch_alarms: list[Any] = []
        # SPC, anomaly and reject risk (docs/quality.md): after the LOTs; its alarms go through
        # the alarm service's lifecycle
        from gwanje.quality import load_quality

        qdef = load_quality(self.config)
        listeners = [self._engine_listener, self._alarm_listener, self._lot_listener]
        if qdef.classes() and any(m.definition.klass in qdef.classes() for m in self.config.machines()):
            from quality.service import QualityService

            self.quality = QualityService(self.config, self.data_dir, qdef)
            self._quality_seeded = False
            listeners.append(self._quality_listener)
        st = self.config.system.storage
        self.pipeline = Pipeline(store, batch_size=st.batch_size, flush_interval_s=st.flush_interval_ms / 1000,
                                 queue_size=st.queue_size, listeners=listeners,
                                 backpressure_s=st.backpressure_ms / 1000,
                                 spool=open_spool(self.config.system.spool, self.data_dir),
                                 deadletter=open_deadletter(self.config.system.deadletter, self.data_dir,
                                                            store=st.kind))
        self.alarms.write_events = self._write_alarm_events
        # until the warm start is adopted, each batch is stored before the engine sees the next
        # (_ready_for_warm_start: what the engine saw is in the store or the spool)
        self.pipeline.overlap = False
        self.pipeline.start()
        # units and names for InfluxQL / Grafana users (storage.schema signal_meta); written
        # by the ticker once the store answers if it does not now. Not an engine record: the
        # warm start does not wait for them
        from gwanje.signal_meta import signal_meta_events

        self._meta_unwritten = signal_meta_events(self.config, now_ns())
        if self._store_ok():
            self._write_signal_meta()
        self.collectors = build_collectors(self.config, self.pipeline, self.secrets, mqtt_url=self.mqtt_url,
                                           data_dir=self.data_dir)
        for c in self.collectors:
            c.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="gwanje-tick", daemon=True)
        self._ticker.start()
        if self.config.instance is not None:
            mine = [f"{s.id}/{ln.id}" for s in self.config.plant.sites for ln in s.lines]
            log.info("collect instance %s: lines %s; MQTT client id %s, subscriptions %s; OPC UA endpoints %s",
                     self.config.instance, mine, self.config.system.mqtt.client_id,
                     self.config.system.mqtt.subscriptions, [e.name for e in self.config.system.opcua.endpoints])
        self.start_control()
        log.info("collecting from %d sources into %s", len(self.collectors), getattr(store, "name", "store"))

    def _tick_loop(self) -> None:
        """Wall-clock time for what data alone cannot drive: alarm delays, stale data, shelve
        expiry and escalation (every second); shift closes when the whole plant is silent (the
        engine, every 10 s)."""
        n = 0
        while not self._stopping.wait(1.0):
            n += 1
            now = now_ns()
            try:
                if self.warm_start_pending:
                    self._tick_warm_start()
                if self.alarms is not None:
                    self.alarms.tick(now)  # writes its own events; retries its restore
                if self.engine is not None and n % 10 == 0 and self.pipeline is not None:
                    self._write_engine_events(self.engine.tick(now))
                if self.lots is not None and n % 10 == 5 and self.pipeline is not None:
                    self._write_engine_events(self.lots.tick(now))
                if self.quality is not None and n % 10 == 7 and self.pipeline is not None:
                    ev = self.quality.tick(self.store, now)
                    self._write_engine_events(ev + self._quality_alarms())
                if self._meta_unwritten and n % 2 == 0 and self._store_ok():
                    self._write_signal_meta()
            except Exception:  # keep ticking; a store outage must not end alarm timing
                log.exception("tick failed")

    def _alarm_listener(self, samples: Any) -> Any:
        events = self.alarms.on_samples(samples)
        self._batch_alarms = list(events or ())
        return events

    def _write_alarm_events(self, events: Any) -> None:
        """The alarm service's own writes (delays, shelve expiry, operator actions): with the
        LOT holds an alarm raised puts."""
        events = list(events)
        holds = self.lots.on_alarm_events(events) if self.lots is not None else []
        self.pipeline.write_events(events + holds)

    def _lot_listener(self, samples: Any) -> Any:
        """The LOT tracker's listener, in the writer thread after the alarms: at the first
        batch (and until the store answers) the live LOT index is restored from the store,
        which holds every sample of the batches before this one."""
        lots = self.lots
        out: list[Any] = []
        if not lots.restored and time.monotonic() >= self._lot_restore_at:
            self._lot_restore_at = time.monotonic() + 5.0
            try:
                out += lots.restore(self.store, now_ns())
            except Exception as e:  # a store outage: the samples wait in the store, tried again
                log.warning("LOT index not restored yet (%s); retrying", type(e).__name__)
        alarms, self._batch_alarms = self._batch_alarms, []
        out += lots.on_samples(samples)
        out += lots.on_alarm_events(alarms)
        return out

    def _quality_alarms(self) -> list[Any]:
        """The quality monitor's alarm calls, through the alarm service's lifecycle."""
        q = self.quality
        if q is None or self.alarms is None:
            return []
        if not self._quality_seeded and self.alarms.restored:
            q.monitor.seed_active(s.id for s in self.alarms.active())
            self._quality_seeded = True
        return self.alarms.apply_calls(q.monitor.take_calls())

    def _quality_listener(self, samples: Any) -> Any:
        out = self.quality.monitor.on_samples(samples)
        return out + self._quality_alarms()

    def _store_ok(self) -> bool:
        try:
            return self.store is not None and bool(self.store.ping())
        except Exception:
            return False

    def _ready_for_warm_start(self) -> bool:
        """The store answers and holds every sample the engine has seen (nothing spooled or
        pending), so rebuilding from it loses nothing the engine counted live."""
        p = self.pipeline
        if p is None or not self._store_ok():
            return False
        spooled = p.spool.batches if p.spool is not None else 0
        return not spooled and not p.stats().get("events_pending") and not self._engine_unwritten

    def _engine_listener(self, samples: Any) -> Any:
        """The engine's pipeline listener, in the writer thread before `samples` are written:
        every batch it handed the engine before is stored or spooled now, so a rebuilt warm
        start is put in place here, then the batch goes to the engine."""
        with self._warm_lock:
            if self.warm_start_pending:
                self._last_engine_batch = time.monotonic()
                self._engine_batch_mark = self._write_marks()
                if self._rebuilt is not None and self._ready_for_warm_start():
                    self._adopt()
        return self.engine.on_samples(samples)

    def _write_marks(self) -> tuple:
        st = self.pipeline.stats() if self.pipeline is not None else {}
        return tuple(st.get(k) for k in _WRITE_MARKS)

    def _tick_warm_start(self) -> None:
        """Begin the rebuild once the store answers and holds everything; swap it in when the
        plant has sent the engine nothing for ADOPT_QUIET_S and the writer is done with the
        last batch it did (no listener call would swap it in)."""
        if self._rebuilt is None:
            waited = (now_ns() - self.started_ns) / 1e9 >= WARM_START_AFTER_S
            subscribed = all(c.status().subscribed for c in self.collectors)
            if (subscribed or waited) and self._ready_for_warm_start():
                self._begin_warm_start()
            return
        with self._warm_lock:
            quiet = time.monotonic() - self._last_engine_batch >= ADOPT_QUIET_S
            written = self._engine_batch_mark is None or self._write_marks() != self._engine_batch_mark
            if self.warm_start_pending and quiet and written and self._ready_for_warm_start():
                self._adopt()

    def _begin_warm_start(self) -> None:
        """Engine.rebuild in its own thread (unless one runs or waits for its swap)."""
        if self._rebuilt is not None or (self._warm_thread is not None and self._warm_thread.is_alive()):
            return
        self._warm_thread = threading.Thread(target=self._rebuild, name="gwanje-warm-start", daemon=True)
        self._warm_thread.start()

    def _rebuild(self) -> None:
        from gwanje.engine import RebuildCancelled

        t = time.monotonic()
        try:
            rebuilt = self.engine.rebuild(self.store, now_ns(), cancelled=self._stopping.is_set)
        except RebuildCancelled:
            return
        except Exception:
            # e.g. the store went away again between ping and read: the ticker tries again
            # every 2 s, so the reason is logged once, not every time
            if not self._warm_failures and not self._stopping.is_set():
                log.exception("engine warm start failed; will retry (the shift so far counts from now until then)")
            self._warm_failures += 1
            return
        self._rebuilt = rebuilt
        log.info("engine warm start: the running shift read from the store in %.1f s", time.monotonic() - t)

    def _adopt(self) -> None:
        """Engine.adopt (caller holds _warm_lock, the store holds all the engine has seen)."""
        rebuilt, self._rebuilt = self._rebuilt, None
        try:
            events = self.engine.adopt(self.store, rebuilt, now_ns())
        except Exception:
            if not self._warm_failures:
                log.exception("engine warm start failed; will retry (the shift so far counts from now until then)")
            self._warm_failures += 1
            return  # the ticker rebuilds again
        if self._warm_failures:
            log.warning("engine warm start done after the store came back (%d failed attempts)", self._warm_failures)
        self.warm_start_pending = False
        # from now on a batch's store write may overlap the next batch's listeners: the
        # warm start no longer needs every batch the engine saw to be stored before the next
        if self.pipeline is not None:
            self.pipeline.overlap = True
        # the running shift's state and counts records again, from the rebuilt runs: they
        # replace what the live runs wrote since the start (held and retried if refused now)
        self._write_engine_events(events)

    def _write_engine_events(self, events: list[Any]) -> None:
        """Engine records (shift closes, minutes) wait in memory, bounded, while the store is
        down, instead of being lost with a failed tick."""
        batch = self._engine_unwritten + list(events)
        if not batch:
            return
        try:
            self.pipeline.write_events(batch)
            self._engine_unwritten = []
        except Exception as e:
            self._engine_unwritten = batch[-MAX_ENGINE_UNWRITTEN:]
            log.warning("could not store %d engine records (%s); will retry", len(batch), type(e).__name__)

    def _write_signal_meta(self) -> None:
        try:
            self.pipeline.write_events(self._meta_unwritten)
            self._meta_unwritten = []
        except Exception as e:  # the store went away again: the ticker retries
            log.warning("could not store the signal units and names (%s); will retry", type(e).__name__)

    def owned_lines(self) -> list[tuple[str, str]]:
        """The (site, line)s whose alarms this collect owns: every line of the config."""
        return [(s.id, ln.id) for s in self.config.plant.sites for ln in s.lines]

    def start_control(self) -> None:
        """collect's end of the control bus, on a plant broker (mqtt.url; not the demo's
        embedded one: the one-process demo acts on its local alarm service)."""
        from runtime.control import CommandServer, command_key

        key = command_key(self.config, self.secrets)
        if self.alarms is None or not self.mqtt_url or self.broker is not None:
            return
        if key is None:
            log.error("control bus off: GWANJE_COMMAND_KEY is not set (serve processes cannot act on alarms)")
            return
        self.control = CommandServer(self.config, self.secrets, self.alarms, self.status, self.instance_name,
                                     self.mqtt_url, key, lines=self.owned_lines()).start()

    def create_ui(self) -> Any:
        from dashboards import create_app

        store = self.open_store()
        if self.alarms is None and self.mqtt_url and self.remote_alarms is None:
            from runtime.control import RemoteAlarms, command_key

            key = command_key(self.config, self.secrets)
            if key is None:
                log.error("control bus off: GWANJE_COMMAND_KEY is not set (alarms are read-only here)")
            else:
                self.remote_alarms = RemoteAlarms(self.config, self.secrets, store, self.mqtt_url, key).start()
        return create_app(self.config, store, self)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        store_ok = False
        if self.store is not None:
            try:
                store_ok = bool(self.store.ping())
            except Exception:
                store_ok = False
        return {
            "instance": self.instance_name,
            "pipeline": self.pipeline.stats() if self.pipeline else {},
            "sources": [dataclasses.asdict(c.status()) for c in self.collectors],
            "store": {"name": getattr(self.store, "name", "none"), "ok": store_ok},
            # what waits for the store to answer: the UI's status page and /readyz details
            "restore_pending": self.restore_pending(),
            "started_ns": self.started_ns,
            "simulator": self.simulator_status(),
            # the control bus (collect): connected, commands done, refusals by reason
            "control": self.control.summary() if self.control is not None else {},
        }

    def status_all(self) -> dict[str, Any]:
        """status() with every collect instance's sources from the control bus (the status
        page of a serve process; gwanje.bus.merge_status)."""
        from gwanje.bus import merge_status

        remotes = self.remote_alarms.statuses() if self.remote_alarms is not None else {}
        local_name = self.instance_name if self.collectors else ""
        return merge_status(self.status(), remotes, now_ns() // 1_000_000, local_name)

    def simulator_status(self) -> dict[str, Any]:
        """Which machines this process makes up (none without a simulator): fake from real."""
        sim = self.simulator
        if sim is None:
            return {"running": False, "machines": [], "unserved_endpoints": {}}
        return {"running": True, "machines": ["/".join(m.key) for m in sim.playing()],
                "unserved_endpoints": dict(sim.unserved)}

    def restore_pending(self) -> list[str]:
        """Which start-up restores from the store have not happened yet: "engine" (warm start
        of the running shift), "alarms" (alarm state); [] when both are done."""
        out = []
        if self.engine is not None and self.warm_start_pending:
            out.append("engine")
        if self.alarms is not None and not self.alarms.restored:
            out.append("alarms")
        return out

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every piece within grace_s: collectors in parallel (each waits on its own
        server), then the pipeline with what is left of the time. What is not done by then
        was never acknowledged to its source, which delivers it again."""
        deadline = time.monotonic() + grace_s
        self._stopping.set()
        if self.quality is not None:
            self.quality.stop()  # a training run in progress is dropped, the models stay
        for bus_end in (self.control, self.remote_alarms):
            if bus_end is not None:
                try:
                    bus_end.stop()
                except Exception:
                    log.exception("stopping the control bus")
        budget = grace_s / 2

        def stop_one(c: Any) -> None:
            try:
                c.stop(timeout=budget)
            except Exception:
                log.exception("stopping %s", getattr(c, "name", c))

        stoppers = [threading.Thread(target=stop_one, args=(c,), name="gwanje-stop", daemon=True)
                    for c in self.collectors]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(max(0.0, deadline - budget / 2 - time.monotonic()))
        if self.pipeline:
            self.pipeline.stop(timeout=max(0.5, deadline - time.monotonic()))
        if self.simulator:
            self.simulator.stop()
        warm = self._warm_thread
        if warm is not None:  # it stops between two machines: do not close the store under it
            warm.join(max(0.2, deadline - time.monotonic()))
        if self.store and not (warm is not None and warm.is_alive()):
            self.store.close()
        if self.broker:
            self.broker.stop()


def wait_forever(stop: threading.Event) -> None:
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass

