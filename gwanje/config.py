"""Typed configuration: the YAML files in config/ validated into pydantic models.

Every model forbids unknown keys, so a typo in plant.yaml is an error that names the file, the
key path and what is wrong, never a silently ignored option. Secrets (passwords, tokens) are
never read from YAML: they come from the environment only (see `Secrets`).

Files (in the config directory, `--config DIR` or GWANJE_CONFIG_DIR, default ./config):
  plant.yaml   sites, lines, machines (real, or `simulated`), machine classes (signals, PLC state codes)
  system.yaml  MQTT broker, OPC UA endpoints, storage, spool, UI, simulator, clock tolerance
  shifts.yaml, alarms.yaml, notify.yaml  optional, owned by the engine and alert modules
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from typing_extensions import Annotated

from gwanje.model import MachineState
from gwanje.state import CodeMap, canonical_code

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
Id = Annotated[str, Field(pattern=ID_PATTERN)]


def check_unique(ids: list[str], what: str) -> None:
    """Raise ValueError naming the ids that appear more than once (config validators)."""
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate {what} ids {sorted(dup)}")


def check_timezone(name: str) -> str:
    """The name if zoneinfo knows it, else ValueError (config validators)."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except Exception:
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(Strict):
    """A display name in Korean and English (the UI shows the user's language)."""

    ko: str = Field(min_length=1, max_length=80)
    en: str = Field(min_length=1, max_length=80)

    def get(self, lang: str) -> str:
        return self.ko if lang == "ko" else self.en


# ---------------------------------------------------------------------------- plant.yaml
SignalKind = Literal["analog", "counter", "state", "text"]


class SignalDef(Strict):
    id: Id
    name: Names
    unit: str = ""
    kind: SignalKind = "analog"
    # display range for gauges and trend axes; alarms have their own limits
    range: Optional[tuple[float, float]] = None
    # OPC UA only: the node id or browse path of this signal for every machine of the class,
    # when it does not follow the endpoint's node_template (e.g. "ns=3;i=1042",
    # "nsu=urn:plc;s=Press.Tonnage" or "0:Objects/2:Press1/2:Tonnage"); a machine's `nodes`
    # overrides it
    node: Optional[str] = None


class StateCodes(Strict):
    """PLC codes (numbers or strings, as the machine reports them) for each machine state.
    A code found in no list maps to `unknown` (and is counted), never guessed."""

    # all lists empty ("state_codes: {}"): the codes are not known yet (a discovered
    # machine), every code maps to unknown until someone maps them
    running: list[int | float | str] = []
    idle: list[int | float | str] = []
    down: list[int | float | str] = []
    setup: list[int | float | str] = []
    planned_stop: list[int | float | str] = []

    _codes: Any = PrivateAttr(default=None)

    def mapping(self) -> CodeMap:
        """The one meaning of these codes (gwanje.state.CodeMap), used by the engine, the tiles
        and the alarm rules alike: "3" and 3 are the same code."""
        if self._codes is None:
            seen: dict[object, str] = {}
            for state in ("running", "idle", "down", "setup", "planned_stop"):
                for code in getattr(self, state):
                    key = canonical_code(code)
                    if key is None:
                        raise ValueError(f"state code {code!r} is not a number or text")
                    if key in seen:
                        raise ValueError(f"state code {code!r} appears in both {seen[key]} and {state}")
                    seen[key] = state
            self._codes = CodeMap({k: MachineState(v) for k, v in seen.items()})
        return self._codes

    @model_validator(mode="after")
    def _unique(self) -> "StateCodes":
        self.mapping()
        return self


class MachineClass(Strict):
    name: Names
    signals: list[SignalDef] = Field(min_length=1)
    state_codes: StateCodes
    # which signals carry the state and the part counters (ids in `signals`)
    # state_signal null: the machine reports no state (its state shows unknown)
    state_signal: Optional[Id] = "state"
    total_signal: Optional[Id] = "part_count_total"
    good_signal: Optional[Id] = "part_count_good"
    reject_signal: Optional[Id] = "part_count_reject"

    @model_validator(mode="after")
    def _refs(self) -> "MachineClass":
        ids = [s.id for s in self.signals]
        check_unique(ids, "signal")
        for ref in ("state_signal", "total_signal", "good_signal", "reject_signal"):
            v = getattr(self, ref)
            if v is not None and v not in ids:
                raise ValueError(f"{ref} {v!r} is not one of the class's signals {ids}")
        return self


# "other": a process none of the named ones describes (discovered devices start there)
ProcessType = Literal["cnc", "forging", "injection", "assembly", "press", "other"]


class MachineDef(Strict):
    id: Id
    name: Names
    klass: str = Field(alias="class")
    source: Literal["mqtt", "opcua"]
    ideal_cycle_s: float = Field(gt=0, description="ideal cycle time per part, seconds")
    counter_bits: Literal[16, 32, 64] = 32
    # true: a made-up machine the simulator plays; unset: the line's (then the site's) value,
    # else false. Real unless marked, so a device added by hand is never mixed with made-up data.
    simulated: Optional[bool] = None
    # OPC UA: the endpoint serving this machine; unset: the line's, then the site's
    opcua_endpoint: Optional[str] = None
    # OPC UA: node id or browse path per signal id of this machine, over the class's `node`
    # and the endpoint's node_template (e.g. {tonnage: "nsu=urn:plc;s=Press1.Tonnage"})
    nodes: dict[Id, str] = {}
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LineDef(Strict):
    id: Id
    name: Names
    process: ProcessType
    # the machine whose output is the line's output (line OEE); default: the last machine
    output_machine: Optional[Id] = None
    simulated: Optional[bool] = None  # default for the line's machines (see MachineDef.simulated)
    opcua_endpoint: Optional[str] = None  # default for the line's machines (see SiteDef.opcua_endpoint)
    machines: list[MachineDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> "LineDef":
        ids = [m.id for m in self.machines]
        check_unique(ids, "machine")
        if self.output_machine is not None and self.output_machine not in ids:
            raise ValueError(f"output_machine {self.output_machine!r} is not a machine of the line {ids}")
        return self

    @property
    def output(self) -> str:
        return self.output_machine or self.machines[-1].id


class SiteDef(Strict):
    id: Id
    name: Names
    # name of the OPC UA endpoint (system.yaml opcua.endpoints) serving this site's OPC UA
    # machines; a line or a machine may name another (the nearest one wins)
    opcua_endpoint: Optional[str] = None
    simulated: Optional[bool] = None  # default for the site's lines (see MachineDef.simulated)
    lines: list[LineDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> "SiteDef":
        ids = [ln.id for ln in self.lines]
        check_unique(ids, "line")
        return self


def endpoint_of(site: SiteDef, line: LineDef, machine: MachineDef) -> Optional[str]:
    """The OPC UA endpoint of an opcua machine: its own, else its line's, else its site's;
    None for an MQTT machine."""
    if machine.source != "opcua":
        return None
    return machine.opcua_endpoint or line.opcua_endpoint or site.opcua_endpoint


def is_simulated(site: SiteDef, line: LineDef, machine: MachineDef) -> bool:
    """The machine's own `simulated`, else its line's, else its site's, else False (real)."""
    for v in (machine.simulated, line.simulated, site.simulated):
        if v is not None:
            return v
    return False


class PlantDef(Strict):
    name: Names
    timezone: str = "Asia/Seoul"
    # a machine whose newest sample is older than this is shown as stale / state unknown
    stale_after_s: float = Field(10.0, gt=0)
    machine_classes: dict[Id, MachineClass]
    sites: list[SiteDef] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @model_validator(mode="after")
    def _refs(self) -> "PlantDef":
        ids = [s.id for s in self.sites]
        check_unique(ids, "site")
        for s in self.sites:
            for ln in s.lines:
                for m in ln.machines:
                    if m.klass not in self.machine_classes:
                        raise ValueError(
                            f"sites[{s.id}].lines[{ln.id}].machines[{m.id}]: class {m.klass!r} is not "
                            f"defined in machine_classes {sorted(self.machine_classes)}"
                        )
                    where = f"sites[{s.id}].lines[{ln.id}].machines[{m.id}]"
                    if m.source == "opcua" and not endpoint_of(s, ln, m):
                        raise ValueError(
                            f"sites[{s.id}]: machine {m.id} has source opcua but neither the machine, its line "
                            f"nor the site has an opcua_endpoint"
                        )
                    k = self.machine_classes[m.klass]
                    if is_simulated(s, ln, m) and not (k.state_codes.running and k.state_signal):
                        raise ValueError(f"{where}: a simulated machine needs a class with a state_signal and "
                                         f"running state codes (class {m.klass!r} has none to play)")
                    if m.nodes:
                        if m.source != "opcua":
                            raise ValueError(f"{where}: nodes are OPC UA node ids, the machine's source is {m.source}")
                        ids = [sig.id for sig in self.machine_classes[m.klass].signals]
                        extra = sorted(set(m.nodes) - set(ids))
                        if extra:
                            raise ValueError(f"{where}: nodes {extra} are not signals of class {m.klass!r} {ids}")
        return self

    def endpoint_conflict(self) -> Optional[tuple[str, str]]:
        """(site id, problem) when an OPC UA endpoint would serve simulated and real machines.
        An address is either the simulator's server or a real one: the simulator serving it
        would hold the real server's port (or find it taken and serve none of its simulated
        machines), and the collector reads one server per endpoint."""
        kinds: dict[str, tuple[str, dict[bool, list[str]]]] = {}
        for s in self.sites:
            for ln in s.lines:
                for m in ln.machines:
                    ep = endpoint_of(s, ln, m)
                    if ep:
                        site, by = kinds.setdefault(ep, (s.id, {}))
                        by.setdefault(is_simulated(s, ln, m), []).append(f"{s.id}/{ln.id}/{m.id}")
        for ep, (site, by) in kinds.items():
            if len(by) > 1:
                return site, (f"endpoint {ep!r} would serve simulated machines {by[True]} and real machines "
                              f"{by[False]}; an OPC UA endpoint is either the simulator's or a real server's: "
                              f"mark all of its machines simulated or none (real and simulated OPC UA machines "
                              f"belong to sites with different endpoints)")
        return None


# --------------------------------------------------------------------------- system.yaml
class TlsConfig(Strict):
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    insecure: bool = False  # skip hostname verification (lab use only)


SPARKPLUG_NAME = r"^[^/+#]+$"  # a Sparkplug id (group, edge node, device, host): one topic level


class SparkplugDevice(Strict):
    """An explicit mapping for one Sparkplug device, where the slug rule (gwanje.naming) does
    not give the plant's ids: its names as the edge node sends them (case and punctuation
    exactly), and the ids they stand for. An id left out is the slug of the name."""

    group: Annotated[str, Field(pattern=SPARKPLUG_NAME)]
    edge_node: Annotated[str, Field(pattern=SPARKPLUG_NAME)]
    device: Annotated[str, Field(pattern=SPARKPLUG_NAME)]
    site: Optional[Id] = None
    line: Optional[Id] = None
    machine: Optional[Id] = None
    # metric name (with its folders, e.g. "Motor/Speed") -> signal id; others are slugged
    metrics: dict[Annotated[str, Field(min_length=1)], Id] = {}

    def ids(self) -> tuple[str, str, str]:
        from gwanje.naming import slug

        return (self.site or slug(self.group), self.line or slug(self.edge_node), self.machine or slug(self.device))


class SparkplugConfig(Strict):
    enabled: bool = True
    # set: we are the primary host application of that id (Sparkplug 3.0): spBv1.0/STATE/<host_id>
    # is published retained, {"online": true} once subscribed, {"online": false} as our will.
    # unset: not a primary host (edge nodes that wait for one will not wait for us)
    host_id: Optional[Annotated[str, Field(pattern=SPARKPLUG_NAME, max_length=128)]] = None
    # at most one rebirth request (NCMD Node Control/Rebirth) per edge node per this interval
    rebirth_interval_s: float = Field(5.0, gt=0)
    devices: list[SparkplugDevice] = []

    @model_validator(mode="after")
    def _unique(self) -> "SparkplugConfig":
        names = [f"{d.group}/{d.edge_node}/{d.device}" for d in self.devices]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"devices: {dup} mapped more than once")
        ids = ["/".join(d.ids()) for d in self.devices]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"devices: more than one device mapped to the machine(s) {dup}")
        for d in self.devices:
            if not all(d.ids()):
                raise ValueError(f"devices: {d.group}/{d.edge_node}/{d.device}: a name without letters or "
                                 f"digits has no id of its own; give site, line and machine")
        return self


class MqttConfig(Strict):
    # empty: the embedded demo starts an in-process broker. Otherwise mqtt://host:port or
    # mqtts://host:port (TLS). Environment GWANJE_MQTT_URL overrides.
    url: Optional[str] = None
    client_id: str = "gwanje-collector"
    qos: Literal[0, 1] = 1
    clean_start: bool = False  # persistent session: the broker keeps QoS 1 messages while we are away
    keepalive_s: int = Field(30, ge=5)
    # not $share/...: scale out with collect.instances (gwanje/partition.py); a collect
    # instance derives its own filters from its lines and does not use this list
    subscriptions: list[str] = ["gwanje/#", "spBv1.0/#"]
    # topic levels mapped to sample fields; a template without {signal} carries several
    # signals in its JSON payload. First match wins.
    topic_templates: list[str] = [
        "gwanje/{site}/{line}/{machine}",
        "gwanje/{site}/{line}/{machine}/{signal}",
    ]
    # Sparkplug B host application (docs/payloads.md): spBv1.0/<group>/DDATA/<edge node>/<device>
    # -> site / line / machine. `true`/`false` is short for {enabled: true/false}.
    sparkplug: SparkplugConfig = SparkplugConfig()

    @field_validator("sparkplug", mode="before")
    @classmethod
    def _sparkplug_switch(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v
    max_payload_bytes: int = Field(256 * 1024, gt=0)
    tls: Optional[TlsConfig] = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


class OpcuaEndpoint(Strict):
    name: str
    url: str  # opc.tcp://host:port/path ; GWANJE_OPCUA_URL_<NAME> overrides
    # None (demo only) or Basic256Sha256 with mode Sign / SignAndEncrypt
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    # our application certificate (DER or PEM) and key: `python app.py certs` creates
    # <data dir>/pki/own/cert.der + key.pem, the default when security is on and these are unset
    certificate: Optional[str] = None
    private_key: Optional[str] = None
    server_certificate: Optional[str] = None
    # X.509 user authentication instead of username/password (a user certificate the server maps to a user)
    user_certificate: Optional[str] = None
    user_private_key: Optional[str] = None
    # node of a signal when SignalDef.node is not given
    node_template: str = "ns=2;s={site}.{line}.{machine}.{signal}"
    sampling_ms: float = Field(500, ge=0)
    publishing_ms: float = Field(1000, gt=0)
    queue_size: int = Field(10, ge=1)  # per monitored item, on the server
    # what the server reports: "status_value" = only changed values (OPC UA's default; an idle
    # machine whose values do not change then sends nothing and looks silent), or
    # "status_value_timestamp" = also a value rewritten with a new source timestamp (a PLC
    # that refreshes its timestamps each scan keeps an idle machine visibly alive)
    data_change_trigger: Literal["status_value", "status_value_timestamp"] = "status_value_timestamp"
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


class OpcuaConfig(Strict):
    endpoints: list[OpcuaEndpoint] = []
    # the server certificates the collectors accept, under the data dir (collectors/opcua_trust.py):
    # trusted/<endpoint>.der, and pending/<endpoint>.der for one refused
    trust_dir: str = "opcua-trust"


class InfluxConfig(Strict):
    url: str = "http://127.0.0.1:8086"  # GWANJE_INFLUX_URL
    database: str = "gwanje"  # 1.x database, or 2.x/3.x bucket (DBRP-mapped)  GWANJE_INFLUX_DB
    org: str = ""  # 2.x only  GWANJE_INFLUX_ORG
    retention_policy: str = ""
    timeout_s: float = 10.0
    gzip: bool = True


class StorageConfig(Strict):
    kind: Literal["embedded", "influxdb"] = "embedded"  # GWANJE_STORAGE
    embedded_file: str = "gwanje.duckdb"  # under the data dir
    # DuckDB's buffer pool bound (its memory_limit, e.g. "512MB"; "" = DuckDB's 80 % of RAM)
    embedded_memory_limit: str = Field("1GB", pattern=r"^$|^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    influxdb: InfluxConfig = InfluxConfig()
    batch_size: int = Field(5000, gt=0)
    flush_interval_ms: int = Field(200, gt=0)
    queue_size: int = Field(200_000, gt=0)  # samples buffered in memory between collector and writer
    # an MQTT QoS 1 message (ack after store) that finds the queue full waits this long for
    # room before it is spilled to the disk spool: meanwhile the broker holds the rest (it
    # persists it; docs/deploy.md sizes its queue), which costs nothing, where spilling costs a
    # spool write and read per message. 0: spill at once. Sources the broker cannot hold for
    # us (OPC UA, QoS 0) always spill at once.
    backpressure_ms: int = Field(500, ge=0)


class SpoolConfig(Strict):
    dir: str = "spool"  # under the data dir
    max_bytes: int = Field(512 * 1024 * 1024, gt=0)
    # what to do when the spool is full: drop the oldest batches (keep recent data) or
    # refuse new ones (keep the oldest); both raise the spool-full alarm
    policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"


class DeadLetterConfig(Strict):
    dir: str = "deadletter"  # under the data dir; records the store will never accept
    max_bytes: int = Field(64 * 1024 * 1024, ge=16 * 1024)  # all files together; the oldest rotates out
    files: int = Field(4, ge=2, le=100)


class OidcConfig(Strict):
    """Optional single sign-on (dashboards/oidc.py). The client secret comes from
    GWANJE_OIDC_CLIENT_SECRET, never from here."""
    issuer: str  # e.g. https://login.example.com/realms/plant (the id token's iss)
    metadata_url: Optional[str] = None  # default: <issuer>/.well-known/openid-configuration
    client_id: str
    role_claim: str = "groups"  # the id-token claim (a string or a list) mapped to a role
    role_map: dict[str, Literal["viewer", "operator", "supervisor", "engineer", "admin"]] = {}
    name_claim: str = "preferred_username"  # the user name shown and audited (falls back to sub)
    scopes: list[str] = ["openid", "profile"]
    # the URL the provider sends the browser back to; default: this server's /login/oidc/callback
    redirect_url: Optional[str] = None

    @model_validator(mode="after")
    def _need_openid(self) -> "OidcConfig":
        if "openid" not in self.scopes:
            raise ValueError("ui.oidc.scopes must include openid")
        if not self.role_map:
            raise ValueError("ui.oidc.role_map must map at least one claim value to a role")
        return self


class UiCacheConfig(Strict):
    """The control room's short-TTL query cache (dashboards/cache.py). Without a Redis URL
    every process (gunicorn worker) keeps its own; with one, all of them share it. The URL
    may come from GWANJE_REDIS_URL instead (that one may carry a password); a password in
    YAML is refused: it comes from GWANJE_REDIS_PASSWORD or the environment's URL only."""

    redis_url: Optional[str] = None  # e.g. redis://redis:6379/0 (rediss:// for TLS)
    # how long a query result is reused; default (empty): ui.refresh_ms, so that every display
    # refresh is served by one store query per key, whatever the number of displays
    ttl_s: Optional[float] = Field(None, gt=0, le=300)
    prefix: str = Field("gwanje", min_length=1, max_length=64)  # Redis key namespace (plant and config are added)
    lock_ms: int = Field(5000, ge=100, le=120_000)  # single-flight lock expiry: a dead worker blocks no longer
    wait_ms: int = Field(2000, ge=0, le=60_000)  # how long other workers wait for that result, then query themselves
    timeout_ms: int = Field(250, ge=10, le=10_000)  # a Redis call slower than this counts as Redis down
    retry_s: float = Field(5.0, gt=0, le=600)  # while down: the in-process cache, Redis tried again this often

    @field_validator("redis_url")
    @classmethod
    def _no_password(cls, v: Optional[str]) -> Optional[str]:
        if not v:
            return None
        from urllib.parse import urlsplit

        u = urlsplit(v)
        if u.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("redis_url must be redis://, rediss:// or unix://")
        if u.password:
            raise ValueError("no password in system.yaml: set GWANJE_REDIS_PASSWORD (or GWANJE_REDIS_URL)")
        return v


class UiConfig(Strict):
    host: str = "127.0.0.1"  # GWANJE_HOST
    port: int = Field(8050, ge=1, le=65535)  # GWANJE_PORT
    refresh_ms: int = Field(2000, ge=250)
    default_language: Literal["ko", "en"] = "ko"
    trend_window_s: int = Field(900, gt=0)
    trend_points: int = Field(600, gt=10)
    # outside demo mode: a login lasts this long (absolute, from the login), then sign in again
    session_hours: float = Field(12.0, gt=0, le=24 * 30)
    # optional OpenID Connect login beside the passwords (docs/deploy.md)
    oidc: Optional[OidcConfig] = None
    cache: UiCacheConfig = UiCacheConfig()


class SimulatorConfig(Strict):
    seed: int = 7
    period_s: float = Field(1.0, gt=0)  # one sample of every signal per machine per period
    # false: the demo (`python app.py`) runs without the simulator and `python app.py simulate`
    # refuses to start. Which machines it plays is plant.yaml's `simulated`.
    enabled: bool = True
    # LOT quantities of the simulated machines: shifts.yaml products' lot_qty x this (0.1: a
    # tenth of the parts, so a demo shows LOTs moving along their routes within minutes)
    lot_scale: float = Field(1.0, gt=0, le=100)
    # seeded process faults of the simulated machines (docs/quality.md "Ground truth"): mean
    # running hours between two faults of one machine; 0 = none
    fault_every_h: float = Field(5.0, ge=0, le=10_000)


class ClockConfig(Strict):
    # A source time more than this ahead of the collector's clock is rejected as
    # timestamp_in_future: a sample stamped ahead would be the newest value of its machine
    # until real time catches up, so a fast clock could hold a dead machine "live" and put
    # counts into a shift that has not begun. 30 s is well above what a machine's clock may
    # be ahead and still be right: NTP-synchronised PLCs and gateways are within
    # milliseconds, an unsynchronised quartz clock drifts 1-2 s a day, network and broker add
    # nothing forward. A clock further ahead is a clock to fix: /status shows each source's
    # offset (warning beyond this tolerance) and the rejections are counted. Times behind the
    # clock are not limited here (store-and-forward gateways send hours-old data).
    future_tolerance_s: float = Field(30.0, gt=0, le=3600)


LINE_REF = r"^[a-z0-9][a-z0-9_-]{0,63}/[a-z0-9][a-z0-9_-]{0,63}$"


class CollectInstance(Strict):
    """One `collect` process of a scaled-out deployment (docs/deploy.md "Scale-out"): it owns
    whole sites and/or single lines ("site/line"); its machines' engine and alarm state live in
    it alone. `python app.py collect --instance NAME` (or GWANJE_INSTANCE) runs it."""

    name: Id
    sites: list[Id] = []
    lines: list[Annotated[str, Field(pattern=LINE_REF)]] = []


class CollectConfig(Strict):
    # empty: one collect process for the whole plant. Listed: every line is owned by exactly
    # one instance (gwanje/partition.py), and collect needs --instance NAME
    instances: list[CollectInstance] = []

    @model_validator(mode="after")
    def _unique(self) -> "CollectConfig":
        check_unique([i.name for i in self.instances], "instance")
        return self

class ControlConfig(Strict):
    """The control bus between collect and serve processes (gwanje/bus.py, runtime/control.py)
    over the plant broker (mqtt.url): alarm actions from serve to the collect that owns the
    alarm, collect's status and alarm snapshots back."""

    # topic root of the bus; outside gwanje/ so the telemetry subscriptions never see it
    prefix: Annotated[str, Field(pattern=r"^[^/+#$][^+#]*$", max_length=64)] = "gwanje-sys"
    # this collect's name on the bus (<prefix>/status/<instance>); GWANJE_INSTANCE overrides
    instance: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "collect"
    reply_timeout_s: float = Field(5.0, gt=0, le=60)  # serve waits this long for collect's answer
    max_age_s: float = Field(30.0, gt=0, le=600)  # collect refuses commands older (or further ahead) than this


class SystemDef(Strict):
    # demo mode: no login on the dashboard, plain MQTT/OPC UA allowed. Outside demo mode
    # (GWANJE_DEMO=0) the dashboard needs a login and brokers need credentials.
    demo: bool = True
    mqtt: MqttConfig = MqttConfig()
    opcua: OpcuaConfig = OpcuaConfig()
    storage: StorageConfig = StorageConfig()
    spool: SpoolConfig = SpoolConfig()
    deadletter: DeadLetterConfig = DeadLetterConfig()
    ui: UiConfig = UiConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    clock: ClockConfig = ClockConfig()
    collect: CollectConfig = CollectConfig()
    control: ControlConfig = ControlConfig()


# ------------------------------------------------------------------------ resolved model
@dataclass(frozen=True)
class MachineSpec:
    """A machine with its class resolved: what collectors, engine and UI work with."""

    site: str
    line: str
    machine: str
    definition: MachineDef
    klass: MachineClass
    opcua_endpoint: Optional[str]  # endpoint_of: the machine's, its line's or its site's
    simulated: bool = False  # played by the simulator, not a real device (is_simulated)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.site, self.line, self.machine)

    @property
    def signals(self) -> list[SignalDef]:
        return self.klass.signals

    def signal(self, signal_id: str) -> Optional[SignalDef]:
        for s in self.klass.signals:
            if s.id == signal_id:
                return s
        return None

    def node(self, signal: SignalDef, endpoint: "OpcuaEndpoint") -> str:
        """The OPC UA node id or browse path of one of its signals: the machine's `nodes`,
        else the class's `node`, else the endpoint's node_template (the collector reads
        and the simulator serves by this one rule)."""
        return (self.definition.nodes.get(signal.id) or signal.node
                or endpoint.node_template.format(site=self.site, line=self.line, machine=self.machine,
                                                 signal=signal.id))


class ConfigError(Exception):
    """A configuration problem; str() names the file, the key path and what is wrong."""


@dataclass(frozen=True)
class Config:
    directory: Path
    plant: PlantDef
    system: SystemDef
    raw_extra: dict[str, Any]  # other YAML files (shifts, alarms, notify) as loaded dicts
    # a scaled-out collect instance (gwanje.partition.for_instance): its name, and the lines of
    # the plant other instances own (their data is skipped as other_instance, not rejected)
    instance: Optional[str] = None
    foreign_lines: frozenset[tuple[str, str]] = frozenset()
    # filters an earlier configuration may have left in the instance's persistent session
    # (other instances' lines after a line moved, the unpartitioned mqtt.subscriptions):
    # unsubscribed on connect so the broker stops queueing them for us
    stale_subscriptions: tuple[str, ...] = ()

    def machines(self) -> Iterator[MachineSpec]:
        for s in self.plant.sites:
            for ln in s.lines:
                for m in ln.machines:
                    yield MachineSpec(
                        s.id, ln.id, m.id, m, self.plant.machine_classes[m.klass],
                        endpoint_of(s, ln, m), is_simulated(s, ln, m),
                    )

    def simulated_machines(self) -> list[MachineSpec]:
        return [m for m in self.machines() if m.simulated]

    def machine(self, site: str, line: str, machine: str) -> Optional[MachineSpec]:
        return self._index().get((site, line, machine))

    def _index(self) -> dict[tuple[str, str, str], MachineSpec]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {m.key: m for m in self.machines()}
            object.__setattr__(self, "_idx", idx)
        return idx

    def site(self, site_id: str) -> Optional[SiteDef]:
        return next((s for s in self.plant.sites if s.id == site_id), None)

    def line(self, site_id: str, line_id: str) -> Optional[LineDef]:
        s = self.site(site_id)
        return next((ln for ln in s.lines if ln.id == line_id), None) if s else None

    def endpoint(self, name: str) -> Optional[OpcuaEndpoint]:
        return next((e for e in self.system.opcua.endpoints if e.name == name), None)


def _format_errors(fname: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{fname}: {loc}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping, got {type(data).__name__}")
    return data


def _env_overrides(system: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Non-secret settings the environment may override (12-factor deployments)."""
    s = dict(system)

    def put(path: tuple[str, ...], value: Any) -> None:
        node = s
        for p in path[:-1]:
            node[p] = dict(node.get(p) or {})
            node = node[p]
        node[path[-1]] = value

    if "GWANJE_DEMO" in env:
        put(("demo",), env["GWANJE_DEMO"].strip().lower() not in ("0", "false", "no", "off", ""))
    if env.get("GWANJE_MQTT_URL"):
        put(("mqtt", "url"), env["GWANJE_MQTT_URL"])
    if env.get("GWANJE_INSTANCE"):
        put(("control", "instance"), env["GWANJE_INSTANCE"])
    if env.get("GWANJE_STORAGE"):
        put(("storage", "kind"), env["GWANJE_STORAGE"])
    if env.get("GWANJE_INFLUX_URL"):
        put(("storage", "influxdb", "url"), env["GWANJE_INFLUX_URL"])
    if env.get("GWANJE_INFLUX_DB"):
        put(("storage", "influxdb", "database"), env["GWANJE_INFLUX_DB"])
    if env.get("GWANJE_INFLUX_ORG"):
        put(("storage", "influxdb", "org"), env["GWANJE_INFLUX_ORG"])
    if env.get("GWANJE_HOST"):
        put(("ui", "host"), env["GWANJE_HOST"])
    if env.get("GWANJE_PORT"):
        put(("ui", "port"), env["GWANJE_PORT"])
    eps = (s.get("opcua") or {}).get("endpoints")
    if eps:
        new = []
        for ep in eps:
            ep = dict(ep)
            key = "GWANJE_OPCUA_URL_" + str(ep.get("name", "")).upper().replace("-", "_")
            if env.get(key):
                ep["url"] = env[key]
            new.append(ep)
        put(("opcua", "endpoints"), new)
    return s


def _sparkplug_mapping_problem(plant: PlantDef, sp: SparkplugConfig) -> Optional[str]:
    """What is wrong with an explicit Sparkplug mapping against plant.yaml, or None: it must
    name machines and signals that exist (a typo would otherwise drop the device's data)."""
    machines = {(s.id, ln.id, m.id): plant.machine_classes[m.klass]
                for s in plant.sites for ln in s.lines for m in ln.machines}
    for d in sp.devices:
        where = f"{d.group}/{d.edge_node}/{d.device}"
        klass = machines.get(d.ids())
        if klass is None:
            return f"{where}: machine {'/'.join(d.ids())} is not in plant.yaml"
        signals = {s.id for s in klass.signals}
        bad = sorted(sig for sig in d.metrics.values() if sig not in signals)
        if bad:
            return f"{where}: signal(s) {bad} are not signals of the machine's class {sorted(signals)}"
    return None


def default_config_dir() -> Path:
    return Path(os.environ.get("GWANJE_CONFIG_DIR") or Path(__file__).resolve().parent.parent / "config")


def load_config(directory: str | os.PathLike[str] | None = None, env: Optional[dict[str, str]] = None) -> Config:
    """Load and validate every config file; raise ConfigError naming file, key path, problem."""
    d = Path(directory) if directory is not None else default_config_dir()
    env = dict(os.environ) if env is None else env
    if not d.is_dir():
        raise ConfigError(f"{d}: config directory not found")
    plant_path, system_path = d / "plant.yaml", d / "system.yaml"
    try:
        plant = PlantDef.model_validate(_read_yaml(plant_path))
    except ValidationError as e:
        raise ConfigError(_format_errors(str(plant_path), e)) from None
    system_raw = _read_yaml(system_path) if system_path.exists() else {}
    try:
        system = SystemDef.model_validate(_env_overrides(system_raw, env))
    except ValidationError as e:
        raise ConfigError(_format_errors(str(system_path), e)) from None
    endpoint_names = [e.name for e in system.opcua.endpoints]
    dup = sorted({n for n in endpoint_names if endpoint_names.count(n) > 1})
    if dup:
        raise ConfigError(f"{system_path}: opcua.endpoints: duplicate endpoint names {dup}")
    for s in plant.sites:
        named = [(f"sites.{s.id}", s.opcua_endpoint)]
        for ln in s.lines:
            named.append((f"sites.{s.id}.lines.{ln.id}", ln.opcua_endpoint))
            named += [(f"sites.{s.id}.lines.{ln.id}.machines.{m.id}", m.opcua_endpoint) for m in ln.machines]
        for where, ep in named:
            if ep and ep not in endpoint_names:
                raise ConfigError(
                    f"{plant_path}: {where}.opcua_endpoint: {ep!r} is not an endpoint "
                    f"in {system_path} opcua.endpoints {sorted(endpoint_names)}"
                )
    problem = _sparkplug_mapping_problem(plant, system.mqtt.sparkplug)
    if problem:
        raise ConfigError(f"{system_path}: mqtt.sparkplug.devices: {problem}")
    shared = [t for t in system.mqtt.subscriptions if t.startswith("$share/")]
    if shared:
        raise ConfigError(
            f"{system_path}: mqtt.subscriptions: {shared}: a shared subscription hands each message to one "
            f"member of the group, which would split a machine's samples (its engine counts, alarm delays, "
            f"Sparkplug session) between collect processes; scale out with collect.instances instead "
            f"(docs/deploy.md, Scale-out)")
    from gwanje.partition import partition_problem  # imports this module

    problem = partition_problem(plant, system.collect)
    if problem:
        raise ConfigError(f"{system_path}: collect.instances: {problem}")
    conflict = plant.endpoint_conflict()
    if conflict:
        raise ConfigError(f"{plant_path}: sites.{conflict[0]}.opcua_endpoint: {conflict[1]}")
    extra = {}
    for name in ("shifts", "alarms", "notify", "quality"):
        p = d / f"{name}.yaml"
        if p.exists():
            extra[name] = _read_yaml(p)
    if "shifts" in extra:
        # the engine's schema (gwanje/shifts.py), imported here because it imports this module
        from gwanje.shifts import parse_shifts

        cal = parse_shifts(extra["shifts"], plant.timezone, str(d / "shifts.yaml"))
        # a route may name a process no line has (yet): its LOTs wait there; a typo is refused
        # by the process type itself
        machines = {m.id for s in plant.sites for ln in s.lines for m in ln.machines}
        for i, prod in enumerate(cal.spec.products):
            for m in prod.ideal_cycle_s:
                if m not in machines:
                    raise ConfigError(f"{d / 'shifts.yaml'}: products.{i}.ideal_cycle_s.{m}: no machine {m!r} "
                                      f"in {plant_path}")
    return Config(directory=d, plant=plant, system=system, raw_extra=extra)


def _env_key(name: str) -> str:
    return name.upper().replace("-", "_")


def _opcua_logins(e: Any) -> dict:
    out: dict = {}
    for k, v in e.items():
        if k.startswith("GWANJE_OPCUA_USERNAME_") and v:
            key = k[len("GWANJE_OPCUA_USERNAME_"):]
            out[key] = (v, e.get("GWANJE_OPCUA_PASSWORD_" + key))
    return out


@dataclass(frozen=True)
class Secrets:
    """Credentials, from the environment only. repr() never shows values."""

    mqtt_username: Optional[str]
    mqtt_password: Optional[str]
    opcua_username: Optional[str]
    opcua_password: Optional[str]
    influx_token: Optional[str]
    influx_username: Optional[str]
    influx_password: Optional[str]
    ui_secret_key: Optional[str]
    # HMAC-SHA256 key of the control bus (gwanje/bus.py), shared by collect and serve
    command_key: Optional[str] = None
    # per-endpoint OPC UA logins: GWANJE_OPCUA_USERNAME_<ENDPOINT> / GWANJE_OPCUA_PASSWORD_<ENDPOINT>
    # (endpoint name upper case, - as _), {endpoint key: (username, password)}
    opcua_logins: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_env(cls, env: Optional[dict[str, str]] = None) -> "Secrets":
        e = os.environ if env is None else env
        return cls(
            e.get("GWANJE_MQTT_USERNAME"), e.get("GWANJE_MQTT_PASSWORD"),
            e.get("GWANJE_OPCUA_USERNAME"), e.get("GWANJE_OPCUA_PASSWORD"),
            e.get("GWANJE_INFLUX_TOKEN"), e.get("GWANJE_INFLUX_USERNAME"), e.get("GWANJE_INFLUX_PASSWORD"),
            e.get("GWANJE_SECRET_KEY"), e.get("GWANJE_COMMAND_KEY"),
            opcua_logins=_opcua_logins(e),
        )

    def opcua_login(self, endpoint: str) -> tuple[Optional[str], Optional[str]]:
        """(username, password) for an OPC UA endpoint: its own GWANJE_OPCUA_USERNAME_<NAME> /
        _PASSWORD_<NAME> when set, else GWANJE_OPCUA_USERNAME / GWANJE_OPCUA_PASSWORD."""
        own = self.opcua_logins.get(_env_key(endpoint))
        if own and own[0]:
            return own
        return self.opcua_username, self.opcua_password

    def __repr__(self) -> str:
        shown = {k: ("***" if v else None) for k, v in self.__dict__.items()}
        return f"Secrets({shown})"
