"""Storage: one write + query interface (base.Store), adapters for InfluxDB and DuckDB.

open_store() is the one place that turns configuration into a store; everything else only
sees storage.base.Store.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from storage.base import Store, StoreUnavailable

if TYPE_CHECKING:
    from gwanje.config import Config, Secrets

__all__ = ["Store", "StoreUnavailable", "open_store"]

log = logging.getLogger("gwanje.storage")


def open_store(config: "Config", data_dir: Path, secrets: "Secrets") -> Store:
    """The store config.system.storage names: the embedded DuckDB file under data_dir, or
    InfluxDB (credentials from secrets, i.e. the environment). An InfluxDB that does not
    answer yet is no reason to refuse to start: the store is returned unstarted, its writes
    raise StoreUnavailable (the pipeline spools) until the server answers."""
    from gwanje.batch import SERIES

    # the configured series get their ids, and the store its per-series work (escaped
    # line-protocol prefixes, name arrays), now rather than on the first batch
    SERIES.register(config)
    sc = config.system.storage
    if sc.kind == "embedded":
        from storage import embedded

        embedded.prepare()
        return embedded.EmbeddedStore(Path(data_dir) / sc.embedded_file, memory_limit=sc.embedded_memory_limit)
    from storage import lineprotocol
    from storage.influx import InfluxStore

    lineprotocol.prepare()

    ic = sc.influxdb
    store = InfluxStore(ic.url, ic.database, token=secrets.influx_token, username=secrets.influx_username,
                        password=secrets.influx_password, org=ic.org, timeout_s=ic.timeout_s,
                        gzip=ic.gzip, retention_policy=ic.retention_policy)
    try:
        store.start()
    except StoreUnavailable as e:
        log.warning("InfluxDB not available yet (%s); samples are spooled until it answers", e)
    return store
