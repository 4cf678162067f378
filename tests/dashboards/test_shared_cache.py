"""The control room's shared query cache (dashboards/cache.py) against a real redis-server,
and two control-room apps over one real influxd sharing it."""
from __future__ import annotations

import pickle
import threading
import time
import uuid

import pytest

from bench.kiosk import Kiosk
from dashboards import create_app
from dashboards.cache import RedisCache, TTLCache, make_cache, safe_url, signing_key
from dashboards.data import DataLayer
from dashboards.sample_data import plant_history
from gwanje.config import ConfigError, load_config
from gwanje.model import NS_PER_S
from storage.influx import InfluxStore
from tests.fixtures.common import wait_for

pytestmark = pytest.mark.services

KEY = signing_key("test-secret-key")


def cache_on(server, key: bytes = KEY, ns: str = "t:plant", **kw) -> RedisCache:
    """A cache with its own connection, as another gunicorn worker would have."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                         retry=Retry(NoBackoff(), 0))
    return RedisCache(client, ns, key, **{"ttl_s": 30.0, **kw})


def counting(value="v"):
    calls = []

    def load():
        calls.append(1)
        return value

    return load, calls


def test_a_second_worker_reads_what_the_first_loaded(redis_server):
    a, b = cache_on(redis_server), cache_on(redis_server)
    load, calls = counting({"frame": [1, 2, 3]})
    assert a.get(("latest", 900.0), load) == {"frame": [1, 2, 3]}
    assert b.get(("latest", 900.0), load) == {"frame": [1, 2, 3]}
    assert len(calls) == 1 and (b.hits, b.misses) == (1, 0)
    # other inputs are other keys
    assert b.get(("latest", 60.0), load) == {"frame": [1, 2, 3]} and len(calls) == 2


def test_concurrent_misses_in_many_workers_make_one_load(redis_server):
    workers = [cache_on(redis_server) for _ in range(6)]
    calls, gate = [], threading.Event()

    def slow():
        calls.append(1)
        gate.wait(5)
        return "v"

    results = []
    threads = [threading.Thread(target=lambda c=c: results.append(c.get(("oee-plant", 1), slow))) for c in workers]
    for th in threads:
        th.start()
    wait_for(lambda: calls, timeout=5)
    time.sleep(0.2)  # give every other worker the chance to (wrongly) load too
    gate.set()
    for th in threads:
        th.join(10)
    assert results == ["v"] * 6
    assert len(calls) == 1
    assert sum(c.waits for c in workers) == 5


def test_a_dead_workers_lock_expires(redis_server):
    c = cache_on(redis_server, lock_ms=300, wait_ms=10_000)
    rkey = c._rkey(("series", "x"))
    # a worker took the lock and died: nobody writes the value, the lock expires
    redis_server.client().set(rkey + ":lock", "dead-worker", px=300)
    load, calls = counting("mine")
    assert c.get(("series", "x"), load) == "mine"
    assert len(calls) == 1


def test_a_failed_load_is_not_cached_and_releases_the_lock(redis_server):
    a, b = cache_on(redis_server), cache_on(redis_server, wait_ms=10_000)

    def boom():
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        a.get("k", boom)
    load, calls = counting("back")
    assert b.get("k", load) == "back" and len(calls) == 1  # no waiting for a lock nobody holds


class Exploit:
    """Unpickling this creates a file: what an attacker with write access to Redis would try."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_forged_and_unsigned_entries_are_refused_never_unpickled(redis_server, tmp_path):
    c = cache_on(redis_server)
    r = redis_server.client()
    marker = tmp_path / "pwned"
    load, calls = counting("recomputed")
    rkey = c._rkey(("latest", 900.0))
    # a plain pickle, then one with our header but a made-up signature
    for forged in (pickle.dumps(Exploit(marker)), b"GW1" + b"\0" * 32 + pickle.dumps(Exploit(marker))):
        r.set(rkey, forged)
        assert c.get(("latest", 900.0), load) == "recomputed"
        assert not marker.exists()
    assert len(calls) == 2
    assert c.rejects.counts()["forged-entry"] == 2
    # after a refusal the recomputed, signed value is what Redis holds
    assert cache_on(redis_server).get(("latest", 900.0), lambda: "not this") == "recomputed"


def test_a_signed_entry_moved_to_another_key_is_refused(redis_server):
    c = cache_on(redis_server)
    c.get(("series", "a"), lambda: "value of a")
    r = redis_server.client()
    r.set(c._rkey(("series", "b")), r.get(c._rkey(("series", "a"))))
    assert cache_on(redis_server).get(("series", "b"), lambda: "value of b") == "value of b"


def test_workers_with_different_secret_keys_share_nothing(redis_server):
    a, b = cache_on(redis_server), cache_on(redis_server, key=signing_key("another key"))
    a.get("k", lambda: "a's")
    assert b.get("k", lambda: "b's") == "b's"
    assert b.rejects.counts() == {}  # a separate namespace: no false "forged" alarms


def test_redis_killed_falls_back_counted_once_and_comes_back(redis_server):
    c = cache_on(redis_server, retry_s=0.2)
    load, calls = counting("v")
    c.get("k", load)
    redis_server.kill()
    for _ in range(20):
        assert c.get("k2", load) == "v"
    assert c.down and c.rejects.counts() == {"redis-unavailable": 1}
    assert len(calls) == 2  # the in-process cache answered the other 19
    redis_server.start()  # same port, empty
    other = cache_on(redis_server)
    other.get("k3", lambda: "shared again")
    assert wait_for(lambda: c.get("k3", lambda: "local") == "shared again", timeout=10)
    assert not c.down and c.rejects.counts() == {"redis-unavailable": 1}


def test_clear_forgets_the_entries_of_every_worker(redis_server):
    a, b = cache_on(redis_server), cache_on(redis_server)
    a.get("k", lambda: "old")
    b.clear()  # e.g. a saved stop reason: the Pareto must show it on every display
    assert a.get("k", lambda: "new") == "new"


# ----------------------------------------------------------------------------- config


def test_without_a_url_the_cache_is_in_process(plant_config):
    assert isinstance(make_cache(plant_config, env={}), TTLCache)


def test_a_password_in_yaml_is_refused(tmp_path):
    from tests.dashboards.conftest import REPO

    for f in REPO.joinpath("config").glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    text = (tmp_path / "system.yaml").read_text()
    assert "    redis_url:  " in text
    (tmp_path / "system.yaml").write_text(text.replace("    redis_url:  ", "    redis_url: redis://:hunter2@redis:6379/0  ", 1))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, env={})
    assert "GWANJE_REDIS_PASSWORD" in str(e.value) and "hunter2" not in str(e.value)


def test_the_password_comes_from_the_environment_and_is_never_logged(plant_config, redis_server, caplog, tmp_path):
    redis_server.stop()
    redis_server.password = "s3cr3t-redis-pw"
    redis_server.start()
    env = {"GWANJE_REDIS_URL": redis_server.url, "GWANJE_REDIS_PASSWORD": "s3cr3t-redis-pw",
           "GWANJE_SECRET_KEY": "k"}
    with caplog.at_level("INFO"):
        c = make_cache(plant_config, env=env)
        assert c.get("k", lambda: "v") == "v" and not c.down
        in_url = make_cache(plant_config, env={"GWANJE_REDIS_URL": redis_server.url.replace(
            "redis://", "redis://:s3cr3t-redis-pw@"), "GWANJE_SECRET_KEY": "k"})
        assert in_url.get("k", lambda: "other") == "v"
        refused = make_cache(plant_config, env={"GWANJE_REDIS_URL": redis_server.url.replace(
            "redis://", "redis://:wrong-s3cr3t@"), "GWANJE_SECRET_KEY": "k"})
        assert refused.get("k", lambda: "fallback") == "fallback" and refused.down
    assert "s3cr3t" not in caplog.text and "redis-unavailable" in caplog.text
    assert safe_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"


# ----------------------------------------------------------------------------- two apps, one influxd


def test_two_control_rooms_share_one_store_query_per_ttl(plant_config, influxd, redis_server):
    now = time.time_ns()
    db = f"t_{uuid.uuid4().hex[:12]}"
    writer = InfluxStore(influxd.url, db, timeout_s=5).start()
    writer.write_samples(plant_history(plant_config, now, 180, 5.0))
    env = {"GWANJE_REDIS_URL": redis_server.url, "GWANJE_SECRET_KEY": "shared-by-every-worker"}
    clock = lambda: now  # noqa: E731  both render the same instant: same keys whatever the load

    def control_room():
        store = InfluxStore(influxd.url, db, timeout_s=5).start()
        layer = DataLayer(plant_config, store, clock=clock, cache=make_cache(plant_config, env=env, ttl_s=30))
        app = create_app(plant_config, store, data=layer, env=env)
        client = app.server.test_client()

        def post(path, body):
            r = client.post(path, json=body)
            return r.status_code, (r.get_json() if r.status_code == 200 else None)

        return store, layer, Kiosk(post, lambda p: client.get(p).get_json()), client

    store_a, _, kiosk_a, _ = control_room()
    kiosk_a.tick()
    assert kiosk_a.errors == 0 and store_a.queries > 0  # the first display costs the store

    store_b, layer_b, kiosk_b, client_b = control_room()  # another worker: its own cache, connection, store
    before_b, before_influx = store_b.queries, influxd.query_requests()
    for _ in range(3):
        assert kiosk_b.tick() >= 3
    assert kiosk_b.errors == 0
    assert store_b.queries == before_b
    assert influxd.query_requests() == before_influx

    # an attacker rewrites every entry: refused, recomputed from the store, nothing unpickled
    r = redis_server.client()
    keys = [k for k in r.scan_iter(match=layer_b.cache.namespace + "*") if not k.endswith(b":lock")]
    assert keys
    for k in keys:
        r.set(k, pickle.dumps("forged"))
    kiosk_b.tick()
    assert kiosk_b.errors == 0 and store_b.queries > before_b
    assert layer_b.cache.rejects.counts()["forged-entry"] >= len(keys)

    # Redis gone: the page still renders from the store through the in-process cache, the outage counted
    redis_server.kill()
    layer_b.cache.clear()
    tiles = next(b for b in kiosk_b.bodies if "gw-tile" in b["output"])
    res = client_b.post("/_dash-update-component", json=tiles)
    assert res.status_code == 200
    tiles_shown = [v["className"] for v in res.get_json()["response"].values() if "className" in v]
    assert len(tiles_shown) == 36 and all(c.startswith("gw-tile") for c in tiles_shown)
    assert layer_b.cache.down and layer_b.cache.rejects.counts()["redis-unavailable"] == 1
    assert layer_b.cache.rejects in client_b.application.extensions["gwanje_rejects"]  # in /metrics
    writer._query(f'DROP DATABASE "{db}"', write=True)
    for s in (writer, store_a, store_b):
        s.close()


def test_a_live_alarm_services_flood_view_stays_in_the_process(plant_config, redis_server):
    from dashboards import alarm_banner, context

    class Live:
        can_act = True

        def __init__(self):
            self.calls = 0

        def flood(self):
            self.calls += 1
            return {("changwon-1", "cnc-1"): 12}

    env = {"GWANJE_REDIS_URL": redis_server.url, "GWANJE_SECRET_KEY": "k"}
    layer = DataLayer(plant_config, store=None, cache=make_cache(plant_config, env=env, ttl_s=30))  # type: ignore[arg-type]
    context.set_context(plant_config, layer, None)
    live = Live()
    assert alarm_banner.flood_areas(live) == {("changwon-1", "cnc-1"): 12}
    assert alarm_banner.flood_areas(live) == {("changwon-1", "cnc-1"): 12} and live.calls == 1
    assert list(redis_server.client().scan_iter(match=layer.cache.namespace + "*")) == []

