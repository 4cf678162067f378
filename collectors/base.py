"""The one interface of a collector: started, it turns what its source sends into validated
Samples and hands them to a SampleSink; it owns its connection (reconnect, back-off,
resubscribe) and reports its status. It never talks to storage, the engine or the UI."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

from gwanje.model import Sample


class SampleSink(Protocol):
    def submit(self, samples: Sequence[Sample]) -> None:
        """Thread-safe and never blocks the caller (collector network loops call it)."""


@dataclass
class SourceStatus:
    name: str
    kind: str  # "mqtt" | "opcua"
    connected: bool = False
    # connected AND the source's data is subscribed (MQTT: the broker granted a topic filter;
    # OPC UA: the subscription and its monitored items exist): what /readyz waits for
    subscribed: bool = False
    samples_in: int = 0
    messages_in: int = 0
    reconnects: int = 0
    last_data_ns: Optional[int] = None
    rejects: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    # recent clock offset (source time - receive time, s) per origin: a machine for MQTT, the
    # endpoint for OPC UA (collectors.clock)
    clock_offsets_s: dict[str, float] = field(default_factory=dict)
    # Sparkplug B (MQTT only): rebirth requests (NCMD Node Control/Rebirth) sent to edge nodes
    rebirths_requested: int = 0
    # scaled-out collect (gwanje.partition): messages for lines another instance owns, skipped
    # (not errors), by reason ("other_instance")
    skipped: dict[str, int] = field(default_factory=dict)


class Collector(Protocol):
    name: str

    def start(self) -> None:
        """Connect and begin delivering samples in background thread(s); returns at once."""

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect and stop the threads."""

    def status(self) -> SourceStatus: ...
