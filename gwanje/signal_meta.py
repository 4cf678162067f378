"""Units and display names of every configured signal, as records a query can join with.

Pure, no I/O. Grafana and InfluxQL users see series by their ids (`spindle_load`); the
`signal_meta` records (storage.schema's measurement of the same name) say what an id means:
unit, Korean and English name, kind and display range. The collector writes them at every
start, so a changed plant.yaml shows from the next start on; a reader takes the newest.
"""
from __future__ import annotations

from gwanje.config import Config
from gwanje.model import Event

KIND = "signal_meta"


def signal_meta_events(config: Config, ts: int) -> list[Event]:
    """One record per machine and signal, key = signal id."""
    out = []
    for m in config.machines():
        for s in m.signals:
            data = {"unit": s.unit, "name_ko": s.name.ko, "name_en": s.name.en, "kind": s.kind}
            if s.range is not None:
                data["range_min"], data["range_max"] = float(s.range[0]), float(s.range[1])
            out.append(Event(KIND, ts, m.site, m.line, m.machine, s.id, data))
    return out
