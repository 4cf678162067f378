"""What `python app.py discover` found, turned into plant.yaml and system.yaml text.

No I/O: collectors/discover.py browses an OPC UA server or listens to a broker and hands the
devices it found here as FoundMachine lists; this module names them (gwanje.naming.slug, the
one rule for foreign names), chooses signal kinds, groups machines into generated machine
classes and inserts the new parts as text into the existing files, so every comment and
line of the user's config stays as it was.

Rules (docs/discovery.md):
  - ids: slug(foreign name); an OPC UA site gets "-2", "-3" when its id is taken, and so do
    signals of one machine that slug alike (their nodes say which is which); on MQTT the id
    must be what the collector derives from the topic, so a clash is reported, not renamed.
  - kinds: a name with "state", "status" or "mode" of an integer or text type is the state
    signal (the first one); an integer whose name says count/total/qty/produced/good/
    reject/scrap is a counter; other numbers and Booleans are analog; texts, DateTime, Guid,
    LocalizedText, QualifiedName, NodeId and StatusCode are text; anything else (ByteString,
    XmlElement, structures, arrays) is skipped with its reason.
  - one generated class per distinct signal set (ids, kinds, units); its state codes are
    left unmapped ("state_codes: {}", a comment lists the values seen), so the machine
    shows state unknown until someone maps them; ideal_cycle_s is the placeholder 1 s,
    flagged in a comment; a line's process is "other".
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from gwanje.naming import slug

PLACEHOLDER_CYCLE_S = 1.0

INTEGER = frozenset(("SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
                     "Int8", "UInt8", "integer"))
NUMBER = INTEGER | {"Float", "Double", "number", "Boolean", "boolean"}
TEXT = frozenset(("String", "LocalizedText", "DateTime", "Guid", "QualifiedName", "NodeId",
                  "ExpandedNodeId", "StatusCode", "Text", "UUID", "string"))
_COUNTER_BITS = {"UInt16": 16, "Int16": 16, "UInt8": 16, "Byte": 16, "UInt32": 32, "Int32": 32,
                 "UInt64": 64, "Int64": 64}
_STATE = re.compile(r"state|status|mode", re.I)
_COUNTER = re.compile(r"count|total|qty|quantity|produced|good|reject|scrap", re.I)
_GOOD = re.compile(r"good", re.I)
_REJECT = re.compile(r"reject|scrap|\bng\b|bad", re.I)
_NAME_MAX = 80


class DiscoveryError(Exception):
    """The discovered devices cannot be written into this config (the message says why)."""


@dataclass
class FoundSignal:
    name: str  # the source's name: browse name, JSON key, Sparkplug metric
    type_name: str  # OPC UA built-in type name, Sparkplug type name, or number/integer/string/boolean
    node: Optional[str] = None  # OPC UA: the node id ("nsu=<uri>;s=...")
    unit: str = ""
    range: Optional[tuple[float, float]] = None
    seen: list[Any] = field(default_factory=list)  # values seen (shown for state codes)


@dataclass
class FoundMachine:
    site: str
    line: str
    name: str
    signals: list[FoundSignal]
    type_name: str = ""  # OPC UA type definition, when more specific than BaseObjectType


@dataclass
class Found:
    kind: Literal["opcua", "mqtt"]
    source: str  # the url discovered
    machines: list[FoundMachine]
    skipped: list[str] = field(default_factory=list)  # what was seen but not made a signal/machine
    endpoint_name: str = ""  # OPC UA: the system.yaml endpoint entry to add


def signal_kind(name: str, type_name: str, state_taken: bool) -> Optional[str]:
    """analog / counter / state / text, or None for a type no sample can hold."""
    if type_name in INTEGER or type_name in TEXT:
        if not state_taken and _STATE.search(name):
            return "state"
    if type_name in INTEGER and _COUNTER.search(name):
        return "counter"
    if type_name in NUMBER:
        return "analog"
    if type_name in TEXT:
        return "text"
    return None


def unique(base: str, taken: set[str]) -> str:
    i, out = 1, base
    while out in taken:
        i += 1
        out = f"{base[:60]}-{i}"
    taken.add(out)
    return out


def q(text: Any) -> str:
    """A YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(str(text), ensure_ascii=False)


def names(text: str) -> str:
    t = text[:_NAME_MAX] or "?"
    return f"{{ko: {q(t)}, en: {q(t)}}}"


@dataclass
class _Signal:
    id: str
    found: FoundSignal
    kind: str


@dataclass
class _Machine:
    id: str
    found: FoundMachine
    signals: list[_Signal]
    klass: str = ""


def _machine_signals(m: FoundMachine, exact_ids: bool, skipped: list[str]) -> list[_Signal]:
    out: list[_Signal] = []
    taken: set[str] = set()
    state_taken = False
    for s in m.signals:
        where = f"{m.site}/{m.line}/{m.name}/{s.name}"
        kind = signal_kind(s.name, s.type_name, state_taken)
        if kind is None:
            skipped.append(f"{where}: type {s.type_name} cannot become a sample")
            continue
        sid = slug(s.name)
        if not sid:
            skipped.append(f"{where}: the name has no letter or digit to make an id of")
            continue
        if sid in taken:
            if exact_ids:
                skipped.append(f"{where}: its id {sid!r} is another signal's of the same machine")
                continue
            sid = unique(sid, taken)
        taken.add(sid)
        state_taken = state_taken or kind == "state"
        out.append(_Signal(sid, s, kind))
    return out


def plan(found: Found, existing_sites: set[str], existing_machines: set[tuple[str, str, str]],
         existing_classes: set[str]) -> tuple[dict[str, dict[str, list[_Machine]]], dict[str, list[_Machine]], list[str]]:
    """{site id: {line id: [machine]}}, {class id: [machines]}, notes. MQTT ids must be the
    ones the collector derives from topics (exact); OPC UA ids are free (nodes map them)."""
    exact = found.kind == "mqtt"
    notes = found.skipped
    sites: dict[str, dict[str, list[_Machine]]] = {}
    site_ids: dict[str, str] = {}
    taken_sites = set(existing_sites)
    names_of: dict[tuple[str, str], str] = {}
    for fm in found.machines:
        where = f"{fm.site}/{fm.line}/{fm.name}"
        ids = (slug(fm.site), slug(fm.line), slug(fm.name))
        if not all(ids):
            notes.append(f"{where}: a name has no letter or digit to make an id of")
            continue
        if exact:
            if ids in existing_machines:
                notes.append(f"{where}: already in the config as {'/'.join(ids)}")
                continue
            site = ids[0]  # a site (and line) the config has already gets the machine added
        else:
            site = site_ids.get(fm.site) or site_ids.setdefault(fm.site, unique(ids[0], taken_sites))
        line = ids[1]
        machines = sites.setdefault(site, {}).setdefault(line, [])
        if any(m.id == ids[2] for m in machines):
            notes.append(f"{where}: its id {ids[2]!r} is another machine's of the same line")
            continue
        sigs = _machine_signals(fm, exact, notes)
        if not sigs:
            notes.append(f"{where}: no signal that can become a sample; not added")
            continue
        names_of[(site, line)] = fm.line
        machines.append(_Machine(ids[2], fm, sigs))
    sites = {s: {ln: ms for ln, ms in lines.items() if ms} for s, lines in sites.items()}
    sites = {s: lines for s, lines in sites.items() if lines}
    classes: dict[str, list[_Machine]] = {}
    by_sig: dict[tuple, str] = {}
    taken_classes = set(existing_classes)
    for lines in sites.values():
        for ms in lines.values():
            for m in ms:
                key = tuple((s.id, s.kind, s.found.unit) for s in m.signals)
                cid = by_sig.get(key)
                if cid is None:
                    t = m.found.type_name
                    base = slug(t) if t and t not in ("BaseObjectType", "FolderType") else m.id
                    cid = by_sig[key] = unique(base or m.id, taken_classes)
                    classes[cid] = []
                m.klass = cid
                classes[cid].append(m)
    return sites, classes, notes


# ------------------------------------------------------------------------------ rendering
def _class_lines(cid: str, machines: list[_Machine], source: str) -> list[str]:
    first = machines[0]
    sigs = first.signals
    state = next((s for s in sigs if s.kind == "state"), None)
    counters = [s for s in sigs if s.kind == "counter"]
    good = next((s for s in counters if _GOOD.search(s.found.name)), None)
    reject = next((s for s in counters if s is not good and _REJECT.search(s.found.name)), None)
    total = next((s for s in counters if s is not good and s is not reject), None)
    title = first.found.type_name if first.found.type_name not in ("", "BaseObjectType", "FolderType") \
        else f"{first.found.name} (discovered)"
    out = [f"# discovered from {source}: {', '.join(m.id for m in machines)}",
           f"{cid}:",
           f"  name: {names(title)}"]
    if state is not None:
        seen = sorted({str(v) for m in machines for s in m.signals if s.id == state.id for v in s.found.seen})
        out.append(f"  # STATE CODES UNKNOWN (discover): map the values of {state.id!r} ({state.found.name}) to "
                   f"running / idle / down / setup / planned_stop, e.g. {{running: [1], idle: [2], down: [3]}}")
        out.append(f"  # values seen while discovering: {', '.join(seen[:20]) or 'none'}. Until they are "
                   f"mapped the machine's state shows unknown.")
        out.append("  state_codes: {}")
        out.append(f"  state_signal: {state.id}")
    else:
        out.append("  # no state signal found (discover): the machine's state shows unknown; name one with")
        out.append("  # state_signal and map its codes in state_codes")
        out.append("  state_codes: {}")
        out.append("  state_signal: null")
    for ref, s in (("total_signal", total), ("good_signal", good), ("reject_signal", reject)):
        out.append(f"  {ref}: {s.id if s else 'null'}")
    out.append("  signals:")
    for s in sigs:
        parts = [f"id: {s.id}", f"name: {names(s.found.name)}"]
        if s.kind != "analog":
            parts.append(f"kind: {s.kind}")
        if s.found.unit:
            parts.append(f"unit: {q(s.found.unit)}")
        rng = s.found.range or ((0, 1) if s.found.type_name in ("Boolean", "boolean") else None)
        if rng is not None and s.kind == "analog" and rng[1] > rng[0]:
            parts.append(f"range: [{_num(rng[0])}, {_num(rng[1])}]")
        out.append(f"    - {{{', '.join(parts)}}}  # {s.found.type_name}")
    return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _site_lines(site: str, lines: dict[str, list[_Machine]], found: Found) -> list[str]:
    anyone = next(iter(lines.values()))[0].found
    out = [f"# discovered by `python app.py discover {found.source}`: "
           f"{sum(len(ms) for ms in lines.values())} machines, real devices (not simulated)",
           f"- id: {site}",
           f"  name: {names(anyone.site)}"]
    if found.kind == "opcua":
        out.append(f"  opcua_endpoint: {found.endpoint_name}")
    out.append("  lines:")
    for line, machines in lines.items():
        out += ["  " + ln for ln in _line_lines(line, machines, found)]
    return out


def _line_lines(line: str, machines: list[_Machine], found: Found) -> list[str]:
    out = [f"  - id: {line}",
           f"    name: {names(machines[0].found.line)}",
           "    process: other   # discovered: set cnc, forging, injection, assembly or press if one fits",
           "    machines:"]
    for m in machines:
        out += ["  " + ln for ln in _machine_lines(m, found)]
    return out


def _machine_lines(m: _Machine, found: Found) -> list[str]:
    total = next((s for s in m.signals if s.kind == "counter"), None)
    bits = _COUNTER_BITS.get(total.found.type_name) if total else None
    out = [f"  - id: {m.id}",
           f"    name: {names(m.found.name)}",
           f"    class: {m.klass}",
           f"    source: {found.kind}",
           "    simulated: false   # a real device (discover): never played by the simulator",
           f"    ideal_cycle_s: {_num(PLACEHOLDER_CYCLE_S)}   # PLACEHOLDER (discover): the ideal cycle "
           f"time is unknown; OEE performance means nothing until it is set"]
    if bits and bits != 32:
        out.append(f"    counter_bits: {bits}")
    if found.kind == "opcua":
        out.append("    nodes:")
        out += [f"      {s.id}: {q(s.found.node)}" for s in m.signals]
    return out


def _endpoint_lines(found: Found) -> list[str]:
    return [f"# discovered by `python app.py discover {found.source}`; node ids are the machines' `nodes`",
            "# in plant.yaml (nsu=<namespace URI>: they survive a server that renumbers its namespaces)",
            f"- name: {found.endpoint_name}",
            f"  url: {found.source}",
            "  sampling_ms: 500",
            "  publishing_ms: 1000"]


# ----------------------------------------------------------------------- text insertion
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*):(.*)$")


def _is_content(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


def _block(lines: list[str], start: int, indent: int) -> int:
    """End (exclusive) of the block whose key line is lines[start]: the next content line
    indented <= indent; trailing blank and comment lines stay outside (they introduce the
    next key). A sequence at the key's own indent ("- ..." under "key:") is inside."""
    end = start + 1
    last = start
    while end < len(lines):
        ln = lines[end]
        if _is_content(ln):
            ind = len(ln) - len(ln.lstrip())
            if ind < indent or (ind == indent and not ln.lstrip().startswith("- ")):
                break
            last = end
        end += 1
    return last + 1


def _child_indent(lines: list[str], start: int, end: int, default: str) -> str:
    for ln in lines[start + 1:end]:
        if _is_content(ln):
            return ln[:len(ln) - len(ln.lstrip())]
    return default


def _find_key(lines: list[str], key: str, lo: int, hi: int, indent: int) -> Optional[int]:
    pat = re.compile(rf"^{' ' * indent}{re.escape(key)}:(\s.*)?$")
    for i in range(lo, hi):
        if pat.match(lines[i]):
            return i
    return None


def _rest(line: str) -> str:
    """What follows "key:" on its line, without a comment."""
    rest = line.split(":", 1)[1]
    return rest.split(" #", 1)[0].strip()


def insert_under(text: str, path: tuple, block: list[str], fname: str, create_default: str = "  ") -> str:
    """text with block (lines, written at indent 0) appended as the last children of the
    nested block path: each element a key (created when missing) or {"id": X}, the item of the
    list above it whose `- id: X` starts it (block style). A key written in flow style, or an
    item not found in block style, cannot take more as text: DiscoveryError."""
    lines = text.splitlines()
    lo, hi, indent = 0, len(lines), 0
    child = ""
    for depth, key in enumerate(path):
        where = ".".join(k if isinstance(k, str) else f"[{k['id']}]" for k in path[:depth + 1])
        if isinstance(key, dict):  # an item of the list located by the previous step
            pat = re.compile(rf"^{re.escape(child)}- id: *{re.escape(key['id'])}(\s|$)")
            i = next((j for j in range(lo, hi) if pat.match(lines[j])), None)
            if i is None:
                raise DiscoveryError(f"{fname}: {where} is not written as a block (`- id: {key['id']}` on its own "
                                     f"line): write it in block style to let discover add to it")
            item_indent = len(child) + 2
            end = i + 1
            last = i
            while end < hi:
                if _is_content(lines[end]):
                    if len(lines[end]) - len(lines[end].lstrip()) < item_indent:
                        break
                    last = end
                end += 1
            lo, hi, indent = i, last + 1, item_indent
            # the item's keys: "- id: X" carries the first, the others sit at item_indent
            continue
        i = _find_key(lines, key, lo, hi, indent)
        if i is None:
            pad = " " * indent
            lines[hi:hi] = [f"{pad}{key}:"]
            i, hi = hi, hi + 1
        rest = _rest(lines[i])
        if rest in ("[]", "{}", "null", "~"):  # empty: becomes a block
            lines[i] = lines[i].split(":", 1)[0] + ":"
        elif rest:
            raise DiscoveryError(f"{fname}: {where} is written in flow style "
                                 f"({rest[:40]}...): write it in block style to let discover add to it")
        end = _block(lines, i, indent)
        child = _child_indent(lines, i, end, " " * indent + create_default)
        if depth + 1 < len(path):
            lo, hi, indent = i + 1, end, len(child)
        else:
            lo, hi = i, end
    lines[hi:hi] = [child + ln if ln else ln for ln in block]
    return "\n".join(lines) + "\n"


def set_key(text: str, section: str, key: str, value: str, comment: str) -> str:
    """text with section > key (e.g. mqtt > url) set to value, in place; created if missing."""
    lines = text.splitlines()
    i = _find_key(lines, section, 0, len(lines), 0)
    if i is None:
        lines += [f"{section}:", f"  {key}: {value}   # {comment}"]
    else:
        end = _block(lines, i, 0)
        child = _child_indent(lines, i, end, "  ")
        j = _find_key(lines, key, i + 1, end, len(child))
        new = f"{child}{key}: {value}   # {comment}"
        if j is None:
            lines.insert(i + 1, new)
        else:
            lines[j] = new
    return "\n".join(lines) + "\n"


def render(found: Found, plant_text: str, system_text: str, existing_sites: set[str],
           existing_machines: set[tuple[str, str, str]], existing_classes: set[str],
           existing_endpoints: set[str]) -> tuple[str, str, list[str], dict[str, dict[str, list[_Machine]]]]:
    """(new plant.yaml, new system.yaml, notes, what was added) for what discover found."""
    if found.kind == "opcua":
        found.endpoint_name = unique(found.endpoint_name or "discovered", set(existing_endpoints))
    sites, classes, notes = plan(found, existing_sites, existing_machines, existing_classes)
    if not sites:
        return plant_text, system_text, notes, sites
    class_block: list[str] = []
    for cid, machines in classes.items():
        class_block += _class_lines(cid, machines, found.source)
    site_block: list[str] = []
    existing_lines = {(s, ln) for s, ln, _ in existing_machines}
    plant = insert_under(plant_text, ("machine_classes",), class_block, "plant.yaml")
    for site, lines in sites.items():
        if site not in existing_sites:
            site_block += _site_lines(site, lines, found)
            continue
        # a site the config has: new lines under its lines, new machines under a line it has
        for line, machines in lines.items():
            if (site, line) in existing_lines:
                block = [ln[2:] for m in machines for ln in _machine_lines(m, found)]
                block[0:0] = [f"# discovered by `python app.py discover {found.source}`: real devices"]
                plant = insert_under(plant, ("sites", {"id": site}, "lines", {"id": line}, "machines"), block,
                                     "plant.yaml")
            else:
                block = [f"# discovered by `python app.py discover {found.source}`: real devices"]
                block += [ln[2:] for ln in _line_lines(line, machines, found)]
                plant = insert_under(plant, ("sites", {"id": site}, "lines"), block, "plant.yaml")
    if site_block:
        plant = insert_under(plant, ("sites",), site_block, "plant.yaml")
    system = system_text
    if found.kind == "opcua":
        system = insert_under(system, ("opcua", "endpoints"), _endpoint_lines(found), "system.yaml")
    return plant, system, notes, sites
