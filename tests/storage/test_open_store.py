"""open_store(): the demo config gives the embedded file; GWANJE_STORAGE=influxdb a started
InfluxStore, credentials from the environment only."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from gwanje.config import Secrets, load_config
from gwanje.model import Sample
from storage import StoreUnavailable, open_store
from storage.embedded import EmbeddedStore
from storage.influx import InfluxStore
from tests.fixtures.common import find_binary
from tests.fixtures.influxd import Influxd

CONFIG = Path(__file__).resolve().parents[2] / "config"
T0 = 1_767_225_600 * 1_000_000_000


def test_demo_config_opens_the_embedded_file_under_the_data_dir(tmp_path):
    store = open_store(load_config(CONFIG, env={}), tmp_path, Secrets.from_env({}))
    assert isinstance(store, EmbeddedStore)
    store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])
    store.close()
    assert (tmp_path / "gwanje.duckdb").exists()


def test_the_embedded_store_bounds_duckdbs_buffer_pool_as_configured(tmp_path):
    """storage.embedded_memory_limit is DuckDB's memory_limit: its buffer pool would otherwise
    cache table blocks up to 80 % of the host's RAM (bench.soak: the RSS growth of a long soak)."""
    import shutil

    import yaml

    cfg = tmp_path / "config"
    shutil.copytree(CONFIG, cfg)
    system = yaml.safe_load((cfg / "system.yaml").read_text())
    store = open_store(load_config(cfg, env={}), tmp_path / "a", Secrets.from_env({}))
    assert store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "953.6 MiB"  # 1GB
    store.close()
    system["storage"]["embedded_memory_limit"] = "256MB"
    (cfg / "system.yaml").write_text(yaml.safe_dump(system))
    store = open_store(load_config(cfg, env={}), tmp_path / "b", Secrets.from_env({}))
    assert store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "244.1 MiB"
    store.close()
    system["storage"]["embedded_memory_limit"] = "lots"
    (cfg / "system.yaml").write_text(yaml.safe_dump(system))
    with pytest.raises(Exception, match="embedded_memory_limit"):
        load_config(cfg, env={})


@pytest.mark.services
def test_influxdb_from_environment(influxd, tmp_path):
    database = f"o_{uuid.uuid4().hex[:8]}"
    env = {"GWANJE_STORAGE": "influxdb", "GWANJE_INFLUX_URL": influxd.url, "GWANJE_INFLUX_DB": database}
    store = open_store(load_config(CONFIG, env=env), tmp_path, Secrets.from_env(env))
    assert isinstance(store, InfluxStore)
    store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])
    assert influxd.query('SELECT count("value") FROM "sample"', database)["results"][0]["series"][0]["values"] == [[0, 1]]
    store.close()


@pytest.mark.services
def test_influxdb_down_at_boot_is_caught_up_with_once_it_answers(tmp_path):
    server = Influxd(find_binary("influxd"), tmp_path / "influxd")
    env = {"GWANJE_STORAGE": "influxdb", "GWANJE_INFLUX_URL": server.url, "GWANJE_INFLUX_TOKEN": "s3cret-token"}
    store = open_store(load_config(CONFIG, env=env), tmp_path, Secrets.from_env(env))  # does not raise
    with pytest.raises(StoreUnavailable) as err:
        store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])
    assert "s3cret-token" not in str(err.value)
    (tmp_path / "influxd").mkdir()
    server.start()
    try:
        store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])  # the spool's retry
        assert [s.value for s in store.latest()] == [1.0]
    finally:
        server.stop()
