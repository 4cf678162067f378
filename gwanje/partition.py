"""Scale-out of `collect` by partition: each instance owns whole sites and/or lines
(system.yaml collect.instances), so every machine's engine and alarm state lives in exactly
one process (docs/deploy.md "Scale-out").

Why not MQTT shared subscriptions ($share/<group>/<filter>): the broker hands each message of
a shared filter to ONE member of the group (round robin, or whatever its strategy is), so the
samples of one machine would be split between processes — each engine would see part of the
counter readings and state changes, alarm on/off delays would run on half the values, and a
Sparkplug edge node's seq would show gaps in every process (a rebirth storm). A hot standby
of the same instance in one share group has the same problem while both are up. So each
instance subscribes only to its own lines' topics, with its own persistent session.

What an instance runs (for_instance): the plant restricted to its lines (whole lines, every
machine of them), the OPC UA endpoints those machines use (endpoints follow the machines),
and MQTT settings of its own:
  client_id      <mqtt.client_id>-<instance>: a persistent session per instance, so the broker
                 queues the instance's QoS 1 messages while it is down
  subscriptions  derived from the instance's lines (topic_filters, sparkplug_filters);
                 mqtt.subscriptions is not used by instances; what other instances' lines
                 would need (a line moved away) is unsubscribed on connect, as the
                 persistent session would otherwise keep it
  host_id        Sparkplug STATE host id <host_id>-<instance> (when host_id is set)
and `foreign_lines`, the lines of the other instances: data of theirs that reaches this one
(a wide Sparkplug subscription) is skipped and counted as `other_instance`, not rejected.

Pure: no I/O.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

from gwanje.config import CollectConfig, CollectInstance, Config, ConfigError, PlantDef

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
SPARKPLUG_ALL = "spBv1.0/#"
OTHER_INSTANCE = "other_instance"


def owned_lines(plant: PlantDef, inst: CollectInstance) -> list[tuple[str, str]]:
    """(site, line) of every line the instance owns, in plant order (unknown ids left out:
    partition_problem reports them)."""
    refs = {tuple(r.split("/", 1)) for r in inst.lines}
    sites = set(inst.sites)
    return [(s.id, ln.id) for s in plant.sites for ln in s.lines if s.id in sites or (s.id, ln.id) in refs]


def partition_problem(plant: PlantDef, collect: CollectConfig) -> Optional[str]:
    """What is wrong with collect.instances against plant.yaml, or None: every site and line
    named exists, every instance owns something, every line belongs to exactly one instance."""
    if not collect.instances:
        return None
    sites = {s.id: [ln.id for ln in s.lines] for s in plant.sites}
    every = [(s, ln) for s, lines in sites.items() for ln in lines]
    owner: dict[tuple[str, str], str] = {}
    for inst in collect.instances:
        for sid in inst.sites:
            if sid not in sites:
                return f"{inst.name}: site {sid!r} is not in plant.yaml (sites {sorted(sites)})"
        for ref in inst.lines:
            sid, lid = ref.split("/", 1)
            if sid not in sites:
                return f"{inst.name}: line {ref!r}: site {sid!r} is not in plant.yaml (sites {sorted(sites)})"
            if lid not in sites[sid]:
                return f"{inst.name}: line {ref!r} is not in plant.yaml (lines of {sid}: {sites[sid]})"
        mine = owned_lines(plant, inst)
        if not mine:
            return f"{inst.name}: owns no line; give it sites: [site, ...] and/or lines: [site/line, ...]"
        for key in mine:
            other = owner.get(key)
            if other is not None:
                return (f"line {'/'.join(key)} is owned by both {other} and {inst.name}; a line's machines "
                        f"(engine and alarm state) belong to exactly one instance")
            owner[key] = inst.name
    missing = ["/".join(k) for k in every if k not in owner]
    if missing:
        return f"lines {missing} are owned by no instance; with instances listed, every line needs one"
    return None


def covers(a: str, b: str) -> bool:
    """True when MQTT filter `a` matches every topic filter `b` matches."""
    al, bl = a.split("/"), b.split("/")
    for i, x in enumerate(al):
        if x == "#":
            return True  # "x/#" also matches "x" itself
        if i >= len(bl) or bl[i] == "#":
            return False
        if x != "+" and x != bl[i]:
            return False
    return len(al) == len(bl)


def minimal(filters: list[str]) -> list[str]:
    """The filters without those another one covers in order: a broker
    may deliver a message once per matching subscription."""
    out: list[str] = []
    for f in filters:
        if f not in out and not any(g != f and covers(g, f) for g in filters):
            out.append(f)
    return out


def template_filter(template: str, site: str, line: str) -> str:
    """The filter of one topic template for one line: levels with only {site} / {line} (and
    literal text) are filled in, a level with {machine} or {signal} is "+", and trailing "+"
    levels become one "#" (gwanje/{site}/{line}/{machine} -> gwanje/<site>/<line>/#)."""
    levels = []
    for level in template.split("/"):
        names = set(_PLACEHOLDER.findall(level))
        levels.append(level.format(site=site, line=line) if names <= {"site", "line"} else "+")
    n = len(levels)
    while levels and levels[-1] == "+":
        levels.pop()
    if len(levels) < n:
        levels.append("#")
    return "/".join(levels)


def topic_filters(templates: list[str], lines: list[tuple[str, str]]) -> list[str]:
    """JSON topic filters for these lines (site and line levels must be the plant ids)."""
    return minimal([template_filter(t, s, ln) for s, ln in lines for t in templates])


def sparkplug_filters(config: Config, lines: list[tuple[str, str]]) -> list[str]:
    """Sparkplug filters for the MQTT machines of these lines: spBv1.0/<group>/+/<edge>/# for
    each edge node an explicit mqtt.sparkplug.devices entry maps into them; spBv1.0/# when a
    machine is not mapped explicitly (its raw group / edge node names are unknown: the slug
    rule cannot be reversed)."""
    sp = config.system.mqtt.sparkplug
    if not sp.enabled:
        return []
    owned = set(lines)
    mqtt_machines = {m.key for m in config.machines() if m.definition.source == "mqtt" and m.key[:2] in owned}
    if not mqtt_machines:
        return []
    out, mapped = [], set()
    for d in sp.devices:
        if d.ids() in mqtt_machines:
            out.append(f"spBv1.0/{d.group}/+/{d.edge_node}/#")
            mapped.add(d.ids())
    if mqtt_machines - mapped:
        out.append(SPARKPLUG_ALL)
    return minimal(out)


def subscriptions(config: Config, lines: list[tuple[str, str]]) -> list[str]:
    """The MQTT filters of the instance owning these lines: JSON topic filters of its lines
    with MQTT machines, then its Sparkplug filters."""
    with_mqtt = {m.key[:2] for m in config.machines() if m.definition.source == "mqtt"}
    mqtt_lines = [k for k in lines if k in with_mqtt]
    return topic_filters(config.system.mqtt.topic_templates, mqtt_lines) + sparkplug_filters(config, lines)


def instance_names(config: Config) -> list[str]:
    return [i.name for i in config.system.collect.instances]


def for_instance(config: Config, name: str) -> Config:
    """The Config one collect instance runs (see the module doc). ConfigError for a name that
    is not in collect.instances."""
    insts = config.system.collect.instances
    inst = next((i for i in insts if i.name == name), None)
    if inst is None:
        if not insts:
            raise ConfigError(f"--instance {name}: system.yaml has no collect.instances")
        raise ConfigError(f"--instance {name}: not in system.yaml collect.instances {instance_names(config)}")
    plant = config.plant
    lines = owned_lines(plant, inst)
    owned = set(lines)
    sites = [s.model_copy(update={"lines": [ln for ln in s.lines if (s.id, ln.id) in owned]})
             for s in plant.sites if any((s.id, ln.id) in owned for ln in s.lines)]
    mqtt = config.system.mqtt
    subs = subscriptions(config, lines)
    stale = [mqtt.subscriptions] + [subscriptions(config, owned_lines(plant, i)) for i in insts if i is not inst]
    stale_subs = tuple(dict.fromkeys(f for fs in stale for f in fs if f not in subs))
    sp = mqtt.sparkplug
    sp_new = sp.model_copy(update={"host_id": f"{sp.host_id}-{name}"}) if sp.host_id else sp
    mqtt_new = mqtt.model_copy(update={"client_id": f"{mqtt.client_id}-{name}", "subscriptions": subs,
                                       "sparkplug": sp_new})
    used = {m.opcua_endpoint for m in config.machines() if m.opcua_endpoint and m.key[:2] in owned}
    opcua = config.system.opcua
    opcua_new = opcua.model_copy(update={"endpoints": [e for e in opcua.endpoints if e.name in used]})
    system = config.system.model_copy(update={"mqtt": mqtt_new, "opcua": opcua_new})
    foreign = frozenset((s.id, ln.id) for s in plant.sites for ln in s.lines) - owned
    return dataclasses.replace(config, plant=plant.model_copy(update={"sites": sites}), system=system,
                               instance=name, foreign_lines=foreign, stale_subscriptions=stale_subs)
