"""Collectors: every source speaks to the rest only through collectors.base.

The list of collectors is explicit (build_collectors), never a registry filled by imports:
one MQTT collector for the broker, one OPC UA collector per endpoint that serves machines.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from collectors.base import Collector, SampleSink
from gwanje.config import Config, Secrets


def build_collectors(config: Config, sink: SampleSink, secrets: Secrets,
                     mqtt_url: Optional[str] = None, data_dir: Optional[Path] = None) -> list[Collector]:
    """data_dir: where the OPC UA trust list lives (opcua.trust_dir under it); None: server
    certificates are not checked (tests and benches only)."""
    out: list[Collector] = []
    machines = list(config.machines())
    wanted = any(m.definition.source == "mqtt" for m in machines) or config.system.mqtt.sparkplug.enabled
    if config.instance is not None and not config.system.mqtt.subscriptions:
        wanted = False  # a scaled-out instance with no MQTT machine (gwanje.partition)
    if wanted:
        from collectors.mqtt import MqttCollector

        url = mqtt_url or config.system.mqtt.url
        if not url:
            raise ValueError("MQTT machines are configured but no broker URL (mqtt.url / GWANJE_MQTT_URL)")
        out.append(MqttCollector(config, sink, secrets, url=url))
    used = {m.opcua_endpoint for m in machines if m.opcua_endpoint}
    if used:
        from collectors.opcua import OpcuaCollector
        from collectors.opcua_certs import with_default_certificate

        for ep in config.system.opcua.endpoints:
            if ep.name in used:
                trust = Path(data_dir) / config.system.opcua.trust_dir if data_dir is not None else None
                ep = with_default_certificate(ep, data_dir)  # <data dir>/pki/own/ (app.py certs)
                out.append(OpcuaCollector(config, ep, sink, secrets, trust_dir=trust))
    return out
