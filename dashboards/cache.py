"""The control room's short-TTL query cache: in-process by default, shared through Redis when
configured (system.yaml `ui.cache.redis_url` or GWANJE_REDIS_URL).

Both answer `get(key, load)`: the value cached under key if younger than ttl_s, else load()'s
result, cached; `clear()` forgets everything; `ttl_s` is what keys are quantized to (the OEE
and trend keys round their clocks to it, so displays asking within one TTL share one entry).
A failed load is never cached and its exception reaches the caller.

`TTLCache` — one per process, shared by its threads; concurrent misses of a key wait for one
load (single flight).

`RedisCache` — one entry per key for every process using the same Redis and namespace, so N
gunicorn workers and any number of wall displays cost the store one query per key and TTL:
- single flight across processes: on a miss one process takes the key's lock
  (SET NX PX lock_ms, a random token, released by compare-and-delete) and loads; the others
  poll the value for up to wait_ms, then load themselves. A dead holder's lock expires.
- keys: `<prefix>:<config digest>:<signing key id>:<key kind>:<sha256 of the key>`,
  so two plants (give each its own prefix), two config versions or two signing keys never read each other's entries.
- values are pickled (polars frames, dataclasses) and signed: HMAC-SHA256 over the Redis key
  and the bytes, with a key derived from GWANJE_SECRET_KEY. Unpickling attacker-written bytes
  is code execution, so an entry whose signature does not verify is never unpickled: it is
  refused (counted as `forged-entry` in rejects, logged) and the value loaded again. Without
  GWANJE_SECRET_KEY (demo) the key is random per process and nothing is shared: every worker
  must have the same GWANJE_SECRET_KEY for the cache to be shared (logged at start).
- Redis down, refusing or slower than timeout_ms: the in-process cache answers (pages never
  fail because Redis is away); counted as `redis-unavailable` once per outage, logged once
  when it starts and once when it ends; Redis is tried again every retry_s.
The password comes from GWANJE_REDIS_PASSWORD or the URL in GWANJE_REDIS_URL only, and no
URL is ever logged with its password.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
import threading
import time
from typing import Any, Callable, Mapping, Optional, Protocol
from urllib.parse import urlsplit, urlunsplit

from gwanje.rejects import Rejects

log = logging.getLogger("gwanje.dashboards.cache")


class Cache(Protocol):
    ttl_s: float

    def get(self, key: Any, load: Callable[[], Any]) -> Any: ...

    def clear(self) -> None: ...


class TTLCache:
    """Results by key for ttl_s, shared by threads; one loader per key at a time."""

    _SWEEP_EVERY = 64

    def __init__(self, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic, max_entries: int = 4096):
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_entries
        self._lock = threading.Lock()
        self._items: dict[Any, tuple[float, Any]] = {}
        self._inflight: dict[Any, threading.Lock] = {}
        self._inserts = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._fresh(key)
            if hit is not None:
                self.hits += 1
                return hit[1]
            key_lock = self._inflight.setdefault(key, threading.Lock())
        with key_lock:
            # another thread may have loaded it while we waited for the key lock
            with self._lock:
                hit = self._fresh(key)
                if hit is not None:
                    self.hits += 1
                    return hit[1]
                self.misses += 1
            try:
                value = load()
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
            with self._lock:
                # trend keys move with the clock, so expired entries pile up unless swept:
                # sweep every _SWEEP_EVERY inserts (cheap), hard cap at max_entries
                self._inserts += 1
                if self._inserts % self._SWEEP_EVERY == 0 or len(self._items) >= self._max:
                    self._evict()
                self._items[key] = (self._clock(), value)
            return value

    def _fresh(self, key: Any) -> Optional[tuple[float, Any]]:
        item = self._items.get(key)
        if item is not None and self._clock() - item[0] < self.ttl_s:
            return item
        return None

    def _evict(self) -> None:
        now = self._clock()
        for k in [k for k, (t0, _) in self._items.items() if now - t0 >= self.ttl_s]:
            del self._items[k]
        if len(self._items) >= self._max:  # all fresh: drop the oldest half
            for k in sorted(self._items, key=lambda k: self._items[k][0])[: self._max // 2]:
                del self._items[k]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# ----------------------------------------------------------------------------- Redis

MAGIC = b"GW1"
MAC_LEN = 32
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_POLL_S = 0.01
_MEMO_MAX = 1024


def safe_url(url: str) -> str:
    """The URL as it may be logged: any password replaced by ***."""
    u = urlsplit(url)
    if u.password is None:
        return url
    host = u.hostname or ""
    if u.port:
        host += f":{u.port}"
    user = (u.username or "") + ":***@"
    return urlunsplit((u.scheme, user + host, u.path, u.query, u.fragment))


def signing_key(secret: Optional[str]) -> bytes:
    """The cache's HMAC key: derived from GWANJE_SECRET_KEY (never the secret itself, which
    also signs login sessions), random for this process without one."""
    if not secret:
        return os.urandom(32)
    return hmac.new(secret.encode(), b"gwanje ui-cache v1", hashlib.sha256).digest()


def config_digest(config: Any) -> str:
    """What the cached views depend on besides the store: the plant model and the other YAML
    (shifts, alarms). Processes on different config versions never share entries."""
    plant = config.plant.model_dump(mode="json")
    raw = json.dumps([plant, config.raw_extra], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


class _Down(Exception):
    """Redis failed during this get."""


class RedisCache:
    """The cache shared through Redis (see the module docstring). `client`: a redis.Redis."""

    def __init__(self, client: Any, namespace: str, key: bytes, ttl_s: float = 1.0, lock_ms: int = 5000,
                 wait_ms: int = 2000, retry_s: float = 5.0, where: str = "redis",
                 clock: Callable[[], float] = time.monotonic) -> None:
        import redis

        self._redis = client
        self._errors = (redis.RedisError, OSError)
        self.ttl_s = ttl_s
        self.namespace = namespace.rstrip(":") + ":" + hashlib.sha256(b"id" + key).hexdigest()[:8] + ":"
        self._key = key
        self.lock_ms = lock_ms
        self.wait_s = wait_ms / 1000
        self.retry_s = retry_s
        self.where = where
        self._clock = clock
        self.local = TTLCache(ttl_s)  # what answers while Redis is away
        self.rejects = Rejects("ui-cache")
        self._state_lock = threading.Lock()
        self._down_until: Optional[float] = None  # set while in an outage: next try
        self._memo: dict[str, tuple[bytes, Any]] = {}  # Redis key -> (its MAC, the value unpickled)
        self._release = client.register_script(_RELEASE)
        self.hits = 0
        self.misses = 0  # loads this process made
        self.waits = 0  # misses answered by another process's load
        self.fallbacks = 0  # gets answered by the in-process cache, Redis away

    # --------------------------------------------------------------- public
    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        if not self._available():
            self.fallbacks += 1
            return self.local.get(key, load)
        done: list[Any] = []  # the value once loaded here: a Redis failure after it must not load again

        def load_once() -> Any:
            if not done:
                done.append(load())
            return done[0]

        try:
            value = self._shared(self._rkey(key), load_once)
        except _Down:
            self.fallbacks += 1
            if done:
                return done[0]
            return self.local.get(key, load)
        self._up()
        return value

    def clear(self) -> None:
        """Forget every entry of this namespace (a saved stop reason must show at once on
        every display), and the in-process ones."""
        self.local.clear()
        with self._state_lock:
            self._memo.clear()
        if not self._available():
            return
        try:
            batch = []
            for k in self._redis.scan_iter(match=self.namespace + "*", count=500):
                batch.append(k)
                if len(batch) >= 500:
                    self._redis.delete(*batch)
                    batch = []
            if batch:
                self._redis.delete(*batch)
        except self._errors as e:
            self._outage(e)

    @property
    def down(self) -> bool:
        return self._down_until is not None

    # --------------------------------------------------------------- inside
    def _rkey(self, key: Any) -> str:
        kind = key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else "k"
        kind = "".join(c for c in kind if c.isalnum() or c in "-_")[:32] or "k"
        return f"{self.namespace}{kind}:{hashlib.sha256(repr(key).encode()).hexdigest()[:32]}"

    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except self._errors as e:
            self._outage(e)
            raise _Down() from None

    def _shared(self, rkey: str, load: Callable[[], Any]) -> Any:
        raw = self._call(self._redis.get, rkey)
        found = self._decode(rkey, raw)
        if found is not _MISS:
            self.hits += 1
            return found
        lock = rkey + ":lock"
        token = os.urandom(12).hex()
        deadline = self._clock() + self.wait_s
        waited = False
        while True:
            if self._call(self._redis.set, lock, token, nx=True, px=self.lock_ms):
                try:
                    self.misses += 1
                    value = load()  # a store failure propagates; the lock is released below
                    self._call(self._redis.set, rkey, self._encode(rkey, value), px=max(1, int(self.ttl_s * 1000)))
                    return value
                finally:
                    try:
                        self._release(keys=[lock], args=[token])
                    except self._errors:
                        pass  # it expires by itself
            # another process is loading it: wait for its result rather than ask the store too
            if self._clock() >= deadline:
                self.misses += 1
                return load()
            waited = True
            time.sleep(_POLL_S)
            raw = self._call(self._redis.get, rkey)
            found = self._decode(rkey, raw)
            if found is not _MISS:
                if waited:
                    self.waits += 1
                self.hits += 1
                return found

    def _mac(self, rkey: str, payload: bytes) -> bytes:
        return hmac.new(self._key, rkey.encode() + b"\0" + payload, hashlib.sha256).digest()

    def _encode(self, rkey: str, value: Any) -> bytes:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        mac = self._mac(rkey, payload)
        with self._state_lock:
            self._remember(rkey, mac, value)
        return MAGIC + mac + payload

    def _remember(self, rkey: str, mac: bytes, value: Any) -> None:
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[rkey] = (mac, value)

    def _decode(self, rkey: str, raw: Optional[bytes]) -> Any:
        """The value of a Redis entry, or _MISS: none, or refused (forged, unsigned, ours but
        no longer readable), counted and logged. Nothing unverified is ever unpickled."""
        if raw is None:
            return _MISS
        if not isinstance(raw, bytes) or len(raw) < len(MAGIC) + MAC_LEN or not raw.startswith(MAGIC):
            self.rejects.reject("forged-entry", f"{rkey}: not a signed cache entry")
            return _MISS
        mac = raw[len(MAGIC):len(MAGIC) + MAC_LEN]
        with self._state_lock:
            memo = self._memo.get(rkey)
        if memo is not None and hmac.compare_digest(memo[0], mac):
            return memo[1]  # the very entry this process wrote or read last: no unpickling again
        payload = raw[len(MAGIC) + MAC_LEN:]
        if not hmac.compare_digest(self._mac(rkey, payload), mac):
            self.rejects.reject("forged-entry", f"{rkey}: signature does not verify")
            return _MISS
        try:
            value = pickle.loads(payload)  # signed by a process holding our key
        except Exception as e:  # e.g. written by another version of the code
            self.rejects.reject("unreadable-entry", f"{rkey}: {type(e).__name__}")
            return _MISS
        with self._state_lock:
            self._remember(rkey, mac, value)
        return value

    def _available(self) -> bool:
        with self._state_lock:
            if self._down_until is None:
                return True
            if self._clock() < self._down_until:
                return False
            self._down_until = self._clock() + self.retry_s  # this caller tries; others wait for it
            return True

    def _outage(self, e: BaseException) -> None:
        with self._state_lock:
            starting = self._down_until is None
            self._down_until = self._clock() + self.retry_s
        if starting:
            # one count and one log line per outage (not per get: 20 displays would flood both)
            self.rejects.reject("redis-unavailable", f"{self.where}: {type(e).__name__}")
            log.warning("shared cache: Redis at %s not answering (%s); the in-process cache answers, "
                        "retrying every %.0f s", self.where, type(e).__name__, self.retry_s)

    def _up(self) -> None:
        if self._down_until is None:
            return
        with self._state_lock:
            was_down, self._down_until = self._down_until is not None, None
        if was_down:
            log.warning("shared cache: Redis at %s answers again; the cache is shared again", self.where)


_MISS = object()


def redis_url_from(cfg: Any, env: Mapping[str, str]) -> Optional[str]:
    """GWANJE_REDIS_URL (may carry a password), else system.yaml ui.cache.redis_url."""
    return env.get("GWANJE_REDIS_URL") or cfg.redis_url or None


def make_cache(config: Any, env: Optional[Mapping[str, str]] = None, ttl_s: Optional[float] = None) -> Any:
    """The cache the control room uses: Redis when a URL is configured, else in-process."""
    e = os.environ if env is None else env
    cfg = config.system.ui.cache
    # default: one store query per refresh of the displays, however many displays and workers
    # ask (bench.ui_queries: a TTL of half the refresh costs 20 displays twice what one does)
    ttl = ttl_s if ttl_s is not None else (cfg.ttl_s if cfg.ttl_s is not None
                                           else config.system.ui.refresh_ms / 1000)
    url = redis_url_from(cfg, e)
    if not url:
        return TTLCache(ttl)
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout = cfg.timeout_ms / 1000
    kw: dict[str, Any] = dict(socket_timeout=timeout, socket_connect_timeout=timeout,
                              retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)
    if e.get("GWANJE_REDIS_PASSWORD"):
        kw["password"] = e["GWANJE_REDIS_PASSWORD"]
    client = redis.Redis.from_url(url, **kw)
    secret = e.get("GWANJE_SECRET_KEY")
    where = safe_url(url)
    if not secret:
        log.warning("shared cache: no GWANJE_SECRET_KEY, so this process signs its Redis entries with a "
                    "random key and shares nothing; give every worker the same GWANJE_SECRET_KEY")
    ns = f"{cfg.prefix}:{config_digest(config)}"
    log.info("shared cache: Redis at %s, ttl %.1f s, namespace %s", where, ttl, ns)
    return RedisCache(client, ns, signing_key(secret), ttl_s=ttl, lock_ms=cfg.lock_ms, wait_ms=cfg.wait_ms,
                      retry_s=cfg.retry_s, where=where)
