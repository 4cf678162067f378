"""Runs the simulated sites: steps the Plant on the wall clock every period and hands the
values to the MQTT publisher (MQTT machines) and the sites' OPC UA servers (OPC UA machines).

Only machines marked `simulated` in plant.yaml are played; every other one is a real device
whose topic is never published and whose OPC UA endpoint is never served. An endpoint address
already taken (a real server listening there) is not served either: a warning says so and
the collector reads whatever server holds it, instead of the whole process exiting.

Threads: one asyncio loop thread owns the OPC UA servers; one stepping thread owns the Plant
and the publisher. The stepping thread never waits on OPC UA writes: if the previous write is
still running when the next step is due, that step's OPC UA values are skipped (and counted)
rather than queued without bound.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from gwanje.config import Config, MachineSpec, Secrets
from simulator.machines import Plant
from simulator.mqtt_publisher import MqttPublisher
from simulator.opcua_server import EndpointUnavailable, SiteServer, site_servers
from simulator.sparkplug_publisher import SparkplugEdgeNode

log = logging.getLogger("gwanje.simulator")


@dataclass
class SimulatorStatus:
    steps: int = 0
    mqtt_connected: bool = False
    mqtt_published: int = 0
    mqtt_dropped: int = 0
    opcua_writes: int = 0
    opcua_skipped_steps: int = 0
    opcua_servers: int = 0


class Simulator:
    def __init__(self, config: Config, mqtt_url: Optional[str], seed: Optional[int] = None,
                 period_s: Optional[float] = None, data_dir: Optional[Path] = None,
                 work_days_off: bool = False, secrets: Optional[Secrets] = None,
                 sparkplug_lines: Iterable[str] = (), lot_scale: Optional[float] = None) -> None:
        """mqtt_url None: OPC UA sites only. work_days_off: produce on the calendar's days off
        too (the engine's calendar still calls them planned stops). sparkplug_lines: lines
        ("line" or "site/line") whose MQTT machines speak Sparkplug B instead of JSON.
        lot_scale: LOT quantities x this (default simulator.lot_scale)."""
        self.config = config
        self.mqtt_url = mqtt_url
        self.seed = config.system.simulator.seed if seed is None else seed
        self.period_s = config.system.simulator.period_s if period_s is None else period_s
        self.machines = config.simulated_machines()
        self.plant = Plant(config, self.seed, work_days_off=work_days_off, machines=self.machines,
                           lot_scale=lot_scale)
        data_dir = Path(data_dir) if data_dir is not None else Path(os.environ.get("GWANJE_DATA_DIR", "data"))
        # ground truth of the seeded faults (docs/quality.md): for scoring only, Gwanje never reads it
        self.ground_truth = data_dir / "ground_truth" / "faults.jsonl"
        self._truth_seen: dict[int, int] = {}
        self.servers: list[SiteServer] = site_servers(config, self.machines, cert_dir=data_dir / "opcua", secrets=secrets)
        self.unserved: dict[str, str] = {}  # endpoint name -> why the simulator does not serve it
        has_mqtt = any(m.definition.source == "mqtt" for m in self.machines)
        self.publisher = (MqttPublisher(mqtt_url, config.system.mqtt, secrets, client_id="gwanje-simulator")
                          if mqtt_url and has_mqtt else None)
        chosen = set(sparkplug_lines)
        mqtt_lines = {(m.site, m.line) for m in self.machines if m.definition.source == "mqtt"}
        unknown = chosen - {x for site, line in mqtt_lines for x in (line, f"{site}/{line}")}
        if unknown:  # a typo must not silently leave a line on JSON
            raise ValueError(f"sparkplug lines {sorted(unknown)} have no simulated MQTT machines "
                             f"(lines with simulated MQTT machines: {sorted(f'{s}/{ln}' for s, ln in mqtt_lines)})")
        for site, line in sorted(mqtt_lines):
            real = [m.machine for m in config.machines() if (m.site, m.line) == (site, line)
                    and m.definition.source == "mqtt" and not m.simulated]
            if real and (line in chosen or f"{site}/{line}" in chosen):
                # the line's real gateway may itself be the Sparkplug edge node {site}/{line}: a
                # second one with the same id would scramble its births, deaths and sequence
                raise ValueError(f"sparkplug line {site}/{line} has real MQTT machines {real}: the simulator "
                                 f"plays a Sparkplug edge node only for a line whose MQTT machines are all simulated")
        self.edge_nodes: dict[tuple[str, str], SparkplugEdgeNode] = {
            (site, line): SparkplugEdgeNode(mqtt_url, site, line, config.system.mqtt, secrets)
            for site, line in sorted(mqtt_lines)
            if mqtt_url and (line in chosen or f"{site}/{line}" in chosen)}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._step_thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._status = SimulatorStatus()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ life cycle
    def start(self, timeout: float = 60.0) -> None:
        """Start the OPC UA servers (returns once they listen), the publisher and the stepping."""
        if self.servers:
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, name="sim-opcua", daemon=True)
            self._loop_thread.start()
            fut = asyncio.run_coroutine_threadsafe(self._start_servers(), self._loop)
            try:
                fut.result(timeout)
            except BaseException:
                self._stop_loop()
                raise
        if self.publisher:
            self.publisher.start()
        for node in self.edge_nodes.values():
            node.start()
        self._stop.clear()
        self._step_thread = threading.Thread(target=self._run, name="sim-step", daemon=True)
        self._step_thread.start()
        log.info("simulating %s", describe(self.config, {m.key for m in self.playing()}))

    async def _start_servers(self) -> None:
        started = []
        for s in self.servers:
            try:
                await s.start()
            except EndpointUnavailable as e:
                held = sorted(f"{m.site}/{m.line}/{m.machine}" for m in s.machines)
                log.warning("%s: the simulator does not serve it; the collector reads whatever server listens "
                            "there, also for the machines marked simulated on it (%d: %s)",
                            e, len(held), ", ".join(held))
                self.unserved[s.endpoint.name] = str(e)
                continue
            started.append(s)
        self.servers = started
        with self._lock:
            self._status.opcua_servers = len(started)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._step_thread:
            self._step_thread.join(timeout)
        if self.publisher:
            self.publisher.stop()
        for node in self.edge_nodes.values():
            node.stop()
        self._stop_loop(timeout)

    def _stop_loop(self, timeout: float = 10.0) -> None:
        if self._loop is None:
            return

        async def stop_all() -> None:
            for s in self.servers:
                try:
                    await s.stop()
                except Exception:
                    log.exception("OPC UA server %s did not stop cleanly", s.endpoint.name)

        try:
            asyncio.run_coroutine_threadsafe(stop_all(), self._loop).result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread:
                self._loop_thread.join(timeout)
            self._loop.close()
            self._loop = None

    # ------------------------------------------------------------------ stepping
    def _run(self) -> None:
        pending: Optional[Future] = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                pending = self.step_once(time.time_ns(), pending)
            except Exception:
                # one bad step must not end the demo; the next one starts from the model state
                log.exception("simulator step failed")
            next_at += self.period_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (suspended laptop, slow machine): do not burst to catch up
                next_at, delay = time.monotonic(), 0
            self._stop.wait(delay)

    def step_once(self, now_ns: int, pending: Optional[Future] = None) -> Optional[Future]:
        """One step: advance the plant, publish MQTT machines, hand OPC UA values to the servers.
        Returns the OPC UA write still in flight (if any)."""
        results = self.plant.step(now_ns)
        self._write_truth()
        opcua = []
        for spec, values in results:
            if spec.definition.source == "mqtt":
                node = self.edge_nodes.get((spec.site, spec.line))
                if node is not None:
                    node.publish(spec, now_ns, values)
                elif self.publisher:
                    self.publisher.publish(spec, now_ns, values)
            else:
                opcua.append((spec, values))
        with self._lock:
            self._status.steps += 1
        if opcua and self._loop is not None:
            if pending is not None and not pending.done():
                with self._lock:
                    self._status.opcua_skipped_steps += 1
                return pending
            pending = asyncio.run_coroutine_threadsafe(self._write(now_ns, opcua), self._loop)
            pending.add_done_callback(_log_failure)
        return pending

    async def _write(self, now_ns: int, batch: list) -> None:
        n = 0
        for s in self.servers:
            n += await s.write(now_ns, batch)
        with self._lock:
            self._status.opcua_writes += n

    def _write_truth(self) -> None:
        """Append the faults that ended since the last step to the ground-truth log."""
        seen = self._truth_seen
        new = [f for i, m in enumerate(self.plant.models) for f in m.fault_log[seen.get(i, 0):]]
        if not new:
            return
        import json

        try:
            self.ground_truth.parent.mkdir(parents=True, exist_ok=True)
            with open(self.ground_truth, "a", encoding="utf-8") as f:
                for rec in sorted(new, key=lambda r: r["end_ns"]):
                    f.write(json.dumps(rec, sort_keys=True) + "\n")
            for i, m in enumerate(self.plant.models):
                seen[i] = len(m.fault_log)
        except OSError as e:
            log.warning("ground truth not written (%s)", e)

    def playing(self) -> list[MachineSpec]:
        """The machines whose data this simulator makes up: the simulated ones, less those on
        an endpoint it could not serve (a real server holds it) or without a broker."""
        served = {srv.endpoint.name for srv in self.servers}

        def played(m: MachineSpec) -> bool:
            if m.opcua_endpoint:
                return m.opcua_endpoint in served
            return self.publisher is not None or (m.site, m.line) in self.edge_nodes

        return [m for m in self.machines if played(m)]

    def status(self) -> SimulatorStatus:
        with self._lock:
            st = SimulatorStatus(**self._status.__dict__)
        pubs = [p.status() for p in (self.publisher, *self.edge_nodes.values()) if p is not None]
        if pubs:
            st.mqtt_connected = all(p.connected for p in pubs)
            st.mqtt_published = sum(p.published for p in pubs)
            st.mqtt_dropped = sum(p.dropped for p in pubs)
        return st


def nothing_to_simulate(config: Config) -> Optional[str]:
    """Why the simulator has nothing to do with this config, or None when it has."""
    if not config.system.simulator.enabled:
        return "simulator.enabled is false in system.yaml"
    if not config.simulated_machines():
        return "no machine in plant.yaml is marked simulated (simulated: true on a machine, line or site)"
    return None


def describe(config: Config, playing: set[tuple[str, str, str]]) -> str:
    """Which machines are made up and which are real, by line, for the log: a user must be
    able to tell fake data from real."""
    by_line: dict[tuple[str, str], list[MachineSpec]] = {}
    for m in config.machines():
        by_line.setdefault((m.site, m.line), []).append(m)

    def part(pick) -> str:
        out = []
        for (site, line), ms in by_line.items():
            chosen = [m.machine for m in ms if pick(m)]
            if chosen:
                out.append(f"{site}/{line} (all {len(ms)})" if len(chosen) == len(ms)
                           else f"{site}/{line}: {', '.join(chosen)}")
        return "; ".join(out) or "none"

    total = sum(len(ms) for ms in by_line.values())
    text = (f"{len(playing)} of {total} machines: {part(lambda m: m.key in playing)}. "
            f"Real devices (never simulated): {part(lambda m: not m.simulated)}")
    unplayed = part(lambda m: m.simulated and m.key not in playing)
    if unplayed != "none":
        text += f". Marked simulated but not played (see the warnings): {unplayed}"
    return text


def _log_failure(fut: Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("OPC UA write failed: %r", fut.exception())
