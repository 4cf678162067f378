"""One process of Gwanje, assembled from roles.

  demo      = embedded broker (unless mqtt.url is set) + simulator + collect + serve, one process
  simulate  = the simulated sites only (MQTT publisher + OPC UA servers)
  collect   = collectors -> pipeline -> store, with engine and alarm listeners; /healthz /readyz /metrics
  serve     = the Dash control room over the store

The embedded store (DuckDB) is one file that one process owns: with it, collect and serve run
in the same process (the demo). Split deployments use InfluxDB.
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


class Runtime:
    """Starts and stops the pieces of one process; status() feeds /readyz, /metrics and the UI."""

    def __init__(self, config: Config, data_dir: Path, secrets: Optional[Secrets] = None,
                 mqtt_url: Optional[str] = None) -> None:
        self.config = config
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
        self._ticker: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ roles
    def start_broker_if_needed(self) -> None:
        if not self.mqtt_url:
            from runtime.broker import EmbeddedBroker

            self.broker = EmbeddedBroker().start()
            self.mqtt_url = self.broker.url

    def start_simulator(self) -> None:
        from simulator.runner import Simulator

        if not self.mqtt_url:
            raise SystemExit("simulate needs an MQTT broker: set mqtt.url in system.yaml or GWANJE_MQTT_URL")
        sim = self.config.system.simulator
        self.simulator = Simulator(self.config, self.mqtt_url, seed=sim.seed, period_s=sim.period_s)
        self.simulator.start()
        log.info("simulated sites running (seed %d)", sim.seed)

    def open_store(self) -> Any:
        if self.store is None:
            from storage import open_store

            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.store = open_store(self.config, self.data_dir, self.secrets)
        return self.store

    def start_collect(self) -> None:
        from alerts.service import AlarmService, engine_oee
        from collectors import build_collectors
        from gwanje.engine import Engine
        from gwanje.pipeline import Pipeline
        from storage.spool import open_spool

        store = self.open_store()
        self.engine = Engine(self.config)
        try:  # the running shift from stored samples, so a restart does not cut it short
            self.engine.warm_start(store, now_ns())
        except Exception:
            log.exception("engine warm start failed; the shift so far counts from now")
        self.alarms = AlarmService.from_config(self.config, store, oee=engine_oee(self.engine))
        listeners = [self.engine.on_samples, self.alarms.on_samples]
        st = self.config.system.storage
        self.pipeline = Pipeline(store, batch_size=st.batch_size, flush_interval_s=st.flush_interval_ms / 1000,
                                 queue_size=st.queue_size, listeners=listeners,
                                 spool=open_spool(self.config.system.spool, self.data_dir))
        self.pipeline.start()
        self.collectors = build_collectors(self.config, self.pipeline, self.secrets, mqtt_url=self.mqtt_url)
        for c in self.collectors:
            c.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="gwanje-tick", daemon=True)
        self._ticker.start()
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
                if self.alarms is not None:
                    self.alarms.tick(now)  # writes its own events
                if self.engine is not None and n % 10 == 0 and self.pipeline is not None:
                    self.pipeline.write_events(self.engine.tick(now))
            except Exception:  # keep ticking; a store outage must not end alarm timing
                log.exception("tick failed")

    def create_ui(self) -> Any:
        from dashboards import create_app

        return create_app(self.config, self.open_store(), self)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        store_ok = False
        if self.store is not None:
            try:
                store_ok = bool(self.store.ping())
            except Exception:
                store_ok = False
        return {
            "pipeline": self.pipeline.stats() if self.pipeline else {},
            "sources": [dataclasses.asdict(c.status()) for c in self.collectors],
            "store": {"name": getattr(self.store, "name", "none"), "ok": store_ok},
            "started_ns": self.started_ns,
        }

    def stop(self) -> None:
        self._stopping.set()
        for c in self.collectors:
            try:
                c.stop()
            except Exception:
                log.exception("stopping %s", getattr(c, "name", c))
        if self.pipeline:
            self.pipeline.stop()
        if self.simulator:
            self.simulator.stop()
        if self.store:
            self.store.close()
        if self.broker:
            self.broker.stop()


def wait_forever(stop: threading.Event) -> None:
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def sleep_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
