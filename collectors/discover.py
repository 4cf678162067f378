"""`python app.py discover SOURCE --config DIR --out NEWDIR [--seconds N]`: find the devices
of an OPC UA server or an MQTT broker and write a config directory that collects them.

  opc.tcp://host:port/path  browse the Objects folder (browse_opcua)
  mqtt://host:port          listen N seconds to "#" and "spBv1.0/#" (listen_mqtt); mqtts://
                            for TLS; GWANJE_MQTT_USERNAME/PASSWORD as for the collector

NEWDIR gets every file of DIR, plant.yaml and system.yaml with the new parts inserted as text
(gwanje.discovery), and must pass check-config; nothing is written when it would not.

OPC UA heuristics: below Objects, nodes of namespace 0 (Server, Aliases, ...) are skipped;
an Object (or folder) with at least one scalar Variable child over Organizes/HasComponent
(not HasProperty: properties are metadata) is a machine; its parent Object is its line
(a machine right under Objects is its own line); the site is the server (its application
name). Variables become signals with their DataType (resolved to the built-in type),
EngineeringUnits -> unit and EURange -> range when present; arrays and types no sample holds
are skipped and listed. Browsing stops at depth 8 and 5,000 nodes. Node ids are written as
"nsu=<namespace URI>;..." so they survive a server that renumbers its namespaces.

MQTT: topics matching system.yaml mqtt.topic_templates carry JSON in the shapes of
docs/payloads.md; each (site, line, machine) becomes a machine, each value key a signal
(a number is analog, an integer may be a counter, a string text; the kind rules of
gwanje.discovery). Sparkplug B: each DBIRTH's device is a machine (group / edge node / device
-> site / line / machine), its metrics the signals; births are sent when an edge node
connects, so one that was already online shows only when it reconnects during the listen.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from gwanje.config import Config, ConfigError, Secrets, load_config
from gwanje.discovery import DiscoveryError, Found, FoundMachine, FoundSignal, render, set_key
from gwanje.naming import slug

log = logging.getLogger("gwanje.discover")

MAX_DEPTH = 8
MAX_NODES = 5000
_SEEN_MAX = 20


# ------------------------------------------------------------------------------ OPC UA
async def browse_opcua(url: str, secrets: Optional[Secrets] = None) -> Found:
    from asyncua import Client, ua

    client = Client(url, timeout=10)
    if secrets and secrets.opcua_username:
        client.set_user(secrets.opcua_username)
        if secrets.opcua_password:
            client.set_password(secrets.opcua_password)
    await client.connect()
    try:
        namespaces = await client.get_namespace_array()
        server_name = ""
        try:
            eps = await client.get_endpoints()
            server_name = (eps[0].Server.ApplicationName.Text or "") if eps else ""
        except Exception:
            pass
        parts = urlsplit(url)
        server_name = server_name or f"{parts.hostname} {parts.port or 4840}"
        found = Found("opcua", url, [], endpoint_name=slug(server_name) or "discovered")
        budget = [MAX_NODES]

        def node_string(nid: Any) -> str:
            ident = nid.to_string()
            if nid.NamespaceIndex == 0:
                return ident
            return f"nsu={namespaces[nid.NamespaceIndex]};{ident.split(';', 1)[1]}"

        async def children(nid: Any) -> list[Any]:
            refs = await client.get_node(nid).get_references(
                refs=ua.ObjectIds.HierarchicalReferences, direction=ua.BrowseDirection.Forward,
                nodeclassmask=ua.NodeClass.Object | ua.NodeClass.Variable, includesubtypes=True)
            out = [r for r in refs if r.ReferenceTypeId != ua.NodeId(ua.ObjectIds.HasProperty)]
            budget[0] -= len(out)
            return out

        async def signal(ref: Any, where: str) -> Optional[FoundSignal]:
            node = client.get_node(ref.NodeId)
            name = ref.BrowseName.Name
            try:
                vtype = await node.read_data_type_as_variant_type()
                rank = await node.read_value_rank()
            except Exception as e:
                found.skipped.append(f"{where}/{name}: data type unreadable ({type(e).__name__})")
                return None
            value: Any = None
            try:
                value = await node.read_value()
            except Exception:
                pass
            if rank >= 0 or isinstance(value, list):
                found.skipped.append(f"{where}/{name}: an array ({vtype.name}[]); only scalars become samples")
                return None
            s = FoundSignal(name, vtype.name, node=node_string(ref.NodeId))
            if value is not None and not isinstance(value, (bytes, list)):
                s.seen.append(getattr(value, "Text", None) or getattr(value, "name", None) or value)
            for prop in await node.get_properties():
                pname = (await prop.read_browse_name()).Name
                try:
                    if pname == "EngineeringUnits":
                        eu = await prop.read_value()
                        s.unit = (getattr(getattr(eu, "DisplayName", None), "Text", None) or "")[:20]
                    elif pname == "EURange":
                        r = await prop.read_value()
                        s.range = (float(r.Low), float(r.High))
                except Exception:
                    pass
            return s

        async def walk(ref: Any, path: list[str], depth: int) -> None:
            if depth > MAX_DEPTH or budget[0] <= 0:
                found.skipped.append(f"{'/'.join(path)}: not browsed (depth {MAX_DEPTH} or {MAX_NODES} nodes)")
                return
            kids = await children(ref.NodeId)
            where = "/".join(path)
            sigs = []
            for k in kids:
                if k.NodeClass == ua.NodeClass.Variable:
                    s = await signal(k, where)
                    if s is not None:
                        sigs.append(s)
            if sigs:
                tname = ""
                try:
                    tdef = await client.get_node(ref.TypeDefinition).read_browse_name()
                    tname = tdef.Name if ref.TypeDefinition.NamespaceIndex != 0 else ""
                except Exception:
                    pass
                line = path[-2] if len(path) > 1 else path[-1]
                found.machines.append(FoundMachine(server_name, line, path[-1], sigs, tname))
            for k in kids:
                if k.NodeClass == ua.NodeClass.Object:
                    await walk(k, path + [k.BrowseName.Name], depth + 1)

        for ref in await children(ua.NodeId(ua.ObjectIds.ObjectsFolder)):
            if ref.NodeId.NamespaceIndex == 0 or ref.NodeClass != ua.NodeClass.Object:
                continue  # the standard nodes (Server, Aliases, ...): not devices
            await walk(ref, [ref.BrowseName.Name], 1)
        return found
    finally:
        await client.disconnect()


# -------------------------------------------------------------------------------- MQTT
def sparkplug_birth_metrics(payload: bytes) -> list[tuple[str, Optional[int], Any]]:
    """(name, Sparkplug datatype, value) of each metric of a birth payload: the one place
    discover reads Sparkplug (collectors.sparkplug's decoder)."""
    from collectors.sparkplug import decode_payload, metric_value

    out = []
    for m in decode_payload(payload).metrics:
        if m.HasField("name"):
            value, _ = metric_value(m, m.datatype) if m.HasField("datatype") else (None, None)
            out.append((m.name, m.datatype if m.HasField("datatype") else None, value))
    return out


_SPB_TYPES = {1: "Int8", 2: "Int16", 3: "Int32", 4: "Int64", 5: "UInt8", 6: "UInt16", 7: "UInt32",
              8: "UInt64", 9: "Float", 10: "Double", 11: "Boolean", 12: "String", 13: "DateTime",
              14: "Text", 15: "UUID"}
_SPB_META = ("bdSeq", "Node Control/", "Device Control/", "Properties/")


def _json_type(v: Any) -> Optional[str]:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return None


class _Listener:
    """What arrived during the listen, by machine: {(site, line, machine): {signal: FoundSignal}}."""

    def __init__(self, config: Config) -> None:
        from collectors.payloads import TopicTemplate

        self.templates = [TopicTemplate(t) for t in config.system.mqtt.topic_templates]
        self.machines: dict[tuple[str, str, str], dict[str, FoundSignal]] = {}
        self.skipped: list[str] = []
        self.messages = 0
        self.data_without_birth: set[str] = set()
        # edge nodes (group, edge node) whose data came without a birth: asked once to rebirth
        # (NCMD Node Control/Rebirth, as the host application does), so a device that was
        # online before the listen is found too
        self.rebirth: Optional[Callable[[str, str], None]] = None
        self._asked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def _add(self, key: tuple[str, str, str], name: str, value: Any, type_name: Optional[str]) -> None:
        sigs = self.machines.setdefault(key, {})
        if type_name is None:
            self.skipped.append(f"{'/'.join(key)}/{name}: {type(value).__name__} value cannot become a sample")
            return
        s = sigs.get(name)
        if s is None:
            s = sigs[name] = FoundSignal(name, type_name)
        elif s.type_name == "integer" and type_name == "number":
            s.type_name = "number"  # 3 then 3.5: a float signal
        if len(s.seen) < _SEEN_MAX and value not in s.seen and not isinstance(value, (dict, list)):
            s.seen.append(value)

    def on_message(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages += 1
            if topic.startswith("spBv1.0/"):
                self._sparkplug(topic, payload)
            else:
                self._json(topic, payload)

    def _sparkplug(self, topic: str, payload: bytes) -> None:
        levels = topic.split("/")
        if len(levels) in (4, 5) and levels[2] in ("DDATA", "NDATA"):
            if len(levels) == 5 and tuple(levels[1:2] + levels[3:5]) not in self.machines:
                self.data_without_birth.add("/".join((levels[1], levels[3], levels[4])))
            node = (levels[1], levels[3])
            if self.rebirth is not None and node not in self._asked:
                self._asked.add(node)
                self.rebirth(*node)
            return
        if len(levels) == 4 and levels[2] == "NBIRTH":
            try:
                names = [n for n, _, _ in sparkplug_birth_metrics(payload) if not n.startswith(_SPB_META)]
            except Exception:
                names = []
            if names:
                self.skipped.append(f"{levels[1]}/{levels[3]}: edge node metrics {names[:5]} not added (the "
                                    f"collector reads device data, DBIRTH/DDATA)")
            return
        if len(levels) != 5 or levels[2] != "DBIRTH":
            return
        key = (levels[1], levels[3], levels[4])
        try:
            metrics = sparkplug_birth_metrics(payload)
        except Exception as e:
            self.skipped.append(f"{topic}: not a readable Sparkplug B birth ({e})")
            return
        self.machines.setdefault(key, {})
        for name, dtype, value in metrics:
            if name.startswith(_SPB_META):
                continue
            self._add(key, name, value, _SPB_TYPES.get(dtype or 0, f"Sparkplug type {dtype}"))

    def _json(self, topic: str, payload: bytes) -> None:
        for t in self.templates:
            names = t.match(topic)
            if names is not None:
                break
        else:
            return
        key = (names["site"], names["line"], names["machine"])
        try:
            doc = json.loads(payload.decode("utf-8-sig"))
        except Exception:
            self.skipped.append(f"{topic}: not JSON")
            return
        signal = names.get("signal")
        if signal is not None:
            v = doc.get("value") if isinstance(doc, dict) else doc
            self._add(key, signal, v, _json_type(v))
        elif isinstance(doc, dict) and isinstance(doc.get("values"), dict):
            for k, v in doc["values"].items():
                self._add(key, k, v, _json_type(v))
        elif isinstance(doc, (dict, list)):
            items = doc if isinstance(doc, list) else [doc]
            for it in items:
                if isinstance(it, dict) and isinstance(it.get("signal"), str) and "value" in it:
                    self._add(key, it["signal"], it["value"], _json_type(it["value"]))
        else:
            self.skipped.append(f"{topic}: a JSON shape docs/payloads.md does not describe")


def listen_mqtt(url: str, config: Config, seconds: float, secrets: Optional[Secrets] = None) -> Found:
    import paho.mqtt.client as paho

    from collectors.mqtt import parse_broker_url

    host, port, tls = parse_broker_url(url)
    listener = _Listener(config)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"gwanje-discover-{os.getpid()}",
                         clean_session=True)
    if secrets and secrets.mqtt_username:
        client.username_pw_set(secrets.mqtt_username, secrets.mqtt_password)
    if tls:
        client.tls_set_context(ssl.create_default_context())
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe([("#", 0), ("spBv1.0/#", 0)])
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda c, u, msg: listener.on_message(msg.topic, msg.payload)

    def rebirth(group: str, edge_node: str) -> None:
        from collectors.sparkplug import rebirth_request

        client.publish(f"spBv1.0/{group}/NCMD/{edge_node}", rebirth_request(int(time.time() * 1000)), qos=0)

    listener.rebirth = rebirth
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise ConnectionError(f"{url}: no subscription within 10 s")
        time.sleep(seconds)
    finally:
        client.disconnect()
        client.loop_stop()
    found = Found("mqtt", url, [], skipped=listener.skipped)
    for key, sigs in listener.machines.items():
        found.machines.append(FoundMachine(*key, list(sigs.values())))
    for dev in sorted(listener.data_without_birth - {"/".join(k) for k in listener.machines}):
        found.skipped.append(f"{dev}: Sparkplug data without a birth during the listen (asked its edge node "
                             f"to rebirth; it did not): restart the edge node while discover listens")
    return found


# --------------------------------------------------------------------------- the command
def discover(source: str, config_dir: Path, out_dir: Path, seconds: float = 10.0,
             secrets: Optional[Secrets] = None) -> tuple[Found, list[str], dict]:
    """Find the devices of source, write out_dir; (what was found, notes, what was added)."""
    config = load_config(config_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DiscoveryError(f"{out_dir}: exists and is not empty (discover writes a new directory)")
    if source.startswith("opc.tcp://"):
        found = asyncio.run(browse_opcua(source, secrets))
    elif source.startswith(("mqtt://", "mqtts://")):
        found = listen_mqtt(source, config, seconds, secrets)
    else:
        raise DiscoveryError(f"{source}: SOURCE is opc.tcp://host:port/path or mqtt://host:port")
    plant_path, system_path = config_dir / "plant.yaml", config_dir / "system.yaml"
    system_text = system_path.read_text(encoding="utf-8") if system_path.exists() else ""
    machines = {m.key for m in config.machines()}
    plant, system, notes, added = render(
        found, plant_path.read_text(encoding="utf-8"), system_text,
        {s.id for s in config.plant.sites}, machines, set(config.plant.machine_classes),
        {e.name for e in config.system.opcua.endpoints})
    if found.kind == "mqtt" and added and config.system.mqtt.url != source:
        system = set_key(system, "mqtt", "url", source, "set by `python app.py discover`")
    tmp = out_dir.with_name(out_dir.name + ".discover-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(config_dir, tmp)
    (tmp / "plant.yaml").write_text(plant, encoding="utf-8")
    (tmp / "system.yaml").write_text(system, encoding="utf-8")
    try:
        new = load_config(tmp, env={})
        from alerts.service import check_config as alarm_problems

        bad = alarm_problems(new)
        if bad:
            raise ConfigError("\n".join(bad))
    except ConfigError as e:
        raise DiscoveryError(f"the written config does not pass check-config (kept in {tmp} to look at):\n{e}")
    if out_dir.exists():
        out_dir.rmdir()
    tmp.rename(out_dir)
    return found, notes, added


def report(found: Found, notes: list[str], added: dict, out_dir: Path) -> str:
    lines = [f"discovered on {found.source}: {len(found.machines)} devices"]
    n = 0
    for site, by_line in added.items():
        for line, machines in by_line.items():
            for m in machines:
                n += 1
                sig = ", ".join(f"{s.id} ({s.kind}{', ' + s.found.unit if s.found.unit else ''})" for s in m.signals)
                lines.append(f"  + {site}/{line}/{m.id} [{m.found.name}] class {m.klass}: {sig}")
    for note in notes:
        lines.append(f"  - {note}")
    if n:
        lines.append(f"wrote {out_dir} ({n} machines added; state codes and ideal cycle times are placeholders "
                     f"marked in plant.yaml). Next: python app.py check-config --config {out_dir}; "
                     f"python app.py --config {out_dir}")
    else:
        lines.append(f"nothing new to add; wrote {out_dir} as a copy of the config")
    return "\n".join(lines)


